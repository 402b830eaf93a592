/**
 * The test byte pattern shared by the guest programs (vphi-dma.c
 * pat_word()) and our firmware files: word i of a pattern is lowbias32 of
 * seed ^ i·golden ratio, so any misplaced or stale word shows.
 */
export function patWord(seed: number, i: number): number {
  let x = (seed ^ Math.imul(i, 0x9e3779b1)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  x ^= x >>> 16;
  return x >>> 0;
}
