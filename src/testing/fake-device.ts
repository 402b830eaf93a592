/**
 * A fake PCI function for tests of src/ that need a DeviceSpec without the
 * card model (device/ belongs to the CLI). It looks to the server as the
 * x100 does (mic_x100.h, mic_main.c's probe): 8086:225c rev 0x20, class
 * 0x0b4000; BAR0 a 64-bit prefetchable memfd (the aperture), BAR2 trapped
 * for the MSI-X table (16 vectors), BAR4 trapped with scratchpads SPAD0..15
 * at 0x1ab20 (mic_x100_read_spad()). SPAD2 reads READY with the download
 * address an eighth of the aperture, as the x100 bootstrap publishes it
 * (mic_x100_get_boot_addr() reads it). Nothing else behaves.
 */
import type { BarFlags, PciIdentity, RegionSpec } from '../binding/types.ts';
import { bit, block, field, reg, regArray, setField } from '../regs/define.ts';
import { RegisterFile } from '../regs/file.ts';
import type { DeviceEnv, DeviceModel, DeviceSpec } from '../server.ts';

export const FAKE_IDENTITY: PciIdentity = {
  vendorId: 0x8086,
  deviceId: 0x225c,
  subsystemVendorId: 0x8086,
  subsystemId: 0x2500,
  revision: 0x20,
  classCode: 0x0b4000,
  interruptPin: 1,
};

const SPAD2_READY = bit('READY', 0, 'ready for a download');
const SPAD2_APIC_ID = field('APIC_ID', 1, 9, 'bootstrap APIC id');
const SPAD2_DOWNLOAD_ADDR = field('DOWNLOAD_ADDR', 12, 20, 'download address >> 12');

function spadBlock(spad2: number) {
  return block('spad', 0x1ab20, 'scratchpads', [
    regArray('SPAD', 2, 0x00, 4, 'RW', 0, 'scratchpad'),
    reg('SPAD2', 0x08, 'RW', spad2, 'download info', [SPAD2_READY, SPAD2_APIC_ID, SPAD2_DOWNLOAD_ADDR]),
    ...Array.from({ length: 13 }, (_, i) => reg(`SPAD${i + 3}`, 0x0c + 4 * i, 'RW', 0, 'scratchpad')),
  ]);
}

export class FakeDevice implements DeviceModel {
  readonly bar4: RegisterFile;
  readonly registerFiles: ReadonlyMap<number, RegisterFile>;
  /** BAR0's memory, shared with the client. */
  readonly aperture: Buffer;
  readonly resets: string[] = [];

  constructor(env: DeviceEnv) {
    this.aperture = env.regionMemory(0);
    const spad2 = setField(setField(0, SPAD2_DOWNLOAD_ADDR, this.aperture.byteLength / 8 / 4096), SPAD2_READY, 1);
    this.bar4 = new RegisterFile('bar4', 4, 0x20000, [spadBlock(spad2)], env.tracer);
    this.registerFiles = new Map([[4, this.bar4]]);
  }

  reset(reason: string): void {
    this.resets.push(reason);
    this.bar4.reset();
  }
}

export const FAKE_REGIONS = (apertureSize: number): RegionSpec[] => [
  { kind: 'memfd', index: 0, size: apertureSize, name: 'fake-aperture' },
  { kind: 'trapped', index: 2, size: 0x2000 },
  { kind: 'trapped', index: 4, size: 0x20000 },
];

const BAR_FLAGS: BarFlags[] = [
  { index: 0, is64: true, prefetchable: true },
  { index: 2, is64: false, prefetchable: false },
  { index: 4, is64: false, prefetchable: false },
];

/** The fake as a DeviceSpec: a drop-in for x100Spec({ apertureSize }) in src/server.test.ts. */
export function fakeSpec(opts: { apertureSize?: number } = {}): DeviceSpec<FakeDevice> {
  return {
    pci: FAKE_IDENTITY,
    regions: FAKE_REGIONS(opts.apertureSize ?? 1 << 20),
    barFlags: BAR_FLAGS,
    msix: { vectors: 16, bar: 2 },
    pcie: true,
    intx: true,
    create: (env) => new FakeDevice(env),
  };
}
