import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { readCpio, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, writeCpio } from './cpio.ts';
import { buildInitramfs, guestProgramFiles, NotSetUpError } from './initramfs.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vphi-initramfs-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Walk a newc archive by hand: header offsets, alignment, names. */
function walk(buf: Buffer): { name: string; headerAt: number; dataAt: number; size: number }[] {
  const out: { name: string; headerAt: number; dataAt: number; size: number }[] = [];
  let off = 0;
  for (;;) {
    expect(buf.toString('ascii', off, off + 6)).toBe('070701');
    const field = (i: number) => parseInt(buf.toString('ascii', off + 6 + 8 * i, off + 14 + 8 * i), 16);
    const namesize = field(11);
    const size = field(6);
    const name = buf.toString('utf8', off + 110, off + 110 + namesize - 1);
    expect(buf[off + 110 + namesize - 1]).toBe(0); // NUL-terminated
    const dataAt = Math.ceil((off + 110 + namesize) / 4) * 4;
    out.push({ name, headerAt: off, dataAt, size });
    off = Math.ceil((dataAt + size) / 4) * 4;
    if (name === 'TRAILER!!!') break;
  }
  expect(off).toBe(buf.length);
  return out;
}

describe('writeCpio', () => {
  const entries = [
    { name: 'dir', mode: S_IFDIR | 0o755 },
    { name: 'dir/file', mode: S_IFREG | 0o644, data: Buffer.from('hello\n') },
    { name: 'dir/odd', mode: S_IFREG | 0o600, data: Buffer.from('12345') },
    { name: 'link', mode: S_IFLNK | 0o777, data: Buffer.from('dir/file') },
    { name: 'console', mode: S_IFCHR | 0o600, rdevMajor: 5, rdevMinor: 1 },
  ];

  it('parses back with names, modes, sizes, data and device numbers', () => {
    const back = readCpio(writeCpio(entries));
    expect(back.map((e) => e.name)).toEqual(entries.map((e) => e.name));
    expect(back.map((e) => e.mode)).toEqual(entries.map((e) => e.mode));
    expect(back[1].data!.toString()).toBe('hello\n');
    expect(back[2].data!.toString()).toBe('12345');
    expect(back[3].data!.toString()).toBe('dir/file');
    expect(back[4].mode & S_IFMT).toBe(S_IFCHR);
    expect([back[4].rdevMajor, back[4].rdevMinor]).toEqual([5, 1]);
    expect(new Set(back.map((e) => e.ino)).size).toBe(entries.length);
    expect(back[0].nlink).toBe(2);
    expect(back[1].nlink).toBe(1);
  });

  it('aligns every header and every file body to 4 bytes and ends with the trailer', () => {
    const buf = writeCpio(entries);
    expect(buf.length % 4).toBe(0);
    const w = walk(buf);
    for (const e of w) {
      expect(e.headerAt % 4).toBe(0);
      expect(e.dataAt % 4).toBe(0);
    }
    expect(w.at(-1)!.name).toBe('TRAILER!!!');
    expect(w.at(-1)!.size).toBe(0);
    expect(w.map((e) => e.name)).toEqual([...entries.map((e) => e.name), 'TRAILER!!!']);
  });

  it('strips leading slashes and rejects out-of-range fields', () => {
    expect(readCpio(writeCpio([{ name: '/abs/path', mode: S_IFDIR | 0o755 }]))[0].name).toBe('abs/path');
    expect(() => writeCpio([{ name: 'x', mode: -1 }])).toThrow(RangeError);
  });

  it('is readable by GNU cpio, when there is one', () => {
    if (spawnSync('cpio', ['--version']).status !== 0) return;
    const t = spawnSync('cpio', ['-t', '--quiet'], { input: writeCpio(entries), encoding: 'utf8' });
    expect(t.status, t.stderr).toBe(0);
    expect(t.stdout.trim().split('\n')).toEqual(['dir', 'dir/file', 'dir/odd', 'link', 'console']);
    const v = spawnSync('cpio', ['-t', '-v', '--quiet'], { input: writeCpio(entries), encoding: 'utf8' });
    expect(v.stdout).toMatch(/^crw-------.* 5,\s+1 .*console$/m);
    expect(v.stdout).toMatch(/^lrwxrwxrwx.*link -> dir\/file$/m);
    expect(v.stdout).toMatch(/^-rw-------.* 5 .*dir\/odd$/m);
  });
});

describe('buildInitramfs', () => {
  it('writes a gzip\'d archive with busybox, its links, the base dirs, /dev/console and the files', async () => {
    const busybox = join(dir, 'fake-busybox');
    writeFileSync(busybox, 'BUSYBOX');
    const host = join(dir, 'prog');
    writeFileSync(host, 'PROG');
    chmodSync(host, 0o750);
    const out = join(dir, 'sub/initramfs.cpio.gz');
    await buildInitramfs({
      out,
      busybox,
      init: '#!/bin/sh\necho hi\n',
      files: [
        { path: '/opt/vphi/bin/prog', hostPath: host },
        { path: '/etc/deep/nested/conf', data: 'x=1\n' },
        { path: '/usr/bin/alias', symlink: '/bin/busybox' },
      ],
    });
    const raw = readFileSync(out);
    expect([raw[0], raw[1]]).toEqual([0x1f, 0x8b]);
    walk(gunzipSync(raw));
    const entries = new Map(readCpio(raw).map((e) => [e.name, e]));
    const get = (n: string) => {
      const e = entries.get(n);
      if (!e) throw new Error(`no ${n} in the archive`);
      return e;
    };
    expect(get('init').mode).toBe(S_IFREG | 0o755);
    expect(get('init').data!.toString()).toBe('#!/bin/sh\necho hi\n');
    expect(get('bin/busybox').mode).toBe(S_IFREG | 0o755);
    expect(get('bin/busybox').data!.toString()).toBe('BUSYBOX');
    for (const applet of ['sh', 'mount', 'cat', 'echo', 'ls', 'poweroff', 'sleep', 'hexdump', 'dmesg', 'grep']) {
      expect(get(`bin/${applet}`).mode & S_IFMT).toBe(S_IFLNK);
      expect(get(`bin/${applet}`).data!.toString()).toBe('busybox');
    }
    for (const d of ['dev', 'proc', 'sys', 'tmp', 'etc/deep', 'etc/deep/nested', 'opt/vphi/bin']) {
      expect(get(d).mode & S_IFMT).toBe(S_IFDIR);
    }
    expect(get('tmp').mode & 0o7777).toBe(0o1777);
    expect(get('dev/console').mode).toBe(S_IFCHR | 0o600);
    expect([get('dev/console').rdevMajor, get('dev/console').rdevMinor]).toEqual([5, 1]);
    expect(get('opt/vphi/bin/prog').mode).toBe(S_IFREG | 0o750);
    expect(get('opt/vphi/bin/prog').data!.toString()).toBe('PROG');
    expect(get('etc/deep/nested/conf').mode).toBe(S_IFREG | 0o644);
    expect(get('usr/bin/alias').data!.toString()).toBe('/bin/busybox');
    // parents come before children
    const names = [...entries.keys()];
    for (const [i, n] of names.entries()) {
      const parent = n.split('/').slice(0, -1).join('/');
      if (parent) expect(names.indexOf(parent)).toBeLessThan(i);
    }
  });

  it('is deterministic', async () => {
    const busybox = join(dir, 'bb2');
    writeFileSync(busybox, 'BB');
    const a = join(dir, 'a.cpio.gz');
    const b = join(dir, 'b.cpio.gz');
    const spec = { busybox, init: 'init', files: [{ path: '/x', data: 'y' }] };
    await buildInitramfs({ ...spec, out: a });
    await buildInitramfs({ ...spec, out: b });
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });

  it('rejects paths that escape the root', async () => {
    const busybox = join(dir, 'bb3');
    writeFileSync(busybox, 'BB');
    await expect(buildInitramfs({ out: join(dir, 'bad.gz'), busybox, init: '', files: [{ path: '/a/../../etc', data: '' }] })).rejects.toThrow(/bad initramfs path/);
  });
});

describe('guestProgramFiles', () => {
  it('takes every file set-up built, and names scripts/setup in one line when a program is missing', () => {
    const sources = join(dir, 'src');
    const bin = join(dir, 'bin');
    mkdirSync(sources, { recursive: true });
    mkdirSync(join(bin, 'not-a-program'), { recursive: true });
    writeFileSync(join(sources, 'vphi-a.c'), '');
    writeFileSync(join(sources, 'vphi-b.c'), '');
    writeFileSync(join(bin, 'vphi-a'), 'A');
    writeFileSync(join(bin, 'helper'), 'H'); // built from guest-tests/helper/*.c, say
    expect(() => guestProgramFiles({ bin, sources })).toThrow(NotSetUpError);
    expect(() => guestProgramFiles({ bin, sources })).toThrow(/^guest program vphi-b is not built \(no .*\/bin\/vphi-b\): run scripts\/setup$/);
    writeFileSync(join(bin, 'vphi-b'), 'B');
    expect(guestProgramFiles({ bin, sources })).toEqual(
      ['helper', 'vphi-a', 'vphi-b'].map((n) => ({ path: `/opt/vphi/bin/${n}`, hostPath: join(bin, n), mode: 0o755 })),
    );
  });
});
