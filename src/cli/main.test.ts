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
    for (const args of [['serve'], ['serve', '--socket-path', '/tmp/x', '--fd', '3'], ['boot', '--aperture', '3M'], ['frob'], ['trace', '/nonexistent'], ['serve', '--bogus'], ['boot', '--memory'], ['initramfs'], ['help', 'frob'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--services', 'echo,bogus'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--service', '/nonexistent.ts'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--cards', '9'], ['serve', '--socket-path', '/tmp/vphi-x.sock', '--cards', '0'], ['serve', '--fd', '3', '--cards', '2'], ['boot', '--cards', 'two']]) {
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
      trace: ['--reg NAME', '--block NAME', '--kind KIND', '--perfetto OUT', '--coverage'],
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

describe('vphi trace', () => {
  const SPAD0 = 0x1ab20;
  const lines = [
    { us: 100, kind: 'mmio', bar: 4, op: 'r', off: SPAD0, size: 4, val: 0, block: 'spad', reg: 'SPAD0' },
    { us: 101, kind: 'mmio', bar: 4, op: 'r', off: SPAD0, size: 4, val: 0, block: 'spad', reg: 'SPAD0' },
    { us: 102, kind: 'mmio', bar: 4, op: 'w', off: SPAD0, size: 4, val: 5, block: 'spad', reg: 'SPAD0', now: 5 },
    { us: 103, kind: 'mmio', bar: 4, op: 'r', off: 0x1ff00, size: 4, val: 0, block: null, reg: null, unknown: true },
    { us: 110, kind: 'dma', op: 'copy', ch: 2, idx: 0, type: 'MEMCPY', src: '0x1000', dst: '0x2000', len: 64 },
    { us: 120, kind: 'irq', mode: 'msix', vector: 2, action: 'raise', src: 'DMA2' },
    { us: 130, kind: 'scif', dir: 'tx', op: 'SCIF_CNCT_REQ', uop: 9, src: '1:1089', dst: '0:201', payload: { ep: '0xa', qp_offset: '0x0' } },
    { us: 140, kind: 'scif', dir: 'rx', op: 'SCIF_CNCT_GNT', uop: 10, src: '0:201', dst: '1:1089', payload: { ep: '0xa', qp_offset: '0x0', remote_ep: '0xb' } },
  ];
  const file = () => {
    const f = join(dir, 'small.jsonl');
    writeFileSync(f, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
    return f;
  };

  it('writes a Perfetto timeline with --perfetto OUT (filtered with --kind)', () => {
    const out = join(dir, 'timeline.json');
    const r = vphi('trace', file(), '--perfetto', out);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vphi: wrote .*timeline\.json \(8 events, 1 request\/reply flows\)/);
    const t = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: { ph: string; name: string; args?: { name?: string } }[] };
    const tracks = t.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args!.name);
    expect(tracks).toEqual(['MMIO', 'SCIF node QP', 'DMA channel 2', 'MSI-X vector 2']);
    expect(t.traceEvents.filter((e) => e.ph === 'X' && e.name === 'R SPAD0')).toHaveLength(2);
    expect(t.traceEvents.filter((e) => e.ph === 's' || e.ph === 'f')).toHaveLength(2);
    const irqOnly = vphi('trace', file(), '--kind', 'irq', '--perfetto', out);
    expect(irqOnly.status, irqOnly.stderr).toBe(0);
    const t2 = JSON.parse(readFileSync(out, 'utf8')) as typeof t;
    expect(t2.traceEvents.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => e.args!.name)).toEqual(['MSI-X vector 2']);
  });

  it('prints the register coverage with --coverage', () => {
    const r = vphi('trace', file(), '--coverage');
    expect(r.status, r.stderr).toBe(0);
    const out = r.stdout.trimEnd().split('\n');
    expect(out).toContainEqual(expect.stringMatching(/^ {2}SPAD0 +0x1ab20 {2}R +2 {2}W +1$/));
    expect(out).toContainEqual(expect.stringMatching(/^ {2}SPAD1 +0x1ab24 {2}R +0 {2}W +0$/));
    expect(out).toContain('undeclared offsets: 1');
    expect(out).toContainEqual(expect.stringMatching(/^ {2}bar4 +0x1ff00 {2}R +1 {2}W +0$/));
    expect(out.at(-1)).toMatch(/^1 of \d+ registers \(\d+\.\d%\) touched, 4 accesses$/);
  });

  it('refuses a bad combination or an unwritable OUT with one line, status 2', { timeout: 60_000 }, () => {
    const f = file();
    for (const args of [[f, '--coverage', '--kind', 'irq'], [f, '--coverage', '--perfetto', join(dir, 'x.json')], [f, '--perfetto', join(dir, 'no/such/dir/x.json')], [f, '--perfetto', dir]]) {
      const r = vphi('trace', ...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(/^vphi: (--coverage|--perfetto)/);
    }
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
