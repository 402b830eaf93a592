/**
 * newc ("070701") cpio archives, written and read in TypeScript (no cpio
 * binary): the format the kernel unpacks into rootfs (init/initramfs.c,
 * Documentation/driver-api/early-userspace/buffer-format.rst).
 */
import { gunzipSync } from 'node:zlib';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;
export const S_IFCHR = 0o020000;

/** One cpio entry. `mode` includes the file type bits. */
export interface CpioEntry {
  name: string;
  mode: number;
  data?: Buffer;
  uid?: number;
  gid?: number;
  mtime?: number;
  /** Device number of a char/block node. */
  rdevMajor?: number;
  rdevMinor?: number;
}

function hex8(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`cpio field out of range: ${n}`);
  return n.toString(16).padStart(8, '0');
}

const pad4 = (n: number) => (4 - (n % 4)) % 4;

/** An uncompressed newc ("070701") archive, TRAILER!!! included. */
export function writeCpio(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  let ino = 1;
  const add = (e: CpioEntry, inode: number) => {
    const name = e.name.replace(/^\/+/, '') || '.';
    const data = e.data ?? Buffer.alloc(0);
    const nameBytes = Buffer.from(`${name}\0`, 'utf8');
    const header =
      '070701' +
      hex8(inode) +
      hex8(e.mode) +
      hex8(e.uid ?? 0) +
      hex8(e.gid ?? 0) +
      hex8((e.mode & S_IFMT) === S_IFDIR ? 2 : 1) +
      hex8(e.mtime ?? 0) +
      hex8(data.length) +
      hex8(0) + // devmajor
      hex8(0) + // devminor
      hex8(e.rdevMajor ?? 0) +
      hex8(e.rdevMinor ?? 0) +
      hex8(nameBytes.length) +
      hex8(0); // check (newc: 0)
    parts.push(Buffer.from(header, 'ascii'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length)));
    if (data.length) parts.push(data, Buffer.alloc(pad4(data.length)));
  };
  for (const e of entries) add(e, ino++);
  add({ name: 'TRAILER!!!', mode: 0 }, 0);
  return Buffer.concat(parts);
}

/** Parse a newc archive (gzip'd or not) back into entries, trailer excluded. */
export function readCpio(buf: Buffer): (CpioEntry & { ino: number; nlink: number })[] {
  if (buf[0] === 0x1f && buf[1] === 0x8b) buf = gunzipSync(buf);
  const out: (CpioEntry & { ino: number; nlink: number })[] = [];
  let off = 0;
  for (;;) {
    if (off + 110 > buf.length) throw new Error(`truncated cpio header at ${off}`);
    const magic = buf.toString('ascii', off, off + 6);
    if (magic !== '070701') throw new Error(`bad cpio magic ${JSON.stringify(magic)} at ${off}`);
    const f = (i: number) => parseInt(buf.toString('ascii', off + 6 + 8 * i, off + 14 + 8 * i), 16);
    const namesize = f(11);
    const filesize = f(6);
    const name = buf.toString('utf8', off + 110, off + 110 + namesize - 1);
    let p = off + 110 + namesize;
    p += pad4(p);
    if (name === 'TRAILER!!!') return out;
    out.push({
      ino: f(0),
      mode: f(1),
      uid: f(2),
      gid: f(3),
      nlink: f(4),
      mtime: f(5),
      rdevMajor: f(9),
      rdevMinor: f(10),
      name,
      data: buf.subarray(p, p + filesize),
    });
    p += filesize;
    p += pad4(p);
    off = p;
  }
}
