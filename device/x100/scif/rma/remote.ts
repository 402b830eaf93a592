/**
 * A host program registers memory on a card endpoint; the card is the
 * allocating node (scif_rma.c): SCIF_ALLOC_REQ → scif_alloc_req()
 * builds the remote window image, its page arrays and lookup arrays in
 * GDDR (scif_create_remote_window(), scif_create_remote_lookup()) and
 * grants it; SCIF_REGISTER → scif_recv_reg() reads back what the host
 * wrote through BAR0 and records the window; SCIF_FREE_VIRT →
 * scif_free_virt(); SCIF_UNREGISTER → scif_recv_unreg().
 */
import { CardMemoryError } from '../alloc.ts';
import { SCIF, type ScifMsg, cloneMsg } from '../msg.ts';
import { readU32, writeU32 } from '../mem.ts';
import { SCIFEP_MAGIC } from '../qp.ts';
import type { RmaCore } from './core.ts';
import type { RemoteImage, RemoteWindow } from './state.ts';
import type { Chunk } from './space.ts';
import { PAGE_SIZE, SCIF_NR_ADDR_IN_PAGE, SCIF_WINDOW_FULL, SCIF_WINDOW_PEER, W } from './window.ts';

/** Card handles of granted images (never reused). */
const RW_HANDLE_BASE = 0xca4e_0000_0000_0000n;
/** nr_pages is an int in scif_alloc_req(). */
const MAX_PAGES = 0x7fff_ffff;

const hex = (v: bigint) => `0x${v.toString(16)}`;

export class RemoteRegistrations {
  /** Granted images by C_rw, until FREE_VIRT, REGISTER (read), UNREGISTER or loss. */
  readonly images = new Map<bigint, RemoteImage>();
  /** Registered host windows by C_rw. */
  readonly windows = new Map<bigint, RemoteWindow>();
  private next = 1n;

  constructor(private readonly core: RmaCore) {
    const n = core.node;
    n.handle(SCIF.ALLOC_REQ, (m) => this.onAllocReq(m));
    n.handle(SCIF.REGISTER, (m) => this.onRegister(m));
    n.handle(SCIF.FREE_VIRT, (m) => this.onFreeVirt(m));
    n.handle(SCIF.UNREGISTER, (m) => this.onUnregister(m));
  }

  /** Card memory in use by granted images (tests). */
  get imageCount(): number {
    return this.images.size;
  }

  private echo(m: ScifMsg, uop: number): void {
    const r = cloneMsg(m);
    r.uop = uop;
    this.core.node.sendMsg(r);
  }

  /** scif_create_remote_window(n) + scif_create_remote_lookup(), in GDDR; null if out of memory. */
  private create(nrPages: number, base = 0n): RemoteImage | null {
    const a = this.core.node.alloc;
    const mem = this.core.node.mem;
    const arrPages = Math.ceil(nrPages / SCIF_NR_ADDR_IN_PAGE);
    const nrLookup = arrPages;
    const got: bigint[] = [];
    try {
      const rw = a.alloc(PAGE_SIZE);
      got.push(rw);
      const dmaAddr = a.alloc(arrPages * PAGE_SIZE);
      got.push(dmaAddr);
      const numPages = a.alloc(arrPages * PAGE_SIZE);
      got.push(numPages);
      const lookups = a.alloc(2 * nrLookup * 8);
      got.push(lookups);
      mem.writeU64(rw + BigInt(W.nr_pages), BigInt(nrPages));
      mem.writeU64(rw + BigInt(W.magic), SCIFEP_MAGIC);
      writeU32(mem, rw + BigInt(W.type), SCIF_WINDOW_PEER);
      writeU32(mem, rw + BigInt(W.nr_lookup), nrLookup);
      const lookupB = lookups + BigInt(nrLookup * 8);
      // What the peer reads carries the base address it reaches us at (scif_map_page() of a P2P peer).
      mem.writeU64(rw + BigInt(W['dma_addr_lookup.offset']), lookups + base);
      mem.writeU64(rw + BigInt(W['num_pages_lookup.offset']), lookupB + base);
      mem.writeU64(rw + BigInt(W.mapped_offset), rw + base);
      // scif_map_page() of each page of the arrays: entry j names page j.
      for (let j = 0; j < nrLookup; j++) {
        mem.writeU64(lookups + BigInt(8 * j), dmaAddr + BigInt(j * PAGE_SIZE) + base);
        mem.writeU64(lookupB + BigInt(8 * j), numPages + BigInt(j * PAGE_SIZE) + base);
      }
      const handle = RW_HANDLE_BASE + this.next++;
      return { handle, nrPages, gen: a.generation, rw, dmaAddr, numPages, lookups, nrLookup };
    } catch (e) {
      for (const x of got) a.release(x);
      if (e instanceof CardMemoryError) return null;
      throw e;
    }
  }

  /** scif_destroy_remote_window(): give the image's card memory back. */
  destroy(img: RemoteImage): void {
    this.images.delete(img.handle);
    const a = this.core.node.alloc;
    for (const x of [img.rw, img.dmaAddr, img.numPages, img.lookups]) a.releaseFrom(img.gen, x);
  }

  /** scif_alloc_req(): ALLOC_GNT p0 = C_rw, p1 = CPA of the image; ALLOC_REJ (p2 echoed) if it cannot. */
  private onAllocReq(m: ScifMsg): void {
    const n = m.payload[1];
    const img = n > 0n && n <= BigInt(MAX_PAGES) ? this.create(Number(n), this.core.node.baseFor(m.src.node)) : null;
    if (!img) {
      this.core.trace({ action: 'alloc-rej', nr_pages: n.toString(), free: this.core.node.alloc.bytesFree() });
      this.echo(m, SCIF.ALLOC_REJ);
      return;
    }
    this.images.set(img.handle, img);
    const r = cloneMsg(m);
    r.uop = SCIF.ALLOC_GNT;
    r.payload[0] = img.handle;
    r.payload[1] = img.rw + this.core.node.baseFor(m.src.node);
    if (!this.core.node.sendMsg(r)) this.destroy(img);
  }

  /**
   * scif_recv_reg(): ACK and record the window if the endpoint is
   * connected, NACK and free the image otherwise. The page list is read
   * back from the arrays; then the image goes (the card keeps the list in
   * its record, as scif_destroy_remote_lookup() keeps dma_addr[]).
   */
  private onRegister(m: ScifMsg): void {
    const ep = this.core.node.endpoints.find(m.payload[0]);
    const img = this.images.get(m.payload[1]);
    if (!img) {
      this.core.trace({ action: 'error', op: 'SCIF_REGISTER', error: `p1 ${hex(m.payload[1])} names no granted window` });
      this.echo(m, SCIF.REGISTER_NACK);
      return;
    }
    let win: RemoteWindow | string;
    if (!ep || ep.state !== 'CONNECTED') win = ep ? `endpoint in state ${ep.state}` : `p0 ${hex(m.payload[0])} is no card endpoint`;
    else win = this.readWindow(img, m, ep);
    if (typeof win === 'string') {
      this.core.trace({ action: 'register-nack', window: hex(m.payload[2]), reason: win });
      this.echo(m, SCIF.REGISTER_NACK);
      this.destroy(img);
      return;
    }
    this.echo(m, SCIF.REGISTER_ACK);
    this.destroy(img);
    this.windows.set(win.handle, win);
    this.core.st(win.ep).remote.insert(win);
    this.core.traceWindow('register', 'host', win);
  }

  /** The fields and page list the host wrote into the image; an error string if they do not add up. */
  private readWindow(img: RemoteImage, m: ScifMsg, ep: RemoteWindow['ep']): RemoteWindow | string {
    const mem = this.core.node.mem;
    const rw = img.rw;
    const chunksN = readU32(mem, rw + BigInt(W.nr_contig_chunks));
    const prot = readU32(mem, rw + BigInt(W.prot));
    const offset = BigInt.asIntN(64, mem.readU64(rw + BigInt(W.offset)));
    if (chunksN < 1 || chunksN > img.nrPages) return `nr_contig_chunks ${chunksN} for ${img.nrPages} pages`;
    if (prot & ~3) return `prot ${prot}`;
    if (offset < 0n || offset % BigInt(PAGE_SIZE)) return `offset ${hex(offset)}`;
    const chunks: Chunk[] = [];
    let total = 0;
    for (let i = 0; i < chunksN; i++) {
      const addr = mem.readU64(img.dmaAddr + BigInt(8 * i));
      const pages = Number(mem.readU64(img.numPages + BigInt(8 * i)));
      chunks.push({ addr, pages });
      total += pages;
    }
    if (total !== img.nrPages) return `page list covers ${total} of ${img.nrPages} pages`;
    return { handle: img.handle, hostWin: m.payload[2], ep, offset, nrPages: img.nrPages, prot, chunks };
  }

  /** scif_free_virt(): the host abandoned a granted window. No reply. */
  private onFreeVirt(m: ScifMsg): void {
    const img = this.images.get(m.payload[1]);
    if (img) this.destroy(img);
    else this.core.trace({ action: 'ignored', op: 'SCIF_FREE_VIRT', window: hex(m.payload[1]) });
  }

  /**
   * scif_recv_unreg(): the card never maps host memory, so a window that is
   * found is always ACKed (p0 = the endpoint's remote_ep, p1 = H_win); one
   * that never made it to the list is ACKed too. Card transfers into it are
   * synchronous or awaited first.
   */
  private onUnregister(m: ScifMsg): void {
    const win = this.windows.get(m.payload[0]);
    const r = cloneMsg(m);
    r.uop = SCIF.UNREGISTER_ACK;
    if (win) {
      r.payload[0] = win.ep.remoteEp;
      const st = this.core.st(win.ep);
      try {
        st.remote.query(win.offset, BigInt(win.nrPages) * BigInt(PAGE_SIZE), 0, SCIF_WINDOW_FULL);
      } catch {
        this.core.trace({ action: 'error', op: 'SCIF_UNREGISTER', error: 'window not in the remote list' });
      }
      void this.core.drained(win.ep).then(() => {
        this.drop(win);
        this.core.node.sendMsg(r);
      });
      return;
    }
    const img = this.images.get(m.payload[0]);
    if (img) this.destroy(img);
    else this.core.trace({ action: 'note', op: 'SCIF_UNREGISTER', note: `unknown window ${hex(m.payload[0])}: ACK` });
    this.core.node.sendMsg(r);
  }

  /** Forget a host window (unregistered, endpoint freed, node lost). */
  drop(win: RemoteWindow): void {
    if (!this.windows.delete(win.handle)) return;
    this.core.st(win.ep).remote.remove(win);
    this.core.traceWindow('unregister', 'host', win);
  }
}
