/**
 * The x100 DMA engine (spec dma-engine.md; drivers/dma/mic_x100_dma.[ch]):
 * eight descriptor-ring channels that copy between card GDDR and host
 * memory (through the SMPT), write status words and interrupt the host.
 *
 * State lives in the channel registers (regs.ts), kept current through
 * refs: DHPR (head, written by software), DTPR = DSTAT[16:0] (tail =
 * completion count, written here), DCHERR and DSTAT bit 29 (errors). A
 * channel runs while it is enabled (DCR bit 2·ch+1), has no error and
 * tail != head, one descriptor at a time, in order:
 *
 *   ring    DRAR_HI bit 26 set: 0x80_0000_0000 + SMPT·2^34 + BASE_HI[1:0]·2^32 + DRAR_LO
 *           (system memory through the SMPT); else BASE_HI[3:0]·2^32 + DRAR_LO (GDDR).
 *           N = DRAR_HI[20:4] descriptors of 16 bytes; descriptor i at ring + 16·i,
 *           fetched through the card address space every time (no cached translation).
 *   NOP     (type 0) consumes its slot.
 *   MEMCPY  (type 1) qw0[39:0] → qw1[39:0], qw0[59:46]·64 bytes, as one copy per
 *           contiguous segment; GDDR and host memory in any mix (host → host too,
 *           although the Linux driver says the silicon cannot).
 *   STATUS  (type 2) the 8 bytes of qw0 → qw1[39:0]; qw1 bit 59: interrupt (source
 *           8+ch) once the descriptor is counted complete, unless DCAR masks it
 *           (IM1 for a host-owned channel, IM0 for a card-owned one; owner = DCR bit 2·ch).
 *   GENERAL (type 3, MPSS) qw0[31:0] → qw1[39:0], 4 bytes.
 *   4-15    error.
 *
 * After a descriptor's memory effects: tail = (tail + 1) mod N, DTPR = DSTAT[16:0] = tail.
 *
 * Errors (DCHERR bits in regs.ts) stop the channel at the failing
 * descriptor (the count does not move past it), set DSTAT bit 29, raise the
 * SBOX error source 30 unless DCHERRMSK masks every new bit, and are traced.
 * Nothing the guest writes makes a register access throw. Other channels
 * keep running. The channel stays stopped until a card reset (reset()) or
 * until software clears every DCHERR bit (W1C), which clears DSTAT bit 29
 * and retries the failing descriptor.
 *
 * Scheduling: work runs in slices from env.schedule (at most SLICE_BYTES
 * copied or SLICE_DESCS descriptors each, round-robin over the channels,
 * then the next slice is scheduled), so nothing blocks the event loop for
 * long. A DSTAT or DTPR read first runs a small bounded amount of that
 * channel's pending work synchronously, so a guest busy-polling DSTAT
 * (dma_sync_wait(), mic_dma_tx_status()) always sees progress.
 */
import type { RegisterFile } from '../../../src/regs/file.ts';
import type { Tracer } from '../../../src/trace/tracer.ts';
import { CardAddressError, type CardAddressSpace, type Segment, copySegments } from '../memory.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import {
  DCAR_IM0,
  DCAR_IM1,
  DCHERR_DESC_TYPE,
  DCHERR_DST_ADDR,
  DCHERR_INTERNAL,
  DCHERR_RING_FETCH,
  DCHERR_RING_INDEX,
  DCHERR_SRC_ADDR,
  DESC_GENERAL,
  DESC_MEMCPY,
  DESC_NOP,
  DESC_STATUS,
  DESC_TYPE_NAMES,
  DMA_BLOCKS,
  DMA_CHANNELS,
  DRAR_HI_SIZE_MASK,
  DRAR_HI_SIZE_SHIFT,
  DRAR_HI_SMPT_MASK,
  DRAR_HI_SMPT_SHIFT,
  DRAR_HI_SYS,
  DSTAT_COUNT_MASK,
  DSTAT_QUIESCE,
} from './regs.ts';

export interface DmaEnv {
  /** BAR4 (already contains DMA_BLOCKS). */
  regs: RegisterFile;
  mem: CardAddressSpace;
  /** InterruptController.raise: DMA channel ch is source 8+ch, the SBOX error source is 30. */
  raise(source: number): void;
  /** Run later on the event loop (setImmediate in production; a manual queue in tests). */
  schedule(fn: () => void): void;
  tracer: Tracer;
  /** Optional operational log: channel errors are reported here even with the trace off. */
  log?(level: 'warn' | 'error', msg: string): void;
}

/** Per-slice budget of the scheduled work (all channels together). */
export const SLICE_BYTES = 8 << 20;
export const SLICE_DESCS = 256;
/** What one channel may do in one round-robin turn within a slice. */
export const TURN_BYTES = 2 << 20;
export const TURN_DESCS = 64;
/** Work a DSTAT/DTPR read runs synchronously before answering. */
export const POLL_BYTES = 1 << 20;
export const POLL_DESCS = 16;

/** Interrupt source of DMA channel ch (SICR0 bit 8+ch). */
export const dmaSource = (ch: number): number => 8 + ch;
/** The SBOX error source (SICR0 bit 30). */
export const DMA_ERROR_SOURCE = 30;

interface Ref {
  get(): number;
  set(v: number): void;
}

/** One channel's registers. */
class Channel {
  readonly dcar: Ref;
  readonly dhpr: Ref;
  readonly dtpr: Ref;
  readonly drarLo: Ref;
  readonly drarHi: Ref;
  readonly dstat: Ref;
  readonly dcherr: Ref;
  readonly dcherrmsk: Ref;
  /** DCR bit masks. */
  readonly ownerBit: number;
  readonly enableBit: number;

  constructor(
    readonly n: number,
    regs: RegisterFile,
  ) {
    this.dcar = regs.ref(`DCAR${n}`);
    this.dhpr = regs.ref(`DHPR${n}`);
    this.dtpr = regs.ref(`DTPR${n}`);
    this.drarLo = regs.ref(`DRAR_LO${n}`);
    this.drarHi = regs.ref(`DRAR_HI${n}`);
    this.dstat = regs.ref(`DSTAT${n}`);
    this.dcherr = regs.ref(`DCHERR${n}`);
    this.dcherrmsk = regs.ref(`DCHERRMSK${n}`);
    this.ownerBit = 1 << (2 * n);
    this.enableBit = 2 << (2 * n);
  }

  /** Ring size N in descriptors. */
  size(): number {
    return (this.drarHi.get() >>> DRAR_HI_SIZE_SHIFT) & DRAR_HI_SIZE_MASK;
  }

  /** Card address of descriptor 0. */
  ringBase(): bigint {
    const hi = this.drarHi.get();
    const lo = BigInt(this.drarLo.get());
    if (hi & DRAR_HI_SYS) {
      const entry = BigInt((hi >>> DRAR_HI_SMPT_SHIFT) & DRAR_HI_SMPT_MASK);
      return SYSTEM_WINDOW_BASE + (entry << 34n) + (BigInt(hi & 0x3) << 32n) + lo;
    }
    return (BigInt(hi & 0xf) << 32n) + lo;
  }
}

/** A channel's state, for diagnostics and tests. */
export interface ChannelState {
  head: number;
  tail: number;
  size: number;
  ring: bigint;
  enabled: boolean;
  hostOwned: boolean;
  error: number;
}

const u32 = (b: Uint8Array, o: number): number => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
const addr40 = (lo: number, hi: number): bigint => (BigInt(hi & 0xff) << 32n) | BigInt(lo);
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

/** Little-endian store of `len` bytes (4 or 8) taken from words w0, w1. */
function storeWords(to: Segment[], len: number, w0: number, w1: number): void {
  let si = 0, so = 0;
  for (let k = 0; k < len; k++) {
    while (so >= to[si].view.byteLength) { si++; so = 0; }
    const w = k < 4 ? w0 : w1;
    to[si].view[so++] = (w >>> ((k & 3) * 8)) & 0xff;
  }
}

/** Thrown inside step() to stop the channel with a DCHERR bit. */
class ChannelFault {
  constructor(
    readonly bit: number,
    readonly reason: string,
  ) {}
}

export class DmaEngine {
  private readonly chans: Channel[];
  private readonly dcr: Ref;
  private scheduled = false;
  /** Re-entrancy guard: a poll from inside the engine does nothing. */
  private busy = false;
  /** Work done by the current run() call. */
  private runBytes = 0;
  private runDescs = 0;

  /** Counters for diagnostics and tests. */
  readonly stats = { slices: 0, descriptors: 0, bytes: 0, errors: 0, interrupts: 0 };

  constructor(private readonly env: DmaEnv) {
    const regs = env.regs;
    this.dcr = regs.ref('DCR');
    this.chans = Array.from({ length: DMA_CHANNELS }, (_, n) => new Channel(n, regs));
    for (const c of this.chans) {
      regs.hook(`DHPR${c.n}`, {
        write: (v, old) => this.headWrite(c, v, old),
        postWrite: (_v, old, now) => {
          if (now !== old && this.runnable(c)) this.kick();
        },
      });
      regs.hook(`DSTAT${c.n}`, { read: () => { this.poll(c); return c.dstat.get(); } });
      regs.hook(`DTPR${c.n}`, { read: () => { this.poll(c); return c.dtpr.get(); } });
      regs.hook(`DCHERR${c.n}`, {
        postWrite: (_v, old, now) => {
          if (old !== 0 && now === 0) {
            c.dstat.set(c.dstat.get() & ~DSTAT_QUIESCE);
            if (this.env.tracer.enabled) this.env.tracer.event('dma-engine', { ch: c.n, action: 'resume', tail: c.dtpr.get() });
            if (this.runnable(c)) this.kick();
          }
        },
      });
    }
    regs.hook('DCR', {
      postWrite: (_v, old, now) => {
        const enabled = now & ~old;
        for (const c of this.chans) {
          if (enabled & c.enableBit && this.runnable(c)) this.kick();
        }
      },
    });
  }

  /** Card reset (RGCR): every DMA register back to its reset value; all channels stop. */
  reset(): void {
    for (const b of DMA_BLOCKS) for (const r of b.regs) this.env.regs.set(r.name, r.reset);
    if (this.env.tracer.enabled) this.env.tracer.event('dma-engine', { action: 'reset' });
  }

  /** A channel's state (diagnostics). */
  channel(ch: number): ChannelState {
    const c = this.chans[ch];
    return {
      head: c.dhpr.get(),
      tail: c.dtpr.get(),
      size: c.size(),
      ring: c.ringBase(),
      enabled: (this.dcr.get() & c.enableBit) !== 0,
      hostOwned: (this.dcr.get() & c.ownerBit) !== 0,
      error: c.dcherr.get(),
    };
  }

  /** True while some channel has work it may do. */
  get pending(): boolean {
    return this.chans.some((c) => this.runnable(c));
  }

  private runnable(c: Channel): boolean {
    return (this.dcr.get() & c.enableBit) !== 0 && c.dcherr.get() === 0 && c.dhpr.get() !== c.dtpr.get();
  }

  private kick(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    this.env.schedule(this.slice);
  }

  /** One scheduled slice: round-robin over the channels within the slice budget. */
  private readonly slice = (): void => {
    this.scheduled = false;
    if (this.busy) { this.kick(); return; }
    this.stats.slices++;
    let bytes = SLICE_BYTES, descs = SLICE_DESCS;
    let progress = true;
    while (progress && bytes > 0 && descs > 0) {
      progress = false;
      for (const c of this.chans) {
        if (bytes <= 0 || descs <= 0) break;
        if (!this.runnable(c)) continue;
        this.run(c, Math.min(TURN_BYTES, bytes), Math.min(TURN_DESCS, descs));
        bytes -= this.runBytes;
        descs -= this.runDescs;
        if (this.runDescs > 0) progress = true;
      }
    }
    if (this.pending) this.kick();
  };

  /** A DSTAT/DTPR read: run a little of this channel's work first. */
  private poll(c: Channel): void {
    if (this.busy || !this.runnable(c)) return;
    this.run(c, POLL_BYTES, POLL_DESCS);
    if (this.runnable(c)) this.kick();
  }

  /** Execute descriptors of one channel until it stops or a budget is used up. */
  private run(c: Channel, maxBytes: number, maxDescs: number): void {
    this.runBytes = 0;
    this.runDescs = 0;
    this.busy = true;
    try {
      while (this.runDescs < maxDescs && this.runBytes < maxBytes && this.runnable(c)) {
        try {
          this.step(c);
        } catch (e) {
          if (e instanceof ChannelFault) this.fail(c, e.bit, e.reason);
          else this.fail(c, DCHERR_INTERNAL, `internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        }
      }
    } finally {
      this.busy = false;
    }
  }

  /** Execute the descriptor at the tail; on success advance the tail. Throws ChannelFault. */
  private step(c: Channel): void {
    const t = this.env.tracer;
    const mem = this.env.mem;
    const tail = c.dtpr.get();
    const size = c.size();
    if (tail >= size) throw new ChannelFault(DCHERR_RING_INDEX, `tail ${tail} is outside the ring of ${size} descriptors`);
    const at = c.ringBase() + BigInt(tail) * 16n;
    let d: Uint8Array;
    try {
      d = mem.view(at, 16, false);
    } catch (e) {
      throw fault(e, DCHERR_RING_FETCH, `descriptor ${tail} at ${hex(at)}`);
    }
    const w0 = u32(d, 0), w1 = u32(d, 4), w2 = u32(d, 8), w3 = u32(d, 12);
    const type = w3 >>> 28;
    let intr = false;
    switch (type) {
      case DESC_NOP:
        if (t.enabled) t.dma({ op: 'read', ch: c.n, idx: tail, type: 'NOP' });
        break;
      case DESC_MEMCPY: {
        const src = addr40(w0, w1);
        const dst = addr40(w2, w3);
        const len = ((w1 >>> 14) & 0x3fff) * 64;
        if (len > 0) {
          let from: Segment[], to: Segment[];
          try {
            from = mem.segments(src, len, false);
          } catch (e) {
            throw fault(e, DCHERR_SRC_ADDR, `MEMCPY ${tail} source ${hex(src)}+${hex(len)}`);
          }
          try {
            to = mem.segments(dst, len, true);
          } catch (e) {
            throw fault(e, DCHERR_DST_ADDR, `MEMCPY ${tail} destination ${hex(dst)}+${hex(len)}`);
          }
          copySegments(to, from);
        }
        this.runBytes += len;
        this.stats.bytes += len;
        if (t.enabled) t.dma({ op: 'copy', ch: c.n, idx: tail, type: 'MEMCPY', src: hex(src), dst: hex(dst), len });
        break;
      }
      case DESC_STATUS:
      case DESC_GENERAL: {
        const dst = addr40(w2, w3);
        const len = type === DESC_STATUS ? 8 : 4;
        let to: Segment[];
        try {
          to = mem.segments(dst, len, true);
        } catch (e) {
          throw fault(e, DCHERR_DST_ADDR, `${DESC_TYPE_NAMES[type]} ${tail} destination ${hex(dst)}`);
        }
        storeWords(to, len, w0, w1);
        intr = type === DESC_STATUS && ((w3 >>> 27) & 1) === 1;
        if (t.enabled) {
          const val = type === DESC_STATUS ? (BigInt(w1) << 32n) | BigInt(w0) : BigInt(w0);
          t.dma({ op: 'write', ch: c.n, idx: tail, type: DESC_TYPE_NAMES[type], dst: hex(dst), len, val: hex(val), ...(intr ? { intr: true } : {}) });
        }
        break;
      }
      default:
        throw new ChannelFault(DCHERR_DESC_TYPE, `descriptor ${tail} at ${hex(at)} has type ${type} (${DESC_TYPE_NAMES[type]}); qw1 = ${hex((BigInt(w3) << 32n) | BigInt(w2))}`);
    }
    // The descriptor is complete: count it, then interrupt.
    const next = tail + 1 >= size ? 0 : tail + 1;
    c.dtpr.set(next);
    c.dstat.set(((c.dstat.get() & ~DSTAT_COUNT_MASK) | next) >>> 0);
    this.runDescs++;
    this.stats.descriptors++;
    if (intr) this.interrupt(c);
  }

  /** A STATUS descriptor asked for an interrupt. */
  private interrupt(c: Channel): void {
    const dcr = this.dcr.get();
    const mask = dcr & c.ownerBit ? DCAR_IM1 : DCAR_IM0;
    const masked = (c.dcar.get() & mask) !== 0;
    if (this.env.tracer.enabled) this.env.tracer.event('dma-engine', { ch: c.n, action: masked ? 'interrupt-masked' : 'interrupt', src: dmaSource(c.n) });
    if (masked) return;
    this.stats.interrupts++;
    this.env.raise(dmaSource(c.n));
  }

  /** A DHPR write: the new head, or the old one if the value is refused. */
  private headWrite(c: Channel, v: number, old: number): number {
    const size = c.size();
    if (v >= size) {
      this.fail(c, DCHERR_RING_INDEX, `DHPR${c.n} written with ${v}, beyond the ring of ${size} descriptors`);
      return old;
    }
    if (v === old) {
      // Real hardware would read this as "the ring was filled completely"; Linux never does it.
      if (this.env.tracer.enabled) this.env.tracer.event('dma-engine', { ch: c.n, action: 'head-unchanged', head: v });
      return old;
    }
    return v;
  }

  /** Stop a channel with an error. */
  private fail(c: Channel, bit: number, reason: string): void {
    const fresh = bit & ~c.dcherr.get();
    c.dcherr.set(c.dcherr.get() | bit);
    c.dstat.set((c.dstat.get() | DSTAT_QUIESCE) >>> 0);
    this.stats.errors++;
    const t = this.env.tracer;
    if (t.enabled) t.dma({ op: 'error', ch: c.n, idx: c.dtpr.get(), err: bit, dcherr: c.dcherr.get(), reason });
    this.env.log?.('error', `DMA channel ${c.n} stopped at descriptor ${c.dtpr.get()} (DCHERR 0x${c.dcherr.get().toString(16)}): ${reason}`);
    if (fresh & ~c.dcherrmsk.get()) this.env.raise(DMA_ERROR_SOURCE);
  }
}

/** Map a memory failure to a channel fault; anything else is an emulator bug and propagates. */
function fault(e: unknown, bit: number, what: string): unknown {
  if (e instanceof CardAddressError) return new ChannelFault(bit, `${what}: ${e.message}`);
  return e;
}
