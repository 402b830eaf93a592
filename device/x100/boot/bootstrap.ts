/**
 * The card's bootstrap and the start of its OS, as the host sees them
 * (mic_x100_load_firmware(), mic_x100_hw_reset(), mic_x100_send_firmware_intr()
 * in host/mic_x100.c; _mic_start() in host/mic_boot.c):
 *
 *   ready      SPAD2 = bootaddr | apicid << 1 | READY: waiting for a download
 *   resetting  RGCR bit 0 was written; READY comes back after resetDelayMs
 *   running    the boot interrupt (APICICR7, vector 229) arrived while ready:
 *              the card read the downloaded image's layout and the device
 *              page through SPAD14/15 and the SMPT
 *
 * The model stops where SCIF takes over: a running card has validated the
 * device page and knows its node id, and the host shows `booting`.
 */
import type { RegisterFile } from '../../../src/regs/file.ts';
import { type Tracer, warn } from '../../../src/trace/tracer.ts';
import type { CardAddressSpace } from '../memory.ts';
import { APICICR_LO, BSP_INTERRUPT_VECTOR } from '../interrupts/regs.ts';
import { SPAD2 } from '../spad/regs.ts';
import { POSTCODE_OS, POSTCODE_READY, POSTCODE_RESET, RGCR } from './regs.ts';
import { type BootParam, MIC_MAGIC, decodeBootParam } from './device-page.ts';
import type { Doorbells } from '../interrupts/doorbells.ts';

/** The doorbell of the boot interrupt (mic_x100_send_firmware_intr(): APICICR7). */
export const BOOT_DOORBELL = 7;

export type CardState = 'ready' | 'resetting' | 'running';

/** What the host downloaded into the aperture (mic_x100_load_firmware(), mic_x100_load_command_line(), mic_x100_load_ramdisk()). */
export interface Download {
  bootAddr: number;
  imageSize: number;
  /** The command line the host wrote after the image (" mem=512M ..."). */
  cmdline: string;
  ramdiskAddr: number;
  ramdiskSize: number;
}

export interface BootRecord {
  download: Download;
  devicePageAddr: bigint;
  bootParam: BootParam | null;
  /** Why the card OS could not use the device page, if it could not. */
  error: string | null;
}

export interface BootstrapOptions {
  regs: RegisterFile;
  mem: CardAddressSpace;
  tracer: Tracer;
  after(ms: number, fn: () => void): () => void;
  /** Stop everything the card was doing (DMA, interrupts, card OS). */
  onCardReset(): void;
  /** The card OS started and read the device page (SCIF hooks in here). */
  onBooted?(rec: BootRecord): void;
  /** The host → card doorbells: the boot ROM owns doorbell 7, the boot interrupt. */
  doorbells: Doorbells;
  /** GDDR download address (4 KiB aligned, <= 2 GiB). */
  bootAddr: number;
  apicId?: number;
  resetDelayMs?: number;
}

const CMDLINE_MAX = 2048;

export class Bootstrap {
  state: CardState = 'ready';
  lastBoot: BootRecord | null = null;
  boots = 0;
  resets = 0;
  private cancelReset: (() => void) | null = null;

  constructor(private readonly o: BootstrapOptions) {
    if (o.bootAddr % 4096 !== 0 || o.bootAddr > 0x80000000) throw new Error(`boot address 0x${o.bootAddr.toString(16)} must be 4 KiB aligned and <= 2 GiB`);
    o.doorbells.subscribe(BOOT_DOORBELL, (_db, lo) => this.bootInterrupt(lo));
    o.regs.hook('RGCR', {
      postWrite: (v) => {
        if (RGCR.f.RESET.isSet(v)) this.startReset();
      },
    });
  }

  /** SPAD2 as the bootstrap publishes it when ready for a download. */
  readyValue(): number {
    const { DOWNLOAD_ADDR, APIC_ID, READY } = SPAD2.f;
    return (DOWNLOAD_ADDR.val(this.o.bootAddr >>> 12) | APIC_ID.val(this.o.apicId ?? 0) | READY.val(1)) >>> 0;
  }

  /** Power-on, or PCI-level reset: bootstrap ready at once. */
  powerOn(): void {
    this.cancelReset?.();
    this.cancelReset = null;
    this.becomeReady();
  }

  /** APICICR7 rang: with vector 229 while ready, the boot interrupt; otherwise the OS's business. */
  private bootInterrupt(apicicrLow: number | undefined): void {
    if (apicicrLow !== undefined && APICICR_LO.f.VECTOR.ex(apicicrLow) === BSP_INTERRUPT_VECTOR && this.state === 'ready') this.boot();
  }

  private startReset(): void {
    this.resets++;
    this.state = 'resetting';
    this.o.regs.set('POSTCODE', POSTCODE_RESET);
    if (this.o.tracer.enabled) this.o.tracer.event('card', { action: 'reset-start' });
    this.o.onCardReset();
    this.cancelReset?.();
    this.cancelReset = this.o.after(this.o.resetDelayMs ?? 100, () => {
      this.cancelReset = null;
      this.becomeReady();
    });
  }

  private becomeReady(): void {
    this.state = 'ready';
    this.o.regs.set('SPAD2', this.readyValue());
    this.o.regs.set('POSTCODE', POSTCODE_READY);
    if (this.o.tracer.enabled) this.o.tracer.event('card', { action: 'ready', spad2: this.readyValue() });
  }

  private boot(): void {
    const regs = this.o.regs;
    const download = this.readDownload();
    const devicePageAddr = (BigInt(regs.get('SPAD15')) << 32n) | BigInt(regs.get('SPAD14'));
    let bootParam: BootParam | null = null;
    let error: string | null = null;
    try {
      bootParam = decodeBootParam(this.o.mem.view(devicePageAddr, 24, false));
      if (bootParam.magic !== MIC_MAGIC) error = `device page magic 0x${bootParam.magic.toString(16)} != 0x${MIC_MAGIC.toString(16)}`;
    } catch (e) {
      error = `cannot read the device page at 0x${devicePageAddr.toString(16)}: ${(e as Error).message}`;
    }
    this.boots++;
    this.state = 'running';
    // The bootstrap has handed over to the OS: no longer waiting for a download.
    regs.set('SPAD2', SPAD2.f.READY.dp(regs.get('SPAD2'), 0));
    regs.set('POSTCODE', POSTCODE_OS);
    const rec: BootRecord = { download, devicePageAddr, bootParam, error };
    this.lastBoot = rec;
    if (error) warn(this.o.tracer, 'boot', `card OS cannot start SCIF: ${error}`, { devicePage: `0x${devicePageAddr.toString(16)}` });
    if (this.o.tracer.enabled) {
      this.o.tracer.event('card', {
        action: 'boot',
        ...download,
        devicePage: `0x${devicePageAddr.toString(16)}`,
        nodeId: bootParam?.nodeId,
        c2hScifDb: bootParam?.c2hScifDb,
        scifHostDmaAddr: bootParam ? `0x${bootParam.scifHostDmaAddr.toString(16)}` : undefined,
        error,
      });
    }
    this.o.onBooted?.(rec);
  }

  /** The image layout the host wrote (mic_x100_load_firmware and friends). */
  private readDownload(): Download {
    const ap = this.o.mem.aperture;
    const b = this.o.bootAddr;
    const size = this.o.regs.get('SPAD5');
    let cmdline = '';
    if (b + size < ap.byteLength) {
      const end = Math.min(b + size + CMDLINE_MAX, ap.byteLength);
      const nul = ap.indexOf(0, b + size);
      cmdline = ap.toString('latin1', b + size, nul >= 0 && nul < end ? nul : end);
    }
    const hdr = b + 0x218 + 8 <= ap.byteLength;
    return {
      bootAddr: b,
      imageSize: size,
      cmdline,
      ramdiskAddr: hdr ? ap.readUInt32LE(b + 0x218) : 0,
      ramdiskSize: hdr ? ap.readUInt32LE(b + 0x21c) : 0,
    };
  }
}
