import { describe, expect, it } from 'vitest';
import { crc32, pattern, patternMismatch } from '../../../src/pattern.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { type FakeEnv, makeCard } from '../testing.ts';
import { CardAllocator } from '../scif/alloc.ts';
import { cardDmaRegion } from '../card.ts';
import { CARD_BOUNCE_BYTES, CARD_MAX_XFER, CardDma, CardDmaError } from './card-driver.ts';
import { CardDmaIrq } from './card-irq.ts';
import { DMA_PREP_INTERRUPT, type DmaRig, LinuxDmaChannel, SMPT_REG } from './testing.ts';
import { DCHERR, DCHERR_SRC_ADDR, DCR_OFFSET, DSTAT, dcrOwner, dmaReg } from './regs.ts';

const MiB = 1 << 20;
const RAM_IOVA = 0x1000_0000n;
const RAM_SIZE = 16 * MiB;

/** A 64 MiB card with 16 MiB of guest RAM at RAM_IOVA, the SMPT identity-mapped as mic_smpt_init() does. */
function rig() {
  const { env, card, r, w } = makeCard({ apertureSize: 64 * MiB, cosm: false });
  for (let i = 0; i < 32; i++) w(SMPT_REG(i), i << 2);
  const ram = env.mapRam(RAM_IOVA, RAM_SIZE);
  const sys = (off: number): bigint => SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(off);
  return { env, card, r, w, ram, sys, gddr: env.aperture };
}

/** Run the fake clock's scheduled work and the promise jobs until `p` settles. */
async function settle<T>(env: FakeEnv, p: Promise<T>): Promise<T> {
  let done = false;
  p.then(() => { done = true; }, () => { done = true; });
  for (let i = 0; i < 100_000 && !done; i++) {
    env.drain();
    await new Promise((res) => setImmediate(res));
  }
  if (!done) throw new Error('copy did not settle');
  return p;
}

/** A deterministic LCG for offsets. */
function lcg(seed: number): (n: number) => number {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

const SIZES = [1, 2, 63, 64, 65, 127, 4096, 4096 + 17, CARD_MAX_XFER, MiB, MiB + 1, CARD_BOUNCE_BYTES + 3, 3 * MiB + 5, 4 * MiB];

type Where = 'gddr' | 'ram';

describe('card DMA driver (channels 4-7, mic_x100_dma.c on the card)', () => {
  for (const [from, to] of [['gddr', 'gddr'], ['gddr', 'ram'], ['ram', 'gddr']] as [Where, Where][]) {
    it(`copies ${from} → ${to}, 1 B to 4 MiB at random alignments, by DMA with the ragged parts by CPU`, async () => {
      const t = rig();
      const rnd = lcg(from.length * 7 + to.length);
      const buf = (w: Where) => (w === 'gddr' ? t.gddr : t.ram);
      const addr = (w: Where, off: number) => (w === 'gddr' ? BigInt(off) : t.sys(off));
      // Source at [0, 5 MiB) and destination at [6 MiB, 11 MiB) of their memory (different memories or not).
      for (const [i, len] of SIZES.entries()) {
        const so = rnd(256), doff = 6 * MiB + rnd(256);
        const seed = 100 + i;
        buf(from).set(pattern(seed, len), so);
        buf(to).fill(0xee, doff - 64, doff + len + 64);
        await settle(t.env, t.card.cardDma.copy(addr(to, doff), addr(from, so), len));
        const got = buf(to).subarray(doff, doff + len);
        expect(patternMismatch(got, seed), `len ${len} src +${so} dst +${doff}`).toBe(-1);
        expect(crc32(got)).toBe(crc32(pattern(seed, len)));
        expect(buf(to)[doff - 1]).toBe(0xee);
        expect(buf(to)[doff + len]).toBe(0xee);
      }
      const st = t.card.cardDma.stats;
      expect(st.dmaBytes).toBeGreaterThan(10 * MiB); // the bodies went through the engine
      expect(st.cpuBytes).toBeLessThanOrEqual(2 * 63 * SIZES.length); // only ragged heads and tails
      expect(st.bounceBytes).toBeGreaterThan(0); // most random pairs sit at different line offsets
      expect(t.card.dma.stats.errors).toBe(0);
      // Completion came by the card's interrupt; the host saw none of it.
      expect(st.interrupts).toBeGreaterThan(0);
      expect(st.polls).toBe(0);
      expect(t.card.bar4.get('SICR0') & 0xff00).toBe(0);
      expect(t.env.msixVectors()).toEqual([]);
    }, 60_000);
  }

  it('splits a body at MIC_DMA_MAX_XFER_SIZE_CARD and closes it with the STATUS pair, the second interrupting', async () => {
    const t = rig();
    t.gddr.set(pattern(3, 3 * MiB), 0);
    await settle(t.env, t.card.cardDma.copy(BigInt(8 * MiB), 0n, 3 * MiB, 4));
    // 3 MiB = 3 full descriptors of 1 MiB − 64 and one of 192 bytes, then two STATUS.
    const st = t.card.dma.channel(4);
    expect(st.tail).toBe(6);
    expect(st.hostOwned).toBe(false);
    expect(patternMismatch(t.gddr.subarray(8 * MiB, 11 * MiB), 3)).toBe(-1);
    expect(t.card.cardDmaIrq.raised[4]).toBe(1);
    expect(t.card.cardDma.stats).toMatchObject({ dmaBytes: 3 * MiB, cpuBytes: 0, bounceBytes: 0, batches: 1 });
    // One DHPR write, through the register file like the host's (it shows in the MMIO trace).
    const dhpr = t.env.tracer.events.filter((e) => e.kind === 'mmio' && e.op === 'w' && e.reg === 'DHPR4');
    expect(dhpr.map((e) => e.val)).toEqual([6]);
    // Ring in GDDR, owner card (mic_dma_chan_set_owner(): MIC_DMA_CHAN_MIC = 0).
    const region = cardDmaRegion(64 * MiB);
    expect(st.ring >= BigInt(region.base) && st.ring < BigInt(region.base + region.size)).toBe(true);
    expect(dcrOwner(4).isSet(t.r(DCR_OFFSET))).toBe(false);
  });

  it('runs concurrent copies on all four channels, round-robin', async () => {
    const t = rig();
    const jobs: { seed: number; dst: number; len: number }[] = [];
    const ps: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      const len = MiB / 2 + 64 * i + i, src = i * MiB, dst = 20 * MiB + i * MiB + i;
      t.ram.set(pattern(i + 1, len), src + i);
      jobs.push({ seed: i + 1, dst, len });
      ps.push(t.card.cardDma.copy(BigInt(dst), t.sys(src + i), len));
    }
    await settle(t.env, Promise.all(ps));
    for (const j of jobs) expect(patternMismatch(t.gddr.subarray(j.dst, j.dst + j.len), j.seed)).toBe(-1);
    for (const ch of [4, 5, 6, 7]) expect(t.card.dma.channel(ch).tail).toBeGreaterThan(0);
    expect(t.card.cardDmaIrq.raised.slice(4)).toEqual([2, 2, 2, 2]);
  });

  it('reserve() hands out channels round-robin as scif_reserve_dma_chan() does', () => {
    const t = rig();
    expect([0, 1, 2, 3, 4].map(() => t.card.cardDma.reserve())).toEqual([4, 5, 6, 7, 4]);
    return expect(t.card.cardDma.copy(0n, 0n, 64, 2)).rejects.toThrow(/not one of the card's/);
  });

  it('rejects a copy the engine stops (unmapped system address) with the DCHERR bits, and the channel works again', async () => {
    const t = rig();
    const dma = t.card.cardDma;
    const nowhere = t.sys(64 * MiB); // past the mapped guest RAM
    const err = await settle(t.env, dma.copy(0n, nowhere, 4096, 5)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CardDmaError);
    expect((err as CardDmaError).dcherr).toBe(DCHERR_SRC_ADDR);
    expect((err as CardDmaError).ch).toBe(5);
    expect((err as Error).message).toMatch(/^card DMA channel 5: DCHERR5 = 0x2 \{SRC_ADDR\}/);
    // The engine warned, naming the channel; the error went to the card, not the host.
    expect(t.env.tracer.warnings.map((w) => w.msg)).toEqual([expect.stringMatching(/^DMA channel 5 stopped at descriptor 0: DCHERR5 = 0x2 \{SRC_ADDR\}/)]);
    expect(t.card.cardDmaIrq.raised[5]).toBe(1);
    expect(t.card.bar4.get('SICR0') & (1 << 30)).toBe(0);
    // The driver recovered: DCHERR clear, the failed slots consumed, the next copy on the same channel works.
    t.ram.set(pattern(9, 10_000), 100);
    await settle(t.env, dma.copy(BigInt(MiB + 3), t.sys(100), 10_000, 5));
    expect(t.r(dmaReg(5, DCHERR))).toBe(0);
    expect(t.r(dmaReg(5, DSTAT)) >>> 29 & 1).toBe(0);
    expect(patternMismatch(t.gddr.subarray(MiB + 3, MiB + 3 + 10_000), 9)).toBe(-1);
    // Copies queued behind the failing one on that channel still run.
    const a = dma.copy(0n, nowhere, 64, 6);
    const b = dma.copy(BigInt(2 * MiB), t.sys(100), 10_000, 6);
    await expect(settle(t.env, a)).rejects.toThrow(/DCHERR6 = 0x2 \{SRC_ADDR\}/);
    await settle(t.env, b);
    expect(patternMismatch(t.gddr.subarray(2 * MiB, 2 * MiB + 10_000), 9)).toBe(-1);
  });

  it('completes by polling DSTAT when no card interrupt arrives', async () => {
    const t = rig();
    const region = cardDmaRegion(64 * MiB);
    const deaf = new CardDma({
      regs: t.card.bar4,
      mem: t.card.mem,
      alloc: new CardAllocator(t.card.mem, region.base, region.size),
      irq: new CardDmaIrq(t.env.tracer), // nothing raises this one
      schedule: t.env.schedule,
      after: t.env.after,
      tracer: t.env.tracer,
    }, { channels: [7] });
    t.gddr.set(pattern(5, 1000), 0);
    let done = false;
    const p = deaf.copy(BigInt(4 * MiB), 0n, 1000).then(() => { done = true; });
    for (let i = 0; i < 10; i++) { t.env.drain(); await new Promise((r) => setImmediate(r)); }
    expect(done).toBe(false);
    t.env.advance(10);
    await settle(t.env, p);
    expect(deaf.stats.polls).toBe(1);
    expect(patternMismatch(t.gddr.subarray(4 * MiB, 4 * MiB + 1000), 5)).toBe(-1);
  });

  it('leaves host channels 0-3 running, interrupting the host, while card channels run', async () => {
    const t = rig();
    // The host driver's channel 0: ring and status_dest in guest RAM (mic_x100_dma.c on the host).
    const hostRig = {
      r: t.r, w: t.w, ram: t.ram, aperture: t.gddr,
      hostAddr: (off: number) => t.sys(off),
    } as unknown as DmaRig;
    const host = new LinuxDmaChannel(hostRig, 0, 12 * MiB, 12 * MiB + 4096);
    expect(host.setup()).toBe(true);
    t.ram.set(pattern(11, 2 * MiB), 8 * MiB);
    host.memcpy(BigInt(30 * MiB), t.sys(8 * MiB), 2 * MiB, DMA_PREP_INTERRUPT);
    host.issuePending();
    t.ram.set(pattern(12, 2 * MiB + 7), 0);
    const card = t.card.cardDma.copy(BigInt(34 * MiB + 7), t.sys(0), 2 * MiB + 7);
    await settle(t.env, card);
    t.env.drain();
    expect(host.count()).toBe(host.head);
    expect(patternMismatch(t.gddr.subarray(30 * MiB, 32 * MiB), 11)).toBe(-1);
    expect(patternMismatch(t.gddr.subarray(34 * MiB + 7, 36 * MiB + 14), 12)).toBe(-1);
    // Host channel 0 raised SICR0 bit 8 exactly as before; no card channel touched bits 12-15.
    expect(t.card.bar4.get('SICR0') & 0xff00).toBe(1 << 8);
  });

  it('fails a copy in flight at a card reset (RGCR) and sets the channel up again on the next', async () => {
    const t = rig();
    const dma = t.card.cardDma;
    t.gddr.set(pattern(2, 4096), 0);
    await settle(t.env, dma.copy(BigInt(MiB), 0n, 4096, 4));
    const p = dma.copy(BigInt(2 * MiB), 0n, 4096, 4);
    await new Promise((r) => setImmediate(r)); // the batch is queued, not yet run
    t.w(0x14010, 1); // the host writes RGCR bit 0 (mic_x100_hw_reset()): card.ts resets the engine and this driver
    expect(t.r(DCR_OFFSET)).toBe(0x55);
    await expect(settle(t.env, p)).rejects.toThrow(/card reset/);
    await settle(t.env, dma.copy(BigInt(3 * MiB), 0n, 4096, 4));
    expect(patternMismatch(t.gddr.subarray(3 * MiB, 3 * MiB + 4096), 2)).toBe(-1);
  });
});
