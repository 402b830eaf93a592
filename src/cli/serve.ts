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
import type { CardSettings } from './options.ts';
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

/** Start the x100 card on a socket; throws a UsageError for bad settings. */
export async function startCard(o: ServeOptions, log: Logger): Promise<DeviceServer<X100Card>> {
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
  const server = new DeviceServer(loadNativeBinding(), { ...spec, listenFd: o.fd }, { socketPath, tracer, log });
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
  const server = await startCard(o, log);
  process.stderr.write(
    `vphi: serving an Intel Xeon Phi x100 (8086:225c) on ${o.fd !== undefined ? `fd ${o.fd}` : o.socketPath}` +
      `${o.socketPath ? `, control socket ${ctlPath(o.socketPath)}` : ''}` +
      `${o.faults?.length ? `, ${o.faults.length} fault(s) armed` : ''}` +
      `${o.trace ? `, tracing to ${o.trace}` : ''}\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  server.close();
  return 0;
}
