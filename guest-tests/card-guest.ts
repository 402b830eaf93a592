/**
 * Serve the x100 card in this process and boot a guest against it under
 * TCG: the one harness behind the guest suites (suites.ts), `vphi test`,
 * and the soak, coverage and bench scripts. No vitest here.
 *
 * A MIC guest (`mic: true`) gets the MIC kernel's command line
 * (MIC_APPEND), the MIC firmware files and mic-* scripts (micGuestFiles)
 * and strict SCIF (vphi.scif_strict=1: a card that does not come online
 * fails mic-scif-boot); VPHI_SCIF_ONLINE_TIMEOUT reaches mic-scif-boot.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeBinding } from '../src/binding/native.ts';
import { micGuestFiles } from '../src/guest/image.ts';
import { MIC_APPEND } from '../src/qemu/kernel.ts';
import { DeviceServer, type ServerOptions } from '../src/server.ts';
import { createTracer, NULL_TRACER, type Tracer } from '../src/trace/tracer.ts';
import { x100Spec, type X100Card } from '../device/x100/card.ts';
import type { FaultSpec } from '../device/x100/faults/spec.ts';
import { cardServices } from '../device/x100/services/index.ts';
import { runGuest, type GuestResult } from './guest.ts';
import { PciFabric } from '../src/pci/fabric.ts';
import { cardPath } from '../src/cli/options.ts';

/** The card a guest runs against. */
export interface GuestCard {
  /** BAR0 (default 512 MiB). */
  apertureSize?: number;
  /** A cardServices() list: `all` (default), `none`, `echo,rma`. */
  services?: string;
  /** Where the card's events go (closed with the card); or `trace`, a file. */
  tracer?: Tracer;
  trace?: string;
  /** Armed at power-on. */
  faults?: FaultSpec[];
  /** The server's operational messages (default: none). */
  log?: ServerOptions['log'];
  /** Cards on one PCIe fabric (default 1): mic0..micN-1, SCIF nodes 1..N; each gets these settings (trace: FILE, FILE.1, ...). */
  count?: number;
}

export interface CardGuestOptions {
  /** init.sh's commands, in order. */
  tests: string[];
  /** Default: the Debian kernel. */
  kernel?: string;
  /** A MIC guest (see above). */
  mic?: boolean;
  /** With `mic`: vphi.scif_strict=1 (default true). */
  scifStrict?: boolean;
  /** Per guest command (init.sh's vphi.timeout), seconds; default none. */
  commandTimeoutS?: number;
  /** For the whole guest, boot included. */
  timeoutMs: number;
  /** More kernel command line. */
  append?: string;
  /** Guest RAM (default 512). */
  memoryMiB?: number;
  /** Temporary directory prefix. */
  name: string;
  card?: GuestCard;
  /** Where the whole guest console goes, if set. */
  consoleFile?: string;
  /** Every console line as it arrives, with the card (snapshots while the guest runs; the fault suite's vphi-ctl lines). */
  onLine?: (line: string, card: X100Card) => void;
}

export interface CardGuest {
  run: GuestResult;
  /** The card the guest ran against (reset by the guest's detach at power-off, memory kept). */
  card: X100Card;
  /** Every card (card.count of them; cards[0] is `card`). */
  cards: X100Card[];
  /** Stop serving the card (closing its tracer) and remove the socket's directory. */
  close(): void;
}

/** A MIC guest: runCardGuest with `mic` set and the kernel given. */
export interface MicGuestOptions extends Omit<CardGuestOptions, 'mic' | 'kernel'> {
  kernel: string;
}

export type MicGuest = CardGuest;

/** How many console lines an error carries. */
const TAIL = 60;

/** Serve a card, boot a guest against it and run `tests`; the error carries the console's tail. */
export async function runCardGuest(o: CardGuestOptions): Promise<CardGuest> {
  const c = o.card ?? {};
  const tracer = c.tracer ?? (c.trace ? createTracer(c.trace) : NULL_TRACER);
  let services;
  try {
    services = cardServices(c.services ?? 'all', { tracer });
  } catch (e) {
    tracer.close();
    throw e;
  }
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  const socketPath = join(dir, 'card.sock');
  const n = c.count ?? 1;
  const fabric = n > 1 ? new PciFabric() : undefined;
  const servers: DeviceServer<X100Card>[] = [];
  try {
    for (let k = 0; k < n; k++) {
      const kTracer = k === 0 ? tracer : c.trace ? createTracer(cardPath(c.trace, k)) : NULL_TRACER;
      const kServices = k === 0 ? services : cardServices(c.services ?? 'all', { tracer: kTracer });
      const log = c.log && n > 1 ? (level: 'info' | 'warn' | 'error', msg: string) => c.log!(level, `mic${k}: ${msg}`) : c.log;
      servers.push(new DeviceServer(loadNativeBinding(), x100Spec({ apertureSize: c.apertureSize ?? 0x2000_0000, services: kServices, faults: c.faults }), { socketPath: cardPath(socketPath, k), tracer: kTracer, log, fabric }));
    }
  } catch (e) {
    for (const s of servers) s.close();
    tracer.close();
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const server = servers[0];
  const cards = servers.map((s) => s.device);
  const close = () => {
    for (const s of servers) s.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const online = process.env.VPHI_SCIF_ONLINE_TIMEOUT;
  const append = [
    o.mic && MIC_APPEND,
    o.commandTimeoutS !== undefined && `vphi.timeout=${o.commandTimeoutS}`,
    o.mic && o.scifStrict !== false && 'vphi.scif_strict=1',
    o.mic && online && `vphi.scif_online_timeout=${online}`,
    o.append,
  ]
    .filter(Boolean)
    .join(' ');
  const lines: string[] = [];
  try {
    const run = await runGuest({
      socketPaths: servers.map((_, k) => cardPath(socketPath, k)),
      kernel: o.kernel,
      append,
      tests: o.tests,
      files: o.mic ? micGuestFiles() : undefined,
      memoryMiB: o.memoryMiB ?? 512,
      timeoutMs: o.timeoutMs,
      onLine: (l) => {
        lines.push(l);
        o.onLine?.(l, server.device);
      },
    });
    return { run, card: server.device, cards, close };
  } catch (e) {
    close();
    throw new Error(`${(e as Error).message}\n--- guest console (last ${TAIL} lines) ---\n${lines.slice(-TAIL).join('\n')}`, { cause: e });
  } finally {
    if (o.consoleFile) writeFileSync(o.consoleFile, lines.join('\n') + '\n');
  }
}

/** Serve a card with every service, boot the MIC guest against it and run `tests`. */
export function runMicGuest(o: MicGuestOptions): Promise<MicGuest> {
  return runCardGuest({ ...o, mic: true });
}
