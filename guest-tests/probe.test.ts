/**
 * End to end: the x100 card served in this process, a Debian guest under
 * TCG, vphi-probe in the guest. The host checks that the guest's scratchpad
 * writes reached the register file and its aperture writes the memfd.
 * Skipped without the native addon or the guest kernel (run scripts/setup).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nativeAvailable } from '../src/binding/native.ts';
import { startCard } from '../src/cli/serve.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { debianKernel } from '../src/qemu/kernel.ts';
import { patternMismatch } from '../src/pattern.ts';
import type { DeviceServer } from '../src/server.ts';
import type { X100Card } from '../device/x100/card.ts';
import { runGuest } from './guest.ts';
import { findResult, summarize } from './ktap.ts';

const ready = nativeAvailable() && existsSync(debianKernel()) && existsSync(qemuBinary());
const APERTURE = 0x2000_0000;
const PATTERN_AT = 0x10_0000;

describe.skipIf(!ready)('vphi-probe against the card', () => {
  let dir: string;
  let server: DeviceServer<X100Card>;
  let socketPath: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vphi-probe-test-'));
    socketPath = join(dir, 'card.sock');
    server = await startCard({ socketPath, apertureSize: APERTURE, trace: join(dir, 'trace.jsonl'), verbose: false }, () => {});
  });
  afterAll(() => {
    server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds the card, checks its PCI identity and BARs, and reaches SPADs and the aperture', { timeout: 180_000 }, async () => {
    // Snapshots taken while the guest still runs (a detaching client resets the card).
    let spads: number[] | undefined;
    let pattern: Buffer | undefined;
    const r = await runGuest({
      socketPath,
      tests: [`vphi-probe all --bar0-size ${APERTURE} --bar0-pattern-offset ${PATTERN_AT}`],
      memoryMiB: 512,
      timeoutMs: 150_000,
      onLine: (l) => {
        if (/^\s*ok \d+ - spad-readback/.test(l)) spads = Array.from({ length: 16 }, (_, i) => server.device.bar4.get(`SPAD${i}`));
        if (/^\s*ok \d+ - bar0-pattern/.test(l)) pattern = Buffer.from(server.device.aperture.subarray(PATTERN_AT, PATTERN_AT + 4096));
      },
    });
    const why = r.lines.slice(-40).join('\n');
    expect(r.rc, why).toBe(0);
    const probe = r.ktap.results[0]?.subtests;
    expect(probe, why).toBeDefined();
    expect(summarize(probe!), why).toMatchObject({ total: 12, failed: 0, skipped: 0, ok: true });
    expect(findResult(r.ktap, 'vphi-probe', 'find-device')?.diagnostics.join()).toMatch(/8086:225c at 0000:01:00\.0/);

    expect(spads).toEqual(Array.from({ length: 16 }, (_, i) => (0xc0de0000 | i) >>> 0));

    // The trace names what the guest touched: config space and BAR4 registers.
    server.close();
    const events = readFileSync(join(dir, 'trace.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const mmio = events.filter((e) => e.kind === 'mmio');
    for (let i = 0; i < 16; i++) {
      expect(mmio.some((e) => e.op === 'w' && e.reg === `SPAD${i}` && e.block === 'spad' && e.val === (0xc0de0000 | i) >>> 0), `SPAD${i} write`).toBe(true);
      expect(mmio.some((e) => e.op === 'r' && e.reg === `SPAD${i}`), `SPAD${i} read`).toBe(true);
    }
    const cfg = events.filter((e) => e.kind === 'cfg');
    for (const reg of ['VENDOR_ID', 'DEVICE_ID', 'COMMAND', 'BAR0', 'BAR4', 'MSIX.CTRL']) {
      expect(cfg.some((e) => e.reg === reg), `config ${reg}`).toBe(true);
    }
    expect(events.some((e) => e.kind === 'conn' && e.attached === true)).toBe(true);
    expect(events.some((e) => e.kind === 'dma' && e.op === 'map')).toBe(true);
    expect(pattern).toBeDefined();
    const bad = patternMismatch(pattern!, 1); // vphi-probe's --bar0-pattern-seed
    if (bad >= 0) throw new Error(`aperture byte 0x${(PATTERN_AT + bad).toString(16)} is ${pattern![bad]}`);
  });
});
