/**
 * The x100 DMA engine (drivers/dma/mic_x100_dma.[ch]): eight
 * descriptor-ring channels that copy between card GDDR and host memory
 * (through the SMPT), write status words and interrupt their owner: the
 * host (SICR0) for a channel whose DCR owner bit is 1, the card's own APIC
 * (env.raiseCard) for one whose bit is 0 (mic_dma_chan_set_owner():
 * MIC_DMA_CHAN_MIC = 0, MIC_DMA_CHAN_HOST = 1).
 *
 * State lives in the channel registers (regs.ts), kept current through
 * refs: DHPR (head, written by software), DTPR = DSTAT.COUNT (tail =
 * completion count, written here), DCHERR and DSTAT.QUIESCE (errors). A
 * channel runs while DCR enables it, has no error and tail != head, one
 * descriptor at a time, in order:
 *
 *   ring    DRAR_HI.SYS: the system window, SMPT page DRAR_HI.SMPT, offset
 *           (BASE_HI:DRAR_LO) within the page; else BASE_HI:DRAR_LO in GDDR.
 *           DRAR_HI.SIZE descriptors (descriptor.ts); descriptor i at ring + 16·i,
 *           fetched through the card address space every time (no cached translation).
 *   NOP     consumes its slot.
 *   MEMCPY  SRC → DST, LEN·64 bytes, as one copy per contiguous segment; GDDR and
 *           host memory in any mix (host → host too, although the Linux driver
 *           says the silicon cannot).
 *   STATUS  DATA (8 bytes) → DST; INTR: interrupt once the descriptor is counted
 *           complete, unless DCAR masks it: a host-owned channel raises host
 *           source 8+ch (masked by IM1), a card-owned one raiseCard(ch,
 *           'completion') (masked by IM0) and never touches SICR0.
 *   GENERAL (MPSS) DATA (4 bytes) → DST.
 *   4-15    error.
 *
 * After a descriptor's memory effects: tail = (tail + 1) mod N, DTPR = DSTAT.COUNT = tail.
 *
 * Errors (DCHERR bits in regs.ts) stop the channel at the failing
 * descriptor (the count does not move past it), set DSTAT.QUIESCE, raise
 * the error to the channel's owner unless DCHERRMSK masks every new bit
 * (host: SBOX error source 30; card: raiseCard(ch, 'error')), and are
 * logged as warnings (and traced). Nothing the guest writes makes a
 * register access throw. Other channels keep running. The channel stays
 * stopped until a card reset or until software clears every DCHERR bit
 * (W1C), which clears QUIESCE and retries the failing descriptor.
 *
 * Scheduling: work runs in slices from env.schedule (at most SLICE_BYTES
 * copied or SLICE_DESCS descriptors each, round-robin over the channels,
 * then the next slice is scheduled), so nothing blocks the event loop for
 * long. A DSTAT or DTPR read first runs a small bounded amount of that
 * channel's pending work synchronously, so a guest busy-polling DSTAT
 * (dma_sync_wait(), mic_dma_tx_status()) always sees progress.
 */
import { decodeFields, type Field } from '../../../src/regs/define.ts';
import type { RegisterFile } from '../../../src/regs/file.ts';
import { type Tracer, warn } from '../../../src/trace/tracer.ts';
import { CardAddressError, type CardAddressSpace, type Segment, copySegments } from '../memory.ts';
import { SMPT_PAGE_SHIFT, SMPT_PAGE_SIZE, SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { DMA_CH, DMA_CHANNELS, dcrEnable, dcrOwner } from './regs.ts';
import type { DmaFaults } from '../faults/faults.ts';
import {
  DESC,
  DESC_GENERAL,
  DESC_MEMCPY,
  DESC_NOP,
  DESC_SIZE,
  DESC_STATUS,
  DESC_TYPE_NAMES,
  GENERAL_DESC,
  MEMCPY_DESC,
  STATUS_DESC,
} from './descriptor.ts';

export interface DmaEnv {
  /** BAR4 (already contains DMA_BLOCKS). */
  regs: RegisterFile;
  mem: CardAddressSpace;
  /** InterruptController.raise, for host-owned channels: channel ch is source 8+ch, the SBOX error source is 30. */
  raise(source: number): void;
  /** The card's own interrupt for a card-owned channel (DCR owner bit 0): its card-side driver listens. */
  raiseCard(ch: number, kind: CardDmaInterrupt): void;
  /** Run later on the event loop (setImmediate in production; a manual queue in tests). */
  schedule(fn: () => void): void;
  /** Trace events, and warnings (channel errors) even with the trace off. */
  tracer: Tracer;
  /** Injected faults (faults/faults.ts): a descriptor failure, a throttled channel. */
  faults?: DmaFaults;
  /** A timer (the injected clock), for a throttled channel's pause. */
  after?(ms: number, fn: () => void): () => void;
  /** With tracing on: what a MEMCPY serves (the SCIF RMA endpoint, windows and copy), added to its trace event as `rma`. */
  attribute?(src: bigint, dst: bigint): Record<string, unknown> | undefined;
}

/** Why a card-owned channel interrupts the card. */
export type CardDmaInterrupt = 'completion' | 'error';

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

// The fields the engine reads and writes, by name.
const { IM0, IM1 } = DMA_CH.DCAR.f;
const { BASE_HI, SIZE, SMPT, SYS } = DMA_CH.DRAR_HI.f;
const { COUNT, QUIESCE } = DMA_CH.DSTAT.f;
const { DESC_TYPE, SRC_ADDR, DST_ADDR, RING_FETCH, RING_INDEX, INTERNAL } = DMA_CH.DCHERR.f;
const TYPE = DESC.f.TYPE;
const MEMCPY = MEMCPY_DESC.f;
const STATUS = STATUS_DESC.f;
const GENERAL = GENERAL_DESC.f;

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
  /** This channel's DCR bits. */
  readonly owner: Field;
  readonly enable: Field;
  /** Paused by an injected dma-slow until its timer ends it. */
  held: (() => void) | null = null;

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
    this.owner = dcrOwner(n);
    this.enable = dcrEnable(n);
  }

  /** Ring size N in descriptors. */
  size(): number {
    return SIZE.ex(this.drarHi.get());
  }

  /** Card address of descriptor 0. */
  ringBase(): bigint {
    const hi = this.drarHi.get();
    const addr = (BigInt(BASE_HI.ex(hi)) << 32n) | BigInt(this.drarLo.get());
    // mic_dma_chan_set_desc_ring(): a system ring is an SMPT entry and an offset in its page.
    if (SYS.isSet(hi)) return SYSTEM_WINDOW_BASE + (BigInt(SMPT.ex(hi)) << SMPT_PAGE_SHIFT) + (addr & (SMPT_PAGE_SIZE - 1n));
    return addr;
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
const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
/** The little-endian value of `b` (at most 8 bytes). */
const le = (b: Uint8Array): bigint => b.reduceRight((v, x) => (v << 8n) | BigInt(x), 0n);

/** Thrown inside step() to stop the channel with a DCHERR bit. */
class ChannelFault {
  constructor(
    readonly err: Field,
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

  /** The descriptor being executed, as 32-bit words. */
  private readonly words = new Uint32Array(DESC_SIZE / 4);

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
            c.dstat.set(QUIESCE.dp(c.dstat.get(), 0));
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
          if (c.enable.isSet(enabled) && this.runnable(c)) this.kick();
        }
      },
    });
  }

  /**
   * After a card reset (RGCR) put the DMA registers back (regs.reset('card'):
   * they are declared cardReset 'clear'): every channel is disabled, so the
   * engine stops; nothing else of it survives in memory.
   */
  reset(): void {
    for (const c of this.chans) {
      c.held?.();
      c.held = null;
    }
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
      enabled: c.enable.isSet(this.dcr.get()),
      hostOwned: c.owner.isSet(this.dcr.get()),
      error: c.dcherr.get(),
    };
  }

  /** True while some channel has work it may do. */
  get pending(): boolean {
    return this.chans.some((c) => this.runnable(c));
  }

  private runnable(c: Channel): boolean {
    return c.enable.isSet(this.dcr.get()) && c.dcherr.get() === 0 && c.dhpr.get() !== c.dtpr.get() && !c.held;
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
          if (e instanceof ChannelFault) this.fail(c, e.err, e.reason);
          else this.fail(c, INTERNAL, `internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
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
    if (tail >= size) throw new ChannelFault(RING_INDEX, `tail ${tail} is outside the ring of ${size} descriptors`);
    const injected = this.env.faults?.descriptor(c.n, tail);
    if (injected) throw new ChannelFault(DMA_CH.DCHERR.f[injected], `injected fault (${injected})`);
    const at = c.ringBase() + BigInt(tail) * BigInt(DESC_SIZE);
    let d: Uint8Array;
    try {
      d = mem.view(at, DESC_SIZE, false);
    } catch (e) {
      throw fault(e, RING_FETCH, `descriptor ${tail} at ${hex(at)}`);
    }
    const w = this.words;
    for (let i = 0; i < w.length; i++) w[i] = u32(d, 4 * i);
    const type = TYPE.ex(w);
    let intr = false;
    let moved = 0;
    switch (type) {
      case DESC_NOP:
        if (t.enabled) t.dma({ op: 'read', ch: c.n, idx: tail, type: 'NOP' });
        break;
      case DESC_MEMCPY: {
        const src = BigInt(MEMCPY.SRC.ex(w));
        const dst = BigInt(MEMCPY.DST.ex(w));
        const len = MEMCPY.LEN.ex(w) * 64;
        if (len > 0) {
          let from: Segment[], to: Segment[];
          try {
            from = mem.segments(src, len, false);
          } catch (e) {
            throw fault(e, SRC_ADDR, `MEMCPY ${tail} source ${hex(src)}+${hex(len)}`);
          }
          try {
            to = mem.segments(dst, len, true);
          } catch (e) {
            throw fault(e, DST_ADDR, `MEMCPY ${tail} destination ${hex(dst)}+${hex(len)}`);
          }
          copySegments(to, from);
        }
        this.runBytes += len;
        this.stats.bytes += len;
        moved = len;
        if (t.enabled) {
          const rma = this.env.attribute?.(src, dst);
          t.dma({ op: 'copy', ch: c.n, idx: tail, type: 'MEMCPY', src: hex(src), dst: hex(dst), len, ...(rma ? { rma } : {}) });
        }
        break;
      }
      case DESC_STATUS:
      case DESC_GENERAL: {
        const f = type === DESC_STATUS ? STATUS : GENERAL;
        const dst = BigInt(f.DST.ex(w));
        const data = f.DATA.bytes(d);
        let to: Segment[];
        try {
          to = mem.segments(dst, data.length, true);
        } catch (e) {
          throw fault(e, DST_ADDR, `${DESC_TYPE_NAMES[type]} ${tail} destination ${hex(dst)}`);
        }
        intr = type === DESC_STATUS && STATUS.INTR.ex(w) === 1;
        if (t.enabled) {
          t.dma({ op: 'write', ch: c.n, idx: tail, type: DESC_TYPE_NAMES[type], dst: hex(dst), len: data.length, val: hex(le(data)), ...(intr ? { intr: true } : {}) });
        }
        copySegments(to, [{ addr: at, view: data }]);
        break;
      }
      default:
        throw new ChannelFault(DESC_TYPE, `descriptor ${tail} at ${hex(at)} has type ${type} (${DESC_TYPE_NAMES[type]}); qw1 = ${hex((BigInt(w[3]) << 32n) | BigInt(w[2]))}`);
    }
    // The descriptor is complete: count it, then interrupt.
    const next = tail + 1 >= size ? 0 : tail + 1;
    c.dtpr.set(next);
    c.dstat.set(COUNT.dp(c.dstat.get(), next));
    this.runDescs++;
    this.stats.descriptors++;
    if (intr) this.interrupt(c);
    if (moved && this.env.faults) this.throttle(c, moved);
  }

  /** dma-slow: the channel pauses for the time its bytes would take at the set rate. */
  private throttle(c: Channel, bytes: number): void {
    const ms = this.env.faults!.throttle(c.n, bytes);
    if (ms <= 0 || !this.env.after) return;
    c.held = this.env.after(ms, () => {
      c.held = null;
      if (this.runnable(c)) this.kick();
    });
  }

  /** A STATUS descriptor asked for an interrupt. */
  private interrupt(c: Channel): void {
    const host = this.hostOwned(c);
    const masked = (host ? IM1 : IM0).isSet(c.dcar.get());
    if (this.env.tracer.enabled) {
      this.env.tracer.event('dma-engine', { ch: c.n, action: masked ? 'interrupt-masked' : 'interrupt', ...(host ? { src: dmaSource(c.n) } : { to: 'card' }) });
    }
    if (masked) return;
    this.stats.interrupts++;
    if (host) this.env.raise(dmaSource(c.n));
    else this.env.raiseCard(c.n, 'completion');
  }

  /** DCR's owner bit: 1 = host (MIC_DMA_CHAN_HOST), 0 = card (MIC_DMA_CHAN_MIC). */
  private hostOwned(c: Channel): boolean {
    return c.owner.isSet(this.dcr.get());
  }

  /** A DHPR write: the new head, or the old one if the value is refused. */
  private headWrite(c: Channel, v: number, old: number): number {
    const size = c.size();
    if (v >= size) {
      this.fail(c, RING_INDEX, `DHPR${c.n} written with ${v}, beyond the ring of ${size} descriptors`);
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
  private fail(c: Channel, err: Field, reason: string): void {
    const fresh = err.mask & ~c.dcherr.get();
    const dcherr = (c.dcherr.get() | err.mask) >>> 0;
    c.dcherr.set(dcherr);
    c.dstat.set(QUIESCE.dp(c.dstat.get(), 1));
    this.stats.errors++;
    const t = this.env.tracer;
    const idx = c.dtpr.get();
    if (t.enabled) t.dma({ op: 'error', ch: c.n, idx, err: err.mask, dcherr, reason });
    const names = Object.entries(decodeFields(DMA_CH.DCHERR, dcherr)).filter(([, v]) => v).map(([k]) => k);
    warn(t, err === INTERNAL ? 'internal' : 'dma-error',
      `DMA channel ${c.n} stopped at descriptor ${idx}: DCHERR${c.n} = ${hex(dcherr)} {${names.join(' ')}}: ${reason}`,
      { ch: c.n, idx, dcherr, err: err.name });
    if (!(fresh & ~c.dcherrmsk.get())) return;
    if (this.hostOwned(c)) this.env.raise(DMA_ERROR_SOURCE);
    else this.env.raiseCard(c.n, 'error');
  }
}

/** Map a memory failure to a channel fault; anything else is an emulator bug and propagates. */
function fault(e: unknown, err: Field, what: string): unknown {
  if (e instanceof CardAddressError) return new ChannelFault(err, `${what}: ${e.message}`);
  return e;
}
