/**
 * `vphi test` end to end, as a user runs it: bin/vphi boots the probe
 * suite's Debian guest and, with a MIC guest kernel, the mic-intx suite's
 * MIC guest; its stdout is one KTAP document, its stderr the progress lines
 * and the summary, its exit status 0. Without a MIC kernel the MIC suite
 * is skipped with the one SKIP line. Skipped without the addon, QEMU or
 * the Debian kernel (run scripts/setup).
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { nativeAvailable } from '../src/binding/native.ts';
import { REPO_ROOT } from '../src/paths.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { debianKernel, micKernel } from '../src/qemu/kernel.ts';
import { findResult, parseKtap, summarize } from './ktap.ts';
import { MIC_INTX, PROBE } from './suites.ts';

const ready = nativeAvailable() && existsSync(debianKernel()) && existsSync(qemuBinary());
const kernel = micKernel();

function vphi(args: string[]): Promise<{ rc: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const p = spawn(join(REPO_ROOT, 'bin/vphi'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (rc) => resolve({ rc, out, err }));
  });
}

describe.skipIf(!ready)('vphi test', () => {
  it('runs the probe and mic-intx suites: KTAP on stdout, a progress line per command, the summary, exit 0', { timeout: PROBE.timeoutMs + MIC_INTX.timeoutMs + 30_000 }, async () => {
    const r = await vphi(['test', '--only', 'probe,mic-intx']);
    const why = `${r.err}\n${r.out.split('\n').slice(-40).join('\n')}`;
    expect(r.rc, why).toBe(0);
    const doc = parseKtap(r.out.split('\n'));
    expect(doc.errors, why).toEqual([]);
    expect(doc.results.map((x) => x.name)).toEqual(['probe', 'mic-intx']);
    // The guest's own document under its suite: vphi-probe's 12 subtests, all passed.
    const probe = findResult(doc, 'probe', PROBE.commands[0]);
    expect(probe?.ok, why).toBe(true);
    expect(summarize(probe!.subtests!)).toMatchObject({ total: 12, failed: 0, ok: true });
    const progress = r.err.split('\n').filter((l) => /^\[\d+\/\d+\] /.test(l));
    const n = PROBE.commands.length + MIC_INTX.commands.length;
    if (kernel) {
      expect(doc.results[1].ok, why).toBe(true);
      expect(doc.results[1].subtests?.results.map((x) => x.name)).toEqual([...MIC_INTX.commands]);
      expect(progress.map((l) => l.replace(/ \(\d+\.\d s\)$/, ''))).toEqual([
        `[1/${n}] ok     probe: ${PROBE.commands[0]}`,
        ...MIC_INTX.commands.map((c, i) => `[${i + 2}/${n}] ok     mic-intx: ${c}`),
      ]);
      expect(r.err).toMatch(new RegExp(`^${n} passed, 0 failed, 0 skipped \\(\\d+ s\\)$`, 'm'));
    } else {
      expect(r.err.split('\n').filter((l) => l.startsWith('SKIP: no MIC guest kernel'))).toHaveLength(1);
      expect(doc.results[1].directive).toMatch(/SKIP/);
      expect(r.err).toMatch(new RegExp(`^1 passed, 0 failed, ${MIC_INTX.commands.length} skipped`, 'm'));
    }
  });

  it('an unknown suite is one clear line and exit status 2', { timeout: 30_000 }, async () => {
    const r = await vphi(['test', '--only', 'nosuch']);
    expect(r.rc).toBe(2);
    expect(r.err.trim().split('\n')).toEqual(['vphi: --only: unknown suite "nosuch" (suites: probe, dma, mic, mic-intx, scif, rma, fault, cards, cards8)']);
    expect(r.out).toBe('');
  });
});
