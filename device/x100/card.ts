/**
 * The x100 card model: a pure state machine over injected guest memory,
 * interrupts and clock (DeviceEnv). BAR0 is the aperture onto card GDDR
 * (a memfd shared with QEMU); BAR4 is the MMIO register file built from
 * the blocks declared under device/x100/.
 */
import type { DeviceEnv, DeviceModel, DeviceSpec } from '../../src/server.ts';
import { RegisterFile } from '../../src/regs/file.ts';
import type { BlockDef } from '../../src/regs/define.ts';
import {
  APER_BAR,
  BAR_FLAGS,
  DEFAULT_APERTURE_SIZE,
  MMIO_BAR,
  MMIO_BAR_SIZE,
  MSIX_BAR,
  MSIX_BAR_SIZE,
  MSIX_VECTORS,
  X100_IDENTITY,
  checkApertureSize,
} from './pci/identity.ts';
import { SPAD_BLOCK } from './spad/regs.ts';
import { DBOX_BLOCK, RGCR_BLOCK } from './boot/regs.ts';
import { DOORBELL_BLOCK, INTERRUPT_BLOCK, RDMASR_BLOCK, SDBIC_BLOCK } from './interrupts/regs.ts';
import { InterruptController } from './interrupts/controller.ts';
import { SMPT_BLOCK } from './smpt/regs.ts';
import { Smpt } from './smpt/smpt.ts';
import { CardAddressSpace } from './memory.ts';
import { Bootstrap } from './boot/bootstrap.ts';
import { DMA_BLOCKS } from './dma/regs.ts';
import { DmaEngine } from './dma/engine.ts';
import { CardDmaIrq } from './dma/card-irq.ts';
import { CardDma } from './dma/card-driver.ts';
import { ScifNode } from './scif/node.ts';
import { CardAllocator, scifRegion } from './scif/alloc.ts';
import { ServiceRunner } from './scif/services.ts';
import type { CardService } from './scif/api.ts';
import { CosmClient } from './cosm/client.ts';
import { CardFaults } from './faults/faults.ts';
import type { FaultSpec } from './faults/spec.ts';
import { POSTCODE_CRASH } from './boot/regs.ts';

export interface X100Options {
  /** BAR0 size in bytes: a power of two (default 512 MiB). */
  apertureSize?: number;
  /** How long an RGCR reset takes before SPAD2 reads ready again (default 100 ms). */
  resetDelayMs?: number;
  /** Card services, started with the SCIF node's API while node 0 is a live peer. */
  services?: CardService[];
  /** Run the card OS's COSM client (default true; unit tests of bare SCIF turn it off). */
  cosm?: boolean;
  /** Faults armed at power-on (`--fault SPEC`). */
  faults?: FaultSpec[];
}

/** Every block of BAR4, in address order. */
export const BAR4_BLOCKS: readonly BlockDef[] = [
  DBOX_BLOCK,
  SMPT_BLOCK,
  RGCR_BLOCK,
  INTERRUPT_BLOCK,
  ...DMA_BLOCKS,
  DOORBELL_BLOCK,
  SPAD_BLOCK,
  RDMASR_BLOCK,
  SDBIC_BLOCK,
];

/** GDDR of the card DMA driver (rings, status lines, bounce buffers): up to 1 MiB just below the SCIF region. */
export function cardDmaRegion(apertureSize: number): { base: number; size: number } {
  const scif = scifRegion(apertureSize);
  const size = Math.min(1 << 20, Math.floor(apertureSize / 8 / 0x1000) * 0x1000);
  return { base: scif.base - size, size };
}

/** The download address the bootstrap reports: 64 MiB, or an eighth of a small aperture. */
export function defaultBootAddr(apertureSize: number): number {
  return Math.min(0x04000000, apertureSize / 8);
}

export class X100Card implements DeviceModel {
  readonly bar4: RegisterFile;
  readonly registerFiles: ReadonlyMap<number, RegisterFile>;
  /** Card GDDR, as the host sees it through BAR0. */
  readonly aperture: Buffer;

  readonly smpt: Smpt;
  readonly mem: CardAddressSpace;
  readonly intc: InterruptController;
  readonly dma: DmaEngine;
  /** Interrupts of the card-owned DMA channels 4-7 (to the card's APIC, not the host). */
  readonly cardDmaIrq: CardDmaIrq;
  /** The card OS's driver of DMA channels 4-7 (mic_x100_dma.c on the card): copy(dst, src, len). */
  readonly cardDma: CardDma;
  readonly bootstrap: Bootstrap;
  /** The card's SCIF node (node 1 for the first card). */
  readonly scif: ScifNode;
  readonly services: ServiceRunner;
  /** The card OS's COSM client (cosm_scif_client.c): what makes the host show `online`. */
  readonly cosm: CosmClient;
  /** Injected faults (`--fault`, `vphi ctl fault`). */
  readonly faults: CardFaults;
  /** The card OS crashed (card-crash) and no reset has come since. */
  crashed = false;

  constructor(
    readonly env: DeviceEnv,
    opts: X100Options = {},
  ) {
    this.aperture = env.regionMemory(APER_BAR);
    this.bar4 = new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, BAR4_BLOCKS, env.tracer);
    this.registerFiles = new Map([[MMIO_BAR, this.bar4]]);
    this.smpt = new Smpt(this.bar4);
    this.mem = new CardAddressSpace(this.aperture, this.smpt, env.host, env.peers);
    this.faults = new CardFaults({ tracer: env.tracer, after: (ms, fn) => env.after(ms, fn), crash: (why) => this.crash(why) });
    this.intc = new InterruptController(this.bar4, env.irq, env.tracer, this.faults);
    this.dma = new DmaEngine({
      regs: this.bar4,
      mem: this.mem,
      raise: (src) => this.intc.raise(src),
      raiseCard: (ch, kind) => this.cardDmaIrq.raise(ch, kind),
      schedule: (fn) => env.schedule(fn),
      tracer: env.tracer,
      faults: this.faults,
      after: (ms, fn) => env.after(ms, fn),
      attribute: (src, dst) => this.scif.rma.attribute(src, dst),
    });
    this.cardDmaIrq = new CardDmaIrq(env.tracer);
    const dmaRegion = cardDmaRegion(this.aperture.byteLength);
    this.cardDma = new CardDma({
      regs: this.bar4,
      mem: this.mem,
      alloc: new CardAllocator(this.mem, dmaRegion.base, dmaRegion.size),
      irq: this.cardDmaIrq,
      schedule: (fn) => env.schedule(fn),
      after: (ms, fn) => env.after(ms, fn),
      tracer: env.tracer,
    });
    this.scif = new ScifNode({
      mem: this.mem,
      doorbells: this.intc.doorbells,
      raiseHostDoorbell: (db) => this.intc.raise(db),
      after: (ms, fn) => env.after(ms, fn),
      schedule: (fn) => env.schedule(fn),
      tracer: env.tracer,
      region: scifRegion(this.aperture.byteLength),
      buffersEnd: dmaRegion.base,
    });
    // Card-initiated RMA copies run on the card-owned DMA channels 4-7 (scif_rma_copy() on the card).
    this.scif.rma.copies.dma = (d, s, n) => this.cardDma.copy(d, s, n);
    this.cosm = new CosmClient({
      after: (ms, fn) => env.after(ms, fn),
      now: () => Date.now(), // only to trace the skew against the host's SYNC_TIME
      tracer: env.tracer,
      halt: () => void this.scif.exit(), // orderly_poweroff(): scif_remove() leaves SCIF
    });
    this.services = new ServiceRunner(this.scif, [...(opts.cosm === false ? [] : [this.cosm]), ...(opts.services ?? [])]);
    this.bootstrap = new Bootstrap({
      regs: this.bar4,
      mem: this.mem,
      tracer: env.tracer,
      doorbells: this.intc.doorbells,
      after: (ms, fn) => env.after(ms, fn),
      onCardReset: () => this.cardReset(),
      onBooted: (rec) => this.scif.start(rec),
      bootAddr: defaultBootAddr(this.aperture.byteLength),
      resetDelayMs: opts.resetDelayMs,
    });
    this.bootstrap.powerOn();
    for (const f of opts.faults ?? []) this.faults.arm(f);
  }

  /**
   * card-crash: the card OS stops where it is (a panic with no kdump).
   * No heartbeat, no SCIF message, no doorbell is answered; the post code
   * shows "CR". The hardware (registers, DMA engine, bootstrap) goes on, so
   * the host's reset brings the card back (cosm_scif_work(): "node alive
   * timeout" after 40 s without a COSM message; then `reset`).
   */
  crash(reason: string): void {
    if (this.crashed) return;
    this.crashed = true;
    if (this.env.tracer.enabled) this.env.tracer.event('card', { action: 'crash', reason, os: this.bootstrap.state });
    this.bar4.set('POSTCODE', POSTCODE_CRASH);
    this.scif.crash(reason);
  }

  /** RGCR: the registers declared cardReset 'clear' (DMA, SICR0, doorbells) back to reset; the engines stop. */
  private cardReset(): void {
    this.crashed = false;
    this.scif.stop('card reset');
    this.bar4.reset('card');
    this.dma.reset();
    this.cardDma.reset();
    this.intc.updateIntx();
    // Nothing on the card refers to host memory now: the pages it touched need not stay resident.
    this.env.dropResidentPages?.();
  }

  /** PCI-level reset, power-on, or the client went away: every register to its reset value. */
  reset(reason: string): void {
    if (this.env.tracer.enabled) this.env.tracer.event('card', { action: 'reset', reason });
    this.crashed = false;
    this.scif.stop(`PCI reset: ${reason}`);
    this.bar4.reset('power');
    this.dma.reset();
    this.cardDma.reset();
    this.bootstrap.powerOn();
    this.env.dropResidentPages?.();
  }
}

/** The x100 card as a device spec for DeviceServer. */
export function x100Spec(opts: X100Options = {}): DeviceSpec<X100Card> {
  const apertureSize = opts.apertureSize ?? DEFAULT_APERTURE_SIZE;
  checkApertureSize(apertureSize);
  return {
    pci: X100_IDENTITY,
    regions: [
      { kind: 'memfd', index: APER_BAR, size: apertureSize, name: 'vphi-aperture' },
      { kind: 'trapped', index: MSIX_BAR, size: MSIX_BAR_SIZE },
      { kind: 'trapped', index: MMIO_BAR, size: MMIO_BAR_SIZE },
    ],
    barFlags: BAR_FLAGS,
    msix: { vectors: MSIX_VECTORS, bar: MSIX_BAR },
    pcie: true,
    intx: true,
    create: (env) => new X100Card(env, opts),
  };
}
