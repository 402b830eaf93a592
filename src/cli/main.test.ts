import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GUEST_CACHE, REPO_ROOT } from '../paths.ts';
import { readCpio } from '../guest/cpio.ts';
import { INIT_SCRIPT } from '../guest/image.ts';

const VPHI = join(REPO_ROOT, 'bin/vphi');
const run = (bin: string, args: string[], cwd?: string) => spawnSync(bin, args, { encoding: 'utf8', cwd });
const vphi = (...args: string[]) => run(VPHI, args);

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vphi-cli-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the vphi command line', () => {
  it('stops quietly when the reader of its output goes away (vphi trace FILE | head)', { timeout: 60_000 }, () => {
    const f = join(dir, 'big.jsonl');
    writeFileSync(f, Array.from({ length: 200_000 }, (_, i) => JSON.stringify({ us: i, kind: 'scif', dir: 'tx', op: 'SCIF_CLIENT_SENT' })).join('\n'));
    const r = spawnSync('sh', ['-c', `"${VPHI}" trace "${f}" | head -1`], { encoding: 'utf8' });
    expect(r.stdout.split('\n')[0]).toMatch(/scif .*SCIF_CLIENT_SENT/);
    expect(r.stderr).toBe('');
  });

  it('prints its capabilities as JSON (backend convention)', () => {
    const r = vphi('--print-capabilities');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ type: 'vfio-user-pci', device: '8086:225c', msixVectors: 16 });
  });

  it('answers a bad argument with one clear line and status 2', { timeout: 60_000 }, () => {
    for (const args of [['serve'], ['serve', '--socket-path', '/tmp/x', '--fd', '3'], ['boot', '--aperture', '3M'], ['frob'], ['trace', '/nonexistent'], ['serve', '--bogus'], ['boot', '--memory'], ['initramfs'], ['help', 'frob'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--services', 'echo,bogus'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--service', '/nonexistent.ts']]) {
      const r = vphi(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^vphi: /);
    }
  });

  it('prints the usage to stdout for --help, -h and help, to stderr (status 2) with no arguments', { timeout: 60_000 }, () => {
    for (const args of [['--help'], ['-h'], ['help']]) {
      const r = vphi(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stderr).toBe('');
      for (const cmd of ['serve', 'boot', 'trace', 'initramfs']) expect(r.stdout).toMatch(new RegExp(`^  vphi ${cmd} `, 'm'));
    }
    const none = vphi();
    expect(none.status).toBe(2);
    expect(none.stdout).toBe('');
    expect(none.stderr).toMatch(/^usage:\n  vphi serve /);
  });

  it("prints one command's usage for COMMAND --help, COMMAND -h and help COMMAND, before checking anything else", { timeout: 60_000 }, () => {
    const options: Record<string, string[]> = {
      serve: ['--socket-path PATH', '--fd N', '--aperture SIZE', '--trace FILE', '--services LIST', '--service FILE', '-v, --verbose'],
      boot: ['--kernel FILE', '--initrd FILE', '--append TEXT', '--memory SIZE', '--socket-path PATH', '--aperture SIZE', '--trace FILE', '--services LIST', '--service FILE'],
      trace: ['--reg NAME', '--block NAME', '--kind KIND'],
      initramfs: ['--out FILE', '--init FILE', '--programs', '--add HOST:/GUEST'],
    };
    for (const [cmd, opts] of Object.entries(options)) {
      // each spelling once (every spawn costs a Node start)
      const args = { serve: [cmd, '-h'], boot: ['help', cmd] }[cmd] ?? [cmd, '--help'];
      const r = vphi(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout, args.join(' ')).toMatch(new RegExp(`^usage: vphi ${cmd} `));
      for (const o of [...opts, '-h, --help']) expect(r.stdout, `${args.join(' ')}: ${o}`).toContain(`  ${o}  `);
      expect(r.stdout).not.toMatch(/^  vphi /m); // not the whole list
    }
  });

  it('runs through a symlink (npm link, npm install -g)', () => {
    const link = join(dir, 'vphi');
    symlinkSync(VPHI, link);
    const r = run(link, ['--print-capabilities'], dir);
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ device: '8086:225c' });
  });

  it('runs as npx vphi from the repository', { timeout: 60_000 }, () => {
    const r = spawnSync('npx', ['--no-install', 'vphi', '--print-capabilities'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ device: '8086:225c' });
  });
});

describe('vphi initramfs', () => {
  it('builds an initramfs with --out and --add', () => {
    if (!existsSync(join(GUEST_CACHE, 'busybox'))) return; // needs scripts/setup
    const host = join(dir, 'added');
    writeFileSync(host, 'ADDED');
    const out = join(dir, 'cli.cpio.gz');
    const r = vphi('initramfs', '--out', out, '--add', `${host}:/root/added`);
    expect(r.status, r.stderr).toBe(0);
    const entries = new Map(readCpio(readFileSync(out)).map((e) => [e.name, e]));
    expect(entries.get('root/added')!.data!.toString()).toBe('ADDED');
    expect(entries.get('init')!.data!.toString()).toBe(readFileSync(INIT_SCRIPT, 'utf8'));
    expect(entries.get('bin/busybox')!.data!.length).toBe(statSync(join(GUEST_CACHE, 'busybox')).size);
  });

  it('fails with a message on bad arguments', () => {
    const r = vphi('initramfs', '--bogus');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument --bogus/);
  });
});
