/**
 * Which card services run: `--services LIST` picks built-in ones by name,
 * `--service FILE` loads a user's program written against the card-side
 * SCIF API (device/x100/scif/api.ts).
 */
import { existsSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { NULL_TRACER, type Tracer } from '../../../src/trace/tracer.ts';
import type { CardService, ScifApi, ScifEndpoint } from '../scif/api.ts';
import { EchoService } from './echo.ts';
import { errText, type ServiceOptions } from './listener.ts';
import { RmaAgentService } from './rma.ts';
import { PeerRmaService } from './peer-rma.ts';
import { SinkService } from './sink.ts';
import { SourceService } from './source.ts';

export const SERVICE_NAMES = ['echo', 'sink', 'source', 'rma'] as const;
/** Services only a list names (not in `all`): peer-rma (2010), card-to-card RMA for several cards. */
export const EXTRA_SERVICE_NAMES = ['peer-rma'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number] | (typeof EXTRA_SERVICE_NAMES)[number];
const ALL_NAMES: readonly ServiceName[] = [...SERVICE_NAMES, ...EXTRA_SERVICE_NAMES];

const MAKERS: Record<ServiceName, (o: ServiceOptions) => CardService> = {
  echo: (o) => new EchoService(o),
  sink: (o) => new SinkService(o),
  source: (o) => new SourceService(o),
  rma: (o) => new RmaAgentService(o),
  'peer-rma': (o) => new PeerRmaService(o),
};

/** `--services LIST`: a comma list of SERVICE_NAMES, `all` (the default) or `none`. */
export function cardServices(list = 'all', o: ServiceOptions = {}): CardService[] {
  const words = list
    .split(',')
    .map((w) => w.trim().toLowerCase())
    .filter((w) => w !== '');
  if (words.length === 0) words.push('all');
  const valid = `valid: ${ALL_NAMES.join(', ')}, all, none`;
  const picked = new Set<ServiceName>();
  for (const w of words) {
    if (w === 'none') {
      if (words.length > 1) throw new Error(`--services: 'none' cannot be combined with other names (${valid})`);
      return [];
    }
    if (w === 'all') SERVICE_NAMES.forEach((n) => picked.add(n));
    else if ((ALL_NAMES as readonly string[]).includes(w)) picked.add(w as ServiceName);
    else throw new Error(`--services: unknown service '${w}' (${valid})`);
  }
  return ALL_NAMES.filter((n) => picked.has(n)).map((n) => MAKERS[n](o));
}

/** An error's first line, and the next if the first only announces it ("... 1 error:"). */
function oneLine(msg: string): string {
  const lines = msg
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  return (lines[0]?.endsWith(':') ? lines.slice(0, 2) : lines.slice(0, 1)).join(' ');
}

function isCardService(x: unknown): x is CardService {
  return (
    typeof x === 'object' &&
    x !== null &&
    typeof (x as CardService).start === 'function' &&
    typeof (x as CardService).stop === 'function'
  );
}

/**
 * `--service FILE`: a module whose default export is a function
 * (api) => void | Promise<void>, started when the node comes up, or a
 * CardService. A function's endpoints are closed when the node goes.
 * Anything wrong with the file is one Error line.
 */
export async function loadServiceModule(file: string, o: { tracer?: Tracer } = {}): Promise<CardService> {
  const tracer = o.tracer ?? NULL_TRACER;
  const abs = resolve(file);
  if (!existsSync(abs)) throw new Error(`--service: no such file: ${file}`);
  let mod: Record<string, unknown>;
  try {
    mod = await importModule(abs);
  } catch (e) {
    throw new Error(`--service: cannot load ${file}: ${oneLine(errText(e))}`);
  }
  let d = mod.default;
  // A .ts file outside a "type": "module" package loads as CommonJS: its exports object is the default.
  if (d && typeof d === 'object' && !isCardService(d) && 'default' in d) d = (d as { default: unknown }).default;
  const name = basename(abs).replace(/\.[^.]*$/, '');
  const trace = (data: Record<string, unknown>) => {
    if (tracer.enabled) tracer.event('service', { service: name, ...data });
  };
  if (isCardService(d)) return guarded(d, trace);
  if (typeof d === 'function') return new FunctionService(name, d as (api: ScifApi) => unknown, trace);
  throw new Error(`--service: ${file}: the default export must be a function (api) => void or a CardService`);
}

/**
 * import() the file; if Node refuses a TypeScript file (a .ts outside a
 * "type": "module" package under the tsx loader), load it through tsx's
 * own tsImport(), whose error is then the one that says what is wrong.
 */
async function importModule(abs: string): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(abs).href)) as Record<string, unknown>;
  } catch (first) {
    if (!/\.[cm]?ts$/.test(abs)) throw first;
    try {
      const { tsImport } = (await import('tsx/esm/api')) as {
        tsImport(spec: string, parent: string): Promise<Record<string, unknown>>;
      };
      return await tsImport(pathToFileURL(abs).href, import.meta.url);
    } catch (second) {
      throw (first as { code?: string }).code === 'ERR_REQUIRE_CYCLE_MODULE' ? second : first;
    }
  }
}

/** A user's CardService whose start/stop never throw into the card model. */
function guarded(s: CardService, trace: (d: Record<string, unknown>) => void): CardService {
  return {
    name: typeof s.name === 'string' ? s.name : 'service',
    start(api) {
      try {
        s.start(api);
      } catch (e) {
        trace({ error: 'start', err: errText(e) });
      }
    },
    stop() {
      try {
        s.stop();
      } catch (e) {
        trace({ error: 'stop', err: errText(e) });
      }
    },
  };
}

/** A default-export function as a CardService: the endpoints it opens or accepts are tracked, and stop() closes them. */
class FunctionService implements CardService {
  private eps = new Set<ScifEndpoint>();
  constructor(
    readonly name: string,
    private readonly fn: (api: ScifApi) => unknown,
    private readonly trace: (d: Record<string, unknown>) => void,
  ) {}

  start(api: ScifApi): void {
    const eps = this.eps;
    const track = (ep: ScifEndpoint): ScifEndpoint => {
      eps.add(ep);
      const close = ep.close.bind(ep);
      const accept = ep.accept.bind(ep);
      ep.close = () => {
        eps.delete(ep);
        return close();
      };
      ep.accept = async (o) => {
        const r = await accept(o);
        track(r.ep);
        return r;
      };
      return ep;
    };
    const tracked: ScifApi = {
      get self() {
        return api.self;
      },
      nodeIds: () => api.nodeIds(),
      open: () => track(api.open()),
    };
    try {
      const r = this.fn(tracked);
      if (r && typeof (r as Promise<void>).then === 'function')
        (r as Promise<void>).then(undefined, (e: unknown) => this.trace({ error: 'service', err: errText(e) }));
    } catch (e) {
      this.trace({ error: 'service', err: errText(e) });
    }
  }

  stop(): void {
    const eps = [...this.eps];
    this.eps.clear();
    for (const ep of eps) void ep.close().catch(() => undefined);
  }
}
