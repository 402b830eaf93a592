/**
 * Dummy card firmware for the MIC guest tests: the kernel image
 * (`firmware` attribute, mic/uos.img) and the ramdisk (`ramdisk`
 * attribute, mic/mic0.image) that the host driver loads with
 * request_firmware from the initramfs and copies into the card aperture
 * (mic_x100_load_firmware / _load_command_line / _load_ramdisk,
 * drivers/misc/mic/host/mic_x100.c). The emulated card never executes
 * them, so they are small files of our own: a recognizable header and a
 * the test pattern (src/pattern.ts), at least 4 KiB (mic_x100_load_ramdisk()
 * patches the bzImage header at 0x218..0x21F) and of odd sizes, so
 * that a wrong SPAD5 or a command line at the wrong offset shows.
 *
 * `checkDownload` is the host-side check of what the driver left in the
 * aperture after a boot.
 */
import type { InitramfsFile } from './initramfs.ts';
import { pattern } from '../src/pattern.ts';

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

/** The first difference of `got` against `want`, or null. */
function firstDiff(got: Uint8Array, want: Uint8Array, base: number): string | null {
  const n = Math.min(got.length, want.length);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < n; i++) {
    if (got[i] !== want[i]) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  if (!bad) return null;
  return `${bad} bytes differ; first at aperture 0x${(base + first).toString(16)}: 0x${got[first].toString(16)} != 0x${want[first].toString(16)}`;
}

export interface DownloadExpectation {
  /** SPAD2 & 0xFFFFF000 as the card reported it. */
  bootAddr: number;
  /** SPAD5 as the card holds it. */
  spad5: number;
  /** The cmdline attribute the test wrote, if any. */
  cmdline?: string;
}

/**
 * What the driver must have left in the aperture after `echo boot`: the
 * image at bootAddr (bytes 0x218..0x21F patched with the ramdisk address
 * 2·bootAddr and its size), SPAD5 = image size, " mem=<aperture MiB>M[ cmdline]"
 * NUL-terminated right after the image, the ramdisk at 2·bootAddr.
 * Returns the problems found (empty: all good).
 */
export function checkDownload(aperture: Buffer, e: DownloadExpectation): string[] {
  const { uos, ramdisk } = micFirmware();
  const problems: string[] = [];
  const b = e.bootAddr;
  if (e.spad5 !== uos.length) problems.push(`SPAD5 = ${e.spad5}, expected the image size ${uos.length}`);
  if (b + uos.length + 2048 > aperture.length || 2 * b + ramdisk.length > aperture.length) {
    problems.push(`download address 0x${b.toString(16)} leaves no room in an aperture of 0x${aperture.length.toString(16)}`);
    return problems;
  }
  const want = Buffer.from(uos);
  want.writeUInt32LE(2 * b, RAMDISK_IMAGE_OFF);
  want.writeUInt32LE(ramdisk.length, RAMDISK_SIZE_OFF);
  const img = firstDiff(aperture.subarray(b, b + uos.length), want, b);
  if (img) problems.push(`image at 0x${b.toString(16)}: ${img}`);
  const cmd = ` mem=${aperture.length >>> 20}M${e.cmdline ? ` ${e.cmdline}` : ''}\0`;
  const gotCmd = aperture.toString('latin1', b + uos.length, b + uos.length + cmd.length);
  if (gotCmd !== cmd) problems.push(`command line at 0x${(b + uos.length).toString(16)} is ${JSON.stringify(gotCmd)}, expected ${JSON.stringify(cmd)}`);
  const rd = firstDiff(aperture.subarray(2 * b, 2 * b + ramdisk.length), ramdisk, 2 * b);
  if (rd) problems.push(`ramdisk at 0x${(2 * b).toString(16)}: ${rd}`);
  return problems;
}
