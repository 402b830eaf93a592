/**
 * The registered address space of one endpoint (struct
 * scif_endpt_rma_info, scif_rma.h): a list of windows sorted by offset
 * (scif_insert_window(), scif_rma_list.c), the range check of
 * scif_query_window() and the offset-to-address walk of
 * scif_off_to_dma_addr() (scif_dma.c). Addresses are card addresses: CPAs
 * for the card's own windows, MSAs for the host's.
 */
import { ScifError } from '../api.ts';
import { LONG_MAX, PAGE_SHIFT, PAGE_SIZE, SCIF_DMA_63BIT_PFN, SCIF_WINDOW_FULL, SCIF_WINDOW_PARTIAL, SCIF_WINDOW_SINGLE, type QueryType } from './window.ts';

/** A run of pages contiguous in the card's address space. */
export interface Chunk {
  addr: bigint;
  pages: number;
}

export interface Window {
  offset: bigint;
  nrPages: number;
  prot: number;
  chunks: Chunk[];
}

export const windowEnd = (w: Window): bigint => w.offset + (BigInt(w.nrPages) << PAGE_SHIFT);

export class WindowList<T extends Window> {
  readonly list: T[] = [];

  /** scif_insert_window(): keep the list sorted by offset. */
  insert(w: T): void {
    let i = 0;
    while (i < this.list.length && this.list[i].offset < w.offset) i++;
    this.list.splice(i, 0, w);
  }

  remove(w: T): boolean {
    const i = this.list.indexOf(w);
    if (i < 0) return false;
    this.list.splice(i, 1);
    return true;
  }

  /**
   * scif_query_window(): the windows covering [offset, offset + len) with
   * `prot`; -EINVAL for len 0, -ENXIO if not covered (or, FULL, not whole
   * windows; SINGLE, not one window), -EPERM against protection.
   */
  query(offset: bigint, len: bigint, prot: number, type: QueryType): T[] {
    if (len <= 0n) throw new ScifError('EINVAL', 'zero length');
    let left = len;
    let off = offset;
    const out: T[] = [];
    for (const w of this.list) {
      const end = windowEnd(w);
      if (off < w.offset) throw new ScifError('ENXIO', `offset 0x${off.toString(16)} is in no window`);
      if (off >= end) continue;
      if ((w.prot & prot) !== prot) throw new ScifError('EPERM', `window at 0x${w.offset.toString(16)} has prot ${w.prot}, need ${prot}`);
      out.push(w);
      const n = end - off < left ? end - off : left;
      left -= n;
      off += n;
      if (!left) {
        if (type === SCIF_WINDOW_PARTIAL || type === SCIF_WINDOW_SINGLE) return out;
        if (off === end) return out;
        throw new ScifError('ENXIO', 'range ends inside a window');
      }
      if (type === SCIF_WINDOW_SINGLE) break;
    }
    throw new ScifError('ENXIO', `range 0x${offset.toString(16)}+0x${len.toString(16)} is not covered`);
  }

  /**
   * scif_off_to_dma_addr(): the card address of `off` and the bytes
   * contiguous from there (to the page end when every chunk is one page,
   * else to the chunk end); null where no window has it ("BUG. Addr not found?").
   */
  translate(off: bigint): { addr: bigint; contig: bigint } | null {
    for (const w of this.list) {
      if (off < w.offset || off >= windowEnd(w)) continue;
      if (w.nrPages === w.chunks.length) {
        const page = Number((off - w.offset) >> PAGE_SHIFT);
        const inPage = off & BigInt(PAGE_SIZE - 1);
        return { addr: w.chunks[page].addr | inPage, contig: BigInt(PAGE_SIZE) - inPage };
      }
      let start = w.offset;
      for (const c of w.chunks) {
        const end = start + (BigInt(c.pages) << PAGE_SHIFT);
        if (off < end) return { addr: c.addr + (off - start), contig: end - off };
        start = end;
      }
    }
    return null;
  }

  /**
   * The reverse of translate(), for the trace: the window and offset of
   * card address `addr`, or null where no window maps it.
   */
  locate(addr: bigint): { w: T; offset: bigint } | null {
    for (const w of this.list) {
      const idx = chunkIndex(w);
      let lo = 0;
      let hi = idx.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const e = idx[mid];
        if (addr < e.addr) hi = mid - 1;
        else if (addr >= e.addr + (BigInt(e.pages) << PAGE_SHIFT)) lo = mid + 1;
        else return { w, offset: e.offset + (addr - e.addr) };
      }
    }
    return null;
  }

  /** Does any window overlap [offset, offset + len)? */
  overlaps(offset: bigint, len: bigint): boolean {
    return this.list.some((w) => offset < windowEnd(w) && w.offset < offset + len);
  }

  /**
   * scif_get_window_offset() without SCIF_MAP_FIXED: alloc_iova() top-down
   * below SCIF_DMA_63BIT_PFN, so the first N-page window gets 2^63 − 4096·(N+1).
   */
  pickOffset(len: bigint): bigint | null {
    let top = (SCIF_DMA_63BIT_PFN - 1n) << PAGE_SHIFT;
    const desc = [...this.list].sort((a, b) => (a.offset < b.offset ? 1 : a.offset > b.offset ? -1 : 0));
    for (const w of desc) {
      const end = windowEnd(w);
      if (end > top) {
        top = w.offset < top ? w.offset : top;
        continue;
      }
      if (top - end >= len) return top - len;
      top = w.offset;
    }
    return top - len >= BigInt(PAGE_SIZE) ? top - len : null;
  }
}

/** A window's chunks sorted by card address, with their window offsets (built once per window, for locate()). */
const chunkIndexes = new WeakMap<Window, { addr: bigint; pages: number; offset: bigint }[]>();
function chunkIndex(w: Window): { addr: bigint; pages: number; offset: bigint }[] {
  let idx = chunkIndexes.get(w);
  if (!idx) {
    let off = w.offset;
    idx = w.chunks.map((c) => {
      const e = { addr: c.addr, pages: c.pages, offset: off };
      off += BigInt(c.pages) << PAGE_SHIFT;
      return e;
    });
    idx.sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
    chunkIndexes.set(w, idx);
  }
  return idx;
}

/** The checks scif_register() / scif_unregister() make on offset and length. */
export function checkRange(offset: bigint, len: bigint): void {
  if (offset % BigInt(PAGE_SIZE) || offset < 0n || len > LONG_MAX - offset) throw new ScifError('EINVAL', `offset 0x${offset.toString(16)} unaligned, negative or wrapping`);
  if (!len || len % BigInt(PAGE_SIZE)) throw new ScifError('EINVAL', `length 0x${len.toString(16)} zero or unaligned`);
}
