/**
 * A gzip'd newc cpio initramfs, written in TypeScript (no cpio binary).
 *
 * `buildInitramfs` always adds busybox at /bin/busybox with links for the
 * applets init needs, /dev /proc /sys /tmp /root /etc, and a /dev/console
 * node (the kernel opens it for /init's stdio before anything is mounted).
 * The output is deterministic: same inputs, same bytes (mtime 0).
 *
 * CLI: node --import tsx guest-tests/initramfs.ts --out FILE
 *        [--init FILE (default guest-tests/init.sh)] [--programs] [--add host:guest ...]
 */
import { readFileSync, statSync, writeFileSync, mkdirSync, renameSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync, gunzipSync } from 'node:zlib';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const GUEST_CACHE = join(REPO_ROOT, '.cache/guest');
/** Where guest test programs live in the initramfs (on init's PATH). */
export const GUEST_PROGRAM_DIR = '/opt/vphi/bin';

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

export interface InitramfsFile {
  /** Absolute path in the guest. */
  path: string;
  /** Contents; or `hostPath`; or `symlink` (the link target). */
  data?: string | Buffer;
  hostPath?: string;
  symlink?: string;
  /** Permission bits (default: the host file's, else 0o644). */
  mode?: number;
}

export interface InitramfsSpec {
  out: string;
  /** The /init script text. */
  init: string;
  files?: InitramfsFile[];
  /** Busybox binary (default .cache/guest/busybox). */
  busybox?: string;
}

/** Applets linked in the archive itself; init.sh also runs `busybox --install -s`. */
export const BUSYBOX_APPLETS = [
  'sh', 'ash', 'mount', 'umount', 'mkdir', 'cat', 'echo', 'ls', 'poweroff', 'reboot', 'sleep', 'hexdump',
  'dmesg', 'grep', 'sed', 'tr', 'cut', 'head', 'tail', 'ln', 'rm', 'cp', 'mv', 'chmod', 'printf', 'test', '[',
  'true', 'false', 'uname', 'devmem', 'timeout', 'setsid', 'cttyhack', 'env', 'stat', 'sync', 'wc', 'xxd', 'od', 'dd',
  'find', 'mknod', 'date', 'seq', 'expr', 'awk', 'basename', 'dirname', 'ps', 'kill', 'id', 'vi', 'less',
];

/** The entries of the initramfs, sorted, parents before children. */
export function initramfsEntries(spec: Omit<InitramfsSpec, 'out'>): CpioEntry[] {
  const entries = new Map<string, CpioEntry>();
  const dir = (p: string) => {
    const parts = p.split('/').filter(Boolean);
    for (let i = 1; i <= parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!entries.has(d)) entries.set(d, { name: d, mode: S_IFDIR | 0o755 });
    }
  };
  const put = (e: CpioEntry) => {
    const name = e.name.replace(/^\/+/, '');
    if (!name || name.includes('\0') || name.split('/').includes('..')) throw new Error(`bad initramfs path ${e.name}`);
    dir(name.split('/').slice(0, -1).join('/'));
    entries.set(name, { ...e, name });
  };
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'dev', 'proc', 'sys', 'tmp', 'root', 'etc', 'run', 'mnt', GUEST_PROGRAM_DIR]) dir(d);
  entries.set('tmp', { name: 'tmp', mode: S_IFDIR | 0o1777 });
  put({ name: 'dev/console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 });
  put({ name: 'dev/null', mode: S_IFCHR | 0o666, rdevMajor: 1, rdevMinor: 3 });
  const busybox = spec.busybox ?? join(GUEST_CACHE, 'busybox');
  put({ name: 'bin/busybox', mode: S_IFREG | 0o755, data: readFileSync(busybox) });
  for (const a of BUSYBOX_APPLETS) put({ name: `bin/${a}`, mode: S_IFLNK | 0o777, data: Buffer.from('busybox') });
  put({ name: 'init', mode: S_IFREG | 0o755, data: Buffer.from(spec.init) });
  for (const f of spec.files ?? []) {
    if (f.symlink !== undefined) {
      put({ name: f.path, mode: S_IFLNK | 0o777, data: Buffer.from(f.symlink) });
      continue;
    }
    let data: Buffer;
    let mode = f.mode;
    if (f.data !== undefined) data = Buffer.from(f.data);
    else if (f.hostPath !== undefined) {
      data = readFileSync(f.hostPath);
      mode ??= statSync(f.hostPath).mode & 0o7777;
    } else throw new Error(`initramfs file ${f.path}: give data, hostPath or symlink`);
    put({ name: f.path, mode: S_IFREG | ((mode ?? 0o644) & 0o7777), data });
  }
  return [...entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Write `spec.out` (gzip'd newc cpio), atomically. */
export async function buildInitramfs(spec: InitramfsSpec): Promise<void> {
  const cpio = writeCpio(initramfsEntries(spec));
  const gz = gzipSync(cpio, { level: 6 });
  mkdirSync(dirname(resolve(spec.out)), { recursive: true });
  const tmp = `${spec.out}.${process.pid}.tmp`;
  writeFileSync(tmp, gz);
  renameSync(tmp, spec.out);
}

/** The guest test programs scripts/setup compiled (.cache/guest/bin/*), as initramfs files. */
export function guestProgramFiles(binDir = join(GUEST_CACHE, 'bin')): InitramfsFile[] {
  let names: string[];
  try {
    names = readdirSync(binDir).sort();
  } catch {
    return [];
  }
  return names
    .filter((n) => statSync(join(binDir, n)).isFile())
    .map((n) => ({ path: `${GUEST_PROGRAM_DIR}/${n}`, hostPath: join(binDir, n), mode: 0o755 }));
}

async function main(argv: string[]): Promise<number> {
  let out: string | undefined;
  let init = join(REPO_ROOT, 'guest-tests/init.sh');
  let programs = false;
  const files: InitramfsFile[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--out') out = val();
    else if (a === '--init') init = val();
    else if (a === '--programs') programs = true;
    else if (a === '--add') {
      const v = val();
      const c = v.lastIndexOf(':');
      if (c <= 0 || !v.slice(c + 1).startsWith('/')) throw new Error(`--add wants host:/guest/path, got ${v}`);
      files.push({ hostPath: v.slice(0, c), path: v.slice(c + 1) });
    } else if (a === '-h' || a === '--help') {
      process.stdout.write('usage: initramfs.ts --out FILE [--init FILE] [--programs] [--add host:/guest/path ...]\n');
      return 0;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!out) throw new Error('--out FILE is required');
  if (programs) files.unshift(...guestProgramFiles());
  await buildInitramfs({ out, init: readFileSync(init, 'utf8'), files });
  process.stderr.write(`initramfs: wrote ${out} (${statSync(out).size} bytes)\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc),
    (e: Error) => {
      process.stderr.write(`initramfs: ${e.message}\n`);
      process.exit(2);
    },
  );
}
