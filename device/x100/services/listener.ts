/**
 * The shape every port service shares: bind a well-known port, listen,
 * accept forever, and serve each connection concurrently until its peer
 * goes. Errors end one connection (traced, endpoint closed), never the
 * service or the caller; stop() closes the listener and every endpoint.
 */
import { NULL_TRACER, type Tracer } from '../../../src/trace/tracer.ts';
import type { CardService, ScifApi, ScifEndpoint, ScifPortId } from '../scif/api.ts';
import { isPeerGone } from './stream.ts';

export interface ServiceOptions {
  tracer?: Tracer;
}

/** Connection requests a service's listener queues before accepting them. */
export const SERVICE_BACKLOG = 64;

export interface ServeContext {
  readonly api: ScifApi;
  /** scif_open() for an endpoint the service owns; stop() closes it. */
  open(): ScifEndpoint;
  /** Close an endpoint from open(). */
  release(ep: ScifEndpoint): Promise<void>;
  /** The service was stopped (or restarted) since this connection began. */
  stopped(): boolean;
  trace(data: Record<string, unknown>): void;
}

export abstract class PortService implements CardService {
  abstract readonly name: string;
  abstract readonly port: number;
  protected readonly tracer: Tracer;
  private lep: ScifEndpoint | null = null;
  private readonly owned = new Set<ScifEndpoint>();
  private gen = 0;

  constructor(o: ServiceOptions = {}) {
    this.tracer = o.tracer ?? NULL_TRACER;
  }

  /** Serve one accepted connection; resolve when it is over. */
  protected abstract serve(ep: ScifEndpoint, peer: ScifPortId, ctx: ServeContext): Promise<void>;

  /** Endpoints open now (listener included). */
  get endpoints(): number {
    return this.owned.size + (this.lep ? 1 : 0);
  }

  start(api: ScifApi): void {
    if (this.lep) this.stop();
    const gen = ++this.gen;
    let lep: ScifEndpoint | null = null;
    try {
      lep = api.open();
      lep.bind(this.port);
      lep.listen(SERVICE_BACKLOG);
    } catch (e) {
      this.trace({ error: 'listen', err: errText(e) });
      if (lep) void lep.close().catch(() => undefined);
      return;
    }
    this.lep = lep;
    this.trace({ listen: this.port });
    void this.acceptLoop(gen, lep, api);
  }

  stop(): void {
    this.gen++;
    const eps = [...this.owned];
    this.owned.clear();
    if (this.lep) eps.push(this.lep);
    this.lep = null;
    for (const ep of eps) void ep.close().catch(() => undefined);
  }

  protected trace(data: Record<string, unknown>): void {
    if (this.tracer.enabled) this.tracer.event('service', { service: this.name, ...data });
  }

  private async acceptLoop(gen: number, lep: ScifEndpoint, api: ScifApi): Promise<void> {
    for (;;) {
      let a: { ep: ScifEndpoint; peer: ScifPortId };
      try {
        a = await lep.accept({ block: true });
      } catch (e) {
        if (gen === this.gen) {
          this.trace({ error: 'accept', err: errText(e) });
          if (this.lep === lep) this.lep = null;
          void lep.close().catch(() => undefined);
        }
        return;
      }
      if (gen !== this.gen) {
        void a.ep.close().catch(() => undefined);
        return;
      }
      void this.run(gen, a.ep, a.peer, api);
    }
  }

  private async run(gen: number, ep: ScifEndpoint, peer: ScifPortId, api: ScifApi): Promise<void> {
    this.owned.add(ep);
    this.trace({ accept: peer, ep: ep.id });
    const mine = new Set<ScifEndpoint>();
    const ctx: ServeContext = {
      api,
      open: () => {
        const x = api.open();
        if (gen !== this.gen) {
          void x.close().catch(() => undefined);
          throw new Error('service stopped');
        }
        this.owned.add(x);
        mine.add(x);
        return x;
      },
      release: async (x) => {
        this.owned.delete(x);
        mine.delete(x);
        await x.close().catch(() => undefined);
      },
      stopped: () => gen !== this.gen,
      trace: (d) => this.trace({ ep: ep.id, ...d }),
    };
    try {
      await this.serve(ep, peer, ctx);
    } catch (e) {
      if (gen === this.gen && !isPeerGone(e)) this.trace({ ep: ep.id, error: 'serve', err: errText(e) });
    } finally {
      for (const x of [ep, ...mine]) {
        this.owned.delete(x);
        await x.close().catch(() => undefined);
      }
      if (gen === this.gen) this.trace({ close: peer, ep: ep.id });
    }
  }
}

export function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
