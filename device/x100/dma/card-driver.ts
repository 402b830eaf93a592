/**
 * The card's own DMA driver for channels 4-7: drivers/dma/mic_x100_dma.c
 * as the card's Linux ran it (owner MIC_DMA_CHAN_MIC, start_ch 4,
 * MIC_DMA_MAX_XFER_SIZE_CARD), driving the engine through BAR4 (the card's
 * SBOX MMIO at MIC_X100_MMIO_BASE, card/mic_x100.c) with the register
 * file's normal accesses, so a card copy is the same path and the same
 * trace as a host one.
 *
 * Per channel, on first use (mic_dma_alloc_chan_resources()): a descriptor
 * ring and a status_dest line in GDDR from the injected allocator, then
 * mic_dma_chan_setup(): owner, disable, mask IM0, DCHERRMSK = 0, DRAR,
 * head = DTPR, unmask, enable, mic_dma_check_chan().
 *
 * copy(dst, src, len) copies between card physical addresses (GDDR, or the
 * system window 0x80_0000_0000+ through the SMPT), as scif_rma_copy() on
 * the card did: the engine moves whole cache lines, so
 *   - src and dst with the same offset in a line: the ragged head and tail
 *     by CPU, the body by DMA (scif_rma_list_dma_copy_aligned());
 *   - different offsets: the CPU copies the source into a GDDR bounce
 *     buffer at dst's offset, then as above from the bounce buffer
 *     (scif_rma_list_dma_copy_unaligned() bounces through a kernel buffer).
 * The body is split into MEMCPY descriptors of at most
 * MIC_DMA_MAX_XFER_SIZE_CARD and closed by mic_dma_prog_intr()'s two STATUS
 * descriptors, the second with the interrupt; DHPR is written once per
 * batch (mic_dma_issue_pending()). Completion is the count in DSTAT
 * (mic_dma_cleanup()), read from the card interrupt's thread
 * (mic_dma_thread_fn()) or, if no interrupt comes, by a periodic poll.
 *
 * Copies on one channel run one after another; copy() picks channels
 * round-robin, reserve() gives a caller its own (scif_reserve_dma_chan()).
 *
 * An engine error (DCHERR != 0) rejects the copy with CardDmaError naming
 * the bits. Linux has no recovery short of a card reset (mic_dma_check_chan()
 * refuses a channel with DCHERR set); this driver recovers as the engine
 * allows: disable, turn the failed batch's remaining slots into NOPs,
 * clear DCHERR (W1C), enable, and let the engine consume them.
 */
import { decodeFields, type Field } from '../../../src/regs/define.ts';
import type { RegisterFile } from '../../../src/regs/file.ts';
import type { Tracer } from '../../../src/trace/tracer.ts';
import type { CardAddressSpace } from '../memory.ts';
import type { CardDmaIrq } from './card-irq.ts';
import type { CardDmaInterrupt } from './engine.ts';
import { DESC_MEMCPY, DESC_SIZE, DESC_STATUS, MEMCPY_DESC, STATUS_DESC } from './descriptor.ts';
import {
  DCAR,
  DCHERR,
  DCHERRMSK,
  DCR_OFFSET,
  DHPR,
  DMA_CH,
  DMA_CHANNELS,
  DRAR_HI,
  DRAR_LO,
  DSTAT,
  DTPR,
  dcrEnable,
  dcrOwner,
  dmaReg,
} from './regs.ts';

/** MIC_DMA_ALIGN_BYTES: the engine copies whole 64-byte lines. */
export const CARD_DMA_ALIGN = 64;
/** MIC_DMA_MAX_XFER_SIZE_CARD: bytes per MEMCPY descriptor. */
export const CARD_MAX_XFER = (1 << 20) - CARD_DMA_ALIGN;
/** The card's channels (mic_dma_dev_reg(): start_ch 4, MIC_DMA_NUM_CHAN). */
export const CARD_CHANNELS: readonly number[] = [4, 5, 6, 7];
/**
 * Default ring size in descriptors. Linux uses MIC_DMA_DESC_RX_SIZE
 * (128 Ki − 4, 2 MiB of GDDR per channel); 1024 slots hold 1 GiB of copy per
 * batch and keep the four rings in 64 KiB.
 */
export const CARD_RING_SIZE = 1024;
/** Bounce buffer per channel for copies whose ends sit at different line offsets. */
export const CARD_BOUNCE_BYTES = 64 << 10;
/** The poll fallback's period while a copy waits. */
export const CARD_POLL_MS = 10;

/** GDDR for rings, status lines and bounce buffers (CardAllocator: zeroed, page granular). */
export interface CardDmaAllocator {
  alloc(len: number): bigint;
}

export interface CardDmaEnv {
  /** BAR4: the card's SBOX MMIO, written through its normal access path. */
  regs: RegisterFile;
  /** The card CPU's view of memory: descriptor stores and the ragged parts of a copy. */
  mem: CardAddressSpace;
  alloc: CardDmaAllocator;
  /** The card-owned channels' interrupts (the engine's raiseCard). */
  irq: CardDmaIrq;
  /** The interrupt thread (mic_dma_thread_fn()): run soon, outside the interrupt. */
  schedule(fn: () => void): void;
  /** Poll fallback timer. */
  after(ms: number, fn: () => void): void;
  tracer: Tracer;
}

export interface CardDmaOptions {
  /** Channels to use (default 4-7). */
  channels?: readonly number[];
  /** Descriptors per ring (default CARD_RING_SIZE; at least 8). */
  ringSize?: number;
  /** Poll period in ms while waiting (default CARD_POLL_MS). */
  pollMs?: number;
}

/** A copy the engine stopped with DCHERR bits set. */
export class CardDmaError extends Error {
  constructor(
    readonly ch: number,
    readonly dcherr: number,
    readonly bits: readonly string[],
    detail: string,
  ) {
    super(`card DMA channel ${ch}: DCHERR${ch} = 0x${dcherr.toString(16)} {${bits.join(' ')}}: ${detail}`);
    this.name = 'CardDmaError';
  }
}

const { IM0 } = DMA_CH.DCAR.f;
const { BASE_HI, SIZE } = DMA_CH.DRAR_HI.f;
const { COUNT, QUIESCE } = DMA_CH.DSTAT.f;

/** A descriptor from its fields by name (bit positions in descriptor.ts), as 16 little-endian bytes. */
function encode(fields: readonly [{ lo: number; width: number }, bigint | number][]): Uint8Array {
  let v = 0n;
  for (const [f, x] of fields) {
    const b = BigInt(x);
    if (b < 0n || b >> BigInt(f.width)) throw new RangeError(`descriptor field value 0x${b.toString(16)} does not fit ${f.width} bits`);
    v |= b << BigInt(f.lo);
  }
  const out = new Uint8Array(DESC_SIZE);
  for (let i = 0; i < DESC_SIZE; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
}

interface Waiter {
  /** The count (DSTAT.COUNT) that means done. */
  target: number;
  resolve(): void;
  reject(e: Error): void;
}

/** One channel's software state (struct mic_dma_chan). */
class CardChannel {
  ring = 0n;
  statusDest = 0n;
  bounce = 0n;
  /** mic_dma_chan_setup() done since the last card reset. */
  ready = false;
  head = 0;
  waiter: Waiter | null = null;
  /** The tail of this channel's copy queue. */
  queue: Promise<void> = Promise.resolve();
  polling = false;

  constructor(readonly n: number) {}
}

export class CardDma {
  private readonly chans: CardChannel[];
  private readonly ringSize: number;
  private readonly pollMs: number;
  private next = 0;
  private readonly unsubscribe: (() => void)[] = [];

  /** Counters for diagnostics and tests. */
  readonly stats = { copies: 0, dmaBytes: 0, cpuBytes: 0, bounceBytes: 0, batches: 0, interrupts: 0, polls: 0, errors: 0 };

  constructor(
    private readonly env: CardDmaEnv,
    opts: CardDmaOptions = {},
  ) {
    const channels = opts.channels ?? CARD_CHANNELS;
    if (channels.length === 0) throw new RangeError('card DMA needs at least one channel');
    for (const ch of channels) {
      if (!Number.isInteger(ch) || ch < 0 || ch >= DMA_CHANNELS) throw new RangeError(`DMA channel ${ch} is not 0-${DMA_CHANNELS - 1}`);
    }
    this.ringSize = opts.ringSize ?? CARD_RING_SIZE;
    if (!Number.isInteger(this.ringSize) || this.ringSize < 8 || this.ringSize > SIZE.max) throw new RangeError(`ring size ${this.ringSize} is not 8-${SIZE.max}`);
    this.pollMs = opts.pollMs ?? CARD_POLL_MS;
    this.chans = channels.map((n) => new CardChannel(n));
    for (const c of this.chans) {
      this.unsubscribe.push(env.irq.subscribe(c.n, (_ch, kind) => this.interrupt(c, kind)));
    }
  }

  /** The channels this driver drives. */
  get channels(): number[] {
    return this.chans.map((c) => c.n);
  }

  /** scif_reserve_dma_chan(): the next channel round-robin, for a caller that keeps it. */
  reserve(): number {
    const c = this.chans[this.next];
    this.next = (this.next + 1) % this.chans.length;
    return c.n;
  }

  /**
   * Copy `len` bytes from card address `src` to card address `dst` (GDDR
   * or the system window), on channel `ch` (one of `channels`) or the next
   * one round-robin. Resolves once every byte is in place.
   */
  copy(dst: bigint, src: bigint, len: number, ch?: number): Promise<void> {
    if (!Number.isSafeInteger(len) || len < 0) return Promise.reject(new RangeError(`copy length ${len} is not a byte count`));
    if (dst < 0n || src < 0n) return Promise.reject(new RangeError('copy addresses must not be negative'));
    const c = ch === undefined ? this.channel(this.reserve()) : this.channel(ch);
    if (!c) return Promise.reject(new RangeError(`DMA channel ${ch} is not one of the card's (${this.channels.join(', ')})`));
    this.stats.copies++;
    const run = c.queue.then(() => this.doCopy(c, dst, src, len));
    c.queue = run.catch(() => {});
    return run;
  }

  /**
   * After a card reset (RGCR) cleared the DMA registers: waits in flight
   * fail, and each channel is set up again (same GDDR) on its next copy.
   */
  reset(): void {
    for (const c of this.chans) {
      c.ready = false;
      const w = c.waiter;
      c.waiter = null;
      w?.reject(new Error(`card DMA channel ${c.n}: card reset`));
    }
  }

  /** Stop listening to the card interrupts. */
  close(): void {
    for (const u of this.unsubscribe.splice(0)) u();
  }

  private channel(n: number): CardChannel | undefined {
    return this.chans.find((c) => c.n === n);
  }

  private async doCopy(c: CardChannel, dst: bigint, src: bigint, len: number): Promise<void> {
    if (len === 0) return;
    this.setup(c);
    const A = BigInt(CARD_DMA_ALIGN);
    if ((dst & (A - 1n)) === (src & (A - 1n))) return this.copyAligned(c, dst, src, len);
    // scif_rma_list_dma_copy_unaligned(): through a buffer at dst's line offset.
    // Chunks end on dst line boundaries, so only the first has a ragged head.
    const room = CARD_BOUNCE_BYTES - CARD_DMA_ALIGN;
    for (let done = 0; done < len; ) {
      const off = Number((dst + BigInt(done)) & (A - 1n));
      const n = Math.min(room - off, len - done);
      const bounce = c.bounce + BigInt(off);
      this.env.mem.copy(bounce, src + BigInt(done), n);
      this.stats.bounceBytes += n;
      await this.copyAligned(c, dst + BigInt(done), bounce, n);
      done += n;
    }
  }

  /** src and dst at the same line offset: CPU head, DMA body, CPU tail (scif_rma_list_dma_copy_aligned()). */
  private async copyAligned(c: CardChannel, dst: bigint, src: bigint, len: number): Promise<void> {
    const off = Number(src & BigInt(CARD_DMA_ALIGN - 1));
    const head = Math.min(len, off ? CARD_DMA_ALIGN - off : 0);
    const body = Math.floor((len - head) / CARD_DMA_ALIGN) * CARD_DMA_ALIGN;
    const tail = len - head - body;
    if (head) this.cpu(dst, src, head);
    if (tail) this.cpu(dst + BigInt(head + body), src + BigInt(head + body), tail);
    if (body) await this.dma(c, dst + BigInt(head), src + BigInt(head), body);
  }

  /** A CPU copy of a ragged head or tail through the card's address space (scif_unaligned_cpy_toio() and kin). */
  private cpu(dst: bigint, src: bigint, len: number): void {
    this.env.mem.copy(dst, src, len);
    this.stats.cpuBytes += len;
  }

  /** Line-aligned body: batches of MEMCPY descriptors, each batch closed by the interrupt pair and awaited. */
  private async dma(c: CardChannel, dst: bigint, src: bigint, len: number): Promise<void> {
    // The ring is empty at each batch's start; keep one slot free and two for mic_dma_prog_intr().
    const perBatch = (this.ringSize - 3) * CARD_MAX_XFER;
    for (let done = 0; done < len; ) {
      const n = Math.min(perBatch, len - done);
      await this.batch(c, dst + BigInt(done), src + BigInt(done), n);
      done += n;
    }
  }

  private async batch(c: CardChannel, dst: bigint, src: bigint, len: number): Promise<void> {
    const start = c.head;
    // mic_dma_prog_memcpy_desc()
    for (let done = 0; done < len; ) {
      const n = Math.min(CARD_MAX_XFER, len - done);
      this.put(c, encode([
        [MEMCPY_DESC.f.SRC, src + BigInt(done)],
        [MEMCPY_DESC.f.LEN, n / CARD_DMA_ALIGN],
        [MEMCPY_DESC.f.DST, dst + BigInt(done)],
        [MEMCPY_DESC.f.TYPE, DESC_MEMCPY],
      ]));
      done += n;
    }
    // mic_dma_prog_intr(): "h/w needs 2 status descriptors for every status desc".
    for (const intr of [0, 1]) {
      this.put(c, encode([
        [STATUS_DESC.f.DATA, 0],
        [STATUS_DESC.f.DST, c.statusDest],
        [STATUS_DESC.f.INTR, intr],
        [STATUS_DESC.f.TYPE, DESC_STATUS],
      ]));
    }
    this.stats.batches++;
    const done = this.wait(c, c.head);
    // mic_dma_issue_pending()
    this.write(c.n, DHPR, c.head);
    try {
      await done;
    } catch (e) {
      if (e instanceof CardDmaError) this.recover(c, start);
      throw e;
    }
    this.stats.dmaBytes += len;
  }

  /** Store one descriptor at the software head (ordinary stores into the GDDR ring). */
  private put(c: CardChannel, desc: Uint8Array): void {
    this.env.mem.view(c.ring + BigInt(c.head * DESC_SIZE), DESC_SIZE, true).set(desc);
    c.head = (c.head + 1) % this.ringSize;
  }

  private wait(c: CardChannel, target: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      c.waiter = { target, resolve, reject };
      this.armPoll(c);
    });
  }

  /** mic_dma_intr_handler(): ack (the IM0 errata toggle), then the thread. */
  private interrupt(c: CardChannel, kind: CardDmaInterrupt): void {
    this.stats.interrupts++;
    if (kind === 'completion' && c.ready) {
      this.write(c.n, DCAR, IM0.dp(this.read(c.n, DCAR), 1));
      this.write(c.n, DCAR, IM0.dp(this.read(c.n, DCAR), 0));
    }
    this.env.schedule(() => this.cleanup(c));
  }

  /** mic_dma_cleanup(): the count from DSTAT settles the waiter; DCHERR fails it. */
  private cleanup(c: CardChannel): void {
    const w = c.waiter;
    if (!w || !c.ready) return;
    const dcherr = this.read(c.n, DCHERR);
    const dstat = this.read(c.n, DSTAT);
    if (dcherr !== 0 || QUIESCE.isSet(dstat)) {
      c.waiter = null;
      this.stats.errors++;
      const bits = Object.entries(decodeFields(DMA_CH.DCHERR, dcherr)).filter(([, v]) => v).map(([k]) => k);
      w.reject(new CardDmaError(c.n, dcherr, bits, `stopped at descriptor ${this.read(c.n, DTPR)}`));
      return;
    }
    if (COUNT.ex(dstat) === w.target) {
      c.waiter = null;
      w.resolve();
    }
  }

  /** The poll fallback: while a waiter is pending, read DSTAT every pollMs. */
  private armPoll(c: CardChannel): void {
    if (c.polling) return;
    c.polling = true;
    this.env.after(this.pollMs, () => {
      c.polling = false;
      if (!c.waiter) return;
      this.stats.polls++;
      this.cleanup(c);
      if (c.waiter) this.armPoll(c);
    });
  }

  /**
   * mic_dma_alloc_chan_resources() once per card boot: ring and status_dest
   * in GDDR, then mic_dma_chan_setup().
   */
  private setup(c: CardChannel): void {
    if (c.ready) return;
    if (c.ring === 0n) {
      c.ring = this.env.alloc.alloc(this.ringSize * DESC_SIZE);
      c.statusDest = this.env.alloc.alloc(CARD_DMA_ALIGN);
      c.bounce = this.env.alloc.alloc(CARD_BOUNCE_BYTES);
    }
    const n = c.n;
    this.setDcr(dcrOwner(n), 0); // mic_dma_chan_set_owner(): MIC_DMA_CHAN_MIC
    this.setDcr(dcrEnable(n), 0); // mic_dma_disable_chan()
    this.write(n, DCAR, IM0.dp(this.read(n, DCAR), 1)); // mic_dma_chan_mask_intr()
    this.write(n, DCHERRMSK, 0);
    // mic_dma_chan_set_desc_ring(), card-owned: a GDDR ring, address bits 35:32 in BASE_HI.
    this.write(n, DRAR_LO, Number(c.ring & 0xffff_ffffn));
    this.write(n, DRAR_HI, SIZE.dp(BASE_HI.dp(0, Number((c.ring >> 32n) & 0xfn)), this.ringSize));
    c.head = this.read(n, DTPR);
    this.write(n, DCAR, IM0.dp(this.read(n, DCAR), 0)); // mic_dma_chan_unmask_intr()
    this.setDcr(dcrEnable(n), 1); // mic_dma_enable_chan()
    // mic_dma_check_chan()
    if (this.read(n, DCHERR) !== 0 || QUIESCE.isSet(this.read(n, DSTAT))) {
      this.setDcr(dcrEnable(n), 0);
      this.write(n, DCAR, IM0.dp(this.read(n, DCAR), 1));
      throw new Error(`card DMA channel ${n}: error setting up the channel (DCHERR${n} = 0x${this.read(n, DCHERR).toString(16)})`);
    }
    c.ready = true;
    if (this.env.tracer.enabled) this.env.tracer.event('card-dma', { ch: n, action: 'setup', ring: `0x${c.ring.toString(16)}`, size: this.ringSize });
  }

  /**
   * After an error: disable, NOP the failed batch's slots from the stopped
   * tail to the head, clear DCHERR (W1C; QUIESCE goes with it), enable; the
   * engine consumes the NOPs and the ring is empty again.
   */
  private recover(c: CardChannel, start: number): void {
    const n = c.n;
    if (!c.ready) return;
    this.setDcr(dcrEnable(n), 0);
    const tail = this.read(n, DTPR);
    for (let i = tail; i !== c.head; i = (i + 1) % this.ringSize) {
      this.env.mem.view(c.ring + BigInt(i * DESC_SIZE), DESC_SIZE, true).fill(0); // DESC_NOP
    }
    this.write(n, DCHERR, this.read(n, DCHERR));
    this.setDcr(dcrEnable(n), 1);
    if (this.env.tracer.enabled) this.env.tracer.event('card-dma', { ch: n, action: 'recover', start, tail, head: c.head });
  }

  private setDcr(f: Field, v: number): void {
    this.env.regs.write(DCR_OFFSET, 4, f.dp(this.env.regs.read(DCR_OFFSET, 4), v));
  }

  private read(ch: number, r: number): number {
    return this.env.regs.read(dmaReg(ch, r), 4);
  }

  private write(ch: number, r: number, v: number): void {
    this.env.regs.write(dmaReg(ch, r), 4, v >>> 0);
  }
}
