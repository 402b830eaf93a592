/**
 * Card memory for the SCIF node's own structures (queue pairs, rings):
 * a first-fit page allocator over a fixed region at the top of GDDR, above
 * where the host downloads the kernel image (bootaddr), the command line
 * and the ramdisk (2 * bootaddr, mic_x100_load_ramdisk()). Returned memory
 * is zeroed (kzalloc()).
 */
import type { CardAddressSpace } from '../memory.ts';
import { fill } from './mem.ts';

export const CARD_PAGE = 0x1000;

export class CardMemoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CardMemoryError';
  }
}

/**
 * The card OS's memory for SCIF (queue pairs, rings, windows, the RMA
 * agent's buffers): the top quarter of the aperture, above the download
 * (mic_x100_load_firmware() at 64 MiB, the ramdisk after it), at most 256 MiB.
 */
export function scifRegion(apertureSize: number): { base: number; size: number } {
  const size = Math.min(256 << 20, Math.floor(apertureSize / 4 / CARD_PAGE) * CARD_PAGE);
  return { base: apertureSize - size, size };
}

export class CardAllocator {
  /** Free extents [start, end), sorted, coalesced. */
  private free: { start: number; end: number }[];
  private readonly used = new Map<number, number>();
  /** Bumped by releaseAll(): memory of an older generation is no longer the holder's to release. */
  generation = 0;

  constructor(
    private readonly mem: CardAddressSpace,
    readonly base: number,
    readonly size: number,
  ) {
    if (base % CARD_PAGE || size % CARD_PAGE) throw new RangeError('card allocator region must be page aligned');
    this.free = [{ start: base, end: base + size }];
  }

  /** Allocate `len` bytes (rounded up to pages), highest address first; zeroed. */
  alloc(len: number): bigint {
    const n = Math.max(CARD_PAGE, Math.ceil(len / CARD_PAGE) * CARD_PAGE);
    for (let i = this.free.length - 1; i >= 0; i--) {
      const f = this.free[i];
      if (f.end - f.start < n) continue;
      const start = f.end - n;
      f.end = start;
      if (f.end === f.start) this.free.splice(i, 1);
      this.used.set(start, n);
      fill(this.mem, BigInt(start), n);
      return BigInt(start);
    }
    throw new CardMemoryError(`no ${n} bytes of SCIF card memory left (${this.bytesFree()} free)`);
  }

  release(addr: bigint): void {
    const start = Number(addr);
    const n = this.used.get(start);
    if (n === undefined) throw new CardMemoryError(`0x${start.toString(16)} was not allocated`);
    this.used.delete(start);
    const end = start + n;
    let i = 0;
    while (i < this.free.length && this.free[i].start < start) i++;
    this.free.splice(i, 0, { start, end });
    // Coalesce with the neighbours.
    if (i + 1 < this.free.length && this.free[i].end === this.free[i + 1].start) {
      this.free[i].end = this.free[i + 1].end;
      this.free.splice(i + 1, 1);
    }
    if (i > 0 && this.free[i - 1].end === this.free[i].start) {
      this.free[i - 1].end = this.free[i].end;
      this.free.splice(i, 1);
    }
  }

  /** Drop every allocation (the node went away). */
  releaseAll(): void {
    this.generation++;
    this.used.clear();
    this.free = [{ start: this.base, end: this.base + this.size }];
  }

  /** release() if `addr` is still of generation `gen` (a node reset dropped it otherwise). */
  releaseFrom(gen: number, addr: bigint): void {
    if (gen === this.generation && this.used.has(Number(addr))) this.release(addr);
  }

  bytesFree(): number {
    return this.free.reduce((s, f) => s + f.end - f.start, 0);
  }

  allocations(): number {
    return this.used.size;
  }
}
