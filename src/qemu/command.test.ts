import { afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { DEFAULT_APPEND, qemuArgs, qemuBinary } from './command.ts';
import { REPO_ROOT } from '../paths.ts';

/** The value after each occurrence of `flag`. */
function values(args: string[], flag: string): string[] {
  const out: string[] = [];
  args.forEach((a, i) => {
    if (a === flag) out.push(args[i + 1]);
  });
  return out;
}

const base = { kernel: '/k/vmlinuz', memoryMiB: 512 };

describe('qemuBinary', () => {
  const saved = process.env.VPHI_QEMU;
  afterEach(() => {
    if (saved === undefined) delete process.env.VPHI_QEMU;
    else process.env.VPHI_QEMU = saved;
  });

  it('is the wrapper set-up made, relative to the repository', () => {
    delete process.env.VPHI_QEMU;
    expect(qemuBinary()).toBe(join(REPO_ROOT, '.cache/qemu/bin/qemu-system-x86_64'));
  });

  it('honours VPHI_QEMU', () => {
    process.env.VPHI_QEMU = '/opt/q/qemu';
    expect(qemuBinary()).toBe('/opt/q/qemu');
  });
});

describe('qemuArgs', () => {
  it('builds a TCG q35 machine with memfd-backed, shared guest RAM', () => {
    const a = qemuArgs({ ...base, socketPath: '/run/card.sock' });
    expect(values(a, '-machine')).toEqual(['q35', 'memory-backend=mem']);
    expect(values(a, '-accel')).toEqual(['tcg']);
    expect(values(a, '-m')).toEqual(['512M']);
    expect(values(a, '-object')).toEqual(['memory-backend-memfd,id=mem,size=512M,share=on']);
    expect(a).toContain('-nographic');
    expect(a).toContain('-no-reboot');
    expect(values(a, '-serial')).toEqual(['mon:stdio']);
    expect(values(a, '-kernel')).toEqual(['/k/vmlinuz']);
    expect(a).not.toContain('-enable-kvm');
  });

  it('puts the card, in JSON form, behind a pcie-root-port', () => {
    const a = qemuArgs({ ...base, socketPath: '/run/vphi/card.sock' });
    const devices = values(a, '-device');
    expect(devices[0]).toBe('pcie-root-port,id=rp0,bus=pcie.0,chassis=1');
    expect(devices).toHaveLength(2);
    expect(devices[1].startsWith('{')).toBe(true);
    expect(JSON.parse(devices[1])).toEqual({
      driver: 'vfio-user-pci',
      socket: { type: 'unix', path: '/run/vphi/card.sock' },
      bus: 'rp0',
    });
  });

  it('puts several cards each behind its own root port (--cards)', () => {
    const a = qemuArgs({ ...base, socketPaths: ['/run/vphi/card.sock', '/run/vphi/card.sock.1'] });
    const devices = values(a, '-device');
    expect(devices).toEqual([
      'pcie-root-port,id=rp0,bus=pcie.0,chassis=1',
      JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: '/run/vphi/card.sock' }, bus: 'rp0' }),
      'pcie-root-port,id=rp1,bus=pcie.0,chassis=2',
      JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: '/run/vphi/card.sock.1' }, bus: 'rp1' }),
    ]);
  });

  it('escapes awkward socket paths through JSON', () => {
    const path = '/tmp/a "b",c/card.sock';
    const dev = values(qemuArgs({ ...base, socketPath: path }), '-device')[1];
    expect(JSON.parse(dev).socket.path).toBe(path);
  });

  it('has no card without a socket path', () => {
    const a = qemuArgs(base);
    expect(values(a, '-device')).toEqual(['pcie-root-port,id=rp0,bus=pcie.0,chassis=1']);
    expect(a.join(' ')).not.toContain('vfio-user');
  });

  it('appends the user command line to the default one', () => {
    expect(values(qemuArgs(base), '-append')).toEqual([DEFAULT_APPEND]);
    expect(DEFAULT_APPEND).toContain('console=ttyS0');
    expect(DEFAULT_APPEND).toContain('panic=-1');
    expect(values(qemuArgs({ ...base, append: 'vphi.tests=x quiet' }), '-append')).toEqual([
      `${DEFAULT_APPEND} vphi.tests=x quiet`,
    ]);
  });

  it('passes -initrd only when given', () => {
    expect(qemuArgs(base)).not.toContain('-initrd');
    expect(values(qemuArgs({ ...base, initrd: '/i.cpio.gz' }), '-initrd')).toEqual(['/i.cpio.gz']);
  });

  it('sizes memory and vCPUs, and puts extra arguments last', () => {
    const a = qemuArgs({ ...base, memoryMiB: 1024, smp: 2, extraArgs: ['-d', 'guest_errors'] });
    expect(values(a, '-m')).toEqual(['1024M']);
    expect(values(a, '-object')).toEqual(['memory-backend-memfd,id=mem,size=1024M,share=on']);
    expect(values(a, '-smp')).toEqual(['2']);
    expect(a.slice(-2)).toEqual(['-d', 'guest_errors']);
    expect(values(qemuArgs(base), '-smp')).toEqual(['1']);
  });

  it('makes QEMU exit with its parent', () => {
    expect(values(qemuArgs(base), '-run-with')).toEqual(['exit-with-parent=on']);
  });

  it('rejects nonsense sizes', () => {
    expect(() => qemuArgs({ ...base, memoryMiB: 0 })).toThrow(RangeError);
    expect(() => qemuArgs({ ...base, memoryMiB: 1.5 })).toThrow(RangeError);
    expect(() => qemuArgs({ ...base, smp: 0 })).toThrow(RangeError);
  });
});
