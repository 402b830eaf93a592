/**
 * PCI identity and BAR layout of the x100 card, as the host drivers see it
 * (drivers/misc/mic/host/mic_main.c, mic_x100.h).
 */
import type { BarFlags, PciIdentity } from '../../../src/binding/types.ts';

/** 8086:225c, a Xeon Phi SE10/7120-series card; stepping C0 (revision 0x20). */
export const X100_IDENTITY: PciIdentity = {
  vendorId: 0x8086,
  deviceId: 0x225c,
  subsystemVendorId: 0x8086,
  subsystemId: 0x2500,
  revision: 0x20, // enum mic_stepping: A0 0x00, B0 0x10, B1 0x11, C0 0x20
  classCode: 0x0b4000, // co-processor
  interruptPin: 1, // INTA: the driver's last fallback (mic_setup_intx)
};

/** Every x100 device ID mic_pci_tbl binds to (MIC_X100_PCI_DEVICE_2250.._225e). */
export const X100_DEVICE_IDS = Array.from({ length: 15 }, (_, i) => 0x2250 + i);

/** BAR0: the aperture, a window onto card GDDR (MIC_X100_APER_BAR). */
export const APER_BAR = 0;
/** BAR2: the MSI-X table (offset 0) and PBA (offset 0x1000); QEMU emulates both. */
export const MSIX_BAR = 2;
export const MSIX_BAR_SIZE = 0x2000;
/** BAR4: MMIO registers, DBOX at 0x0000 and SBOX at 0x10000 (MIC_X100_MMIO_BAR). */
export const MMIO_BAR = 4;
export const MMIO_BAR_SIZE = 0x20000; // MIC_X100_MMIO_LEN
/** SBOX base within BAR4 (MIC_X100_SBOX_BASE_ADDRESS relative to the MMIO base). */
export const SBOX_BASE = 0x10000;

/** 16 MSI-X vectors: the SBOX has 16 MXAR registers; the driver needs >= 9 (MIC_MIN_MSIX). */
export const MSIX_VECTORS = 16;

export const DEFAULT_APERTURE_SIZE = 512 * 1024 * 1024;

export const BAR_FLAGS: BarFlags[] = [
  { index: APER_BAR, is64: true, prefetchable: true },
  { index: MSIX_BAR, is64: false, prefetchable: false },
  { index: MMIO_BAR, is64: false, prefetchable: false },
];

/** Throws a one-line error unless `size` is a usable aperture size. */
export function checkApertureSize(size: number): void {
  if (!Number.isSafeInteger(size) || size < 0x100000 || !Number.isInteger(Math.log2(size))) {
    throw new Error(`aperture size must be a power of two of at least 1 MiB, got ${size}`);
  }
  if (size > 0x100000000) throw new Error(`aperture size above 4 GiB is not supported yet, got ${size}`);
}
