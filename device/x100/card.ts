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

export interface X100Options {
  /** BAR0 size in bytes: a power of two (default 512 MiB). */
  apertureSize?: number;
}

/** Every block of BAR4, in address order. */
export const BAR4_BLOCKS: readonly BlockDef[] = [SPAD_BLOCK];

export class X100Card implements DeviceModel {
  readonly bar4: RegisterFile;
  readonly registerFiles: ReadonlyMap<number, RegisterFile>;
  /** Card GDDR, as the host sees it through BAR0. */
  readonly aperture: Buffer;

  constructor(readonly env: DeviceEnv) {
    this.aperture = env.regionMemory(APER_BAR);
    this.bar4 = new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, BAR4_BLOCKS, env.tracer);
    this.registerFiles = new Map([[MMIO_BAR, this.bar4]]);
  }

  reset(reason: string): void {
    if (this.env.tracer.enabled) this.env.tracer.event('card', { action: 'reset', reason });
    this.bar4.reset();
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
    create: (env) => new X100Card(env),
  };
}
