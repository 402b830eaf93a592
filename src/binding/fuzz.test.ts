/**
 * A protocol fuzzer with no VMM: the real x100 card over the native addon,
 * in its own process (fuzz-server.ts), and a raw vfio-user client
 * (fuzz-client.ts) that sends it malformed messages from a seed: bad
 * header sizes and flags, truncated headers, bad region indices and
 * offsets, DMA_MAP with missing, wrong or too small fds, bad sizes and
 * overlaps, DMA_UNMAP of what is not mapped, bogus SET_IRQS, unknown
 * commands, messages before VERSION and VERSION twice. Every bad message
 * must get an error reply (or, where libvfio-user closes the connection,
 * a close and a successful reconnect); the server must never crash or hang.
 * Meanwhile the same connection drives DMA channel 0 as mic_x100_dma.c
 * does (ring and descriptors in a DMA-mapped memfd), copying pattern data
 * guest RAM → aperture → guest RAM, CRC32 checked after every copy.
 *
 * VPHI_FUZZ_ITERS scales the messages (npm run fuzz); VPHI_FUZZ_SEED picks
 * one seed; VPHI_FUZZ_ASAN_PRELOAD / VPHI_FUZZ_ADDON_PATH run the server with
 * a sanitizer build (scripts/fuzz.sh).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { pattern, crc32 } from '../pattern.ts';
import {
  type FdSpec,
  FuzzClient,
  FuzzServer,
  HEADER_SIZE,
  type Outcome,
  VFIO_IRQ_SET,
  VFIO_USER,
  VFIO_USER_F_NO_REPLY,
  dmaMapBody,
  dmaUnmapBody,
  header,
  irqSetBody,
  regionAccess,
  versionBody,
} from './fuzz-client.ts';
import { nativeAvailable, nativeLoadError } from './native.ts';
import { fdClientAvailable } from './raw-client.ts';
import { rng } from '../testing/rng.ts';

const ITERS = Number(process.env.VPHI_FUZZ_ITERS ?? 1000);
const SEEDS = process.env.VPHI_FUZZ_SEED ? [Number(process.env.VPHI_FUZZ_SEED)] : [0x5eed1, 0x5eed2];

const skip = !nativeAvailable() ? nativeLoadError() : !fdClientAvailable() ? 'python3 >= 3.10 missing' : undefined;


// The card as the server declares it (x100Spec, 16 MiB aperture).
const APERTURE = 16 << 20;
const REGION_SIZES: Record<number, number> = { 0: APERTURE, 2: 8192, 4: 128 * 1024, 7: 4096 };
const VENDOR_DEVICE = 0x225c8086;
const BAR0 = 0;
const BAR4 = 4;
const CONFIG = 7;

// BAR4 (device/x100/dma/regs.ts, testing.ts)
const SMPT_REG = (i: number) => 0x13100 + 4 * i;
const DMA_CH = (ch: number, r: number) => 0x1a000 + 0x40 * ch + r;
const DCAR = 0x0;
const DHPR = 0x4;
const DTPR = 0x8;
const DRAR_LO = 0x14;
const DRAR_HI = 0x18;
const DSTAT = 0x20;
const DCHERR = 0x2c;
const DCHERRMSK = 0x30;
const DCR = 0x1a280;
const DCAR_IM1 = 1 << 25;
const DRAR_HI_SYS = 1 << 26;
const SPAD = 0x1ab20; // 8 scratchpads: harmless to scribble on
const SYSTEM_WINDOW_BASE = 0x80_0000_0000n;

// The checker's guest RAM: a memfd the client maps at RAM_IOVA.
const RAM_ID = 'ram';
const RAM_IOVA = 0x1000_0000n;
const RAM_SIZE = 4 << 20;
const RING_OFF = 0;
const RING_SLOTS = 64;
const STATUS_OFF = 0x10000;
const SRC_OFF = 1 << 20;
const DST_OFF = 2 << 20;
const APER_OFF = 8 << 20; // the checker's half of the aperture; garbage writes stay below
const MAX_COPY = 128 * 1024;

/** DMA channel 0 driven over the socket as mic_x100_dma.c drives it (testing.ts LinuxDmaChannel). */
class SocketDmaChannel {
  head = 0;
  copies = 0;

  constructor(readonly c: FuzzClient) {}

  private rd(r: number) {
    return this.c.read32(BAR4, DMA_CH(0, r));
  }

  private wr(r: number, v: number) {
    return this.c.write32(BAR4, DMA_CH(0, r), v);
  }

  /** mic_smpt_init() and mic_dma_chan_setup() for channel 0, host-owned, ring in guest RAM. */
  async setup(): Promise<void> {
    // Whatever the garbage left in BAR4 (a stopped channel, other owners, SMPT): a card reset clears it.
    const reset = await this.c.request(VFIO_USER.DEVICE_RESET, Buffer.alloc(0));
    if (reset.error) throw new Error(`VFIO_USER_DEVICE_RESET: errno ${reset.error}`);
    for (let i = 0; i < 32; i++) await this.c.write32(BAR4, SMPT_REG(i), i << 2);
    await this.c.write32(BAR4, DCR, (await this.c.read32(BAR4, DCR)) & ~2);
    await this.wr(DCAR, (await this.rd(DCAR)) | DCAR_IM1);
    await this.wr(DCHERRMSK, 0);
    const pa = SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(RING_OFF);
    const hi = ((RING_SLOTS & 0x1ffff) << 4) | DRAR_HI_SYS | (Number((pa >> 34n) & 0x1fn) << 21) | Number((pa >> 32n) & 3n);
    await this.wr(DRAR_LO, Number(pa & 0xffffffffn));
    await this.wr(DRAR_HI, hi);
    this.head = await this.rd(DTPR);
    await this.wr(DCAR, (await this.rd(DCAR)) & ~DCAR_IM1);
    await this.c.write32(BAR4, DCR, (await this.c.read32(BAR4, DCR)) | 2);
    const err = await this.rd(DCHERR);
    if (err) throw new Error(`DMA channel 0 setup: DCHERR 0x${err.toString(16)}`);
  }

  /** One transaction: memcpy descriptors and a status descriptor; waits for DSTAT to pass it. */
  async copy(src: bigint, dst: bigint, len: number): Promise<void> {
    const descs: Buffer[] = [];
    const put = (qw0: bigint, qw1: bigint) => {
      const d = Buffer.alloc(16);
      d.writeBigUInt64LE(qw0, 0);
      d.writeBigUInt64LE(qw1, 8);
      descs.push(d);
    };
    put(src | (BigInt(len >> 6) << 46n), (1n << 60n) | dst);
    put(BigInt(++this.copies), (2n << 60n) | (SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(STATUS_OFF)));
    for (const d of descs) {
      await this.c.poke(RAM_ID, RING_OFF + 16 * this.head, d);
      this.head = (this.head + 1) % RING_SLOTS;
    }
    await this.wr(DHPR, this.head);
    for (let polls = 0; ; polls++) {
      const stat = await this.rd(DSTAT);
      if ((stat & 0xffff) === this.head) break;
      const err = await this.rd(DCHERR);
      if (err) throw new Error(`DMA channel 0: DCHERR 0x${err.toString(16)} (DSTAT 0x${stat.toString(16)})`);
      if (polls > 5000) throw new Error(`DMA channel 0: DSTAT 0x${stat.toString(16)}, head ${this.head} not reached`);
      if (polls > 20) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const st = await this.c.peek(RAM_ID, STATUS_OFF, 8);
    if (st.readBigUInt64LE(0) !== BigInt(this.copies)) throw new Error(`status_dest ${st.readBigUInt64LE(0)}, expected ${this.copies}`);
  }
}

/** What a generator says the server must do with its message. */
type Expect =
  | 'error' // an error reply to it
  | 'reply' // a reply, error or not
  | 'close' // the connection closed
  | 'error-or-close'
  | 'none'; // no reply (VFIO_USER_F_NO_REPLY); the probe after it must be answered

interface Garbage {
  name: string;
  data: Buffer;
  fds?: FdSpec[];
  expect: Expect;
  /** Something the checker's channel or mapping may not survive (reset, unmap-all, register writes). */
  disrupts?: boolean;
  /** Sent on a fresh connection before VERSION. */
  beforeVersion?: boolean;
  /** After a successful reply: a DMA region to remember (and unmap later). */
  maps?: { iova: bigint; size: bigint };
}

function generators(rand: () => number, msgId: () => number) {
  const int = (n: number) => Math.floor(rand() * n);
  const pick = <T,>(a: readonly T[]): T => a[int(a.length)];
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const msg = (cmd: number, body: Buffer, o: { size?: number; flags?: number } = {}) =>
    Buffer.concat([header(msgId(), cmd, body.length, o), body]);
  const regions = [0, 2, 4, 7];
  const u64s = [0n, 1n, 0xfffn, 0x1000n, 1n << 32n, 1n << 63n, (1n << 64n) - 1n, (1n << 64n) - 0x1000n];
  // Somewhere away from the checker's RAM (and from each other, mostly).
  const freeIova = () => 0x4000_0000n + BigInt(int(64)) * 0x10_0000n;
  const maybe = (f: FdSpec, p = 0.5): FdSpec[] => (rand() < p ? [f] : []);
  const fdKinds: FdSpec[] = [{ kind: 'pipe' }, { kind: 'eventfd' }, { kind: 'rofile' }, { kind: 'socket' }, { kind: 'devnull' }];

  const list: (() => Garbage)[] = [
    // ---- the header
    () => ({ name: 'unknown command', data: msg(pick([0, 15, 16, 99, 0x7fff, 0xffff, 11, 12]), bytes(1 + int(64))), expect: 'error' }),
    () => ({ name: 'VERSION twice', data: msg(VFIO_USER.VERSION, versionBody()), expect: 'error' }),
    () => ({ name: 'msg_size below the header', data: header(msgId(), 1 + int(14), 0, { size: int(HEADER_SIZE) }), expect: 'error' }),
    () => ({ name: 'no payload', data: header(msgId(), pick([2, 3, 4, 5, 7, 8, 9, 10]), 0), expect: 'error' }),
    () => ({ name: 'msg_size above the maximum', data: header(msgId(), pick([9, 10, 2]), 0, { size: (2 << 20) + int(2 ** 31) }), expect: 'error' }),
    () => {
      // msg_size longer than what follows (the rest never comes): a short read.
      const body = regionAccess(CONFIG, 0n, 4);
      return { name: 'msg_size beyond the payload', data: msg(VFIO_USER.REGION_READ, body, { size: HEADER_SIZE + body.length + 1 + int(512) }), expect: 'error' };
    },
    () => ({ name: 'a reply, not a command', data: header(msgId(), pick([1, 9, 13]), 0, { flags: 1 + int(15), size: HEADER_SIZE + int(64) }), expect: 'error' }),
    () => ({ name: 'truncated header', data: bytes(1 + int(HEADER_SIZE - 1)), expect: 'close', disrupts: true }),
    () => ({ name: 'no reply wanted', data: msg(VFIO_USER.REGION_READ, regionAccess(pick([CONFIG, 99]), 0n, 4), { flags: VFIO_USER_F_NO_REPLY }), expect: 'none' }),
    // ---- region access
    () => ({ name: 'bad region index', data: msg(pick([9, 10]), regionAccess(pick([1, 3, 5, 6, 8, 9, 10, 255, 0xffffffff]), BigInt(int(64)), 4, rand() < 0.5 ? Buffer.alloc(4) : undefined)), expect: 'error' }),
    () => {
      const r = pick(regions);
      const size = REGION_SIZES[r];
      const off = pick([BigInt(size), BigInt(size + int(4096)), BigInt(size - 1 - int(3)), ...u64s.slice(4)]);
      const count = pick([4, 8, 64, 4096]);
      const write = rand() < 0.5;
      const straddles = off + BigInt(count) > BigInt(size);
      return {
        name: `region ${r} ${write ? 'write' : 'read'} past the end`,
        data: write ? msg(10, regionAccess(r, off, count, bytes(count))) : msg(9, regionAccess(r, off, count)),
        expect: straddles ? 'error' : 'reply',
      };
    },
    () => ({ name: 'region read too large', data: msg(9, regionAccess(pick(regions), 0n, pick([(1 << 20) + 1, 0x7fffffff, 0xffffffff]))), expect: 'error' }),
    () => {
      const count = 1 + int(64);
      const sent = pick([0, count - 1, count + 1 + int(16)]);
      return { name: 'region write count ≠ data', data: msg(10, regionAccess(pick([BAR0, CONFIG, BAR4]), 0n, count, bytes(sent))), expect: 'error' };
    },
    () => ({ name: 'region access struct truncated', data: msg(pick([9, 10]), bytes(1 + int(15))), expect: 'error' }),
    () => ({ name: 'region read of nothing', data: msg(9, regionAccess(pick(regions), 0n, 0)), expect: 'reply' }),
    // Well-formed but aimless traffic where it cannot hurt the checker.
    () => ({ name: 'scratchpad write', data: msg(10, regionAccess(BAR4, BigInt(SPAD + 4 * int(8)), 4, bytes(4))), expect: 'reply' }),
    () => ({ name: 'aperture write', data: msg(10, regionAccess(BAR0, BigInt(int(APER_OFF - 4096)), 64, bytes(64))), expect: 'reply' }),
    () => ({ name: 'config read', data: msg(9, regionAccess(CONFIG, BigInt(int(4096 - 4)), pick([1, 2, 4]))), expect: 'reply' }),
    () => ({ name: 'config write', data: msg(10, regionAccess(CONFIG, BigInt(int(4096 - 4)), 4, bytes(4))), expect: 'reply', disrupts: true }),
    () => ({ name: 'BAR4 write', data: msg(10, regionAccess(BAR4, BigInt(int(0x20000) & ~3), 4, bytes(4))), expect: 'reply', disrupts: true }),
    // ---- DMA_MAP / DMA_UNMAP
    () => {
      const iova = freeIova();
      return { name: 'DMA_MAP without an fd', data: msg(2, dmaMapBody({ iova, size: 0x1000n })), expect: 'reply', maps: { iova, size: 0x1000n } };
    },
    () => {
      const iova = freeIova();
      return { name: 'DMA_MAP of a non-memfd', data: msg(2, dmaMapBody({ iova, size: 0x1000n })), fds: [pick(fdKinds)], expect: 'reply', maps: { iova, size: 0x1000n } };
    },
    () => {
      // A memfd smaller than the mapping, or an offset past its end: the pages beyond are not there.
      const iova = freeIova();
      const size = 0x10000n;
      return {
        name: 'DMA_MAP beyond the memfd',
        data: msg(2, dmaMapBody({ iova, size, offset: pick([0n, 0x8000n, 0x100000n]) })),
        fds: [{ kind: 'memfd', size: pick([0, 4096, 0x8000]) }],
        expect: 'reply',
        maps: { iova, size },
      };
    },
    () => {
      const iova = pick([freeIova(), freeIova() + 1n, ...u64s]);
      const size = pick([0n, 1n, 0xfffn, 0x1001n, ...u64s]);
      return {
        name: 'DMA_MAP bad iova/size/offset',
        data: msg(2, dmaMapBody({ iova, size, offset: pick([0n, 1n, 0x800n, ...u64s]), flags: pick([0, 1, 2, 3, 4, 0xff, 0xffffffff]) })),
        fds: maybe({ kind: 'memfd', size: 0x2000 }),
        expect: 'reply',
        maps: { iova, size },
      };
    },
    () => ({
      name: 'DMA_MAP overlapping guest RAM',
      data: msg(2, dmaMapBody({ iova: RAM_IOVA + BigInt(int(RAM_SIZE >> 12)) * 0x1000n - 0x1000n, size: 0x2000n })),
      fds: maybe({ kind: 'memfd', size: 0x2000 }),
      expect: 'error',
    }),
    () => ({ name: 'DMA_MAP bad argsz', data: msg(2, dmaMapBody({ argsz: pick([0, 8, 31]), iova: freeIova(), size: 0x1000n }).subarray(0, pick([32, 16, 31]))), fds: maybe({ kind: 'memfd', size: 0x1000 }), expect: 'error' }),
    () => ({ name: 'DMA_MAP two fds', data: msg(2, dmaMapBody({ iova: freeIova(), size: 0x1000n })), fds: [{ kind: 'memfd', size: 0x1000 }, { kind: 'eventfd' }], expect: 'reply', maps: { iova: 0n, size: 0n } }),
    () => ({ name: 'DMA_MAP truncated', data: msg(2, dmaMapBody({ iova: freeIova(), size: 0x1000n }).subarray(0, 1 + int(31))), fds: maybe({ kind: 'memfd', size: 0x1000 }), expect: 'error' }),
    () => ({ name: 'DMA_UNMAP truncated', data: msg(3, dmaUnmapBody({ flags: int(3), iova: 0n, size: 0n }).subarray(0, 1 + int(23))), expect: 'error' }),
    () => ({ name: 'DMA_UNMAP of nothing mapped', data: msg(3, dmaUnmapBody({ iova: 0x8000_0000n + BigInt(int(1024)) * 0x1000n, size: 0x1000n })), expect: 'error' }),
    () => ({ name: 'DMA_UNMAP of part of guest RAM', data: msg(3, dmaUnmapBody({ iova: RAM_IOVA + 0x1000n, size: 0x1000n })), expect: 'error' }),
    () => ({ name: 'DMA_UNMAP bad argsz/flags', data: msg(3, dmaUnmapBody({ argsz: pick([0, 8, 23, 25, 0xffffffff]), flags: pick([0, 1, 4, 0xff]), iova: freeIova(), size: pick([0n, 0x1000n, (1n << 64n) - 1n]) })), expect: 'error' }),
    () => ({ name: 'DMA_UNMAP all', data: msg(3, dmaUnmapBody({ flags: 2, iova: 0n, size: 0n })), expect: 'reply', disrupts: true }),
    // ---- interrupts
    () => ({
      name: 'SET_IRQS bad index/start/count',
      data: msg(8, irqSetBody({
        flags: pick([VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_TRIGGER, VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_MASK, VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_UNMASK, VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER]),
        index: pick([2, 3, 4, 5, 6, 7, 99, 0xffffffff, 0, 1]),
        start: pick([0, 1, 15, 16, 17, 0xffffffff]),
        // start + count wraps past 2^32 (0xffffffff with start 1)
        count: pick([0, 1, 16, 17, 0xffffffff, 0xfffffff0]),
      })),
      expect: 'reply',
      disrupts: true,
    }),
    () => ({
      // libvfio-user let these through (poll.cc RejectWrappingSetIrqs).
      name: 'SET_IRQS start + count wraps',
      data: msg(8, irqSetBody({ flags: pick([0x21, 0x24, 0x09, 0x11, 0x22]), index: pick([0, 2]), start: 1 + int(16), count: 0xffffffff - int(16) })),
      fds: maybe({ kind: 'eventfd' }, 0.3),
      expect: 'error',
    }),
    () => ({
      name: 'SET_IRQS bad flags',
      data: msg(8, irqSetBody({ flags: pick([0, 3, 5, 6, 7, 0x18, 0x28, 0x38, 0x40, 0xffffffff]) | (rand() < 0.5 ? VFIO_IRQ_SET.ACTION_MASK : 0), index: pick([0, 2]), start: 0, count: 1 })),
      expect: 'error',
    }),
    () => {
      const count = 1 + int(4);
      // No fds at all is legal (it disables the range); a count mismatch is not.
      const nfds = count > 1 && rand() < 0.5 ? count - 1 : count + 1;
      return {
        name: 'SET_IRQS eventfds missing',
        data: msg(8, irqSetBody({ flags: VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER, index: pick([0, 2]), start: 0, count })),
        fds: Array.from({ length: nfds }, () => ({ kind: 'eventfd' }) as FdSpec),
        expect: 'error',
      };
    },
    () => ({
      name: 'SET_IRQS with a non-eventfd',
      data: msg(8, irqSetBody({ flags: VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER, index: pick([0, 2]), start: 0, count: 1 })),
      fds: [pick([...fdKinds.filter((f) => f.kind !== 'eventfd'), { kind: 'pipewrite' } as FdSpec, { kind: 'memfd', size: 4096 } as FdSpec])],
      expect: 'error',
    }),
    () => ({
      name: 'SET_IRQS DATA_BOOL short',
      data: msg(8, irqSetBody({ flags: VFIO_IRQ_SET.DATA_BOOL | pick([VFIO_IRQ_SET.ACTION_TRIGGER, VFIO_IRQ_SET.ACTION_MASK]), index: 2, start: 0, count: 8, data: bytes(int(8)) })),
      expect: 'error',
    }),
    () => ({ name: 'SET_IRQS bad argsz', data: msg(8, irqSetBody({ argsz: pick([0, 4, 19]), flags: VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_MASK, index: 2, start: 0, count: 1 })), expect: 'error' }),
    // ---- info queries
    () => {
      const b = Buffer.alloc(32);
      b.writeUInt32LE(pick([0, 8, 31, 32, 0xffffffff]), 0);
      b.writeUInt32LE(pick([0, 2, 4, 7, 8, 9, 99, 0xffffffff]), 8);
      return { name: 'GET_REGION_INFO', data: msg(5, b.subarray(0, pick([32, 12, 8]))), expect: 'reply' };
    },
    () => {
      const b = Buffer.alloc(16);
      b.writeUInt32LE(pick([0, 8, 16, 0xffffffff]), 0);
      b.writeUInt32LE(pick([0, 2, 4, 5, 6, 99, 0xffffffff]), 8);
      return { name: 'GET_IRQ_INFO', data: msg(7, b.subarray(0, pick([16, 12, 4]))), expect: 'reply' };
    },
    () => ({ name: 'GET_INFO short', data: msg(4, bytes(pick([1, 4, 8]))), expect: 'error' }),
    () => ({ name: 'GET_REGION_IO_FDS', data: msg(6, bytes(pick([1, 8, 16, 32]))), expect: 'reply' }),
    () => ({ name: 'DIRTY_PAGES', data: msg(14, bytes(pick([1, 8, 16, 40]))), expect: 'error' }),
    () => ({ name: 'DEVICE_RESET', data: msg(13, Buffer.alloc(0)), expect: 'reply', disrupts: true }),
    // ---- random bytes after a plausible header
    () => ({ name: 'random body', data: msg(pick([2, 3, 4, 5, 6, 7, 8, 9, 10, 14]), bytes(1 + int(96))), fds: maybe(pick(fdKinds), 0.2), expect: 'reply', disrupts: true }),
    // ---- before VERSION
    () => ({ name: 'region read before VERSION', data: msg(9, regionAccess(CONFIG, 0n, 4)), expect: 'error-or-close', beforeVersion: true }),
    () => ({ name: 'truncated first header', data: bytes(1 + int(HEADER_SIZE - 1)), expect: 'close', beforeVersion: true }),
    () => {
      const caps = pick([
        '{',
        '[]',
        '{"capabilities":[]}',
        '{"capabilities":{"max_msg_fds":-1}}',
        '{"capabilities":{"max_msg_fds":100000}}',
        '{"capabilities":{"max_data_xfer_size":0}}',
        '{"capabilities":{"max_data_xfer_size":"x"}}',
        '{"capabilities":{"pgsizes":3}}',
        '{"capabilities":{"migration":{"pgsize":0}}}',
        '{"capabilities":{"twin_socket":{"supported":true}}}',
      ]);
      const major = pick([0, 0, 1, 0xffff]);
      const body = rand() < 0.2 ? bytes(int(4)) : versionBody(major, pick([0, 1, 2, 0xffff]), caps);
      return { name: 'bad VERSION', data: msg(1, body), expect: 'reply', beforeVersion: true };
    },
  ];
  return () => pick(list)();
}

function judge(g: Garbage, o: Outcome): string | undefined {
  switch (g.expect) {
    case 'error':
      return o.kind === 'reply' && o.error !== 0 ? undefined : `expected an error reply, got ${describeOutcome(o)}`;
    case 'reply':
      return o.kind === 'reply' ? undefined : `expected a reply, got ${describeOutcome(o)}`;
    case 'close':
      return o.kind === 'closed' ? undefined : `expected a close, got ${describeOutcome(o)}`;
    case 'error-or-close':
      return (o.kind === 'reply' && o.error !== 0) || o.kind === 'closed' ? undefined : `expected an error or a close, got ${describeOutcome(o)}`;
    case 'none':
      return o.kind === 'timeout' ? undefined : `expected no reply, got ${describeOutcome(o)}`;
  }
}

function describeOutcome(o: Outcome): string {
  return o.kind === 'reply' ? `reply (cmd ${o.cmd}, errno ${o.error})` : o.kind;
}

interface FuzzStats {
  messages: number;
  copies: number;
  bytes: number;
  reconnects: number;
  byName: Record<string, Record<string, number>>;
}

async function fuzz(server: FuzzServer, c: FuzzClient, seed: number, iters: number): Promise<FuzzStats> {
  const rand = rng(seed);
  const int = (n: number) => Math.floor(rand() * n);
  const next = generators(rand, () => c.msgId());
  const chan = new SocketDmaChannel(c);
  const stats: FuzzStats = { messages: 0, copies: 0, bytes: 0, reconnects: 0, byName: {} };
  const maps: { iova: bigint; size: bigint }[] = [];
  let stale = true;
  let attached = false;

  const attach = async () => {
    await c.attach();
    attached = true;
    stats.reconnects++;
    maps.length = 0;
    const e = await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: RAM_IOVA, size: BigInt(RAM_SIZE) }), [{ kind: 'mem', id: RAM_ID }]);
    if (e.error) throw new Error(`DMA_MAP of guest RAM: errno ${e.error}`);
    stale = true;
  };
  const probe = async (what: string) => {
    const v = await c.read32(CONFIG, 0).catch((e: Error) => {
      throw new Error(`after ${what}: the probe failed: ${e.message}`);
    });
    if (v !== VENDOR_DEVICE) throw new Error(`after ${what}: config read 0x${v.toString(16)}`);
  };
  const check = async () => {
    if (stale) {
      // Guest RAM may have been unmapped (DMA_UNMAP all): map it again (EINVAL if still there is fine).
      await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: RAM_IOVA, size: BigInt(RAM_SIZE) }), [{ kind: 'mem', id: RAM_ID }]);
      await chan.setup();
      stale = false;
    }
    const len = 64 * (1 + int(MAX_COPY / 64));
    const data = pattern(seed ^ stats.copies, len);
    const want = crc32(data);
    await c.poke(RAM_ID, SRC_OFF, data);
    await c.poke(RAM_ID, DST_OFF, Buffer.alloc(len));
    const ramAddr = (off: number) => SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(off);
    await chan.copy(ramAddr(SRC_OFF), BigInt(APER_OFF), len);
    let aper = 0;
    for (let o = 0; o < len; o += 65536) {
      const r = await c.regionRead(BAR0, APER_OFF + o, Math.min(65536, len - o));
      if (r.error) throw new Error(`BAR0 read: errno ${r.error}`);
      aper = crc32(r.data, aper);
    }
    if (aper !== want) throw new Error(`copy ${stats.copies} (${len} bytes) guest RAM → aperture: CRC32 ${aper.toString(16)}, expected ${want.toString(16)}`);
    await chan.copy(BigInt(APER_OFF), ramAddr(DST_OFF), len);
    const got = await c.crc(RAM_ID, DST_OFF, len);
    if (got !== want) throw new Error(`copy ${stats.copies} (${len} bytes) aperture → guest RAM: CRC32 ${got.toString(16)}, expected ${want.toString(16)}`);
    stats.copies++;
    stats.bytes += 2 * len;
  };

  await c.mem(RAM_ID, RAM_SIZE);
  await attach();
  for (let i = 0; i < iters; i++) {
    const g = next();
    const count = (stats.byName[g.name] ??= {});
    let o: Outcome;
    if (g.beforeVersion) {
      // A fresh connection: the server drops the old one (LOST_CONN) and must
      // have noticed before it takes the new one (else: EBUSY, try again).
      await c.disconnect();
      attached = false;
      for (let a = 0; ; a++) {
        await c.connect();
        o = await c.send(g.data, { timeoutMs: 5000 });
        if (!(o.kind === 'reply' && o.error === os.constants.errno.EBUSY) || a > 100) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    } else {
      o = await c.send(g.data, { fds: g.fds, timeoutMs: g.expect === 'none' ? 50 : 5000 });
    }
    stats.messages++;
    count[o.kind === 'reply' ? (o.error ? 'error' : 'ok') : o.kind] = (count[o.kind === 'reply' ? (o.error ? 'error' : 'ok') : o.kind] ?? 0) + 1;
    const bad = judge(g, o);
    if (bad) throw new Error(`message ${i} (${g.name}, ${g.data.length} bytes ${g.data.subarray(0, 48).toString('hex')}): ${bad}`);
    if (server.exit) throw new Error(`the server exited after message ${i} (${g.name}): ${JSON.stringify(server.exit)}`);
    if (g.disrupts) {
      // Guest RAM may be gone (DMA_UNMAP all): map it again at once, before
      // another DMA_MAP takes its place (EINVAL when it is still there).
      stale = true;
      if (o.kind === 'reply') await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: RAM_IOVA, size: BigInt(RAM_SIZE) }), [{ kind: 'mem', id: RAM_ID }]);
    }
    if (o.kind === 'reply' && o.error === 0 && g.maps && g.maps.size > 0n) maps.push(g.maps);
    if (o.kind === 'closed' || g.beforeVersion) {
      // A failed negotiation closes the connection; a successful one is a new session too.
      if (g.beforeVersion && o.kind === 'reply' && o.error !== 0) {
        const closed = await c.send(Buffer.alloc(0), { timeoutMs: 5000, expectReply: false });
        if (closed.kind !== 'closed') throw new Error(`message ${i} (${g.name}): no close after a failed VERSION, got ${describeOutcome(closed)}`);
      }
      await attach();
    } else if (!attached) {
      await attach();
    }
    await probe(`message ${i} (${g.name})`);
    // Keep within libvfio-user's 16 DMA regions.
    while (maps.length > 6) {
      const m = maps.shift()!;
      await c.request(VFIO_USER.DMA_UNMAP, dmaUnmapBody({ iova: m.iova, size: m.size }));
    }
    if (i % 25 === 0) await check();
  }
  await check();
  return stats;
}

describe.skipIf(skip !== undefined)(`the native server under protocol garbage${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let dir: string;
  const serverEnv = (): NodeJS.ProcessEnv => {
    const env = { ...process.env };
    // The sanitizer build loads only where its runtime is preloaded: in the server, not in this worker.
    if (process.env.VPHI_FUZZ_ASAN_PRELOAD) env.LD_PRELOAD = process.env.VPHI_FUZZ_ASAN_PRELOAD;
    if (process.env.VPHI_FUZZ_ADDON_PATH) env.VPHI_ADDON_PATH = process.env.VPHI_FUZZ_ADDON_PATH;
    return env;
  };
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vphi-fuzz-'));
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses what libvfio-user mishandled: SET_IRQS start + count wrapping, short DMA_MAP/UNMAP, DMA_UNMAP without its bitmap, DMA ranges past 2^64, config writes past a capability', async () => {
    const socketPath = path.join(dir, 'wrap', 'card.sock');
    const server = await FuzzServer.start(socketPath, serverEnv());
    const c = FuzzClient.start(socketPath);
    try {
      await c.attach();
      for (const flags of [VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER, VFIO_IRQ_SET.DATA_NONE | VFIO_IRQ_SET.ACTION_MASK]) {
        for (const [start, count] of [[1, 0xffffffff], [16, 0xfffffff0]]) {
          expect((await c.request(VFIO_USER.DEVICE_SET_IRQS, irqSetBody({ flags, index: 2, start, count }))).error).toBe(os.constants.errno.EINVAL);
        }
      }
      // With fds (closed by the server) and without a reply wanted: the next request still gets its answer.
      const body = irqSetBody({ flags: 0x24, index: 2, start: 1, count: 0xffffffff });
      expect(judge({ name: 'no reply', data: body, expect: 'none' }, await c.send(Buffer.concat([header(c.msgId(), 8, body.length, { flags: VFIO_USER_F_NO_REPLY }), body]), { fds: [{ kind: 'eventfd' }], timeoutMs: 100 }))).toBeUndefined();
      expect((await c.request(VFIO_USER.DEVICE_SET_IRQS, body, [{ kind: 'eventfd' }, { kind: 'eventfd' }])).error).toBe(os.constants.errno.EINVAL);
      expect(await c.read32(CONFIG, 0)).toBe(VENDOR_DEVICE);
      // A DMA_UNMAP asking for a dirty bitmap without one: libvfio-user read the bitmap's size past the message.
      for (const argsz of [24, 40, 0xffffffff]) {
        expect((await c.request(VFIO_USER.DMA_UNMAP, dmaUnmapBody({ argsz, flags: 1, iova: 0x4000_0000n, size: 0x1000n }))).error).toBe(os.constants.errno.EINVAL);
      }
      // DMA_MAP / DMA_UNMAP whose end passes 2^64 (libvfio-user's pointer arithmetic overflowed).
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: (1n << 64n) - 1n, size: 1n << 32n }))).error).toBe(os.constants.errno.EINVAL);
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: (1n << 64n) - 0x1000n, size: 0x2000n }), [{ kind: 'memfd', size: 0x2000 }])).error).toBe(os.constants.errno.EINVAL);
      expect((await c.request(VFIO_USER.DMA_UNMAP, dmaUnmapBody({ iova: (1n << 64n) - 0x1000n, size: 0x2000n }))).error).toBe(os.constants.errno.EINVAL);
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: 0x1000n, size: 1n << 63n }))).error).toBe(os.constants.errno.EINVAL);
      for (const n of [1, 3, 4, 8, 23]) {
        expect((await c.request(VFIO_USER.DMA_UNMAP, dmaUnmapBody({ flags: 1, iova: 0n, size: 0n }).subarray(0, n))).error).toBe(os.constants.errno.EINVAL);
        expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: 0n, size: 0x1000n }).subarray(0, n))).error).toBe(os.constants.errno.EINVAL);
      }
      // A config write from inside a capability past its end (the MSI-X one; libvfio-user overran a stack copy).
      let cap = (await c.read32(CONFIG, 0x34)) & 0xff;
      while (cap && ((await c.read32(CONFIG, cap)) & 0xff) !== 0x11) cap = ((await c.read32(CONFIG, cap)) >> 8) & 0xff;
      expect(cap).not.toBe(0);
      for (const [at, n] of [[10, 4], [11, 2], [8, 8], [2, 64]]) {
        expect(await c.regionWrite(CONFIG, cap + at, Buffer.alloc(n)), `cap+${at}, ${n} bytes`).toBe(os.constants.errno.EINVAL);
      }
      expect(await c.regionWrite(CONFIG, cap + 8, Buffer.alloc(4))).toBe(0); // within it: fine
      // Well-formed SET_IRQS still reach libvfio-user.
      expect((await c.request(VFIO_USER.DEVICE_SET_IRQS, irqSetBody({ flags: 0x24, index: 2, start: 0, count: 1 }), [{ kind: 'eventfd' }])).error).toBe(0);
    } finally {
      c.kill();
    }
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    expect(server.finding()).toBeUndefined();
  }, 60_000);

  // native/poll.cc serves these itself (ServeTrappedAccess) instead of vfu_run_ctx(): the same answers as handle_region_access().
  it('answers trapped BAR accesses as libvfio-user does: posted writes, several requests in one send, the region end, bad counts', async () => {
    const socketPath = path.join(dir, 'trapped', 'card.sock');
    const server = await FuzzServer.start(socketPath, serverEnv());
    const c = FuzzClient.start(socketPath);
    const { EINVAL } = os.constants.errno;
    const u32 = (v: number) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(v >>> 0, 0);
      return b;
    };
    const write = (offset: number, data: Buffer, flags = 0) => {
      const body = regionAccess(BAR4, BigInt(offset), data.length, data);
      return Buffer.concat([header(c.msgId(), VFIO_USER.REGION_WRITE, body.length, { flags }), body]);
    };
    const read = (id: number, offset: bigint, count: number) => {
      const body = regionAccess(BAR4, offset, count);
      return Buffer.concat([header(id, VFIO_USER.REGION_READ, body.length), body]);
    };
    const next = () => c.send(Buffer.alloc(0), { timeoutMs: 2000 });
    try {
      await c.attach();
      // Two posted writes (no reply) and a read, in one send: one reply, to the read, with both values.
      const r1 = c.msgId();
      let o = await c.send(Buffer.concat([write(SPAD, u32(0x11223344), VFIO_USER_F_NO_REPLY), write(SPAD + 4, u32(0x55667788), VFIO_USER_F_NO_REPLY), read(r1, BigInt(SPAD), 8)]));
      expect(o.kind === 'reply' && [o.msgId, o.cmd, o.flags, o.error, o.raw.readUInt32LE(4)]).toEqual([r1, VFIO_USER.REGION_READ, 1, 0, 16 + 16 + 8]);
      // The reply echoes offset, region and count, then the data.
      expect(o.kind === 'reply' && [o.body.readBigUInt64LE(0), o.body.readUInt32LE(8), o.body.readUInt32LE(12), o.body.readUInt32LE(16), o.body.readUInt32LE(20)]).toEqual([
        BigInt(SPAD), BAR4, 8, 0x11223344, 0x55667788,
      ]);
      // Three reads in one send: three replies, in order.
      const ids = [c.msgId(), c.msgId(), c.msgId()];
      o = await c.send(Buffer.concat(ids.map((id, i) => read(id, BigInt(SPAD + 4 * i), 4))));
      const got = [o];
      got.push(await next(), await next());
      expect(got.map((g) => g.kind === 'reply' && [g.msgId, g.error, g.body.readUInt32LE(0) - SPAD])).toEqual([
        [ids[0], 0, 0],
        [ids[1], 0, 4],
        [ids[2], 0, 8],
      ]);
      expect(got.slice(0, 2).map((g) => g.kind === 'reply' && g.body.readUInt32LE(16))).toEqual([0x11223344, 0x55667788]);
      // A write with its reply: header and the echo, no data.
      o = await c.send(write(SPAD + 8, u32(0xa5a5a5a5)));
      expect(o.kind === 'reply' && [o.error, o.raw.readUInt32LE(4), o.body.readUInt32LE(12)]).toEqual([0, 32, 4]);
      expect(await c.read32(BAR4, SPAD + 8)).toBe(0xa5a5a5a5);
      // The region's end: the last 8 bytes are fine, one past is EINVAL, and so is an offset that wraps 2^64.
      const end = REGION_SIZES[BAR4];
      expect((await c.regionRead(BAR4, end - 8, 8)).error).toBe(0);
      expect((await c.regionRead(BAR4, end - 4, 8)).error).toBe(EINVAL);
      o = await c.send(read(c.msgId(), (1n << 64n) - 4n, 8));
      expect(o.kind === 'reply' && o.error).toBe(EINVAL);
      // A write whose count is not its data's length, and a read carrying data: EINVAL, and a read of 0 bytes is fine (libvfio-user).
      const bad = regionAccess(BAR4, BigInt(SPAD), 8, u32(1));
      o = await c.send(Buffer.concat([header(c.msgId(), VFIO_USER.REGION_WRITE, bad.length), bad]));
      expect(o.kind === 'reply' && o.error).toBe(EINVAL);
      expect(await c.read32(BAR4, SPAD)).toBe(0x11223344);
      expect((await c.regionRead(BAR4, SPAD, 0)).error).toBe(0);
      // Past the 64 bytes served in native/poll.cc and at its edge: answered whole either way.
      for (const n of [64, 65, 256]) {
        const r = await c.regionRead(BAR4, SPAD, n);
        expect([r.error, r.data.length]).toEqual([0, n]);
        expect(r.data.readUInt32LE(0)).toBe(0x11223344);
      }
    } finally {
      c.kill();
    }
    expect(await server.stop()).toEqual({ code: 0, signal: null });
    expect(server.finding()).toBeUndefined();
  });

  it('does not hang when an interrupt "eventfd" is a pipe nobody reads', async () => {
    const socketPath = path.join(dir, 'pipe', 'card.sock');
    const server = await FuzzServer.start(socketPath, serverEnv());
    const c = FuzzClient.start(socketPath);
    try {
      await c.attach();
      const trigger = VFIO_IRQ_SET.DATA_EVENTFD | VFIO_IRQ_SET.ACTION_TRIGGER;
      // Refused (poll.cc RejectBadRequest); were it taken, the doorbells below would block the server in write().
      for (const fds of [[{ kind: 'pipewrite' }], [{ kind: 'eventfd' }, { kind: 'pipewrite' }], [{ kind: 'rofile' }]] as FdSpec[][]) {
        expect((await c.request(VFIO_USER.DEVICE_SET_IRQS, irqSetBody({ flags: trigger, index: 2, start: 0, count: fds.length }), fds)).error).toBe(os.constants.errno.EINVAL);
      }
      // MSI-X on, vector 0 unmasked, doorbell source 0 routed to it (mic_x100_intr_init()).
      let cap = (await c.read32(CONFIG, 0x34)) & 0xff;
      while (cap && ((await c.read32(CONFIG, cap)) & 0xff) !== 0x11) cap = ((await c.read32(CONFIG, cap)) >> 8) & 0xff;
      expect(cap).not.toBe(0);
      const b = Buffer.alloc(2);
      b.writeUInt16LE(0x8000 | ((await c.read32(CONFIG, cap)) >>> 16), 0);
      expect(await c.regionWrite(CONFIG, cap + 2, b)).toBe(0);
      await c.write32(2, 0, 0xfee00000);
      await c.write32(2, 8, 0x31);
      await c.write32(2, 12, 0);
      await c.write32(BAR4, 0x19044, 1); // MXAR0: source 0
      await c.write32(BAR4, 0x19014, 1); // SIAC0
      await c.write32(BAR4, 0x1900c, 1); // SICE0
      // 64 KiB of pipe holds 8192 eventfd writes: ring the doorbell more often than that.
      for (let i = 0; i < 10_000; i++) await c.write32(BAR4, 0x1cc90, 0x80000000); // SDBIC0.DBREQ
      expect(await c.read32(CONFIG, 0)).toBe(VENDOR_DEVICE);
    } finally {
      c.kill();
    }
    expect(server.exit).toBeNull();
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  }, 120_000);

  it('survives card DMA into a mapping beyond the end of its memfd', async () => {
    const socketPath = path.join(dir, 'short', 'card.sock');
    const server = await FuzzServer.start(socketPath, serverEnv());
    const c = FuzzClient.start(socketPath);
    try {
      await c.mem(RAM_ID, RAM_SIZE);
      await c.attach();
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: RAM_IOVA, size: BigInt(RAM_SIZE) }), [{ kind: 'mem', id: RAM_ID }])).error).toBe(0);
      // 64 KiB mapped over a 4 KiB memfd, and 64 KiB at an offset past the end of another.
      const SHORT = 0x4000_0000n;
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: SHORT, size: 0x10000n }), [{ kind: 'memfd', size: 4096 }])).error).toBe(0);
      expect((await c.request(VFIO_USER.DMA_MAP, dmaMapBody({ iova: SHORT + 0x10000n, size: 0x10000n, offset: 0x100000n }), [{ kind: 'memfd', size: 4096 }])).error).toBe(0);
      const chan = new SocketDmaChannel(c);
      await chan.setup();
      await expect(chan.copy(BigInt(APER_OFF), SYSTEM_WINDOW_BASE + SHORT + 0x8000n, 4096)).rejects.toThrow(/DCHERR/);
      await chan.setup();
      await expect(chan.copy(SYSTEM_WINDOW_BASE + SHORT + 0x10000n, BigInt(APER_OFF), 4096)).rejects.toThrow(/DCHERR/);
      // The card still copies through good memory.
      await chan.setup();
      await c.poke(RAM_ID, SRC_OFF, pattern(7, 4096));
      await chan.copy(SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(SRC_OFF), BigInt(APER_OFF), 4096);
      expect(crc32((await c.regionRead(BAR0, APER_OFF, 4096)).data)).toBe(crc32(pattern(7, 4096)));
    } finally {
      c.kill();
    }
    expect(server.exit).toBeNull();
    expect(await server.stop()).toEqual({ code: 0, signal: null });
  }, 60_000);

  for (const seed of SEEDS) {
    it(`answers every bad message and keeps copying (seed 0x${seed.toString(16)}, ${ITERS} messages)`, async () => {
      const socketPath = path.join(dir, `s${seed}`, 'card.sock');
      const server = await FuzzServer.start(socketPath, serverEnv());
      const c = FuzzClient.start(socketPath);
      const t0 = Date.now();
      let stats: FuzzStats | undefined;
      try {
        stats = await fuzz(server, c, seed, ITERS);
      } catch (e) {
        const finding = server.finding();
        throw new Error(
          `protocol fuzz failed (replay: VPHI_FUZZ_SEED=${seed} VPHI_FUZZ_ITERS=${ITERS}): ${(e as Error).message}` +
            `${server.exit ? `\nserver exit: ${JSON.stringify(server.exit)}` : ''}${finding ? `\n${finding}` : `\nserver stderr: ${server.stderr.slice(-3000)}`}`,
          { cause: e },
        );
      } finally {
        c.kill();
      }
      const exit = await server.stop();
      const finding = server.finding();
      expect(finding, `seed 0x${seed.toString(16)}`).toBeUndefined();
      expect(exit, server.stderr.slice(-3000)).toEqual({ code: 0, signal: null });
      if (process.env.VPHI_FUZZ_VERBOSE || ITERS > 10_000) {
        console.log(`seed 0x${seed.toString(16)}: ${JSON.stringify({ ...stats, ms: Date.now() - t0 }, null, 1)}`);
      }
      expect(stats!.copies).toBeGreaterThan(ITERS / 50);
    }, 120_000 + ITERS * 100);
  }
});
