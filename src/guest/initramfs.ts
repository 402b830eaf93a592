/**
 * A gzip'd newc cpio initramfs.
 *
 * `buildInitramfs` always adds busybox at /bin/busybox with links for the
 * applets init needs, /dev /proc /sys /tmp /root /etc, and a /dev/console
 * node (the kernel opens it for /init's stdio before anything is mounted:
 * console_on_rootfs(), init/main.c). The output is deterministic: same
 * inputs, same bytes (mtime 0).
 */
import { existsSync, readFileSync, statSync, writeFileSync, mkdirSync, renameSync, readdirSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { GUEST_BIN, GUEST_CACHE, GUEST_SOURCES } from '../paths.ts';
import { S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, writeCpio, type CpioEntry } from './cpio.ts';

/** Where guest test programs live in the initramfs (on init's PATH). */
export const GUEST_PROGRAM_DIR = '/opt/vphi/bin';

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
  put({ name: 'bin/busybox', mode: S_IFREG | 0o755, data: readFileSync(spec.busybox ?? setUpBusybox()) });
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

/** Thrown when set-up has not built what an image needs; the message is one line naming scripts/setup. */
export class NotSetUpError extends Error {
  override name = 'NotSetUpError';
}

/** The busybox scripts/setup unpacked (.cache/guest/busybox). */
export function setUpBusybox(): string {
  const busybox = join(GUEST_CACHE, 'busybox');
  if (!existsSync(busybox)) throw new NotSetUpError(`no busybox at ${busybox}: run scripts/setup`);
  return busybox;
}

export interface GuestProgramDirs {
  /** The built programs (default .cache/guest/bin). */
  bin?: string;
  /** Their sources: every `<prog>.c` there must have a `<prog>` in `bin` (default guest-tests/). */
  sources?: string;
}

/**
 * Every guest program scripts/setup built (each file in .cache/guest/bin),
 * as initramfs files in /opt/vphi/bin. Nothing is compiled here: a program
 * whose source has no binary is a NotSetUpError.
 */
export function guestProgramFiles(dirs: GuestProgramDirs = {}): InitramfsFile[] {
  const bin = dirs.bin ?? GUEST_BIN;
  const sources = dirs.sources ?? GUEST_SOURCES;
  const listed = (d: string) => (existsSync(d) ? readdirSync(d).sort() : []);
  const built = listed(bin).filter((n) => statSync(join(bin, n)).isFile());
  for (const src of listed(sources).filter((f) => f.endsWith('.c'))) {
    const prog = basename(src, '.c');
    if (!built.includes(prog)) throw new NotSetUpError(`guest program ${prog} is not built (no ${join(bin, prog)}): run scripts/setup`);
  }
  return built.map((n) => ({ path: `${GUEST_PROGRAM_DIR}/${n}`, hostPath: join(bin, n), mode: 0o755 }));
}
