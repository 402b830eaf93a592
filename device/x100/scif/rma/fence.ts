/**
 * Fences and signals (scif_fence.c). The card's own transfers are the
 * ones RmaCopies tracks per endpoint; a mark names "every transfer issued
 * so far" and a wait ends once those are done (_scif_fence_mark(),
 * _scif_fence_wait()). The host's SCIF_FENCE_INIT_PEER requests arrive as
 * MARK / WAIT / SIG_LOCAL / SIG_REMOTE (scif_recv_mark(), scif_recv_wait(),
 * scif_recv_sig_local(), scif_recv_sig_remote()); the card's own
 * INIT_PEER fences go to the host the same way (scif_send_fence_mark(),
 * scif_send_fence_wait(), scif_send_fence_signal()).
 */
import { ScifError } from '../api.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { SCIF, type ScifMsg, cloneMsg, newMsg } from '../msg.ts';
import { SCIF_NODE_ALIVE_TIMEOUT_MS } from '../consts.ts';
import type { RmaCore } from './core.ts';
import type { EpRma } from './state.ts';
import { SCIF_FENCE_INIT_PEER, SCIF_FENCE_INIT_SELF, SCIF_PROT_WRITE, SCIF_REMOTE_FENCE, SCIF_SIGNAL_LOCAL, SCIF_SIGNAL_REMOTE, SCIF_WINDOW_SINGLE } from './window.ts';

const MARK_MASK = 0x7fff_ffff;
const FENCE_HANDLE_BASE = 0xca50_0000_0000_0000n;
const hex = (v: bigint) => `0x${v.toString(16)}`;

export class RmaFences {
  private next = 1n;
  /** Our INIT_PEER requests by H_fence-like handle → the endpoint state and the answer. */
  private readonly waiting = new Map<bigint, { st: EpRma; reply: ScifMsg | null }>();

  constructor(private readonly core: RmaCore) {
    const n = core.node;
    n.handle(SCIF.MARK, (m) => this.onMark(m));
    n.handle(SCIF.WAIT, (m) => void this.onWait(m));
    n.handle(SCIF.SIG_LOCAL, (m) => void this.onSignal(m, 'self'));
    n.handle(SCIF.SIG_REMOTE, (m) => void this.onSignal(m, 'remote'));
    for (const uop of [SCIF.MARK_ACK, SCIF.MARK_NACK, SCIF.WAIT_ACK, SCIF.WAIT_NACK]) n.handle(uop, (m) => this.onAnswer(m, m.payload[1]));
    for (const uop of [SCIF.SIG_ACK, SCIF.SIG_NACK]) n.handle(uop, (m) => this.onAnswer(m, m.payload[3]));
  }

  // ---- the card's own marks ----

  /** _scif_fence_mark(): a mark covering every transfer issued so far. */
  localMark(st: EpRma): number {
    return st.issued & MARK_MASK;
  }

  /** _scif_fence_wait(): until the transfers before `mark` are done; false after 30 s. */
  localWait(st: EpRma, mark: number): Promise<boolean> {
    const m = mark & MARK_MASK;
    return st.wq.wait(() => ![...st.outstanding.keys()].some((s) => (s & MARK_MASK) < m) || !this.core.node.peerAlive, SCIF_NODE_ALIVE_TIMEOUT_MS);
  }

  // ---- the host's INIT_PEER requests ----

  private reply(m: ScifMsg, uop: number, ep: CardEndpoint, p2?: bigint): void {
    const r = cloneMsg(m);
    r.uop = uop;
    r.src = { ...ep.port };
    if (ep.peer) r.dst = { ...ep.peer };
    r.payload[0] = ep.remoteEp;
    if (p2 !== undefined) r.payload[2] = p2;
    this.core.node.sendMsg(r);
  }

  private ep(m: ScifMsg): CardEndpoint | null {
    const ep = this.core.node.endpoints.find(m.payload[0]);
    if (ep && ep.peer) return ep;
    this.core.trace({ action: 'error', op: m.uop, error: `p0 ${hex(m.payload[0])} is no card endpoint: cannot answer safely` });
    return null;
  }

  /** scif_recv_mark(): MARK_ACK with p2 = the mark. */
  private onMark(m: ScifMsg): void {
    const ep = this.ep(m);
    if (!ep) return;
    const mark = this.localMark(this.core.st(ep));
    this.core.trace({ action: 'fence-mark', ep: ep.id, by: 'host', mark });
    this.reply(m, SCIF.MARK_ACK, ep, BigInt(mark));
  }

  /** scif_recv_wait(): WAIT_ACK once the card's transfers up to the mark are done, WAIT_NACK on timeout. */
  private async onWait(m: ScifMsg): Promise<void> {
    const ep = this.ep(m);
    if (!ep) return;
    const mark = Number(m.payload[2] & BigInt(MARK_MASK));
    const done = await this.localWait(this.core.st(ep), mark);
    this.core.trace({ action: 'fence-wait', ep: ep.id, by: 'host', mark, done });
    this.reply(m, done ? SCIF.WAIT_ACK : SCIF.WAIT_NACK, ep);
  }

  /**
   * scif_recv_sig_local() / scif_recv_sig_remote() → scif_prog_signal():
   * the 8-byte value p2 at offset p1 of the card's own windows (SIG_LOCAL)
   * or of the host's (SIG_REMOTE), after the card's own transfers;
   * SIG_NACK for an offset outside a writable window.
   */
  private async onSignal(m: ScifMsg, list: 'self' | 'remote'): Promise<void> {
    const ep = this.ep(m);
    if (!ep) return;
    const st = this.core.st(ep);
    await this.core.drained(ep);
    let err: string | null = null;
    try {
      this.progSignal(st, list, m.payload[1], m.payload[2]);
    } catch (e) {
      err = (e as Error).message;
    }
    this.core.trace({ action: 'signal', ep: ep.id, by: 'host', window: list === 'self' ? 'card' : 'host', offset: hex(m.payload[1]), value: hex(m.payload[2]), ...(err ? { error: err } : {}) });
    this.reply(m, err ? SCIF.SIG_NACK : SCIF.SIG_ACK, ep);
  }

  /** scif_prog_signal(): SCIF_WINDOW_SINGLE holding the 8 bytes, with SCIF_PROT_WRITE. */
  progSignal(st: EpRma, list: 'self' | 'remote', off: bigint, value: bigint): void {
    const l = list === 'self' ? st.self : st.remote;
    l.query(off, 8n, SCIF_PROT_WRITE, SCIF_WINDOW_SINGLE);
    const a = l.translate(off);
    if (!a) throw new ScifError('ENXIO', 'offset not found');
    if (a.contig >= 8n) this.core.node.mem.writeU64(a.addr, value);
    else {
      // The 8 bytes straddle two chunks (a 4-byte aligned offset may).
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
      for (let i = 0; i < 8; i++) {
        const x = l.translate(off + BigInt(i))!;
        this.core.node.mem.view(x.addr, 1, true)[0] = b[i];
      }
    }
  }

  // ---- the card's own fences (scif_fence_mark() / _wait() / _signal()) ----

  private onAnswer(m: ScifMsg, handle: bigint): void {
    const w = this.waiting.get(handle);
    if (!w) {
      this.core.trace({ action: 'ignored', op: m.uop, fence: hex(handle) });
      return;
    }
    w.reply = m;
    w.st.wq.wake();
  }

  /** _scif_send_fence(): send, then wait (30 s slices while node 0 lives) for the answer. */
  private async ask(ep: CardEndpoint, uop: number, p: [bigint, bigint, bigint]): Promise<ScifMsg> {
    const st = this.core.st(ep);
    const handle = FENCE_HANDLE_BASE + this.next++;
    const w = { st, reply: null as ScifMsg | null };
    this.waiting.set(handle, w);
    try {
      const payload: [bigint, bigint, bigint, bigint] = uop === SCIF.SIG_LOCAL || uop === SCIF.SIG_REMOTE ? [ep.remoteEp, p[0], p[1], handle] : [ep.remoteEp, handle, p[2], 0n];
      if (ep.state !== 'CONNECTED' || !ep.peer) throw new ScifError('ENOTCONN', 'not connected');
      if (!this.core.node.sendMsg(newMsg(uop, { src: { ...ep.port }, dst: { ...ep.peer }, payload }))) throw new ScifError('ENODEV', 'node 0 is not a live peer');
      const peer = ep.peer.node;
      for (;;) {
        await st.wq.wait(() => w.reply !== null || !this.core.node.alive(peer), SCIF_NODE_ALIVE_TIMEOUT_MS);
        if (w.reply) return w.reply;
        if (!this.core.node.alive(peer)) throw new ScifError('ENODEV', `node ${peer} went away`);
      }
    } finally {
      this.waiting.delete(handle);
    }
  }

  async mark(ep: CardEndpoint, flags: number): Promise<number> {
    this.core.verify(ep);
    if (flags & ~(SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER)) throw new ScifError('EINVAL', `fence flags 0x${flags.toString(16)}`);
    if (!(flags & (SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER)) || (flags & SCIF_FENCE_INIT_SELF && flags & SCIF_FENCE_INIT_PEER)) throw new ScifError('EINVAL', 'exactly one of INIT_SELF / INIT_PEER');
    if (flags & SCIF_FENCE_INIT_SELF) {
      const mark = this.localMark(this.core.st(ep));
      this.core.trace({ action: 'fence-mark', ep: ep.id, by: 'card', mark });
      return mark;
    }
    const r = await this.ask(ep, SCIF.MARK, [0n, 0n, 0n]);
    if (r.uop !== SCIF.MARK_ACK) throw new ScifError('ENOMEM', 'SCIF_MARK_NACK');
    const mark = (SCIF_REMOTE_FENCE | Number(r.payload[2] & BigInt(MARK_MASK))) | 0;
    this.core.trace({ action: 'fence-mark', ep: ep.id, by: 'card', peer: true, mark });
    return mark;
  }

  async wait(ep: CardEndpoint, mark: number): Promise<void> {
    this.core.verify(ep);
    if (mark & SCIF_REMOTE_FENCE) {
      const r = await this.ask(ep, SCIF.WAIT, [0n, 0n, BigInt.asUintN(64, BigInt(mark | 0))]);
      if (r.uop !== SCIF.WAIT_ACK) throw new ScifError('ENOMEM', 'SCIF_WAIT_NACK');
    } else if (!(await this.localWait(this.core.st(ep), mark))) throw new ScifError('ETIMEDOUT', `mark ${mark}`);
    this.core.trace({ action: 'fence-wait', ep: ep.id, by: 'card', mark });
  }

  async signal(ep: CardEndpoint, loff: bigint, lval: bigint, roff: bigint, rval: bigint, flags: number): Promise<void> {
    this.core.verify(ep);
    if (flags & ~(SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE)) throw new ScifError('EINVAL', `signal flags 0x${flags.toString(16)}`);
    if (!(flags & (SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER)) || (flags & SCIF_FENCE_INIT_SELF && flags & SCIF_FENCE_INIT_PEER)) throw new ScifError('EINVAL', 'exactly one of INIT_SELF / INIT_PEER');
    if (!(flags & (SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE))) throw new ScifError('EINVAL', 'SIGNAL_LOCAL or SIGNAL_REMOTE');
    if (flags & SCIF_SIGNAL_LOCAL && loff & 3n) throw new ScifError('EINVAL', 'loff not dword aligned');
    if (flags & SCIF_SIGNAL_REMOTE && roff & 3n) throw new ScifError('EINVAL', 'roff not dword aligned');
    if (flags & SCIF_FENCE_INIT_PEER) {
      // scif_send_fence_signal(): SIG_LOCAL carries (roff, rval), SIG_REMOTE (loff, lval), as 5.8 builds them.
      if (flags & SCIF_SIGNAL_LOCAL) {
        const r = await this.ask(ep, SCIF.SIG_LOCAL, [BigInt.asUintN(64, roff), BigInt.asUintN(64, rval), 0n]);
        if (r.uop !== SCIF.SIG_ACK) throw new ScifError('ENXIO', 'SCIF_SIG_NACK');
      }
      if (flags & SCIF_SIGNAL_REMOTE) {
        const r = await this.ask(ep, SCIF.SIG_REMOTE, [BigInt.asUintN(64, loff), BigInt.asUintN(64, lval), 0n]);
        if (r.uop !== SCIF.SIG_ACK) throw new ScifError('ENXIO', 'SCIF_SIG_NACK');
      }
    } else {
      const st = this.core.st(ep);
      await this.core.drained(ep);
      if (flags & SCIF_SIGNAL_LOCAL) this.progSignal(st, 'self', loff, lval);
      if (flags & SCIF_SIGNAL_REMOTE) this.progSignal(st, 'remote', roff, rval);
    }
    this.core.trace({ action: 'signal', ep: ep.id, by: 'card', flags, loff: hex(loff), lval: hex(lval), roff: hex(roff), rval: hex(rval) });
  }
}
