/**
 * The card's SCIF RMA (drivers/misc/mic/scif/scif_rma.c and friends),
 * hooked into the node through handle(uop, fn): per-endpoint registered
 * address spaces, both registration directions, card-initiated copies,
 * fences and signals, and the teardown at endpoint close (before
 * SCIF_DISCNCT, scif_unregister_all_windows()), at the host's DISCNCT,
 * and at node loss (scif_invalidate_ep(): nothing is sent).
 */
import { ScifError } from '../api.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { SCIF } from '../msg.ts';
import type { ScifNode } from '../node.ts';
import type { After } from '../waitq.ts';
import { RmaCopies } from './copy.ts';
import { RmaFences } from './fence.ts';
import { SelfRegistrations } from './register.ts';
import { RemoteRegistrations } from './remote.ts';
import type { Window } from './space.ts';
import { EpRma } from './state.ts';
import { PAGE_SIZE } from './window.ts';

export class RmaCore {
  private readonly eps = new Map<CardEndpoint, EpRma>();
  readonly remote: RemoteRegistrations;
  readonly self: SelfRegistrations;
  readonly copies: RmaCopies;
  readonly fences: RmaFences;

  constructor(
    readonly node: ScifNode,
    private readonly after: After,
  ) {
    this.remote = new RemoteRegistrations(this);
    this.self = new SelfRegistrations(this);
    this.copies = new RmaCopies(this);
    this.fences = new RmaFences(this);
    // scif_discnct(): the endpoint is DISCONNECTED; then its card windows are unregistered (the host still answers for zombies).
    const discnct = node.endpoints.handler(SCIF.DISCNCT)!;
    node.handle(SCIF.DISCNCT, (m) => {
      discnct(m);
      const ep = node.endpoints.find(m.payload[1]);
      if (ep && ep.state === 'DISCONNECTED') void this.teardown(ep);
    });
    node.endpoints.rmaHooks = { closing: (ep) => this.teardown(ep), freed: (ep) => this.release(ep) };
    node.onState((state) => {
      if (state === 'off' || state === 'exiting' || state === 'exited' || state === 'crashed') this.nodeGone();
    });
  }

  /** The endpoint's RMA state, created on first use. */
  st(ep: CardEndpoint): EpRma {
    let s = this.eps.get(ep);
    if (!s) {
      s = new EpRma(ep, this.after);
      this.eps.set(ep, s);
    }
    return s;
  }

  /** Endpoints with RMA state (tests). */
  get endpointCount(): number {
    return this.eps.size;
  }

  /** scif_verify_epd() */
  verify(ep: CardEndpoint): void {
    if (ep.state === 'DISCONNECTED' || ep.dead) throw new ScifError('ECONNRESET', `ep ${ep.id}: peer gone`);
    if (ep.state !== 'CONNECTED') throw new ScifError('ENOTCONN', `ep ${ep.id}: state ${ep.state}`);
    if (!this.node.alive(ep.peer?.node ?? 0)) throw new ScifError('ENODEV', `node ${ep.peer?.node ?? 0} is not a live peer`);
  }

  /** Resolves once none of the endpoint's card-initiated transfers is in flight. */
  async drained(ep: CardEndpoint): Promise<void> {
    const st = this.eps.get(ep);
    const peer = ep.peer?.node ?? 0;
    if (st && st.outstanding.size) await st.wq.wait(() => st.outstanding.size === 0 || !this.node.alive(peer));
  }

  /** Card windows on `ep` are unregistered (each UNREGISTER answered, or the node gone). */
  private async teardown(ep: CardEndpoint): Promise<void> {
    const st = this.eps.get(ep);
    if (!st) return;
    for (const w of [...st.reserved.list]) {
      if (w.state !== 'registered') continue;
      try {
        await this.self.unregisterWindow(w);
      } catch (e) {
        this.trace({ action: 'error', ep: ep.id, error: `unregister at close: ${(e as Error).message}` });
      }
    }
  }

  /** The endpoint is freed: whatever is left of it goes, with no messages. */
  private release(ep: CardEndpoint): void {
    const st = this.eps.get(ep);
    if (!st) return;
    for (const w of [...st.reserved.list]) this.self.forget(w, true);
    for (const w of [...st.remote.list]) this.remote.drop(w);
    st.wq.wake();
    this.eps.delete(ep);
  }

  /** Node 0 left (EXIT) or the card was reset: every window, image and waiter goes (scif_cleanup_rma_for_zombies()). */
  private nodeGone(): void {
    for (const ep of [...this.eps.keys()]) this.release(ep);
    for (const img of [...this.remote.images.values()]) this.remote.destroy(img);
  }

  /**
   * For the trace of a DMA descriptor (host- or card-initiated): the
   * endpoint and window offsets its source and destination fall in, and,
   * for the card's own copies, the copy it serves. The host does not tell
   * the card which of its copies a descriptor belongs to, so a host
   * copy is named by its endpoint and window offsets.
   */
  attribute(src: bigint, dst: bigint): Record<string, unknown> | undefined {
    for (const [ep, st] of this.eps) {
      const at = (addr: bigint): { win: 'card' | 'host'; offset: bigint } | null => {
        const c = st.self.locate(addr) ?? st.reserved.locate(addr);
        if (c) return { win: 'card', offset: c.offset };
        const h = st.remote.locate(addr);
        return h ? { win: 'host', offset: h.offset } : null;
      };
      const s = at(src);
      const d = at(dst);
      if (!s && !d) continue;
      const out: Record<string, unknown> = { ep: ep.id };
      if (s) out.src = `${s.win}:0x${s.offset.toString(16)}`;
      if (d) out.dst = `${d.win}:0x${d.offset.toString(16)}`;
      for (const c of st.outstanding.values()) {
        const inside = (p: { win: string; offset: bigint } | null) =>
          p !== null && ((p.win === 'card' && p.offset >= c.loffset && p.offset < c.loffset + c.len) || (p.win === 'host' && p.offset >= c.roffset && p.offset < c.roffset + c.len));
        if (inside(s) || inside(d)) {
          out.copy = c.id;
          break;
        }
      }
      return out;
    }
    return undefined;
  }

  trace(data: Record<string, unknown>): void {
    this.node.trace({ rma: true, ...data });
  }

  traceWindow(action: 'register' | 'unregister', owner: 'card' | 'host', w: Window & { ep: CardEndpoint }): void {
    this.trace({ action: `window-${action}`, owner, ep: w.ep.id, offset: `0x${w.offset.toString(16)}`, len: w.nrPages * PAGE_SIZE, pages: w.nrPages, prot: w.prot, chunks: w.chunks.length });
  }
}
