/**
 * Test rig for the DMA engine: a small GDDR aperture, guest RAM as a
 * mapped ArrayBuffer, an SMPT programmed as mic_smpt_init() does
 * (SMPT[i] = i << 2, identity), recorded interrupts and a fake clock's
 * schedule queue. LinuxDmaChannel writes descriptors and registers exactly as
 * drivers/dma/mic_x100_dma.c (5.8) does, so tests read like the driver.
 */
import { HostMemory } from '../../../src/dma/host-memory.ts';
import { RegisterFile } from '../../../src/regs/file.ts';
import { FakeClock } from '../../../src/testing/fake-clock.ts';
import { type Tracer, memoryTracer } from '../../../src/trace/tracer.ts';
import { CardAddressSpace } from '../memory.ts';
import { MMIO_BAR, MMIO_BAR_SIZE, SBOX_BASE } from '../pci/identity.ts';
import { SMPT_BLOCK, SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { Smpt } from '../smpt/smpt.ts';
import type { DmaFaults } from '../faults/faults.ts';
import { type CardDmaInterrupt, DmaEngine } from './engine.ts';
import {
  DCAR,
  DCAR_IM0,
  DCAR_IM1,
  DCHERR,
  DCHERRMSK,
  DCR_OFFSET,
  DHPR,
  DMA_BLOCKS,
  DRAR_HI,
  DRAR_HI_SYS,
  DRAR_LO,
  DSTAT,
  DSTAT_COUNT_MASK,
  DSTAT_QUIESCE,
  DTPR,
  dmaReg,
} from './regs.ts';

export const SMPT_REG = (i: number): number => SBOX_BASE + 0x3100 + 4 * i;

export interface DmaRigOptions {
  apertureSize?: number;
  /** Guest RAM: one region at ramIova. */
  ramIova?: bigint;
  ramSize?: number;
  tracer?: Tracer;
  /** Injected faults (faults/faults.ts). */
  faults?: DmaFaults;
}

export function makeDmaRig(opts: DmaRigOptions = {}) {
  const tracer = opts.tracer ?? memoryTracer();
  const regs = new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, [SMPT_BLOCK, ...DMA_BLOCKS], tracer);
  const aperture = Buffer.alloc(opts.apertureSize ?? 4 << 20);
  const host = new HostMemory();
  const ramIova = opts.ramIova ?? 0x1000_0000n;
  const ramSize = opts.ramSize ?? 8 << 20;
  const ramBuf = new ArrayBuffer(ramSize);
  host.map({ iova: ramIova, length: ramSize, prot: 3, memory: ramBuf });
  const ram = new Uint8Array(ramBuf);
  const r = (off: number): number => regs.read(off, 4);
  const w = (off: number, v: number): void => regs.write(off, 4, v);
  // mic_smpt_init(): identity map of the first 512 GiB of host DMA space.
  for (let i = 0; i < 32; i++) w(SMPT_REG(i), i << 2);
  const mem = new CardAddressSpace(aperture, new Smpt(regs), host);
  const raised: number[] = [];
  /** What card-owned channels raised on the card's own interrupt: [ch, kind]. */
  const cardRaised: [number, CardDmaInterrupt][] = [];
  const clock = new FakeClock();
  const rig = {
    regs,
    aperture,
    host,
    ram,
    ramIova,
    mem,
    tracer,
    raised,
    cardRaised,
    clock,
    /** How many times the engine called schedule(). */
    get scheduled(): number {
      return clock.scheduled;
    },
    /** Hook run inside raise(), before it is recorded (to look at state at that moment). */
    onRaise: null as ((src: number) => void) | null,
    engine: null as unknown as DmaEngine,
    r,
    w,
    /** Card address (SMPT window, identity) of a guest RAM bus address. */
    cardOfIova: (iova: bigint): bigint => SYSTEM_WINDOW_BASE + iova,
    /** Card address of byte `off` of the test's guest RAM region. */
    hostAddr: (off: number): bigint => SYSTEM_WINDOW_BASE + ramIova + BigInt(off),
    /** Run scheduled work until none is left; returns how many rounds ran. */
    drain: (max = 100_000): number => clock.drain(max),
    queued: (): number => clock.queued(),
  };
  rig.engine = new DmaEngine({
    regs,
    mem,
    tracer,
    raise: (s) => {
      rig.onRaise?.(s);
      raised.push(s);
    },
    raiseCard: (ch, kind) => cardRaised.push([ch, kind]),
    schedule: clock.schedule,
    after: clock.after,
    faults: opts.faults,
  });
  return rig;
}

export type DmaRig = ReturnType<typeof makeDmaRig>;

export const DMA_PREP_INTERRUPT = 1 << 0;
export const DMA_PREP_FENCE = 1 << 5;

/** MIC_DMA_DESC_RX_SIZE */
export const LINUX_RING_SIZE = 128 * 1024 - 4;
/** MIC_DMA_MAX_XFER_SIZE_HOST */
export const LINUX_MAX_XFER_HOST = (1024 * 1024) >> 1;

/**
 * One channel as drivers/dma/mic_x100_dma.c drives it: the ring and
 * status_dest in guest RAM reached through the SMPT window, descriptors
 * written with ordinary stores, DHPR written by issue_pending.
 */
export class LinuxDmaChannel {
  head = 0;
  lastTail = 0;
  issued = 0;
  submitted = 0;
  readonly ringCard: bigint;
  readonly statusCard: bigint;
  /** Transactions in submission order: the ring index of their last descriptor. */
  readonly txs: number[] = [];
  private readonly ringView: DataView;

  constructor(
    readonly rig: DmaRig,
    readonly ch: number,
    /** Offsets of the ring and of status_dest inside the rig's guest RAM (host-owned) or GDDR (card-owned). */
    readonly ringOff: number,
    readonly statusOff: number,
    readonly ringSize = LINUX_RING_SIZE,
    readonly owner: 'host' | 'mic' = 'host',
    readonly maxXfer = LINUX_MAX_XFER_HOST,
  ) {
    // Host-owned: both in guest RAM, reached through the SMPT window. Card-owned
    // (the card OS's own driver instance): both in GDDR.
    const mem = owner === 'host' ? rig.ram : rig.aperture;
    this.ringCard = owner === 'host' ? rig.hostAddr(ringOff) : BigInt(ringOff);
    this.statusCard = owner === 'host' ? rig.hostAddr(statusOff) : BigInt(statusOff);
    this.ringView = new DataView(mem.buffer, mem.byteOffset + ringOff, ringSize * 16);
  }

  private rd(reg: number): number {
    return this.rig.r(dmaReg(this.ch, reg));
  }

  private wr(reg: number, v: number): void {
    this.rig.w(dmaReg(this.ch, reg), v);
  }

  maskIntr(): void {
    this.wr(DCAR, this.rd(DCAR) | (this.owner === 'mic' ? DCAR_IM0 : DCAR_IM1));
  }

  unmaskIntr(): void {
    this.wr(DCAR, this.rd(DCAR) & ~(this.owner === 'mic' ? DCAR_IM0 : DCAR_IM1));
  }

  enable(): void {
    this.rig.w(DCR_OFFSET, this.rig.r(DCR_OFFSET) | (2 << (this.ch << 1)));
  }

  disable(): void {
    this.rig.w(DCR_OFFSET, this.rig.r(DCR_OFFSET) & ~(2 << (this.ch << 1)));
  }

  /** mic_dma_chan_set_desc_ring() */
  setDescRing(): void {
    let drarHi = (this.ringSize & 0x1ffff) << 4;
    const pa = this.ringCard;
    if (this.owner === 'mic') {
      drarHi |= Number((pa >> 32n) & 0xfn);
    } else {
      drarHi |= DRAR_HI_SYS;
      drarHi |= Number((pa >> 34n) & 0x1fn) << 21;
      drarHi |= Number((pa >> 32n) & 0x3n);
    }
    this.wr(DRAR_LO, Number(pa & 0xffffffffn));
    this.wr(DRAR_HI, drarHi);
  }

  /** mic_dma_chan_setup(); returns mic_dma_check_chan() == 0. */
  setup(): boolean {
    if (this.owner === 'mic') {
      const dcr = this.rig.r(DCR_OFFSET);
      this.rig.w(DCR_OFFSET, (dcr & ~(1 << (this.ch * 2))) | (0 << (this.ch * 2)));
    }
    this.disable();
    this.maskIntr();
    this.wr(DCHERRMSK, 0);
    this.setDescRing();
    this.lastTail = this.rd(DTPR);
    this.head = this.lastTail;
    // Linux leaves `submitted` alone here: 0 in a fresh (kzalloc'd) channel, else the last session's value.
    this.issued = 0;
    this.unmaskIntr();
    this.enable();
    if (this.rd(DCHERR) || this.rd(DSTAT) & DSTAT_QUIESCE) {
      this.disable();
      this.maskIntr();
      return false;
    }
    return true;
  }

  /** mic_dma_chan_destroy() */
  destroy(): void {
    this.disable();
    this.maskIntr();
  }

  private inc(v: number): number {
    return (v + 1) % this.ringSize;
  }

  /** mic_dma_ring_count() */
  private ringCount(head: number, tail: number): number {
    const count = head >= tail ? tail + (this.ringSize - head) : tail - head;
    return count - 1;
  }

  private avail(required: number): void {
    if (this.ringCount(this.head, this.lastTail) < required) this.cleanup();
    if (this.ringCount(this.head, this.lastTail) < required) throw new Error('ENOMEM: not enough descriptor space');
  }

  private putDesc(qw0: bigint, qw1: bigint): void {
    this.ringView.setBigUint64(this.head * 16, qw0, true);
    this.ringView.setBigUint64(this.head * 16 + 8, qw1, true);
    this.head = this.inc(this.head);
  }

  /** mic_dma_memcpy_desc() */
  putMemcpy(src: bigint, dst: bigint, size: number): void {
    this.putDesc(src | (BigInt(size >> 6) << 46n), (1n << 60n) | dst);
  }

  /** mic_dma_prep_status_desc() */
  putStatus(data: bigint, dst: bigint, intr: boolean): void {
    this.putDesc(data, (2n << 60n) | dst | (intr ? 1n << 59n : 0n));
  }

  /** mic_dma_do_dma() */
  private doDma(flags: number, src: bigint, dst: bigint, len: number): void {
    if (len) {
      let num = Math.floor(len / this.maxXfer) + 3;
      if (len % this.maxXfer) num++;
      this.avail(num);
      do {
        const cur = Math.min(len, this.maxXfer);
        this.putMemcpy(src, dst, cur);
        len -= cur;
        dst += BigInt(cur);
        src += BigInt(cur);
      } while (len > 0);
    } else {
      this.avail(3);
    }
    if (flags & DMA_PREP_FENCE) this.putStatus(0n, this.statusCard, false);
    if (flags & DMA_PREP_INTERRUPT) {
      this.putStatus(0n, this.statusCard, false);
      this.putStatus(0n, this.statusCard, true);
    }
  }

  /** prep + tx_submit: returns the ring index the transaction completes at. */
  private submit(): number {
    const idx = this.head ? this.head - 1 : this.ringSize - 1; // allocate_tx()
    this.txs.push(idx);
    this.submitted = this.head;
    // mic_dma_update_pending()
    if (this.ringCount(this.issued, this.submitted) > 4) this.issuePending();
    return idx;
  }

  /** device_prep_dma_memcpy + tx_submit */
  memcpy(dst: bigint, src: bigint, len: number, flags = 0): number {
    if (!len && !flags) throw new Error('prep_memcpy returns NULL for len 0 without flags');
    this.doDma(flags, src, dst, len);
    return this.submit();
  }

  /** device_prep_dma_imm_data + tx_submit */
  imm(dst: bigint, value: bigint, flags = 0): number {
    this.avail(4);
    this.putStatus(value, dst, false);
    this.doDma(flags, 0n, 0n, 0);
    return this.submit();
  }

  /** device_prep_dma_interrupt + tx_submit */
  interrupt(flags = DMA_PREP_INTERRUPT): number {
    this.doDma(flags, 0n, 0n, 0);
    return this.submit();
  }

  /** mic_dma_issue_pending() */
  issuePending(): void {
    if (this.issued === this.submitted) return;
    this.issued = this.submitted;
    this.wr(DHPR, this.issued);
  }

  /** mic_dma_read_cmp_cnt() */
  count(): number {
    return this.rd(DSTAT) & DSTAT_COUNT_MASK;
  }

  /** mic_dma_cleanup(): returns how many ring slots completed. */
  cleanup(): number {
    const tail = this.count();
    // The real driver would spin forever here: its walk never reaches a count >= N.
    if (tail >= this.ringSize) throw new Error(`DSTAT count ${tail} is outside the ring of ${this.ringSize}`);
    let n = 0;
    while (this.lastTail !== tail) {
      this.lastTail = this.inc(this.lastTail);
      n++;
    }
    return n;
  }

  /**
   * dma_sync_wait() on the last submitted transaction: poll DSTAT (never
   * running the scheduler) until the count reaches the slot after `idx`.
   */
  syncWait(idx: number, maxPolls = 10_000): number {
    const target = this.inc(idx);
    for (let polls = 1; polls <= maxPolls; polls++) {
      if (this.count() === target) return polls;
    }
    throw new Error(`dma_sync_wait: slot ${idx} did not complete in ${maxPolls} DSTAT reads`);
  }
}
