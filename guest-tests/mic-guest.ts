/**
 * One MIC guest run for the integration suites (scif.test.ts, rma.test.ts):
 * the x100 card served in this process with every card service, the MIC
 * guest kernel under TCG, `tests` run in order by init.sh, strict SCIF
 * (vphi.scif_strict=1: a card that does not come online fails). And the
 * helpers that turn its KTAP into vitest results.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { loadNativeBinding, nativeAvailable } from '../src/binding/native.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { MIC_APPEND, micKernel } from '../src/qemu/kernel.ts';
import { DeviceServer } from '../src/server.ts';
import { x100Spec, type X100Card } from '../device/x100/card.ts';
import { cardServices } from '../device/x100/services/index.ts';
import { micGuestFiles } from '../src/guest/image.ts';
import { runGuest, type GuestResult } from './guest.ts';
import { findResult, type KtapResult } from './ktap.ts';

const APERTURE = 0x2000_0000;

/** The MIC guest kernel, or null after one loud "SKIP: no MIC guest kernel". */
export function micSuiteKernel(): string | null {
  const kernel = micKernel();
  if (!kernel) console.log('SKIP: no MIC guest kernel');
  return kernel;
}

/** A MIC guest can run here: a kernel, the addon, QEMU. */
export const micSuiteReady = (kernel: string | null): boolean => kernel !== null && nativeAvailable() && existsSync(qemuBinary());

export interface MicGuestOptions {
  kernel: string;
  tests: string[];
  /** Per guest command (init.sh's vphi.timeout), seconds. */
  commandTimeoutS: number;
  /** For the whole guest. */
  timeoutMs: number;
  /** Temporary directory prefix. */
  name: string;
  /** Where the whole guest console goes, if set. */
  consoleFile?: string;
  /** Every console line as it arrives, with the card (the fault suite's vphi-ctl lines). */
  onLine?: (line: string, card: X100Card) => void;
}

export interface MicGuest {
  run: GuestResult;
  close(): void;
}

/** Seconds mic-scif-boot waits for `online` (VPHI_SCIF_ONLINE_TIMEOUT; its default: 30). */
const ONLINE_TIMEOUT = process.env.VPHI_SCIF_ONLINE_TIMEOUT;

/** Serve a card, boot the MIC guest against it and run `tests`; the error carries the console's tail. */
export async function runMicGuest(o: MicGuestOptions): Promise<MicGuest> {
  const dir = mkdtempSync(join(tmpdir(), `${o.name}-`));
  const socketPath = join(dir, 'card.sock');
  const server: DeviceServer<X100Card> = new DeviceServer(loadNativeBinding(), x100Spec({ apertureSize: APERTURE, services: cardServices('all') }), { socketPath });
  const close = () => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const lines: string[] = [];
  try {
    const run = await runGuest({
      socketPath,
      kernel: o.kernel,
      append: [MIC_APPEND, `vphi.timeout=${o.commandTimeoutS}`, 'vphi.scif_strict=1', ONLINE_TIMEOUT && `vphi.scif_online_timeout=${ONLINE_TIMEOUT}`]
        .filter(Boolean)
        .join(' '),
      tests: o.tests,
      files: micGuestFiles(),
      memoryMiB: 512,
      timeoutMs: o.timeoutMs,
      onLine: (l) => {
        lines.push(l);
        o.onLine?.(l, server.device);
      },
    });
    return { run, close };
  } catch (e) {
    close();
    throw new Error(`${(e as Error).message}\n--- guest console (last 60 lines) ---\n${lines.slice(-60).join('\n')}`);
  } finally {
    if (o.consoleFile) writeFileSync(o.consoleFile, lines.join('\n') + '\n');
  }
}

/** A KTAP result with its diagnostics, for an assertion message. */
export const explain = (r: KtapResult | undefined): string => (r ? [...r.diagnostics.map((d) => `# ${d}`), r.line].join('\n') : 'no such result');

/** The diagnostics of a command's subtests that match `re` (bench figures, soak summaries). */
export const subtestDiags = (r: KtapResult | undefined, re: RegExp): string[] => (r?.subtests?.results ?? []).flatMap((x) => x.diagnostics.filter((d) => re.test(d)));

/** Every command ran to the end, in order. */
export function expectRanToEnd(run: GuestResult, cmds: string[]): void {
  const why = run.lines.slice(-80).join('\n');
  expect(run.ktap.errors, why).toEqual([]);
  expect(run.ktap.results.map((r) => r.name), why).toEqual(cmds);
}

/** A subtest of cmd passed (not skipped). */
export function expectPassed(run: GuestResult, cmd: string, name: string): void {
  const r = findResult(run.ktap, cmd, name);
  expect(r?.ok && !r.skipped, `${cmd}: ${name}\n${explain(r ?? findResult(run.ktap, cmd))}`).toBe(true);
}
