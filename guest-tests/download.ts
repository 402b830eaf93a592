/**
 * The host-side check of what the MIC host driver left in the aperture
 * after `echo boot` (mic_x100_load_firmware(), _load_command_line(),
 * _load_ramdisk(), drivers/misc/mic/host/mic_x100.c), against the firmware
 * files src/guest/firmware.ts put in the guest.
 */
import { micFirmware, RAMDISK_IMAGE_OFF, RAMDISK_SIZE_OFF } from '../src/guest/firmware.ts';

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
