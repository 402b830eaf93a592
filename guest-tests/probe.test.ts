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
import { qemuBinary } from '../src/qemu/command.ts';
import { debianKernel } from '../src/qemu/kernel.ts';
import { patternMismatch } from '../src/pattern.ts';
import type { CardGuest } from './card-guest.ts';
import { findResult, summarize } from './ktap.ts';
import { PROBE, PROBE_PATTERN_AT as PATTERN_AT, runSuite } from './suites.ts';

const ready = nativeAvailable() && existsSync(debianKernel()) && existsSync(qemuBinary());

describe.skipIf(!ready)('vphi-probe against the card', () => {
  let dir: string;
  let guest: CardGuest | undefined;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'vphi-probe-test-'));
  });
  afterAll(() => {
    guest?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('finds the card, checks its PCI identity and BARs, and reaches SPADs and the aperture', { timeout: PROBE.timeoutMs + 30_000 }, async () => {
    // Snapshots taken while the guest still runs (a detaching client resets the card).
    let spads: number[] | undefined;
    let pattern: Buffer | undefined;
    guest = await runSuite(PROBE, {
      trace: join(dir, 'trace.jsonl'),
      onLine: (l, card) => {
        if (/^\s*ok \d+ - spad-readback/.test(l)) spads = Array.from({ length: 16 }, (_, i) => card.bar4.get(`SPAD${i}`));
        if (/^\s*ok \d+ - bar0-pattern/.test(l)) pattern = Buffer.from(card.aperture.subarray(PATTERN_AT, PATTERN_AT + 4096));
      },
    });
    const r = guest.run;
    const why = r.lines.slice(-40).join('\n');
    expect(r.rc, why).toBe(0);
    const probe = r.ktap.results[0]?.subtests;
    expect(probe, why).toBeDefined();
    expect(summarize(probe!), why).toMatchObject({ total: 12, failed: 0, skipped: 0, ok: true });
    expect(findResult(r.ktap, 'vphi-probe', 'find-device')?.diagnostics.join()).toMatch(/8086:225c at 0000:01:00\.0/);

    expect(spads).toEqual(Array.from({ length: 16 }, (_, i) => (0xc0de0000 | i) >>> 0));

    // The trace names what the guest touched: config space and BAR4 registers (complete once the card is closed).
    guest.close();
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
