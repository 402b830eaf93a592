import { describe, expect, it } from 'vitest';
import { patternFill } from '../../../src/pattern.ts';
import { NULL_TRACER, type Tracer, untraced } from '../../../src/trace/tracer.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { POLL_DESCS, SLICE_BYTES } from './engine.ts';
import {
  DCAR,
  DCAR_IM0,
  DCAR_IM1,
  DCHERR,
  DCHERRMSK,
  DCHERR_DESC_TYPE,
  DCHERR_DST_ADDR,
  DCHERR_RING_FETCH,
  DCHERR_RING_INDEX,
  DCHERR_SRC_ADDR,
  DCR_OFFSET,
  DHPR,
  DMA_BLOCKS,
  DRAR_HI,
  DRAR_LO,
  DSTAT,
  DSTAT_COUNT_MASK,
  DSTAT_QUIESCE,
  DTPR,
  dmaReg,
} from './regs.ts';
import {
  DMA_PREP_FENCE,
  DMA_PREP_INTERRUPT,
  type DmaRig,
  LINUX_MAX_XFER_HOST,
  LinuxDmaChannel,
  SMPT_REG,
  makeDmaRig,
} from './testing.ts';

const KiB = 1024;
const MiB = 1024 * 1024;

// Guest RAM layout of the default rig (16 MiB at bus address 0x1000_0000).
const RING = (ch: number) => ch * 2 * MiB; // 131068 · 16 bytes each
const STATUS = (ch: number) => 8 * MiB + 64 * ch;
const DATA = 9 * MiB; // 7 MiB of data space

const rigWithRam = (ramSize = 16 * MiB, apertureSize = 4 * MiB, tracer?: Tracer) => makeDmaRig({ ramSize, apertureSize, tracer });

/** A host channel set up exactly as mic_dma_chan_setup() does. */
function linux(rig: DmaRig, ch = 0, ringSize?: number): LinuxDmaChannel {
  const c = new LinuxDmaChannel(rig, ch, RING(ch), STATUS(ch), ringSize);
  expect(c.setup()).toBe(true);
  return c;
}

const reg = (rig: DmaRig, ch: number, r: number) => rig.r(dmaReg(ch, r));
const dmaEvents = (rig: DmaRig) =>
  (rig.tracer as unknown as { events: Record<string, unknown>[] }).events.filter((e) => e.kind === 'dma');

/** A hand-built ring in GDDR, for descriptors Linux never writes. */
class RawRing {
  head = 0;
  constructor(
    readonly rig: DmaRig,
    readonly ch: number,
    readonly base: number,
    readonly size: number,
  ) {
    rig.w(dmaReg(ch, DRAR_LO), base);
    rig.w(dmaReg(ch, DRAR_HI), size << 4);
    rig.w(DCR_OFFSET, rig.r(DCR_OFFSET) | (2 << (2 * ch)));
  }
  put(qw0: bigint, qw1: bigint): number {
    const at = this.base + 16 * this.head;
    this.rig.aperture.writeBigUInt64LE(qw0, at);
    this.rig.aperture.writeBigUInt64LE(qw1, at + 8);
    const i = this.head;
    this.head = (this.head + 1) % this.size;
    return i;
  }
  memcpy(src: bigint, dst: bigint, len: number): number {
    return this.put(src | (BigInt(len >> 6) << 46n), (1n << 60n) | dst);
  }
  status(val: bigint, dst: bigint, intr = false): number {
    return this.put(val, (2n << 60n) | dst | (intr ? 1n << 59n : 0n));
  }
  issue(): void {
    this.rig.w(dmaReg(this.ch, DHPR), this.head);
  }
}

describe('DMA registers', () => {
  it('come out of reset with DCR = 0x55 and every channel register 0', () => {
    const rig = rigWithRam();
    let n = 0;
    for (const b of DMA_BLOCKS) {
      for (const d of b.regs) {
        expect(rig.r(b.base + d.offset), d.name).toBe(d.name === 'DCR' ? 0x55 : 0);
        n++;
      }
    }
    expect(n).toBe(8 * 13 + 1);
  });

  it('sit where mic_x100_dma.h and MPSS put them', () => {
    const rig = rigWithRam();
    const at = (off: number) => rig.regs.defAt(off)?.name;
    expect(at(0x1a000)).toBe('DCAR0');
    expect(at(0x1a004)).toBe('DHPR0');
    expect(at(0x1a008)).toBe('DTPR0');
    expect(at(0x1a014)).toBe('DRAR_LO0');
    expect(at(0x1a018)).toBe('DRAR_HI0');
    expect(at(0x1a020)).toBe('DSTAT0');
    expect(at(0x1a02c)).toBe('DCHERR0');
    expect(at(0x1a030)).toBe('DCHERRMSK0');
    expect(at(0x1a0e0)).toBe('DSTAT3');
    expect(at(0x1a1f0)).toBe('DCHERRMSK7');
    expect(at(0x1a280)).toBe('DCR');
  });

  it('ignore guest writes to DTPR and DSTAT', () => {
    const rig = rigWithRam();
    rig.w(dmaReg(0, DTPR), 5);
    rig.w(dmaReg(0, DSTAT), 0x20000005);
    expect(reg(rig, 0, DTPR)).toBe(0);
    expect(reg(rig, 0, DSTAT)).toBe(0);
  });
});

describe('Linux channel setup (mic_dma_chan_setup)', () => {
  it('programs the ring and passes mic_dma_check_chan', () => {
    const rig = rigWithRam();
    const c = new LinuxDmaChannel(rig, 0, RING(0), STATUS(0));
    const t = rig.tracer as unknown as { events: Record<string, unknown>[] };
    t.events.length = 0;
    expect(c.setup()).toBe(true);
    // The driver's exact access sequence.
    const seq = t.events.filter((e) => e.kind === 'mmio').map((e) => `${e.op} ${e.reg}`);
    expect(seq).toEqual([
      'r DCR', 'w DCR', // disable
      'r DCAR0', 'w DCAR0', // mask (IM1)
      'w DCHERRMSK0',
      'w DRAR_LO0', 'w DRAR_HI0',
      'r DTPR0',
      'r DCAR0', 'w DCAR0', // unmask
      'r DCR', 'w DCR', // enable
      'r DCHERR0', 'r DSTAT0', // mic_dma_check_chan
    ]);
    // (131068 << 4) | SYS; ring at card 0x80_1000_0000: SMPT entry 0, bits 33:32 = 0.
    expect(reg(rig, 0, DRAR_HI)).toBe(0x041fffc0);
    expect(reg(rig, 0, DRAR_LO)).toBe(0x1000_0000);
    expect(rig.engine.channel(0).ring).toBe(0x80_1000_0000n);
    expect(rig.engine.channel(0).size).toBe(131068);
    expect(rig.r(DCR_OFFSET)).toBe(0x57);
    expect(reg(rig, 0, DCAR)).toBe(0);
    expect(reg(rig, 0, DCHERR)).toBe(0);
    expect(reg(rig, 0, DSTAT) & DSTAT_QUIESCE).toBe(0);
  });

  it('sets up all four host channels independently', () => {
    const rig = rigWithRam();
    const chans = [0, 1, 2, 3].map((ch) => linux(rig, ch));
    expect(rig.r(DCR_OFFSET)).toBe(0x55 | 0xaa);
    for (const c of chans) {
      const src = rig.hostAddr(DATA + c.ch * 64 * KiB);
      rig.ram.fill(0x10 + c.ch, DATA + c.ch * 64 * KiB, DATA + (c.ch + 1) * 64 * KiB);
      c.memcpy(BigInt(c.ch * 64 * KiB), src, 64 * KiB, DMA_PREP_INTERRUPT);
      c.issuePending();
    }
    rig.drain();
    for (const c of chans) {
      expect(c.count()).toBe(3);
      expect(rig.aperture[c.ch * 64 * KiB + 100]).toBe(0x10 + c.ch);
    }
    expect([...rig.raised].sort((x, y) => x - y)).toEqual([8, 9, 10, 11]);
  });

  it('decodes a ring in another SMPT entry with address bits 33:32 set', () => {
    // Guest RAM at bus address 3·16 GiB + 2·4 GiB: card 0x80_0000_0000 + that (identity SMPT).
    const rig = makeDmaRig({ ramIova: (3n << 34n) + (2n << 32n) + 0x10_0000n, ramSize: 16 * MiB });
    const c = linux(rig);
    expect(reg(rig, 0, DRAR_HI)).toBe(0x041fffc0 | (3 << 21) | 2);
    expect(reg(rig, 0, DRAR_LO)).toBe(0x10_0000);
    expect(rig.engine.channel(0).ring).toBe(SYSTEM_WINDOW_BASE + (3n << 34n) + (2n << 32n) + 0x10_0000n);
    c.imm(c.statusCard, 0xfeedn);
    c.issuePending();
    rig.drain();
    expect(c.count()).toBe(1);
    expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(0))).toBe(0xfeedn);
  });

  it('keeps DTPR when a channel is set up again without a card reset, and ignores a repeated DHPR', () => {
    const rig = rigWithRam();
    let c = linux(rig);
    for (let i = 0; i < 3; i++) c.memcpy(BigInt(i * 64), rig.hostAddr(DATA), 64);
    c.memcpy(0n, 0n, 0, DMA_PREP_FENCE); // mic_dma_drain_chan()
    c.issuePending();
    rig.drain();
    c.destroy();
    expect(reg(rig, 0, DTPR)).toBe(4);
    const stale = c.submitted;
    // mic_dma_chan_setup() again on the same channel struct (`submitted` still 4): head = DTPR.
    c = new LinuxDmaChannel(rig, 0, RING(0), STATUS(0));
    c.submitted = stale;
    expect(c.setup()).toBe(true);
    expect(c.head).toBe(4);
    // A client's issue_pending before any submit writes DHPR = 4 again: ignored, no error.
    c.issuePending();
    expect(reg(rig, 0, DCHERR)).toBe(0);
    expect(reg(rig, 0, DHPR)).toBe(4);
    const idx = c.imm(c.statusCard, 7n);
    c.issuePending();
    rig.drain();
    expect(idx).toBe(4);
    expect(c.count()).toBe(5);
    expect(reg(rig, 0, DTPR)).toBe(5);
  });
});

describe('MEMCPY', () => {
  const sizes = [64, 4 * KiB, 1000 * 64, 512 * KiB, 512 * KiB + 64, MiB + 192, 2 * MiB];

  for (const len of [...sizes, 4 * MiB]) {
    it(`copies ${len} bytes host → card and card → host`, () => {
      const rig = rigWithRam();
      const c = linux(rig);
      const src = rig.ram.subarray(DATA, DATA + len);
      patternFill(src, len);
      // host → card, at the end of the aperture when it fits, with a guard byte before it.
      const cardOff = 4 * MiB - len;
      rig.aperture.fill(0xee);
      c.memcpy(BigInt(cardOff), rig.hostAddr(DATA), len);
      c.issuePending();
      rig.drain();
      expect(Buffer.compare(rig.aperture.subarray(cardOff, cardOff + len), Buffer.from(src))).toBe(0);
      if (cardOff > 0) expect(rig.aperture[cardOff - 1]).toBe(0xee);
      // card → host, into a cleared buffer with guard bytes on both sides
      // (4 MiB: back over the source, which is cleared first).
      const out = len <= 3 * MiB ? DATA + 3 * MiB + 64 : DATA;
      rig.ram.fill(0xcc, out - 64, out + len + 64);
      c.memcpy(rig.hostAddr(out), BigInt(cardOff), len);
      c.issuePending();
      rig.drain();
      const expected = Buffer.from(rig.aperture.subarray(cardOff, cardOff + len));
      expect(Buffer.compare(Buffer.from(rig.ram.subarray(out, out + len)), expected)).toBe(0);
      expect(rig.ram[out - 1]).toBe(0xcc);
      expect(rig.ram[out + len]).toBe(0xcc);
      expect(reg(rig, 0, DCHERR)).toBe(0);
      expect(c.count()).toBe(c.head);
    });
  }

  for (const len of sizes) {
    it(`copies ${len} bytes card → card`, () => {
      const rig = rigWithRam();
      const c = linux(rig);
      patternFill(rig.aperture.subarray(0, len), len + 1);
      rig.aperture.fill(0xee, 2 * MiB - 64, 4 * MiB);
      c.memcpy(BigInt(2 * MiB), 0n, len);
      c.issuePending();
      rig.drain();
      expect(Buffer.compare(rig.aperture.subarray(2 * MiB, 2 * MiB + len), rig.aperture.subarray(0, len))).toBe(0);
      expect(rig.aperture[2 * MiB - 1]).toBe(0xee);
      if (len < 2 * MiB) expect(rig.aperture[2 * MiB + len]).toBe(0xee);
    });
  }

  it('also copies host → host (the silicon reportedly cannot; the emulator can)', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    patternFill(rig.ram.subarray(DATA, DATA + 128 * KiB), 9);
    c.memcpy(rig.hostAddr(DATA + MiB), rig.hostAddr(DATA), 128 * KiB);
    c.issuePending();
    rig.drain();
    expect(Buffer.compare(Buffer.from(rig.ram.subarray(DATA + MiB, DATA + MiB + 128 * KiB)), Buffer.from(rig.ram.subarray(DATA, DATA + 128 * KiB)))).toBe(0);
  });

  it('executes the 512 KiB chunks the Linux driver produces, in order', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    const len = 2 * LINUX_MAX_XFER_HOST + 256 * KiB + 64;
    patternFill(rig.ram.subarray(DATA, DATA + len), 3);
    const idx = c.memcpy(0x1000n, rig.hostAddr(DATA), len, DMA_PREP_INTERRUPT);
    expect(idx).toBe(4); // 3 MEMCPY + 2 STATUS: the tx sits at its last slot
    c.issuePending();
    rig.drain();
    const ev = dmaEvents(rig).map((e) => [e.type, e.src, e.dst, e.len, e.intr]);
    const s = rig.hostAddr(DATA);
    const hex = (v: bigint) => `0x${v.toString(16)}`;
    expect(ev).toEqual([
      ['MEMCPY', hex(s), '0x1000', 512 * KiB, undefined],
      ['MEMCPY', hex(s + 512n * 1024n), hex(0x1000n + 512n * 1024n), 512 * KiB, undefined],
      ['MEMCPY', hex(s + 1024n * 1024n), hex(0x1000n + 1024n * 1024n), 256 * KiB + 64, undefined],
      ['STATUS', undefined, hex(c.statusCard), 8, undefined],
      ['STATUS', undefined, hex(c.statusCard), 8, true],
    ]);
    expect(Buffer.compare(rig.aperture.subarray(0x1000, 0x1000 + len), Buffer.from(rig.ram.subarray(DATA, DATA + len)))).toBe(0);
    expect(c.count()).toBe(5);
    expect(rig.raised).toEqual([8]);
  });

  it('splits a copy that crosses a 16 GiB SMPT page, each part through its own entry', () => {
    const rig = rigWithRam();
    const a = new Uint8Array(4096), b = new Uint8Array(4096);
    // Card window page 0 ends at 0x83_FFFF_FFFF → host 16 GiB − 4 KiB; page 1 → host 5·16 GiB.
    rig.host.map({ iova: (1n << 34n) - 4096n, length: 4096, prot: 3, memory: a.buffer as ArrayBuffer });
    rig.host.map({ iova: 5n << 34n, length: 4096, prot: 3, memory: b.buffer as ArrayBuffer });
    rig.w(SMPT_REG(1), 5 << 2);
    patternFill(rig.aperture.subarray(0, 256), 5);
    const ring = new RawRing(rig, 0, 3 * MiB, 16);
    ring.memcpy(0n, SYSTEM_WINDOW_BASE + (1n << 34n) - 128n, 256);
    ring.issue();
    rig.drain();
    expect(reg(rig, 0, DCHERR)).toBe(0);
    expect(Buffer.compare(Buffer.from(a.subarray(4096 - 128)), rig.aperture.subarray(0, 128))).toBe(0);
    expect(Buffer.compare(Buffer.from(b.subarray(0, 128)), rig.aperture.subarray(128, 256))).toBe(0);
  });
});

describe('STATUS, GENERAL and NOP descriptors', () => {
  it('writes the 8-byte value of an imm-data request without an interrupt', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    const dst = DATA + 0x40;
    rig.ram.fill(0xaa, dst - 8, dst + 16);
    c.imm(rig.hostAddr(dst), 0x1122334455667788n);
    c.issuePending();
    rig.drain();
    const ram = Buffer.from(rig.ram.buffer);
    expect(ram.readBigUInt64LE(dst)).toBe(0x1122334455667788n);
    expect(ram.readBigUInt64LE(dst - 8)).toBe(0xaaaaaaaaaaaaaaaan);
    expect(ram.readBigUInt64LE(dst + 8)).toBe(0xaaaaaaaaaaaaaaaan);
    expect(c.count()).toBe(1);
    expect(rig.raised).toEqual([]);
  });

  it('raises exactly one interrupt for the two-status sequence, after the count covers it', () => {
    const rig = rigWithRam();
    const c = linux(rig, 2);
    rig.ram.fill(0xff, STATUS(2), STATUS(2) + 8);
    const seen: number[] = [];
    rig.onRaise = () => seen.push(rig.regs.get('DSTAT2') & DSTAT_COUNT_MASK);
    const idx = c.interrupt(DMA_PREP_INTERRUPT);
    c.issuePending();
    rig.drain();
    expect(idx).toBe(1);
    expect(rig.raised).toEqual([10]);
    expect(seen).toEqual([2]); // the interrupting descriptor (slot 1) was already counted
    expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(2))).toBe(0n);
  });

  it('does not interrupt while DCAR IM1 masks a host-owned channel; IM0 does not mask it', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    c.maskIntr();
    expect(reg(rig, 0, DCAR)).toBe(DCAR_IM1);
    c.interrupt();
    c.issuePending();
    rig.drain();
    expect(c.count()).toBe(2);
    expect(rig.raised).toEqual([]);
    c.unmaskIntr();
    rig.w(dmaReg(0, DCAR), DCAR_IM0);
    c.interrupt();
    c.issuePending();
    rig.drain();
    expect(rig.raised).toEqual([8]);
  });

  it('gates a card-owned channel (DCR owner bit 0) by IM0, not IM1', () => {
    const rig = rigWithRam();
    const c = new LinuxDmaChannel(rig, 4, 3 * MiB, 3 * MiB + 4096, 64, 'mic'); // ring and status_dest in GDDR
    expect(c.setup()).toBe(true);
    expect(rig.r(DCR_OFFSET) & (3 << 8)).toBe(2 << 8); // owner = card, enabled
    rig.w(dmaReg(4, DCAR), DCAR_IM1);
    c.interrupt();
    c.issuePending();
    rig.drain();
    expect(rig.cardRaised).toEqual([[4, 'completion']]);
    c.maskIntr();
    c.interrupt();
    c.issuePending();
    rig.drain();
    expect(rig.cardRaised).toEqual([[4, 'completion']]);
    expect(rig.raised).toEqual([]);
    expect(c.count()).toBe(4);
  });

  it('interrupts the card, never the host, for a card-owned channel; the host for a host-owned one', () => {
    const rig = rigWithRam();
    const card = new LinuxDmaChannel(rig, 5, 3 * MiB, 3 * MiB + 4096, 64, 'mic');
    const host = linux(rig, 1);
    expect(card.setup()).toBe(true);
    card.interrupt();
    card.issuePending();
    host.interrupt();
    host.issuePending();
    rig.drain();
    expect(rig.cardRaised).toEqual([[5, 'completion']]);
    expect(rig.raised).toEqual([9]);
    // The owner bit decides, not the channel number: channel 1 handed to the card interrupts the card.
    rig.w(DCR_OFFSET, rig.r(DCR_OFFSET) & ~(1 << 2));
    rig.w(dmaReg(1, DCAR), 0);
    host.interrupt();
    host.issuePending();
    rig.drain();
    expect(rig.cardRaised).toEqual([[5, 'completion'], [1, 'completion']]);
    expect(rig.raised).toEqual([9]);
  });

  it('writes 0 to status_dest for a FENCE', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    rig.ram.fill(0x55, STATUS(0), STATUS(0) + 16);
    c.memcpy(0n, 0n, 0, DMA_PREP_FENCE);
    c.issuePending();
    rig.drain();
    expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(0))).toBe(0n);
    expect(rig.ram[STATUS(0) + 8]).toBe(0x55);
    expect(rig.raised).toEqual([]);
  });

  it('writes 32 bits for GENERAL and only consumes the slot for NOP', () => {
    const rig = rigWithRam();
    const ring = new RawRing(rig, 1, 3 * MiB, 8);
    rig.aperture.fill(0x77, 0x100, 0x110);
    ring.put(0n, 0n); // NOP
    ring.put(0xdeadbeef_cafef00dn, (3n << 60n) | 0x104n); // GENERAL: qw0[31:0] → 0x104
    ring.put(0x1234n, 0n); // NOP with junk in qw0
    ring.issue();
    rig.drain();
    expect(rig.aperture.readUInt32LE(0x104)).toBe(0xcafef00d);
    expect(rig.aperture.readUInt32LE(0x100)).toBe(0x77777777);
    expect(rig.aperture.readUInt32LE(0x108)).toBe(0x77777777);
    expect(reg(rig, 1, DSTAT)).toBe(3);
    expect(reg(rig, 1, DCHERR)).toBe(0);
    expect(dmaEvents(rig).map((e) => e.type)).toEqual(['NOP', 'GENERAL', 'NOP']);
  });
});

describe('ring indices', () => {
  it('wraps a ring of 8 over several laps, the count wrapping at 8', () => {
    const rig = rigWithRam();
    const c = linux(rig, 0, 8);
    expect(reg(rig, 0, DRAR_HI) >>> 4 & 0x1ffff).toBe(8);
    const counts: number[] = [];
    let total = 0;
    for (let round = 0; round < 12; round++) {
      const k = 1 + (round % 3);
      for (let j = 0; j < k; j++) {
        const n = total++;
        rig.ram.fill(n & 0xff, DATA + 64 * n, DATA + 64 * n + 64);
        c.memcpy(BigInt(64 * n), rig.hostAddr(DATA + 64 * n), 64);
      }
      c.issuePending();
      rig.drain();
      counts.push(c.count());
      c.cleanup();
      expect(reg(rig, 0, DTPR)).toBe(c.head);
    }
    expect(total).toBe(24); // three laps
    expect(counts.every((x) => x >= 0 && x < 8)).toBe(true);
    expect(counts).toEqual([1, 3, 6, 7, 1, 4, 5, 7, 2, 3, 5, 0]);
    for (let n = 0; n < total; n++) expect(rig.aperture[64 * n + 7]).toBe(n & 0xff);
    expect(reg(rig, 0, DCHERR)).toBe(0);
  });

  it('ignores a DHPR write of the current value, and traces it', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    c.imm(c.statusCard, 1n);
    c.issuePending();
    rig.drain();
    const before = rig.scheduled;
    rig.w(dmaReg(0, DHPR), 1);
    expect(reg(rig, 0, DHPR)).toBe(1);
    expect(reg(rig, 0, DCHERR)).toBe(0);
    expect(reg(rig, 0, DSTAT)).toBe(1);
    expect(rig.scheduled).toBe(before);
    rig.drain();
    expect(c.count()).toBe(1);
    const t = rig.tracer as unknown as { events: Record<string, unknown>[] };
    expect(t.events.some((e) => e.kind === 'dma-engine' && e.action === 'head-unchanged' && e.ch === 0)).toBe(true);
  });

  it('refuses DHPR >= ring size: error, DHPR unchanged, SBOX error source', () => {
    const rig = rigWithRam();
    linux(rig, 0, 64);
    rig.w(dmaReg(0, DHPR), 64);
    expect(reg(rig, 0, DHPR)).toBe(0);
    expect(reg(rig, 0, DCHERR)).toBe(DCHERR_RING_INDEX);
    expect(reg(rig, 0, DSTAT)).toBe(DSTAT_QUIESCE);
    expect(rig.raised).toEqual([30]);
    rig.drain();
    expect(reg(rig, 0, DSTAT) & DSTAT_COUNT_MASK).toBe(0);
  });

  it('does not raise the error source when DCHERRMSK masks the error', () => {
    const rig = rigWithRam();
    linux(rig, 1, 64);
    rig.w(dmaReg(1, DCHERRMSK), DCHERR_RING_INDEX);
    rig.w(dmaReg(1, DHPR), 0x20000);
    expect(reg(rig, 1, DCHERR)).toBe(DCHERR_RING_INDEX);
    expect(reg(rig, 1, DSTAT) & DSTAT_QUIESCE).toBe(DSTAT_QUIESCE);
    expect(rig.raised).toEqual([]);
  });

  it('keeps DHPR, DTPR and DSTAT across DRAR writes and disable/enable', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    for (let i = 0; i < 5; i++) c.imm(c.statusCard, BigInt(i));
    c.issuePending();
    rig.drain();
    expect([reg(rig, 0, DHPR), reg(rig, 0, DTPR), reg(rig, 0, DSTAT)]).toEqual([5, 5, 5]);
    c.disable();
    c.setDescRing();
    rig.w(dmaReg(0, DRAR_LO), 0);
    c.setDescRing();
    c.enable();
    expect([reg(rig, 0, DHPR), reg(rig, 0, DTPR), reg(rig, 0, DSTAT)]).toEqual([5, 5, 5]);
  });
});

describe('errors', () => {
  function errRig() {
    const rig = rigWithRam();
    const c = linux(rig);
    rig.aperture.fill(0x11, 0, 64);
    return { rig, c };
  }

  it('stops at a descriptor of unknown type', () => {
    for (const type of [4n, 5n, 6n, 15n]) {
      const { rig, c } = errRig();
      c.memcpy(0x1000n, 0n, 64); // slot 0: fine
      c.putStatus(0n, c.statusCard, false);
      // overwrite slot 1 with an unknown type
      new DataView(rig.ram.buffer).setBigUint64(RING(0) + 16 + 8, (type << 60n) | c.statusCard, true);
      c.memcpy(0x2000n, 0n, 64); // slot 2: must not run
      c.submitted = c.head;
      c.issuePending();
      expect(() => rig.drain()).not.toThrow();
      expect(rig.aperture[0x1000]).toBe(0x11);
      expect(rig.aperture[0x2000]).toBe(0);
      expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DESC_TYPE);
      expect(reg(rig, 0, DSTAT)).toBe(DSTAT_QUIESCE | 1);
      expect(reg(rig, 0, DTPR)).toBe(1);
      expect(rig.raised).toEqual([30]);
      const err = dmaEvents(rig).find((e) => e.op === 'error');
      expect(err).toMatchObject({ ch: 0, idx: 1, err: DCHERR_DESC_TYPE });
    }
  });

  it('stops at a source outside card memory', () => {
    for (const src of [4n * 1024n * 1024n, 4n * 1024n * 1024n - 64n, 0x08_007c_0000n, 0x88_0000_0000n]) {
      const { rig, c } = errRig();
      c.memcpy(0x1000n, 0n, 64);
      c.memcpy(0x2000n, src, 128);
      c.memcpy(0x3000n, 0n, 64);
      c.issuePending();
      rig.drain();
      expect(rig.aperture[0x1000]).toBe(0x11);
      expect(rig.aperture[0x2000]).toBe(0);
      expect(rig.aperture[0x3000]).toBe(0);
      expect(reg(rig, 0, DCHERR)).toBe(DCHERR_SRC_ADDR);
      expect(reg(rig, 0, DSTAT)).toBe(DSTAT_QUIESCE | 1);
      expect(rig.raised).toEqual([30]);
    }
  });

  it('stops at a destination in unmapped guest RAM (memcpy and status)', () => {
    for (const kind of ['memcpy', 'status'] as const) {
      const { rig, c } = errRig();
      const nowhere = rig.hostAddr(64 * MiB); // past the 16 MiB region
      c.memcpy(0x1000n, 0n, 64);
      if (kind === 'memcpy') c.memcpy(nowhere, 0n, 64);
      else c.imm(nowhere, 5n);
      c.imm(c.statusCard, 9n);
      c.issuePending();
      rig.drain();
      expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DST_ADDR);
      expect(reg(rig, 0, DSTAT)).toBe(DSTAT_QUIESCE | 1);
      expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(0))).toBe(0n);
      expect(rig.raised).toEqual([30]);
    }
  });

  it('stops when the ring cannot be fetched', () => {
    const rig = rigWithRam();
    rig.w(dmaReg(3, DRAR_LO), 0x7000_0000); // system window, no guest RAM there
    rig.w(dmaReg(3, DRAR_HI), (64 << 4) | (1 << 26));
    rig.w(DCR_OFFSET, rig.r(DCR_OFFSET) | (2 << 6));
    rig.w(dmaReg(3, DHPR), 2);
    rig.drain();
    expect(reg(rig, 3, DCHERR)).toBe(DCHERR_RING_FETCH);
    expect(reg(rig, 3, DSTAT)).toBe(DSTAT_QUIESCE);
    expect(reg(rig, 3, DTPR)).toBe(0);
    expect(rig.raised).toEqual([30]);
  });

  it('keeps the other channels running', () => {
    const rig = rigWithRam();
    const bad = linux(rig, 0);
    const good = linux(rig, 1);
    bad.memcpy(rig.hostAddr(64 * MiB), 0n, 64);
    bad.issuePending();
    patternFill(rig.ram.subarray(DATA, DATA + MiB), 1);
    good.memcpy(0n, rig.hostAddr(DATA), MiB, DMA_PREP_INTERRUPT);
    good.issuePending();
    rig.drain();
    expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DST_ADDR);
    expect(reg(rig, 1, DCHERR)).toBe(0);
    expect(good.count()).toBe(4);
    expect(rig.aperture.subarray(0, MiB).equals(Buffer.from(rig.ram.subarray(DATA, DATA + MiB)))).toBe(true);
    expect([...rig.raised].sort((x, y) => x - y)).toEqual([9, 30]);
    // More work on the failed channel does not run.
    bad.imm(bad.statusCard, 1n);
    bad.issuePending();
    rig.drain();
    expect(bad.count()).toBe(0);
  });

  it('resumes at the failing descriptor once software clears DCHERR (W1C)', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    const where = 0x4000_0000n; // bus address, not mapped yet
    c.imm(SYSTEM_WINDOW_BASE + where, 0xabcn);
    c.issuePending();
    rig.drain();
    expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DST_ADDR);
    const late = new ArrayBuffer(4096);
    rig.host.map({ iova: where, length: 4096, prot: 3, memory: late });
    rig.w(dmaReg(0, DCHERR), 0); // W1C: 0 clears nothing
    expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DST_ADDR);
    rig.w(dmaReg(0, DCHERR), DCHERR_DST_ADDR);
    expect(reg(rig, 0, DCHERR)).toBe(0);
    expect(reg(rig, 0, DSTAT) & DSTAT_QUIESCE).toBe(0);
    rig.drain();
    expect(c.count()).toBe(1);
    expect(new DataView(late).getBigUint64(0, true)).toBe(0xabcn);
  });

  it('never throws out of a register access, whatever the guest writes', () => {
    const rig = rigWithRam();
    let x = 12345;
    const rnd = () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
    // Garbage descriptors in GDDR rings and in guest RAM.
    for (let i = 0; i < 64 * KiB; i += 4) rig.aperture.writeUInt32LE(rnd(), i);
    for (let i = 0; i < 64 * KiB; i += 4) new DataView(rig.ram.buffer).setUint32(i, rnd(), true);
    const regsOf = [DCAR, DHPR, DTPR, DRAR_LO, DRAR_HI, DSTAT, DCHERR, DCHERRMSK];
    expect(() => {
      for (let i = 0; i < 5000; i++) {
        const ch = rnd() % 8;
        const r = regsOf[rnd() % regsOf.length];
        let v = rnd();
        if (r === DRAR_LO) v &= 0xff00;
        if (r === DRAR_HI) v = (v & 0x07e00003) | ((rnd() % 300) << 4);
        if (r === DHPR) v %= 320;
        if (rnd() % 4 === 0) rig.w(DCR_OFFSET, rnd());
        rig.w(dmaReg(ch, r), v);
        rig.r(dmaReg(ch, DSTAT));
        if (i % 50 === 0) rig.drain();
      }
      rig.drain();
    }).not.toThrow();
    expect(rig.engine.stats.descriptors).toBeGreaterThan(0);
    expect(rig.engine.stats.errors).toBeGreaterThan(0);
    expect(rig.engine.stats.errors).toBe(dmaEvents(rig).filter((e) => e.op === 'error').length);
    expect(dmaEvents(rig).filter((e) => e.op === 'error' && e.err === 32)).toEqual([]); // no INTERNAL faults
  });
});

describe('reset (RGCR)', () => {
  it('clears every DMA register, errors included, and the channels start from 0', () => {
    const rig = rigWithRam();
    const a = linux(rig, 0);
    const b = linux(rig, 1);
    a.imm(a.statusCard, 1n);
    a.issuePending();
    b.memcpy(rig.hostAddr(64 * MiB), 0n, 64);
    b.issuePending();
    rig.drain();
    rig.w(dmaReg(0, DCAR), DCAR_IM1);
    expect(reg(rig, 0, DSTAT)).toBe(1);
    expect(reg(rig, 1, DCHERR)).not.toBe(0);
    rig.regs.reset('card'); // what RGCR does to the registers (X100Card.cardReset)
    rig.engine.reset();
    for (const blk of DMA_BLOCKS) {
      for (const d of blk.regs) expect(rig.r(blk.base + d.offset), d.name).toBe(d.name === 'DCR' ? 0x55 : 0);
    }
    // The host sets the channel up again after the reboot.
    const a2 = linux(rig, 0);
    const b2 = linux(rig, 1);
    expect(a2.head).toBe(0);
    b2.imm(b2.statusCard, 3n);
    b2.issuePending();
    rig.drain();
    expect(b2.count()).toBe(1);
    expect(reg(rig, 1, DCHERR)).toBe(0);
  });
});

describe('scheduling', () => {
  it('does not run a disabled channel until it is enabled', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    c.disable();
    c.imm(c.statusCard, 42n);
    c.issuePending();
    rig.drain();
    expect(c.count()).toBe(0);
    expect(reg(rig, 0, DSTAT)).toBe(0); // a poll does not run a disabled channel either
    expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(0))).toBe(0n);
    const before = rig.scheduled;
    c.enable();
    expect(rig.scheduled).toBe(before + 1);
    rig.drain();
    expect(c.count()).toBe(1);
    expect(Buffer.from(rig.ram.buffer).readBigUInt64LE(STATUS(0))).toBe(42n);
  });

  it('makes progress on a DSTAT read without the scheduler running', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    for (let i = 0; i < 40; i++) c.memcpy(BigInt(64 * i), rig.hostAddr(DATA), 64);
    const last = c.memcpy(0n, 0n, 0, DMA_PREP_FENCE);
    c.issuePending();
    expect(rig.queued()).toBeGreaterThan(0);
    const first = c.count();
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(POLL_DESCS);
    const polls = c.syncWait(last); // dma_sync_wait(): DSTAT reads only
    expect(polls).toBeGreaterThan(1);
    expect(c.count()).toBe(41);
  });

  it('splits a 64 MiB transfer across several slices of bounded size', () => {
    const rig = makeDmaRig({ ramSize: 72 * MiB, apertureSize: 4 * MiB });
    const c = new LinuxDmaChannel(rig, 0, 0, 2 * MiB + 64);
    expect(c.setup()).toBe(true);
    const src = 4 * MiB;
    patternFill(rig.ram.subarray(src, src + 64 * MiB), 77);
    for (let i = 0; i < 16; i++) c.memcpy(0n, rig.hostAddr(src + i * 4 * MiB), 4 * MiB);
    const last = c.interrupt();
    c.issuePending();
    let slices = 0;
    let prev = rig.engine.stats.bytes;
    while (rig.queued()) {
      rig.drain(1); // one round of the queue: one slice
      slices++;
      const done = rig.engine.stats.bytes - prev;
      expect(done).toBeLessThanOrEqual(SLICE_BYTES + LINUX_MAX_XFER_HOST);
      prev = rig.engine.stats.bytes;
    }
    expect(slices).toBeGreaterThanOrEqual(8);
    expect(rig.scheduled).toBeGreaterThan(1);
    expect(rig.engine.stats.bytes).toBe(64 * MiB);
    expect(c.count()).toBe(last + 1);
    expect(rig.aperture.equals(Buffer.from(rig.ram.subarray(src + 60 * MiB, src + 64 * MiB)))).toBe(true);
    expect(rig.raised).toEqual([8]);
  });
});

describe('tracing', () => {
  it('records one event per descriptor and per error', () => {
    const rig = rigWithRam();
    const c = linux(rig);
    c.memcpy(0x40n, rig.hostAddr(DATA), 128, DMA_PREP_INTERRUPT);
    c.issuePending();
    rig.drain();
    const ev = dmaEvents(rig);
    expect(ev).toHaveLength(3);
    expect(ev[0]).toMatchObject({ op: 'copy', ch: 0, idx: 0, type: 'MEMCPY', src: '0x8010900000', dst: '0x40', len: 128 });
    expect(ev[2]).toMatchObject({ op: 'write', ch: 0, idx: 2, type: 'STATUS', dst: `0x${c.statusCard.toString(16)}`, len: 8, val: '0x0', intr: true });
  });

  it('warns once per channel error, naming the channel and DCHERR bit, with tracing off', () => {
    const warned: [string, string, Record<string, unknown> | undefined][] = [];
    const rig = rigWithRam(16 * MiB, 4 * MiB, untraced((k, m, d) => warned.push([k, m, d])));
    const c = linux(rig, 5);
    c.imm(rig.hostAddr(64 * MiB), 1n); // status into unmapped guest memory
    c.issuePending();
    rig.drain();
    expect(warned).toHaveLength(1);
    expect(warned[0][0]).toBe('dma-error');
    expect(warned[0][1]).toMatch(/^DMA channel 5 stopped at descriptor 0: DCHERR5 = 0x4 \{DST_ADDR\}: STATUS 0 destination 0x/);
    expect(warned[0][2]).toMatchObject({ ch: 5, idx: 0, dcherr: DCHERR_DST_ADDR, err: 'DST_ADDR' });
    // Channel 5 is card-owned (DCR owner bit 0): the error goes to the card, not SBOX source 30.
    expect(rig.raised).toEqual([]);
    expect(rig.cardRaised).toEqual([[5, 'error']]);
  });

  it('reports a card-owned channel error to the card unless DCHERRMSK masks it', () => {
    const rig = rigWithRam();
    const c = new LinuxDmaChannel(rig, 6, 3 * MiB, 3 * MiB + 4096, 64, 'mic');
    expect(c.setup()).toBe(true);
    c.memcpy(0n, rig.hostAddr(64 * MiB), 64); // source in unmapped guest memory
    c.issuePending();
    rig.drain();
    expect(reg(rig, 6, DCHERR)).toBe(DCHERR_SRC_ADDR);
    expect(rig.cardRaised).toEqual([[6, 'error']]);
    expect(rig.raised).toEqual([]);
    rig.w(dmaReg(6, DCHERRMSK), DCHERR_SRC_ADDR);
    rig.w(dmaReg(6, DCHERR), DCHERR_SRC_ADDR); // W1C: retries, fails again, masked
    rig.drain();
    expect(reg(rig, 6, DCHERR)).toBe(DCHERR_SRC_ADDR);
    expect(rig.cardRaised).toEqual([[6, 'error']]);
    expect(rig.raised).toEqual([]);
  });

  it('never calls a disabled tracer', () => {
    const trap = (): never => { throw new Error('tracer called while disabled'); };
    const tracer: Tracer = { ...NULL_TRACER, enabled: false, mmio: trap, dma: trap, event: trap, irq: trap, cfg: trap };
    const rig = rigWithRam(16 * MiB, 4 * MiB, tracer);
    const c = linux(rig);
    c.memcpy(0n, rig.hostAddr(DATA), 64, DMA_PREP_INTERRUPT);
    c.imm(rig.hostAddr(64 * MiB), 1n); // an error too
    c.issuePending();
    rig.w(dmaReg(0, DHPR), reg(rig, 0, DHPR)); // ignored head write
    expect(() => rig.drain()).not.toThrow();
    expect(reg(rig, 0, DCHERR)).toBe(DCHERR_DST_ADDR);
    expect(rig.raised).toEqual([8, 30]);
  });
});
