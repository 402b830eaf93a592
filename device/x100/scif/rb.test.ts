import { describe, expect, it } from 'vitest';
import { makeCard } from '../testing.ts';
import { ScifRb, circCnt, circSpace } from './rb.ts';

/** A ring at GDDR 0x10000 with its offsets at 0x100 (write) and 0x200 (read), producer and consumer views of it. */
function rig(size = 256) {
  const { card } = makeCard();
  const W = 0x100n, R = 0x200n, BASE = 0x10000n;
  const prod = new ScifRb(card.mem, BASE, size, R, W);
  const cons = new ScifRb(card.mem, BASE, size, R, W);
  const u32 = (a: bigint) => card.aperture.readUInt32LE(Number(a));
  return { card, prod, cons, u32, W, R };
}

describe('scif_rb', () => {
  it('follows CIRC_CNT / CIRC_SPACE: at most size - 1 bytes outstanding', () => {
    expect(circSpace(0, 0, 16)).toBe(15);
    expect(circCnt(5, 3, 16)).toBe(2);
    expect(circSpace(3, 4, 16)).toBe(0);
    const { prod } = rig(16);
    expect(prod.write(new Uint8Array(16))).toBe(false);
    expect(prod.write(new Uint8Array(15))).toBe(true);
    expect(prod.space()).toBe(0);
    expect(prod.write(new Uint8Array(1))).toBe(false);
  });

  it('makes data visible only at commit, and frees space only at update_read_ptr', () => {
    const { prod, cons, u32, W, R } = rig();
    expect(prod.write(Uint8Array.of(1, 2, 3))).toBe(true);
    expect(u32(W)).toBe(0);
    expect(cons.getNext(3)).toBeNull();
    prod.commit();
    expect(u32(W)).toBe(3);
    expect(Array.from(cons.getNext(3)!)).toEqual([1, 2, 3]);
    expect(prod.space()).toBe(255 - 3);
    cons.updateReadPtr();
    expect(u32(R)).toBe(3);
    expect(prod.space()).toBe(255);
  });

  it('splits records that straddle the end of the ring (44-byte records in 65536 bytes)', () => {
    const { prod, cons } = rig(0x10000);
    const rec = (i: number) => Uint8Array.from({ length: 44 }, (_, j) => (i * 7 + j) & 0xff);
    // 1490 records cross the end once (1490 * 44 = 65560).
    for (let i = 0; i < 3000; i++) {
      expect(prod.write(rec(i))).toBe(true);
      prod.commit();
      expect(Array.from(cons.getNext(44)!)).toEqual(Array.from(rec(i)));
      cons.updateReadPtr();
    }
    expect(cons.currentReadOffset).toBe((3000 * 44) & 0xffff);
  });

  it('reloads the producer offset only when the cached count is short', () => {
    const { card, prod, cons, W } = rig();
    prod.write(new Uint8Array(10));
    prod.commit();
    expect(cons.count(1)).toBe(10);
    card.aperture.writeUInt32LE(4, Number(W)); // a producer offset that went backwards is not re-read
    expect(cons.count(10)).toBe(10);
    expect(cons.count(11)).toBe(4);
  });

  it('masks offsets a peer publishes out of range and refuses sizes that are not powers of two', () => {
    const { card, cons, W } = rig();
    card.aperture.writeUInt32LE(0xffff_ff05, Number(W));
    expect(cons.count(1)).toBe(5);
    expect(() => new ScifRb(card.mem, 0n, 100, null, 0n)).toThrow(/power of two/);
  });

  it('reads before the consumer offset location is known, and does not publish it', () => {
    const { card } = makeCard();
    const ring = new ScifRb(card.mem, 0x10000n, 256, null, 0x100n);
    card.aperture.writeUInt32LE(44, 0x100);
    expect(ring.getNext(44)).not.toBeNull();
    ring.updateReadPtr();
    expect(card.aperture.readUInt32LE(0x200)).toBe(0);
  });
});
