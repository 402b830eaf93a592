// scripts/build-guest-kernel on fake trees and tarballs: no kernel is built.
// Every run gets its own XDG_CACHE_HOME, so ~/.cache/vphi is never touched.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'build-guest-kernel');

let tmp = '';
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'vphi-bgk-'));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

function run(args: string[], opts: { cache: string; path?: string }) {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CACHE_HOME: opts.cache };
  if (opts.path) env.PATH = `${opts.path}:${env.PATH}`;
  const r = spawnSync('bash', [SCRIPT, ...args, '-j1'], { cwd: tmp, env, encoding: 'utf8', timeout: 18_000 });
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  return { status: r.status, lines, failed: lines.filter((l) => l.includes('FAILED at step')) };
}

function write(file: string, text: string) {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, text);
}

// A tree that passes every check before the build: its Makefile does
// tinyconfig (an empty .config) and olddefconfig, and fails bzImage as gcc would.
function fakeTree(dir: string, opts: { mic?: boolean } = {}) {
  const [major, minor, sub] = (/(\d+)\.(\d+)\.(\d+)$/.exec(dir) ?? ['', '5', '8', '1']).slice(1);
  write(
    join(dir, 'Makefile'),
    [
      `VERSION = ${major}`,
      `PATCHLEVEL = ${minor}`,
      `SUBLEVEL = ${sub}`,
      'EXTRAVERSION =',
      'tinyconfig:',
      '\t@mkdir -p $(O) && : > $(O)/.config',
      'olddefconfig:',
      '\t@:',
      'bzImage:',
      "\t@echo '  CC      init/main.o'",
      "\t@echo 'make[2]: *** Waiting for unfinished jobs....'",
      "\t@echo 'init/main.c:12:3: error: unknown type name foo_t' >&2",
      "\t@echo 'init/main.c:20:1: error: a later error' >&2",
      '\t@exit 2',
      '',
    ].join('\n'),
  );
  write(join(dir, 'Kconfig'), '');
  mkdirSync(join(dir, 'arch/x86'), { recursive: true });
  write(join(dir, 'scripts/kconfig/merge_config.sh'), 'exit 0\n');
  if (opts.mic !== false) write(join(dir, 'drivers/misc/mic/Kconfig'), '');
}

function tarball(name: string, treeName: string, opts: { mic?: boolean } = {}) {
  const root = mkdtempSync(join(tmp, 'tree-'));
  fakeTree(join(root, treeName), opts);
  const file = join(tmp, name);
  const r = spawnSync('tar', ['-C', root, '-czf', file, treeName]);
  expect(r.status).toBe(0);
  return file;
}

// The host-packages step must have nothing to install for the build step to be reached.
function hostPackagesPresent(): boolean {
  const m = /HOST_PKGS=\(([^)]*)\)/.exec(readFileSync(SCRIPT, 'utf8'));
  if (!m) return false;
  return m[1]
    .trim()
    .split(/\s+/)
    .every((p) => {
      const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' });
      return r.status === 0 && r.stdout.includes('install ok installed');
    });
}

describe('build-guest-kernel', { timeout: 20_000 }, () => {
  it('refuses a file not named like a Linux release tarball, with one line', () => {
    for (const name of ['linux-5.8.1.zip', 'kernel.tar.gz', 'linux-5.8.1.tar.zst']) {
      write(join(tmp, name), 'x');
      const r = run([name], { cache: join(tmp, 'cache-name') });
      expect(r.status).toBe(1);
      expect(r.failed).toHaveLength(1);
      expect(r.failed[0]).toContain(`linux-X.Y.Z.tar.xz, .tar.gz or .tar.bz2: ${name}`);
    }
    expect(existsSync(join(tmp, 'cache-name/vphi/src'))).toBe(false);
  });

  it('refuses a release outside 4.4-5.9 before unpacking it', () => {
    const file = tarball('linux-5.10.1.tar.gz', 'linux-5.10.1');
    const r = run([file], { cache: join(tmp, 'cache-range') });
    expect(r.status).toBe(1);
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]).toContain('Linux 5.10.1 is outside 4.4-5.9');
    expect(existsSync(join(tmp, 'cache-range/vphi/src/linux-5.10.1'))).toBe(false);
  });

  it('unpacks a tarball into its cache once, then applies the source checks', () => {
    const cache = join(tmp, 'cache-unpack');
    const file = tarball('linux-5.8.1.tar.gz', 'linux-5.8.1', { mic: false });
    const src = join(cache, 'vphi/src/linux-5.8.1');
    // An interrupted unpack (its process gone) is cleared away.
    mkdirSync(join(cache, 'vphi/src/.linux-5.8.1.tmp-99999999'), { recursive: true });

    const first = run([file], { cache });
    expect(first.lines[0]).toContain('unpack (');
    expect(first.lines.some((l) => l.includes(`unpacking 1 MB into ${src}`))).toBe(true);
    expect(first.failed).toHaveLength(1);
    expect(first.failed[0]).toContain(`step "source (${src})"`);
    expect(first.failed[0]).toContain('this Linux 5.8.1 tree has no drivers/misc/mic');
    expect(readFileSync(join(src, '.vphi-unpacked'), 'utf8')).toMatch(/^linux-5\.8\.1\.tar\.gz \d+ \d+\n$/);
    expect(readdirSync(join(cache, 'vphi/src')).sort()).toEqual(['linux-5.8.1']);

    const again = run([file], { cache });
    expect(again.lines.some((l) => l.includes(`already unpacked (${src})`))).toBe(true);
    expect(again.failed[0]).toContain('no drivers/misc/mic');

    // A changed tarball (size or mtime) is unpacked again.
    utimesSync(file, new Date(), new Date(Date.now() + 5000));
    const changed = run([file], { cache });
    expect(changed.lines.some((l) => l.includes('unpacking'))).toBe(true);
  });

  it('shows percentages with pv on PATH', () => {
    const bin = join(tmp, 'bin');
    // pv -n -i N FILE: percentages on stderr, the file on stdout.
    write(join(bin, 'pv'), '#!/bin/bash\nfor p in 0 35 70 100; do echo $p >&2; done\ncat "${@: -1}"\n');
    chmodSync(join(bin, 'pv'), 0o755);
    const file = tarball('linux-5.8.2.tar.gz', 'linux-5.8.2', { mic: false });
    const r = run([file], { cache: join(tmp, 'cache-pv'), path: bin });
    expect(r.lines.filter((l) => /\d+% unpacked$/.test(l)).map((l) => l.replace(/.*\s(\d+%) unpacked$/, '$1'))).toEqual([
      '35%',
      '70%',
    ]);
    expect(r.failed[0]).toContain('no drivers/misc/mic');
  });

  it('refuses a tree with a .config', () => {
    const dir = join(tmp, 'configured/linux-5.8.1');
    fakeTree(dir);
    write(join(dir, '.config'), 'CONFIG_X86=y\n');
    const r = run([dir], { cache: join(tmp, 'cache-config') });
    expect(r.status).toBe(1);
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]).toContain(`the source tree ${dir} has .config`);
    expect(r.failed[0]).toContain("'make mrproper'");
  });

  it.skipIf(!hostPackagesPresent())('shows the first compiler error and a hint when the build fails', () => {
    const file = tarball('linux-5.8.3.tar.gz', 'linux-5.8.3');
    const r = run([file], { cache: join(tmp, 'cache-build') });
    expect(r.status).toBe(1);
    const at = r.lines.findIndex((l) => l.includes('first error:'));
    expect(r.lines[at]).toMatch(/first error: init\/main\.c:12:3: error: unknown type name foo_t$/);
    expect(r.lines[at + 1]).toContain('hint: vendor trees (Android etc.) usually do not build for x86');
    expect(r.lines[at + 1]).toContain('kernel.org release tarball');
    expect(r.failed).toHaveLength(1);
    expect(r.failed[0]).toContain('FAILED at step "build (bzImage');
    expect(r.lines[at + 2]).toBe(r.failed[0]);
  });
});
