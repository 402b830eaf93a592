/**
 * `vphi serve`: the card alone, on a vfio-user socket, until SIGINT/SIGTERM.
 */
import { loadNativeBinding } from '../binding/native.ts';
import { DeviceServer } from '../server.ts';
import { createTracer, NULL_TRACER } from '../trace/tracer.ts';
import { x100Spec, type X100Card } from '../../device/x100/card.ts';
import { cardServices, loadServiceModule } from '../../device/x100/services/index.ts';
import type { CardService } from '../../device/x100/scif/api.ts';
import { UsageError } from './args.ts';
import { cardPath, type CardSettings } from './options.ts';
import { PciFabric } from '../pci/fabric.ts';
import { CtlServer } from '../ctl/server.ts';
import { cardCtlHandler } from './card-ctl.ts';

/** The control socket beside a card's vfio-user socket. */
export const ctlPath = (socketPath: string): string => `${socketPath}.ctl`;

export interface ServeOptions extends CardSettings {
  /** An already-listening UNIX socket handed over by the parent (vhost-user style). */
  fd?: number;
}

export type Logger = (level: 'info' | 'warn' | 'error', msg: string) => void;

export function stderrLogger(verbose: boolean): Logger {
  return (level, msg) => {
    if (level === 'info' && !verbose) return;
    process.stderr.write(`vphi: ${level === 'info' ? '' : `${level}: `}${msg}\n`);
  };
}

/**
 * Start `o.cards` cards (default 1) on one PCIe fabric: card k on
 * cardPath(socket, k), tracing to cardPath(trace, k), each with its own
 * control socket. Throws a UsageError for bad settings.
 */
export async function startCards(o: ServeOptions, log: Logger): Promise<DeviceServer<X100Card>[]> {
  const n = o.cards ?? 1;
  if (n === 1) return [await startCard(o, log)];
  if (o.fd !== undefined) throw new UsageError('--cards needs --socket-path: one inherited --fd serves one card');
  const fabric = new PciFabric();
  const servers: DeviceServer<X100Card>[] = [];
  try {
    for (let k = 0; k < n; k++) {
      const kl: Logger = (level, msg) => log(level, `mic${k}: ${msg}`);
      servers.push(await startCard({ ...o, socketPath: cardPath(o.socketPath!, k), trace: o.trace && cardPath(o.trace, k) }, kl, fabric));
    }
  } catch (e) {
    for (const s of servers) s.close();
    throw e;
  }
  return servers;
}

/** Start one x100 card on a socket (on `fabric` with other cards); throws a UsageError for bad settings. */
export async function startCard(o: ServeOptions, log: Logger, fabric?: PciFabric): Promise<DeviceServer<X100Card>> {
  const tracer = o.trace ? createTracer(o.trace) : NULL_TRACER;
  let services: CardService[];
  try {
    services = cardServices(o.services ?? 'all', { tracer });
    for (const f of o.serviceFiles ?? []) services.push(await loadServiceModule(f, { tracer }));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let spec;
  try {
    spec = x100Spec({ apertureSize: o.apertureSize, services, faults: o.faults });
  } catch (e) {
    throw new UsageError(`--aperture: ${(e as Error).message}`);
  }
  // With --fd the addon serves the inherited socket and never uses the path.
  const socketPath = o.socketPath ?? `fd:${o.fd}`;
  const server = new DeviceServer(loadNativeBinding(), { ...spec, listenFd: o.fd }, { socketPath, tracer, log, fabric });
  // With --fd there is no path to put the control socket beside.
  if (o.socketPath) {
    try {
      const ctl = await CtlServer.listen(ctlPath(o.socketPath), cardCtlHandler(server.device));
      server.onClose(() => ctl.close());
    } catch (e) {
      server.close();
      throw new UsageError((e as Error).message);
    }
  }
  return server;
}

export async function serve(o: ServeOptions): Promise<number> {
  const log = stderrLogger(o.verbose);
  const servers = await startCards(o, log);
  const n = servers.length;
  for (let k = 0; k < n; k++) {
    const sock = o.socketPath && cardPath(o.socketPath, k);
    process.stderr.write(
      `vphi: serving ${n > 1 ? `mic${k}, ` : ''}an Intel Xeon Phi x100 (8086:225c) on ${o.fd !== undefined ? `fd ${o.fd}` : sock}` +
        `${sock ? `, control socket ${ctlPath(sock)}` : ''}` +
        `${o.faults?.length ? `, ${o.faults.length} fault(s) armed` : ''}` +
        `${o.trace ? `, tracing to ${cardPath(o.trace, k)}` : ''}\n`,
    );
  }
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  for (const s of servers) s.close();
  return 0;
}
