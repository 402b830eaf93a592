/**
 * The card registers its own memory; the host is the allocating node
 * (scif_register(), scif_unregister(), scif_rma.c, as the card's Linux
 * ran them): SCIF_ALLOC_REQ, the page list written into the host's window
 * through the SMPT (scif_prep_remote_window()), SCIF_REGISTER; and
 * SCIF_UNREGISTER, whose NACK keeps the memory until SCIF_MUNMAP
 * (scif_recv_munmap(), scif_mmap.c).
 */
import { ScifError } from '../api.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { SCIF, type ScifMsg, newMsg } from '../msg.ts';
import { writeU32 } from '../mem.ts';
import { SCIF_NODE_ALIVE_TIMEOUT_MS } from '../consts.ts';
import type { RmaCore } from './core.ts';
import { checkRange, type Chunk } from './space.ts';
import type { SelfWindow } from './state.ts';
import { PAGE_SIZE, SCIF_MAP_FIXED, SCIF_MAP_KERNEL, SCIF_NR_ADDR_IN_PAGE, SCIF_WINDOW_FULL, W } from './window.ts';

/** A range of card memory (GDDR CPAs). */
export interface CardRange {
  addr: bigint;
  len: number;
}

const WIN_HANDLE_BASE = 0xca4f_0000_0000_0000n;
const hex = (v: bigint) => `0x${v.toString(16)}`;

export class SelfRegistrations {
  /** Card windows by C_win, until unregistered, MUNMAPped or lost. */
  readonly windows = new Map<bigint, SelfWindow>();
  private next = 1n;

  constructor(private readonly core: RmaCore) {
    const n = core.node;
    const answer = (slot: number) => (m: ScifMsg) => this.onReply(m, m.payload[slot]);
    n.handle(SCIF.ALLOC_GNT, answer(2));
    n.handle(SCIF.ALLOC_REJ, answer(2));
    n.handle(SCIF.REGISTER_ACK, answer(2));
    n.handle(SCIF.REGISTER_NACK, answer(2));
    n.handle(SCIF.UNREGISTER_ACK, answer(1));
    n.handle(SCIF.UNREGISTER_NACK, answer(1));
    n.handle(SCIF.MUNMAP, (m) => this.onMunmap(m));
  }

  private onReply(m: ScifMsg, handle: bigint): void {
    const w = this.windows.get(handle);
    if (!w) {
      this.core.trace({ action: 'ignored', op: m.uop, window: hex(handle), note: 'no card window waits for it' });
      return;
    }
    w.reply = m;
    this.core.st(w.ep).wq.wake();
  }

  /** Wait (30 s slices, forever while node 0 lives) for the host's answer to `w`. */
  private async answer(w: SelfWindow): Promise<ScifMsg> {
    const st = this.core.st(w.ep);
    const peer = w.ep.peer?.node ?? 0;
    for (;;) {
      const ok = await st.wq.wait(() => w.reply !== null || !this.core.node.alive(peer) || w.state === 'gone', SCIF_NODE_ALIVE_TIMEOUT_MS);
      if (w.reply) {
        const r = w.reply;
        w.reply = null;
        return r;
      }
      if (!this.core.node.alive(peer) || w.state === 'gone') throw new ScifError('ENODEV', `node ${peer} went away`);
      if (!ok) continue;
    }
  }

  private send(ep: CardEndpoint, uop: number, payload: [bigint, bigint, bigint, bigint]): boolean {
    if (!ep.peer) return false;
    return this.core.node.sendMsg(newMsg(uop, { src: { ...ep.port }, dst: { ...ep.peer }, payload }));
  }

  /** scif_register() on a card endpoint for the GDDR range `buf`; resolves to the offset. */
  async register(ep: CardEndpoint, buf: CardRange, offset: bigint, prot: number, flags: number, onFree?: () => void): Promise<bigint> {
    if (flags & ~(SCIF_MAP_FIXED | SCIF_MAP_KERNEL)) throw new ScifError('EINVAL', `map flags 0x${flags.toString(16)}`);
    const len = BigInt(buf.len);
    if (flags & SCIF_MAP_FIXED) checkRange(offset, len);
    if (prot & ~3) throw new ScifError('EINVAL', `prot ${prot}`);
    if (!buf.len || buf.len % PAGE_SIZE || buf.addr % BigInt(PAGE_SIZE)) throw new ScifError('EINVAL', 'address or length not page aligned');
    if (buf.addr < 0n || buf.addr + len > BigInt(this.core.node.mem.aperture.byteLength)) throw new ScifError('EFAULT', `${hex(buf.addr)}+${hex(len)} is not card memory`);
    this.core.verify(ep);
    const st = this.core.st(ep);
    // scif_get_window_offset()
    let off: bigint;
    if (flags & SCIF_MAP_FIXED) {
      // reserve_iova() would merge an overlap; two windows on one offset would break every lookup.
      if (st.reserved.overlaps(offset, len)) throw new ScifError('ENOMEM', `offset ${hex(offset)} overlaps a window`);
      off = offset;
    } else {
      const o = st.reserved.pickOffset(len);
      if (o === null) throw new ScifError('ENOMEM', 'no free offset');
      off = o;
    }
    const nrPages = buf.len / PAGE_SIZE;
    const chunks: Chunk[] = [{ addr: buf.addr, pages: nrPages }];
    const w: SelfWindow = { handle: WIN_HANDLE_BASE + this.next++, ep, hostRw: 0n, state: 'alloc', reply: null, offset: off, nrPages, prot, chunks, onFree };
    this.windows.set(w.handle, w);
    st.reserved.insert(w);
    const fail = (e: ScifError): never => {
      // The caller keeps its memory on failure.
      w.onFree = undefined;
      this.forget(w, false);
      throw e;
    };
    // scif_send_alloc_request()
    if (!this.send(ep, SCIF.ALLOC_REQ, [0n, BigInt(nrPages), w.handle, 0n])) fail(new ScifError('ENODEV', 'node 0 is not a live peer'));
    const gnt = await this.answer(w).catch((e: ScifError) => fail(e));
    if (gnt.uop !== SCIF.ALLOC_GNT) fail(new ScifError('ENOMEM', 'SCIF_ALLOC_REJ'));
    w.hostRw = gnt.payload[0];
    try {
      this.prepRemoteWindow(w, gnt.payload[1]);
    } catch (e) {
      this.send(ep, SCIF.FREE_VIRT, [ep.remoteEp, w.hostRw, w.handle, BigInt(SCIF.REGISTER)]);
      fail(new ScifError('EFAULT', `host window at ${hex(gnt.payload[1])} unreachable: ${(e as Error).message}`));
    }
    // scif_send_scif_register()
    w.state = 'registering';
    if (ep.state !== 'CONNECTED') {
      this.send(ep, SCIF.FREE_VIRT, [ep.remoteEp, w.hostRw, w.handle, BigInt(SCIF.REGISTER)]);
      fail(new ScifError('ENOTCONN', 'endpoint disconnected during registration'));
    }
    if (!this.send(ep, SCIF.REGISTER, [ep.remoteEp, w.hostRw, w.handle, 0n])) fail(new ScifError('ENODEV', 'node 0 went away'));
    const ack = await this.answer(w).catch((e: ScifError) => fail(e));
    if (ack.uop !== SCIF.REGISTER_ACK) fail(new ScifError('ENOTCONN', 'SCIF_REGISTER_NACK'));
    w.state = 'registered';
    st.self.insert(w);
    this.core.traceWindow('register', 'card', w);
    return off;
  }

  /** scif_prep_remote_window(): the page list through the host's lookups, then the window fields. */
  private prepRemoteWindow(w: SelfWindow, msa: bigint): void {
    const mem = this.core.node.mem;
    const lookupA = mem.readU64(msa + BigInt(W['dma_addr_lookup.offset']));
    const lookupB = mem.readU64(msa + BigInt(W['num_pages_lookup.offset']));
    const nrLookup = Math.ceil(w.chunks.length / SCIF_NR_ADDR_IN_PAGE);
    const pagesA: bigint[] = [];
    const pagesB: bigint[] = [];
    for (let j = 0; j < nrLookup; j++) {
      pagesA.push(mem.readU64(lookupA + BigInt(8 * j)));
      pagesB.push(mem.readU64(lookupB + BigInt(8 * j)));
    }
    // A P2P peer gets MIC addresses: + the base address it reaches us at (scif_prep_remote_window()).
    const base = this.core.node.baseFor(w.ep.peer?.node ?? 0);
    w.chunks.forEach((c, i) => {
      const j = Math.floor(i / SCIF_NR_ADDR_IN_PAGE), k = BigInt(8 * (i % SCIF_NR_ADDR_IN_PAGE));
      mem.writeU64(pagesA[j] + k, c.addr + base);
      mem.writeU64(pagesB[j] + k, BigInt(c.pages));
    });
    mem.writeU64(msa + BigInt(W.peer_window), w.handle);
    mem.writeU64(msa + BigInt(W.offset), w.offset);
    writeU32(mem, msa + BigInt(W.prot), w.prot);
    writeU32(mem, msa + BigInt(W.nr_contig_chunks), w.chunks.length);
    mem.writeU64(msa + BigInt(W.ep), w.ep.remoteEp);
  }

  /** scif_unregister(): whole windows only (SCIF_WINDOW_FULL); each is UNREGISTERed and waited for. */
  async unregister(ep: CardEndpoint, offset: bigint, len: bigint): Promise<void> {
    checkRange(offset, len);
    this.core.verify(ep);
    const st = this.core.st(ep);
    const wins = st.self.query(offset, len, 0, SCIF_WINDOW_FULL);
    for (const w of wins) await this.unregisterWindow(w);
  }

  /** scif_unregister_window(): ACK frees; NACK (the host still maps it) keeps it until MUNMAP. */
  async unregisterWindow(w: SelfWindow): Promise<void> {
    if (w.state === 'unregistering') throw new ScifError('ENXIO', 'unregistration in progress');
    if (w.state !== 'registered') return;
    w.state = 'unregistering';
    if (!this.send(w.ep, SCIF.UNREGISTER, [w.hostRw, w.handle, 0n, 0n])) {
      this.forget(w, true);
      return;
    }
    let r: ScifMsg;
    try {
      r = await this.answer(w);
    } catch (e) {
      this.forget(w, true);
      throw e;
    }
    if (r.uop === SCIF.UNREGISTER_NACK) {
      w.state = 'nacked';
      this.core.trace({ action: 'unregister-nack', ep: w.ep.id, offset: hex(w.offset), note: 'the host still maps it; kept until SCIF_MUNMAP' });
      return;
    }
    this.forget(w, true);
  }

  /** scif_recv_munmap(): the host's last mapping of a NACKed window went. No reply. */
  private onMunmap(m: ScifMsg): void {
    const w = this.windows.get(m.payload[0]);
    if (!w) {
      this.core.trace({ action: 'ignored', op: 'SCIF_MUNMAP', window: hex(m.payload[0]) });
      return;
    }
    if (w.state === 'nacked') this.forget(w, true);
    else this.core.trace({ action: 'ignored', op: 'SCIF_MUNMAP', window: hex(m.payload[0]), note: `window ${w.state}` });
  }

  /** The window is over: out of both lists, its memory handed back. */
  forget(w: SelfWindow, traced: boolean): void {
    const st = this.core.st(w.ep);
    const wasListed = st.self.remove(w);
    st.reserved.remove(w);
    this.windows.delete(w.handle);
    w.state = 'gone';
    st.wq.wake();
    if (traced && wasListed) this.core.traceWindow('unregister', 'card', w);
    const f = w.onFree;
    w.onFree = undefined;
    f?.();
  }
}
