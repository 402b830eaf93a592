/**
 * A guest that misprograms the card gets error bits and an error interrupt,
 * never a crashed device: random register traffic over the whole of BAR4
 * (DMA rings pointing anywhere, doorbells, resets, SMPT garbage) with guest
 * RAM coming and going, from a fixed seed so a failure replays exactly.
 */
import { describe, expect, it } from 'vitest';
import { patternFill } from '../../src/pattern.ts';
import { makeCard } from './testing.ts';
import { rng } from '../../src/testing/rng.ts';


// Offsets worth hitting often: the registers the drivers use.
const HOT = [
  0x13100, 0x14010, 0x19004, 0x1900c, 0x19010, 0x19014, 0x19044, 0x1a000, 0x1a004, 0x1a014, 0x1a018, 0x1a020, 0x1a02c,
  0x1a280, 0x1a9d0, 0x1aa08, 0x1ab28, 0x1ab58, 0x1ab5c, 0x1b180, 0x1cc90,
];

describe('the card under random guest traffic', () => {
  for (const seed of [1, 2, 3]) {
    it(`never throws and keeps answering (seed ${seed})`, () => {
      const c = makeCard();
      const rand = rng(seed);
      const int = (n: number) => Math.floor(rand() * n);
      c.env.enableMsix();
      const ram = c.env.mapRam(0x0n, 1 << 20);
      // Plant plausible descriptors in guest RAM and card memory so rings sometimes run.
      patternFill(ram.subarray(0, 16 * 1024), seed);
      patternFill(c.card.aperture.subarray(0, 16 * 1024), seed + 100);
      for (let step = 0; step < 20_000; step++) {
        const r = rand();
        const off = r < 0.6 ? HOT[int(HOT.length)] + 0x40 * int(8) * (rand() < 0.3 ? 1 : 0) : int(0x20000) & ~3;
        if (rand() < 0.7) c.card.bar4.write(off, 4, rand() < 0.5 ? int(2 ** 32) : int(0x100));
        else c.card.bar4.read(off, 4);
        if (step % 997 === 0) c.env.host.unmap(0x0n, 1 << 20);
        if (step % 1499 === 0) c.env.mapRam(0x0n, 1 << 20);
        if (step % 101 === 0) c.env.drain(50);
        if (step % 503 === 0) c.env.advance(150);
        if (step % 2000 === 0) {
          // A well-behaved interlude: reset, then 5 NOPs on channel 0 from a GDDR ring.
          c.w(0x14010, 1);
          c.env.advance(200);
          c.card.aperture.fill(0, 0x100000, 0x100000 + 64 * 16);
          c.w(0x1a014, 0x100000); // DRAR_LO0
          c.w(0x1a018, 64 << 4); // DRAR_HI0: 64 slots in GDDR
          c.w(0x1a280, c.r(0x1a280) | 2); // DCR: enable channel 0
          c.w(0x1a004, (c.r(0x1a008) + 5) % 64); // DHPR0
          c.env.drain(50);
        }
      }
      c.env.drain();
      c.env.advance(1000);
      // The traffic really reached the engine and the error path (not a vacuous run).
      const st = c.card.dma.stats;
      expect(st.descriptors, JSON.stringify(st)).toBeGreaterThan(0);
      expect(st.errors, JSON.stringify(st)).toBeGreaterThan(0);
      expect(c.card.bootstrap.resets).toBeGreaterThan(0);
      // Still a working card: a reset brings it back to ready, registers answer.
      c.card.reset('fuzz');
      expect(c.card.bootstrap.state).toBe('ready');
      c.w(0x1ab20, 0x12345678);
      expect(c.r(0x1ab20)).toBe(0x12345678);
      expect(c.r(0x1ab28) & 1).toBe(1);
    });
  }
});
