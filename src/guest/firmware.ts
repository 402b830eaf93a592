/**
 * Dummy card firmware for a MIC guest: the kernel image
 * (`firmware` attribute, mic/uos.img) and the ramdisk (`ramdisk`
 * attribute, mic/mic0.image) that the host driver loads with
 * request_firmware from the initramfs and copies into the card aperture
 * (mic_x100_load_firmware / _load_command_line / _load_ramdisk,
 * drivers/misc/mic/host/mic_x100.c). The emulated card never executes
 * them, so they are small files of our own: a recognizable header and a
 * deterministic pattern, at least 4 KiB (mic_x100_load_ramdisk() patches
 * the bzImage header, boot_params.hdr.ramdisk_image/_size at
 * 0x218..0x21F) and of odd sizes, so that a wrong SPAD5 or a command line
 * at the wrong offset shows.
 */
import type { InitramfsFile } from './initramfs.ts';
import { pattern } from '../pattern.ts';

/** Paths relative to the firmware search path, as written to sysfs. */
export const UOS_NAME = 'mic/uos.img';
export const RAMDISK_NAME = 'mic/mic0.image';
export const FIRMWARE_ROOT = '/lib/firmware';

/** Sizes: not multiples of 4 KiB or of 64 on purpose. */
export const UOS_SIZE = 0x11000 + 0x123;
export const RAMDISK_SIZE = 0x9000 + 0x45;

const UOS_MAGIC = 'VPHI-MIC-UOS-IMAGE';
const RAMDISK_MAGIC = 'VPHI-MIC-RAMDISK';
const UOS_SEED = 0x55f0_0c0d;
const RAMDISK_SEED = 0x4a3d_d15c;

/** Bytes of the image the driver overwrites (boot_params.hdr.ramdisk_image / ramdisk_size). */
export const RAMDISK_IMAGE_OFF = 0x218;
export const RAMDISK_SIZE_OFF = 0x21c;

/**
 * Header (64 bytes): the magic (NUL padded to 32), u32 size, u32 seed,
 * then the file name; the rest is the pattern.
 */
function makeFile(magic: string, name: string, size: number, seed: number): Buffer {
  const b = pattern(seed, size);
  b.fill(0, 0, 64);
  b.write(magic, 0, 'latin1');
  b.writeUInt32LE(size, 32);
  b.writeUInt32LE(seed, 36);
  b.write(name, 40, 24, 'latin1');
  return b;
}

let cache: { uos: Buffer; ramdisk: Buffer } | undefined;

/** The two files' contents (deterministic). */
export function micFirmware(): { uos: Buffer; ramdisk: Buffer } {
  cache ??= {
    uos: makeFile(UOS_MAGIC, UOS_NAME, UOS_SIZE, UOS_SEED),
    ramdisk: makeFile(RAMDISK_MAGIC, RAMDISK_NAME, RAMDISK_SIZE, RAMDISK_SEED),
  };
  return cache;
}

/** The firmware as initramfs files under /lib/firmware. */
export function micFirmwareFiles(): InitramfsFile[] {
  const fw = micFirmware();
  return [
    { path: `${FIRMWARE_ROOT}/${UOS_NAME}`, data: fw.uos, mode: 0o644 },
    { path: `${FIRMWARE_ROOT}/${RAMDISK_NAME}`, data: fw.ramdisk, mode: 0o644 },
  ];
}
