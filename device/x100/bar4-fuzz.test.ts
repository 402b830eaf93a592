/**
 * The in-process half of the protocol fuzzer (src/binding/fuzz.test.ts):
 * a million random BAR4 accesses of every width and alignment, as
 * libvfio-user hands them to the register file, and malformed DMA rings and
 * descriptors (rings anywhere and of any size, descriptors of every type
 * with addresses in and out of reach, head pointers past the ring). The
 * card must never throw nor report an internal error, and a channel set up
 * as mic_x100_dma.c does must still copy correctly afterwards (CRC32).
 * VPHI_FUZZ_ITERS scales both (npm run fuzz); the seed is in the test name.
 */
import { describe, expect, it } from 'vitest';
import { crc32, pattern, patternFill } from '../../src/pattern.ts';
import { DCHERR, DCHERRMSK, DCR_OFFSET, DHPR, DRAR_HI, DRAR_LO, DMA_CHANNELS, dmaReg } from './dma/regs.ts';
import { LinuxDmaChannel, makeDmaRig } from './dma/testing.ts';
import { SYSTEM_WINDOW_BASE } from './smpt/regs.ts';
import { makeCard } from './testing.ts';
import { rng } from '../../src/testing/rng.ts';

const SCALE = Number(process.env.VPHI_FUZZ_ITERS ?? 1000) / 1000;
const ACCESSES = Math.round(1_000_000 * SCALE);
const RING_ROUNDS = Math.round(3000 * SCALE);


const BAR4_SIZE = 0x20000;
// Blocks worth hitting often: SMPT, RGCR, interrupts, DMA, doorbells, scratchpads.
const HOT_BASES = [0x13100, 0x14010, 0x19000, 0x1a000, 0x1a280, 0x1aa00, 0x1ab20, 0x1b180, 0x1cc90];

describe('BAR4 under a million random accesses', () => {
  const seed = 0xba4;
  it(`never throws nor fails internally (seed 0x${seed.toString(16)}, ${ACCESSES} accesses)`, async () => {
    const c = makeCard({}, (env) => {
      // Tracing off (a million events would be kept); warnings are still kept (rate-limited).
      (env.tracer as { enabled: boolean }).enabled = false;
    });
    const rand = rng(seed);
    const int = (n: number) => Math.floor(rand() * n);
    c.env.enableMsix();
    const ram = c.env.mapRam(0x0n, 1 << 20);
    patternFill(ram.subarray(0, 64 * 1024), seed);
    patternFill(c.card.aperture.subarray(0, 64 * 1024), seed + 1);
    const buf = Buffer.alloc(8);
    const t0 = Date.now();
    for (let i = 0; i < ACCESSES; i++) {
      const len = [1, 2, 4, 4, 4, 8][int(6)];
      const off = rand() < 0.5 ? Math.min(HOT_BASES[int(HOT_BASES.length)] + int(0x300), BAR4_SIZE - len) : int(BAR4_SIZE - len + 1);
      const isWrite = rand() < 0.6;
      if (isWrite) buf.writeUInt32LE(rand() < 0.5 ? int(2 ** 32) : int(0x100), 0), buf.writeUInt32LE(int(2 ** 32), 4);
      c.card.bar4.access(off, buf, len, isWrite);
      if (i % 4099 === 0) c.env.host.unmap(0x0n, 1 << 20);
      if (i % 6151 === 0) c.env.mapRam(0x0n, 1 << 20);
      if (i % 211 === 0) c.env.drain(20);
      if (i % 1009 === 0) c.env.advance(50);
      if (i % 200_000 === 199_999) await yieldToLoop();
    }
    c.env.drain();
    c.env.advance(1000);
    const ms = Date.now() - t0;
    // A register hook that threw (RegisterFile.access reports it as 'internal') is an emulator bug.
    const internal = c.env.tracer.warnings.filter((w) => w.kind === 'internal');
    expect(internal, JSON.stringify(internal.slice(0, 3))).toEqual([]);
    expect(c.card.dma.stats.descriptors + c.card.dma.stats.errors, JSON.stringify(c.card.dma.stats)).toBeGreaterThan(0);
    // A working card afterwards: reset, and registers answer.
    c.card.reset('fuzz');
    expect(c.card.bootstrap.state).toBe('ready');
    c.w(0x1ab20, 0x12345678);
    expect(c.r(0x1ab20)).toBe(0x12345678);
    if (ACCESSES > 1_000_000) console.log(`${ACCESSES} BAR4 accesses in ${ms} ms, dma ${JSON.stringify(c.card.dma.stats)}`);
  }, 60_000 + ACCESSES / 10);
});

describe('the DMA engine under malformed rings and descriptors', () => {
  const seed = 0xd3a;
  it(`stops the channel with an error, never throws, and copies again after (seed 0x${seed.toString(16)}, ${RING_ROUNDS} rounds)`, async () => {
    const warnings: string[] = [];
    const tracer = {
      enabled: false,
      warn: (kind: string) => void warnings.push(kind),
      mmio() {},
      cfg() {},
      irq() {},
      dma() {},
      event() {},
      close() {},
    };
    const APER = 4 << 20;
    const RAM = 8 << 20;
    const rig = makeDmaRig({ apertureSize: APER, ramSize: RAM, tracer });
    const rand = rng(seed);
    const int = (n: number) => Math.floor(rand() * n);
    const big = (n: number) => BigInt(int(n));
    // Addresses the engine must cope with: in GDDR, through the SMPT into guest
    // RAM, just past either end, and far away.
    const addr = (): bigint => {
      switch (int(7)) {
        case 0: return big(APER);
        case 1: return BigInt(APER) - big(4096);
        case 2: return rig.hostAddr(int(RAM));
        case 3: return rig.hostAddr(RAM - int(4096));
        case 4: return SYSTEM_WINDOW_BASE + big(2 ** 32) * big(256); // unmapped host
        case 5: return BigInt(APER) + big(2 ** 30); // past GDDR
        default: return big(2 ** 40); // anything in 40 bits
      }
    };
    let checks = 0;
    let garbageDescs = 0;
    for (let round = 0; round < RING_ROUNDS; round++) {
      const ch = int(DMA_CHANNELS);
      const w = (r: number, v: number) => rig.w(dmaReg(ch, r), v >>> 0);
      // A ring anywhere, of any size (0 and 1 included), in GDDR or host memory.
      const sys = rand() < 0.5;
      const slots = [0, 1, 2, 3, 64, int(0x20000)][int(6)];
      const base = sys ? rig.hostAddr(int(RAM)) & ~0xfn : big(APER + 8192) & ~0xfn;
      const drarHi = ((slots & 0x1ffff) << 4) | (sys ? 1 << 26 : 0) | Number((base >> 32n) & 0xfn) | (rand() < 0.1 ? int(2 ** 32) : 0);
      w(DRAR_LO, Number(base & 0xffffffffn));
      w(DRAR_HI, drarHi);
      if (rand() < 0.3) w(DCHERRMSK, int(2 ** 32));
      rig.w(DCR_OFFSET, rig.r(DCR_OFFSET) | (2 << (2 * ch)));
      // Descriptors of every type, where the ring really is (if it is anywhere reachable).
      const n = 1 + int(32);
      for (let k = 0; k < n; k++) {
        const type = BigInt(rand() < 0.7 ? 1 + int(2) : int(16));
        const qw0 = type === 1n ? addr() | (big(1 << 14) << 46n) : BigInt.asUintN(64, addr() | (big(2 ** 24) << 40n));
        const qw1 = (type << 60n) | addr() | (rand() < 0.2 ? 1n << 59n : 0n) | (rand() < 0.1 ? big(2 ** 19) << 40n : 0n);
        const at = (k % Math.max(1, slots)) * 16;
        if (sys) {
          const off = Number(base - rig.hostAddr(0)) + at;
          if (off + 16 <= RAM) rig.ram.set(descBytes(qw0, qw1), off);
        } else if (Number(base) + at + 16 <= APER) {
          rig.aperture.set(descBytes(qw0, qw1), Number(base) + at);
        }
      }
      garbageDescs += n;
      // Head pointers anywhere: inside, at and past the ring.
      w(DHPR, [int(Math.max(1, slots)), slots, slots + 1, int(2 ** 32)][int(4)]);
      if (rand() < 0.2) w(DCHERR, int(2 ** 32)); // W1C: retry whatever failed
      rig.drain(50);
      if (rand() < 0.05) rig.clock.advance(100);
      if (round % 2000 === 1999) await yieldToLoop();

      if (round % 100 === 99 || round === RING_ROUNDS - 1) {
        // Back to sanity: the engine reset, then a good copy on every host channel.
        rig.regs.reset('card'); // RGCR: the DMA registers clear, the SMPT stays
        rig.engine.reset();
        for (let hc = 0; hc < 4; hc++) {
          const lc = new LinuxDmaChannel(rig, hc, hc * 0x20000, 0x7f0000 + 64 * hc, 256);
          expect(lc.setup(), `channel ${hc} after round ${round}`).toBe(true);
          const len = 64 * (1 + int(1024));
          const data = pattern(seed + round + hc, len);
          rig.ram.set(data, 0x400000);
          rig.aperture.fill(0, 0x100000, 0x100000 + len);
          const idx = lc.memcpy(0x100000n, rig.hostAddr(0x400000), len, 1);
          lc.issuePending();
          rig.drain();
          lc.syncWait(idx);
          expect(rig.r(dmaReg(hc, DCHERR)), `DCHERR${hc} after round ${round}`).toBe(0);
          expect(crc32(rig.aperture.subarray(0x100000, 0x100000 + len))).toBe(crc32(data));
          lc.destroy();
          checks++;
        }
      }
    }
    if (process.env.VPHI_FUZZ_VERBOSE) console.log(JSON.stringify({ stats: rig.engine.stats, checks, garbageDescs, warnings: warnings.length }));
    expect(warnings.filter((k) => k === 'internal')).toEqual([]);
    expect(rig.engine.stats.errors, JSON.stringify(rig.engine.stats)).toBeGreaterThan(0);
    expect(checks).toBeGreaterThan(0);
    expect(garbageDescs).toBeGreaterThan(RING_ROUNDS);
  }, 60_000 + RING_ROUNDS * 20);
});

/** Lets vitest's worker answer its RPCs during a long run (npm run fuzz). */
const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function descBytes(qw0: bigint, qw1: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(BigInt.asUintN(64, qw0), 0);
  b.writeBigUInt64LE(BigInt.asUintN(64, qw1), 8);
  return b;
}
