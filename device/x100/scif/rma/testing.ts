/**
 * The host side of SCIF RMA for LinuxScifHost, following the Linux host
 * code (scif_rma.c, scif_dma.c, scif_fence.c, scif_mmap.c): scif_register()
 * and scif_unregister() of host memory on a card endpoint
 * (scif_send_alloc_request(), scif_prep_remote_window() through BAR0,
 * scif_send_scif_register(), scif_unregister_window()), the allocating
 * node's handlers for the card's registrations (scif_alloc_req(),
 * scif_recv_reg(), scif_free_virt(), scif_recv_unreg()), mmap references
 * and SCIF_MUNMAP, the receivers of the card's fences, the host's own
 * INIT_PEER fences, and host CPU copies against the card's windows as
 * scif_off_to_dma_addr() + ioremap_remote() make them.
 */
import { SCIF, type ScifMsg, cloneMsg, newMsg, opName } from '../msg.ts';
import { SCIFEP_MAGIC } from '../qp.ts';
import { HostScifError, type HostEndpoint, type LinuxScifHost, RAM_IOVA } from '../testing.ts';
import { SYSTEM_WINDOW_BASE } from '../../smpt/regs.ts';
import { PAGE_SIZE, SCIF_NR_ADDR_IN_PAGE, SCIF_WINDOW_PEER, W } from './window.ts';

const KPTR_WIN = 0xffff_8880_5600_0000n;

/** A host window (SCIF_WINDOW_SELF on the host): pinned RAM, page list of MSAs. */
export interface HostWindow {
  readonly handle: bigint;
  readonly ep: HostEndpoint;
  offset: bigint;
  readonly nrPages: number;
  prot: number;
  readonly ramOff: number;
  readonly chunks: { addr: bigint; pages: number }[];
  /** C_rw: the card's remote window (ALLOC_GNT p0). */
  cardRw: bigint;
  state: 'alloc' | 'registering' | 'registered' | 'unregistering' | 'gone';
  reply: ScifMsg | null;
}

/** A card window as the host holds it (SCIF_WINDOW_PEER, in remote_reg_list). */
export interface HostPeerWindow {
  readonly handle: bigint;
  readonly structOff: number;
  readonly nrPages: number;
  ep: HostEndpoint | null;
  offset: bigint;
  prot: number;
  peerWindow: bigint;
  dmaAddr: bigint[];
  numPages: bigint[];
  /** Pages mapped by host programs (scif_rma_list_mmap()). */
  mapped: number;
  /** The card's UNREGISTER was NACKed: MUNMAP goes once `mapped` is 0. */
  unregNacked: boolean;
  registered: boolean;
}

export class HostRma {
  readonly windows = new Map<bigint, HostWindow>();
  readonly peer = new Map<bigint, HostPeerWindow>();
  /** Answers to the host's own fences, in order. */
  readonly answers: ScifMsg[] = [];
  /** Refuse the card's ALLOC_REQs (scif_create_remote_window() failing). */
  rejectAllocs = false;
  /** Marks the host gives for the card's SCIF_MARK (its DMA cookies). */
  private cookie = 100;
  private next = 1n;
  private nextOffset = (1n << 63n) - 4096n;

  constructor(readonly h: LinuxScifHost) {
    h.rmaHandler = (m) => this.handle(m);
  }

  private get ramBuf(): Buffer {
    return Buffer.from(this.h.ram.buffer, this.h.ram.byteOffset, this.h.ram.byteLength);
  }

  private get bar0(): Buffer {
    return this.h.card.aperture;
  }

  /** BAR0 + CPA (scif_ioremap()); throws where the real host would oops. */
  private io(cpa: bigint, len: number): number {
    if (!this.h.ioremap(cpa, len)) throw new HostScifError(`ioremap of card address 0x${cpa.toString(16)} outside the aperture`);
    return Number(cpa);
  }

  /** A host MSA back to a RAM offset (the double maps RAM 1:1 at RAM_IOVA). */
  private ramOf(msa: bigint): number {
    return Number(msa - SYSTEM_WINDOW_BASE - RAM_IOVA);
  }

  // ---- a host program registers RAM on a card endpoint (scif_register()) ----

  /**
   * scif_register(ep, RAM at ramOff, len): 'ENOMEM' on ALLOC_REJ, 'ENOTCONN'
   * on REGISTER_NACK. `chunkPages` splits the page list (1: one chunk per
   * page, the scif_off_to_dma_addr() fast path on the card).
   */
  async register(ep: HostEndpoint, ramOff: number, len: number, o: { offset?: bigint; prot?: number; chunkPages?: number } = {}): Promise<HostWindow | string> {
    const nrPages = len / PAGE_SIZE;
    let offset = o.offset;
    if (offset === undefined) {
      this.nextOffset -= BigInt(len);
      offset = this.nextOffset;
      this.nextOffset -= 4096n;
    }
    const per = o.chunkPages ?? nrPages;
    const chunks: HostWindow['chunks'] = [];
    for (let p = 0; p < nrPages; p += per) chunks.push({ addr: this.h.msa(ramOff + p * PAGE_SIZE), pages: Math.min(per, nrPages - p) });
    const w: HostWindow = { handle: KPTR_WIN + this.next++ * 0x200n, ep, offset, nrPages, prot: o.prot ?? 3, ramOff, chunks, cardRw: 0n, state: 'alloc', reply: null };
    this.windows.set(w.handle, w);
    const src = { node: 0, port: ep.port };
    this.h.nodeqpSend(newMsg(SCIF.ALLOC_REQ, { src, dst: { ...ep.peer }, payload: [0n, BigInt(nrPages), w.handle, 0n] }));
    await this.h.settle();
    const gnt = this.take(w);
    if (!gnt || gnt.uop !== SCIF.ALLOC_GNT) {
      this.windows.delete(w.handle);
      return gnt ? 'ENOMEM' : 'no ALLOC_GNT/REJ';
    }
    w.cardRw = gnt.payload[0];
    // scif_prep_remote_window() through BAR0
    const rw = this.io(gnt.payload[1], 4096);
    const b = this.bar0;
    const lookupA = b.readBigUInt64LE(rw + W['dma_addr_lookup.offset']);
    const lookupB = b.readBigUInt64LE(rw + W['num_pages_lookup.offset']);
    const nrLookup = Math.ceil(chunks.length / SCIF_NR_ADDR_IN_PAGE);
    for (let j = 0; j < nrLookup; j++) {
      const pa = this.io(b.readBigUInt64LE(this.io(lookupA, 8 * nrLookup) + 8 * j), 4096);
      const pb = this.io(b.readBigUInt64LE(this.io(lookupB, 8 * nrLookup) + 8 * j), 4096);
      for (let i = j * SCIF_NR_ADDR_IN_PAGE; i < Math.min(chunks.length, (j + 1) * SCIF_NR_ADDR_IN_PAGE); i++) {
        b.writeBigUInt64LE(chunks[i].addr, pa + 8 * (i % SCIF_NR_ADDR_IN_PAGE));
        b.writeBigUInt64LE(BigInt(chunks[i].pages), pb + 8 * (i % SCIF_NR_ADDR_IN_PAGE));
      }
    }
    b.writeBigUInt64LE(w.handle, rw + W.peer_window);
    b.writeBigUInt64LE(BigInt.asUintN(64, offset), rw + W.offset);
    b.writeUInt32LE(w.prot, rw + W.prot);
    b.writeUInt32LE(chunks.length, rw + W.nr_contig_chunks);
    b.writeBigUInt64LE(ep.remoteEp, rw + W.ep);
    // scif_send_scif_register()
    w.state = 'registering';
    if (ep.state !== 'CONNECTED') {
      this.h.nodeqpSend(newMsg(SCIF.FREE_VIRT, { src, dst: { ...ep.peer }, payload: [ep.remoteEp, w.cardRw, w.handle, BigInt(SCIF.REGISTER)] }));
      this.windows.delete(w.handle);
      return 'ENOTCONN';
    }
    this.h.nodeqpSend(newMsg(SCIF.REGISTER, { src, dst: { ...ep.peer }, payload: [ep.remoteEp, w.cardRw, w.handle, 0n] }));
    await this.h.settle();
    const ack = this.take(w);
    if (!ack || ack.uop !== SCIF.REGISTER_ACK) {
      this.windows.delete(w.handle);
      return ack ? 'ENOTCONN' : 'no REGISTER_ACK/NACK';
    }
    w.state = 'registered';
    return w;
  }

  /** A registration abandoned after ALLOC_GNT (scif_destroy_incomplete_window()): SCIF_FREE_VIRT. */
  async allocOnly(ep: HostEndpoint, nrPages: number): Promise<ScifMsg | null> {
    const handle = KPTR_WIN + this.next++ * 0x200n;
    const w: HostWindow = { handle, ep, offset: 0n, nrPages, prot: 3, ramOff: 0, chunks: [], cardRw: 0n, state: 'alloc', reply: null };
    this.windows.set(handle, w);
    this.h.nodeqpSend(newMsg(SCIF.ALLOC_REQ, { src: { node: 0, port: ep.port }, dst: { ...ep.peer }, payload: [0n, BigInt(nrPages), handle, 0n] }));
    await this.h.settle();
    const r = this.take(w);
    this.windows.delete(handle);
    if (r?.uop === SCIF.ALLOC_GNT) this.h.nodeqpSend(newMsg(SCIF.FREE_VIRT, { src: { node: 0, port: ep.port }, dst: { ...ep.peer }, payload: [ep.remoteEp, r.payload[0], handle, BigInt(SCIF.REGISTER)] }));
    await this.h.settle();
    return r;
  }

  private take(w: HostWindow): ScifMsg | null {
    const r = w.reply;
    w.reply = null;
    return r;
  }

  /** scif_unregister_window(): UNREGISTER p0 = C_rw, p1 = H_win; true once acked. */
  async unregister(w: HostWindow): Promise<boolean> {
    w.state = 'unregistering';
    this.h.nodeqpSend(newMsg(SCIF.UNREGISTER, { src: { node: 0, port: w.ep.port }, dst: { ...w.ep.peer }, payload: [w.cardRw, w.handle, 0n, 0n] }));
    await this.h.settle();
    const r = this.take(w);
    if (r?.uop !== SCIF.UNREGISTER_ACK) return false;
    w.state = 'gone';
    this.windows.delete(w.handle);
    return true;
  }

  /** scif_close(): every host window unregistered first, then SCIF_DISCNCT. */
  async close(ep: HostEndpoint): Promise<void> {
    for (const w of [...this.windows.values()]) if (w.ep === ep && w.state === 'registered') await this.unregister(w);
    this.h.close(ep);
    await this.h.settle();
  }

  // ---- the card's windows on the host ----

  /** The card windows registered on `ep` (remote_reg_list), sorted by offset. */
  remoteList(ep: HostEndpoint): HostPeerWindow[] {
    return [...this.peer.values()].filter((w) => w.ep === ep && w.registered).sort((a, b) => (a.offset < b.offset ? -1 : 1));
  }

  /** scif_off_to_dma_addr() on the card's windows: the CPA of `off` and the bytes contiguous from it. */
  offToDmaAddr(ep: HostEndpoint, off: bigint): { addr: bigint; contig: number } | null {
    for (const w of this.remoteList(ep)) {
      const end = w.offset + BigInt(w.nrPages * PAGE_SIZE);
      if (off < w.offset || off >= end) continue;
      if (w.nrPages === w.dmaAddr.length) {
        const page = Number((off - w.offset) / 4096n);
        const inPage = Number(off & 0xfffn);
        return { addr: w.dmaAddr[page] | BigInt(inPage), contig: PAGE_SIZE - inPage };
      }
      let start = w.offset;
      for (let i = 0; i < w.dmaAddr.length; i++) {
        const e = start + w.numPages[i] * 4096n;
        if (off < e) return { addr: w.dmaAddr[i] + (off - start), contig: Number(e - off) };
        start = e;
      }
    }
    return null;
  }

  /** scif_rma_list_cpu_copy() from the card's windows: memcpy_fromio() at BAR0 + CPA. */
  readFromCard(ep: HostEndpoint, roff: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    for (let done = 0; done < len; ) {
      const a = this.offToDmaAddr(ep, roff + BigInt(done));
      if (!a) throw new HostScifError('BUG. Addr not found?');
      const n = Math.min(a.contig, len - done);
      out.set(this.bar0.subarray(this.io(a.addr, n), Number(a.addr) + n), done);
      done += n;
    }
    return out;
  }

  /** scif_rma_list_cpu_copy() into the card's windows: memcpy_toio(). */
  writeToCard(ep: HostEndpoint, roff: bigint, data: Uint8Array): void {
    for (let done = 0; done < data.length; ) {
      const a = this.offToDmaAddr(ep, roff + BigInt(done));
      if (!a) throw new HostScifError('BUG. Addr not found?');
      const n = Math.min(a.contig, data.length - done);
      this.bar0.set(data.subarray(done, done + n), this.io(a.addr, n));
      done += n;
    }
  }

  /** mmap / munmap of a card window (scif_rma_list_mmap() / scif_rma_list_munmap()); MUNMAP once a NACKed window's last page goes. */
  map(w: HostPeerWindow, pages: number): void {
    w.mapped += pages;
    if (w.mapped === 0 && w.unregNacked) {
      this.h.nodeqpSend(newMsg(SCIF.MUNMAP, { src: { node: 0, port: w.ep?.port ?? 0 }, dst: { ...(w.ep?.peer ?? { node: 1, port: 0 }) }, payload: [w.peerWindow, 0n, 0n, 0n] }));
      this.peer.delete(w.handle);
    }
  }

  // ---- the host's own INIT_PEER fences ----

  /** scif_send_fence_mark() / _wait() / scif_send_fence_signal(): the answer, or null. */
  async fence(ep: HostEndpoint, uop: number, p1: bigint, p2: bigint): Promise<ScifMsg | null> {
    const fenceH = KPTR_WIN + 0x10_0000n + this.next++;
    const payload: [bigint, bigint, bigint, bigint] = uop === SCIF.MARK || uop === SCIF.WAIT ? [ep.remoteEp, fenceH, p2, 0n] : [ep.remoteEp, p1, p2, fenceH];
    const n = this.answers.length;
    this.h.nodeqpSend(newMsg(uop, { src: { node: 0, port: ep.port }, dst: { ...ep.peer }, payload }));
    await this.h.settle();
    return this.answers.slice(n).find((m) => m.payload[uop === SCIF.MARK || uop === SCIF.WAIT ? 1 : 3] === fenceH) ?? null;
  }

  // ---- messages ----

  private mustEp(p: bigint, what: string): HostEndpoint {
    const ep = this.h.endpoints.get(p);
    if (!ep) throw new HostScifError(`${what}: 0x${p.toString(16)} is no host endpoint: the guest would oops`);
    return ep;
  }

  private mustWin(handle: bigint, what: string): HostWindow {
    const w = this.windows.get(handle);
    if (!w) throw new HostScifError(`${what}: 0x${handle.toString(16)} is no host window: the guest would oops`);
    return w;
  }

  private send(m: ScifMsg, uop: number, p0?: bigint): void {
    const r = cloneMsg(m);
    r.uop = uop;
    if (p0 !== undefined) r.payload[0] = p0;
    this.h.nodeqpSend(r);
  }

  private handle(m: ScifMsg): boolean {
    switch (m.uop) {
      case SCIF.ALLOC_GNT:
      case SCIF.ALLOC_REJ:
      case SCIF.REGISTER_ACK:
      case SCIF.REGISTER_NACK:
        this.mustWin(m.payload[2], opName(m.uop)).reply = cloneMsg(m);
        return true;
      case SCIF.UNREGISTER_ACK:
      case SCIF.UNREGISTER_NACK:
        this.mustWin(m.payload[1], opName(m.uop)).reply = cloneMsg(m);
        return true;
      case SCIF.MARK_ACK:
      case SCIF.MARK_NACK:
      case SCIF.WAIT_ACK:
      case SCIF.WAIT_NACK:
      case SCIF.SIG_ACK:
      case SCIF.SIG_NACK:
        this.mustEp(m.payload[0], opName(m.uop));
        this.answers.push(cloneMsg(m));
        return true;
      case SCIF.ALLOC_REQ: return this.allocReq(m), true;
      case SCIF.REGISTER: return this.recvReg(m), true;
      case SCIF.FREE_VIRT:
        this.peer.delete(m.payload[1]);
        return true;
      case SCIF.UNREGISTER: return this.recvUnreg(m), true;
      case SCIF.MARK: {
        // scif_recv_mark(): p2 = the host's DMA cookie.
        const r = cloneMsg(m);
        r.payload[2] = BigInt(this.cookie++);
        return this.send(r, SCIF.MARK_ACK, this.mustEp(m.payload[0], 'SCIF_MARK').remoteEp), true;
      }
      case SCIF.WAIT: return this.send(m, SCIF.WAIT_ACK, this.mustEp(m.payload[0], 'SCIF_WAIT').remoteEp), true;
      case SCIF.SIG_LOCAL:
      case SCIF.SIG_REMOTE: return this.recvSig(m), true;
      default:
        return false;
    }
  }

  /** scif_alloc_req() + scif_create_remote_window() in host RAM, all addresses MSAs. */
  private allocReq(m: ScifMsg): void {
    const n = Number(m.payload[1]);
    if (this.rejectAllocs || n <= 0 || n > 1024) return this.send(m, SCIF.ALLOC_REJ);
    const structOff = this.h.kzalloc(4096);
    const arr = Math.ceil(n / SCIF_NR_ADDR_IN_PAGE);
    const dmaOff = this.h.kzalloc(arr * 4096);
    const npOff = this.h.kzalloc(arr * 4096);
    const lkOff = this.h.kzalloc(4096);
    const r = this.ramBuf;
    r.writeBigUInt64LE(BigInt(n), structOff + W.nr_pages);
    r.writeBigUInt64LE(SCIFEP_MAGIC, structOff + W.magic);
    r.writeUInt32LE(SCIF_WINDOW_PEER, structOff + W.type);
    r.writeBigUInt64LE(this.h.msa(lkOff), structOff + W['dma_addr_lookup.offset']);
    r.writeBigUInt64LE(this.h.msa(lkOff + 2048), structOff + W['num_pages_lookup.offset']);
    for (let j = 0; j < arr; j++) {
      r.writeBigUInt64LE(this.h.msa(dmaOff + j * 4096), lkOff + 8 * j);
      r.writeBigUInt64LE(this.h.msa(npOff + j * 4096), lkOff + 2048 + 8 * j);
    }
    const handle = KPTR_WIN + 0x8000_0000n + this.next++ * 0x200n;
    this.peer.set(handle, { handle, structOff, nrPages: n, ep: null, offset: 0n, prot: 0, peerWindow: 0n, dmaAddr: [], numPages: [], mapped: 0, unregNacked: false, registered: false });
    this.arraysOf.set(handle, [dmaOff, npOff]);
    const g = cloneMsg(m);
    g.uop = SCIF.ALLOC_GNT;
    g.payload[0] = handle;
    g.payload[1] = this.h.msa(structOff);
    this.h.nodeqpSend(g);
  }

  private readonly arraysOf = new Map<bigint, [number, number]>();

  /** scif_recv_reg(): ACK and insert if the endpoint is connected, else NACK and destroy. */
  private recvReg(m: ScifMsg): void {
    const ep = this.mustEp(m.payload[0], 'SCIF_REGISTER');
    const w = this.peer.get(m.payload[1]);
    if (!w) throw new HostScifError('SCIF_REGISTER of a window the host never granted: the guest would oops');
    if (ep.state !== 'CONNECTED') {
      this.send(m, SCIF.REGISTER_NACK);
      this.peer.delete(w.handle);
      return;
    }
    this.send(m, SCIF.REGISTER_ACK);
    const r = this.ramBuf, s = w.structOff;
    const chunks = r.readUInt32LE(s + W.nr_contig_chunks);
    w.prot = r.readUInt32LE(s + W.prot);
    w.offset = BigInt.asIntN(64, r.readBigUInt64LE(s + W.offset));
    w.peerWindow = r.readBigUInt64LE(s + W.peer_window);
    const epField = r.readBigUInt64LE(s + W.ep);
    if (epField !== ep.handle) throw new HostScifError(`window ep field 0x${epField.toString(16)} is not the endpoint 0x${ep.handle.toString(16)}`);
    const [dmaOff, npOff] = this.arraysOf.get(w.handle)!;
    for (let i = 0; i < chunks; i++) {
      w.dmaAddr.push(r.readBigUInt64LE(dmaOff + 8 * i));
      w.numPages.push(r.readBigUInt64LE(npOff + 8 * i));
    }
    w.ep = ep;
    w.registered = true;
  }

  /** scif_recv_unreg(): the endpoint comes from the window's ep field (+48); NACK while host programs map it. */
  private recvUnreg(m: ScifMsg): void {
    const w = this.peer.get(m.payload[0]);
    if (!w) throw new HostScifError('SCIF_UNREGISTER of no host remote window: the guest would oops');
    const ep = this.mustEp(this.ramBuf.readBigUInt64LE(w.structOff + W.ep), 'SCIF_UNREGISTER window ep');
    if (w.mapped > 0) {
      w.unregNacked = true;
      this.send(m, SCIF.UNREGISTER_NACK, ep.remoteEp);
      return;
    }
    this.peer.delete(w.handle);
    this.send(m, SCIF.UNREGISTER_ACK, ep.remoteEp);
  }

  /** scif_recv_sig_local() (host's own windows) / scif_recv_sig_remote() (the card's windows on the host). */
  private recvSig(m: ScifMsg): void {
    const ep = this.mustEp(m.payload[0], opName(m.uop));
    const off = m.payload[1];
    const v = m.payload[2];
    let ok = false;
    if (m.uop === SCIF.SIG_LOCAL) {
      for (const w of this.windows.values()) {
        if (w.ep !== ep || w.state !== 'registered' || !(w.prot & 2)) continue;
        const start = w.offset, end = w.offset + BigInt(w.nrPages * PAGE_SIZE);
        if (off >= start && off + 8n <= end) {
          this.ramBuf.writeBigUInt64LE(v, w.ramOff + Number(off - start));
          ok = true;
        }
      }
    } else {
      const win = this.remoteList(ep).find((w) => off >= w.offset && off + 8n <= w.offset + BigInt(w.nrPages * PAGE_SIZE) && w.prot & 2);
      const a = win ? this.offToDmaAddr(ep, off) : null;
      if (a) {
        this.bar0.writeBigUInt64LE(v, this.io(a.addr, 8));
        ok = true;
      }
    }
    this.send(m, ok ? SCIF.SIG_ACK : SCIF.SIG_NACK, ep.remoteEp);
  }

  /** Host RAM bytes (tests). */
  ramBytes(off: number, len: number): Uint8Array {
    return this.h.ram.subarray(off, off + len);
  }

  /** The RAM offset a host window's MSA names (tests). */
  ramOffOf(msa: bigint): number {
    return this.ramOf(msa);
  }
}
