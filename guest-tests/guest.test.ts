/**
 * Boots the Debian kernel with the guest initramfs under TCG, without the
 * card: an ivshmem-plain device (a file-backed 64-bit prefetchable BAR2)
 * stands in for it so vphi-probe's sysfs parsing and BAR mmap paths run, and
 * the host checks that the bytes the guest wrote landed in the backing file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debianKernel } from '../src/qemu/kernel.ts';
import { patternMismatch } from '../src/pattern.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { runGuest, testsParam } from './guest.ts';
import { findResult, summarize } from './ktap.ts';

describe('testsParam', () => {
  it('joins tests with commas and quotes when there are spaces', () => {
    expect(testsParam(['true'])).toBe('vphi.tests=true');
    expect(testsParam(['true', 'false'])).toBe('vphi.tests=true,false');
    expect(testsParam(['vphi-probe  spad --bdf 0000:01:00.0', 'true'])).toBe('vphi.tests="vphi-probe spad --bdf 0000:01:00.0,true"');
  });
  it('refuses what cannot be encoded', () => {
    expect(() => testsParam(['echo a,b'])).toThrow(/cannot go into/);
    expect(() => testsParam(['echo "x"'])).toThrow(/cannot go into/);
    expect(() => testsParam(['  '])).toThrow(/empty/);
  });
});

const haveGuest = existsSync(debianKernel()) && existsSync(qemuBinary()) && existsSync(join(debianKernel(), '../busybox'));

describe.skipIf(!haveGuest)('a Debian guest without the card', () => {
  let dir: string;
  let shm: string;
  const SHM_SIZE = 64 << 20;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vphi-guest-test-'));
    shm = join(dir, 'ivshmem');
    const fd = openSync(shm, 'w');
    ftruncateSync(fd, SHM_SIZE);
    closeSync(fd);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('boots, runs the tests, reports KTAP and powers off', { timeout: 180_000 }, async () => {
    // ivshmem-plain (1af4:1110, rev 1, class 0x050000): BAR0 256 B of registers,
    // BAR2 the 64 MiB file, no MSI-X, conventional PCI (no PCIe capability).
    const probe = [
      'vphi-probe all --vendor 0x1af4 --device 0x1110 --revision 1 --class 0x050000',
      `--mem-bar 2 --bar0-size ${SHM_SIZE} --mmio-bar 0 --spad-bar 2`,
      '--no-msix --no-pcie',
    ].join(' ');
    const r = await runGuest({
      tests: [probe, 'true', 'false', 'ls /sys/bus/pci/drivers/pcieport/0000:00:02.0'],
      memoryMiB: 256,
      // reaches vphi-probe as VPHI_BAR4_SIZE, its --bar4-size default
      append: 'vphi.bar4_size=0x100',
      timeoutMs: 150_000,
      extraArgs: [
        '-object', `memory-backend-file,id=shm,size=${SHM_SIZE},mem-path=${shm},share=on`,
        '-device', 'ivshmem-plain,memdev=shm,bus=rp0',
      ],
    });
    const why = r.lines.slice(-60).join('\n');
    expect(r.exit.code, why).toBe(0); // poweroff -f
    expect(r.rc, why).toBe(1); // 'false'
    const k = r.ktap;
    expect(k.plan).toBe(4);
    expect(k.results.map((x) => [x.name.split(' ')[0], x.ok])).toEqual([
      ['vphi-probe', true],
      ['true', true],
      ['false', false],
      ['ls', true], // the root port is bound to the built-in pcieport driver
    ]);
    const sub = k.results[0].subtests!;
    expect(sub.results.map((x) => x.name)).toEqual([
      'find-device', 'bar0-size', 'bar0-64bit-prefetchable', 'bar4-size', 'msix-bar',
      'revision', 'class', 'msix-capability', 'pcie-capability', 'enable', 'spad-readback', 'bar0-pattern',
    ]);
    expect(summarize(sub), why).toMatchObject({ failed: 0, missing: 0, ok: true });
    expect(findResult(k, 'vphi-probe', 'msix-capability')?.skipped).toBe(true);
    expect(findResult(k, 'vphi-probe', 'find-device')?.diagnostics.join()).toMatch(/at 0000:01:00\.0/);

    // What the guest wrote through the mmapped BAR is in the backing file.
    const fd = openSync(shm, 'r');
    const pattern = Buffer.alloc(4096);
    readSync(fd, pattern, 0, 4096, 0x100000);
    const spads = Buffer.alloc(64);
    readSync(fd, spads, 0, 64, 0x1ab20);
    closeSync(fd);
    const bad = patternMismatch(pattern, 1); // vphi-probe's --bar0-pattern-seed
    if (bad >= 0) throw new Error(`pattern byte ${bad} is ${pattern[bad]}`);
    for (let i = 0; i < 16; i++) expect(spads.readUInt32LE(4 * i)).toBe((0xc0de0000 | i) >>> 0);
  });
});
