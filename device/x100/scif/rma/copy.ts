/**
 * Card-initiated scif_readfrom() / scif_writeto() (scif_rma_copy(),
 * scif_dma.c): both ranges checked against the endpoint's windows
 * (SCIF_WINDOW_PARTIAL; local READ and remote WRITE for writeto, the
 * reverse for readfrom), then moved in steps that are contiguous at both
 * ends (scif_off_to_dma_addr()). The mover is injected: a CPU copy by
 * default, a card DMA channel (4–7) once one is plugged in.
 */
import { ScifError } from '../api.ts';
import type { CardAddressSpace } from '../../memory.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { writeBytes } from '../mem.ts';
import type { RmaCore } from './core.ts';
import { SCIF_PROT_READ, SCIF_PROT_WRITE, SCIF_RMA_ORDERED, SCIF_RMA_SYNC, SCIF_RMA_USECACHE, SCIF_RMA_USECPU, SCIF_WINDOW_PARTIAL } from './window.ts';

/** Move `len` bytes from card address `src` to card address `dst` (CPAs and MSAs alike). */
export type CopyFn = (dst: bigint, src: bigint, len: number) => Promise<void>;

/** The card CPU's memcpy(), 1 MiB at a time. */
export function cpuCopy(mem: CardAddressSpace): CopyFn {
  return async (dst, src, len) => {
    for (let o = 0; o < len; o += 1 << 20) {
      const n = Math.min(1 << 20, len - o);
      writeBytes(mem, dst + BigInt(o), mem.read(src + BigInt(o), n).slice());
    }
  };
}

export type CopyDir = 'writeto' | 'readfrom';

export class RmaCopies {
  /** The DMA mover; SCIF_RMA_USECPU always takes the CPU. */
  dma: CopyFn;
  readonly cpu: CopyFn;
  /** The last copy id handed out (trace `copy`). */
  private copyIds = 0;

  constructor(private readonly core: RmaCore) {
    this.cpu = cpuCopy(core.node.mem);
    this.dma = this.cpu;
  }

  async copy(ep: CardEndpoint, dir: CopyDir, loffset: bigint, len: number, roffset: bigint, flags: number): Promise<void> {
    this.core.verify(ep);
    if (flags & ~(SCIF_RMA_USECPU | SCIF_RMA_USECACHE | SCIF_RMA_SYNC | SCIF_RMA_ORDERED)) throw new ScifError('EINVAL', `rma flags 0x${flags.toString(16)}`);
    const st = this.core.st(ep);
    const n = BigInt(len);
    const toRemote = dir === 'writeto';
    st.remote.query(roffset, n, toRemote ? SCIF_PROT_WRITE : SCIF_PROT_READ, SCIF_WINDOW_PARTIAL);
    st.self.query(loffset, n, toRemote ? SCIF_PROT_READ : SCIF_PROT_WRITE, SCIF_WINDOW_PARTIAL);
    const mover = flags & SCIF_RMA_USECPU ? this.cpu : this.dma;
    const seq = st.issued++;
    const id = ++this.copyIds;
    st.outstanding.set(seq, { id, dir, loffset, roffset, len: n });
    const where = { ep: ep.id, copy: id, loffset: `0x${loffset.toString(16)}`, roffset: `0x${roffset.toString(16)}`, len, flags };
    this.core.trace({ action: `${dir}-start`, ...where, mover: mover === this.cpu ? 'cpu' : 'dma' });
    try {
      let src = toRemote ? loffset : roffset;
      let dst = toRemote ? roffset : loffset;
      const srcList = toRemote ? st.self : st.remote;
      const dstList = toRemote ? st.remote : st.self;
      for (let left = n; left > 0n; ) {
        const s = srcList.translate(src);
        const d = dstList.translate(dst);
        if (!s || !d) throw new ScifError('ENXIO', 'window went away during the copy');
        let step = left;
        if (s.contig < step) step = s.contig;
        if (d.contig < step) step = d.contig;
        try {
          await mover(d.addr, s.addr, Number(step));
        } catch (e) {
          if (e instanceof ScifError) throw e;
          throw new ScifError('EFAULT', (e as Error).message);
        }
        src += step;
        dst += step;
        left -= step;
      }
      this.core.trace({ action: dir, ...where });
    } finally {
      st.outstanding.delete(seq);
      st.wq.wake();
    }
  }
}
