/**
 * SCIF RMA end to end with the real host stack: the x100 card served in this
 * process, the MIC guest kernel (mic_host, scif, mic_cosm built in) under
 * TCG, and guest-tests/vphi-scif-rma.c doing SCIF_REG, SCIF_WRITETO/READFROM,
 * SCIF_VWRITETO/VREADFROM, fences, signals and mmap through /dev/scif against
 * an RMA agent. In one guest, in order:
 *
 *   mic-scif-boot                 bootmode/firmware/..., `boot`, wait for `online`
 *   mic-scif-rma-loop all         every subtest against the host's own loopback
 *                                 node 0, whose agent is `vphi-scif-rma serve`
 *   mic-scif-rma-loop bench
 *   vphi-scif-rma all --node 1    every subtest against the card's agent (port
 *                                 2003), with a 256 MiB soak
 *   vphi-scif-rma bench --node 1
 *
 * Each KTAP result is its own test, and each must pass: a card that does
 * not come online, or any subtest that fails, fails.
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC
 * guest kernel"), VPHI_RMA_SOAK_MIB (256), VPHI_SCIF_ONLINE_TIMEOUT (seconds, 30),
 * VPHI_RMA_CONSOLE=FILE (the whole guest console goes there).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { GUEST_BIN } from '../src/paths.ts';
import type { GuestResult } from './guest.ts';
import { findResult, parseKtap } from './ktap.ts';
import { expectPassed, expectRanToEnd, explain, micSuiteKernel, micSuiteReady, subtestDiags, type MicGuest } from './mic-guest.ts';
import { RMA, RMA_CMD as CMD, RMA_SOAK_MIB as SOAK_MIB, runSuite } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);
/** vphi-scif-rma's subtests in `all`, in its order. */
const SUBTESTS = [
  'aligned',
  'unaligned',
  'ordered',
  'usecpu',
  'span',
  'vcopy',
  'usecache',
  'card-writeto',
  'card-readfrom',
  'fence',
  'signal',
  'mmap',
  'cleanup',
  'errors',
  'soak',
];

/** The directions of `bench`'s "rma_<dir>_bytes=N MBps=X" lines. */
const BENCH_DIRS = ['writeto', 'readfrom', 'vwriteto', 'vreadfrom', 'card_writeto', 'card_readfrom'];

/** The diagnostics worth printing of a command's subtests: "rma_...=" (bench) and "soak: ...". */
const BENCH_DIAG = /^(rma_|soak:)/;

describe('vphi-scif-rma on the build host (static, no SCIF needed)', () => {
  it('selftest: pattern() and crc32() are those of the card services', () => {
    const out = execFileSync(join(GUEST_BIN, 'vphi-scif-rma'), ['selftest'], { encoding: 'utf8' });
    const doc = parseKtap(out.split('\n'));
    expect(doc.results.map((r) => [r.name, r.ok]), out).toEqual([['selftest', true]]);
  });

  it('an unknown subtest is a usage error (status 2)', () => {
    let status: number | null = null;
    try {
      execFileSync(join(GUEST_BIN, 'vphi-scif-rma'), ['bogus'], { stdio: 'pipe' });
    } catch (e) {
      status = (e as { status: number | null }).status;
    }
    expect(status).toBe(2);
  });
});

describe.skipIf(!ready)('SCIF RMA through /dev/scif (Linux MIC host stack, vphi-scif-rma)', () => {
  let guest: MicGuest;
  let run: GuestResult;

  beforeAll(async () => {
    guest = await runSuite(RMA, { kernel: kernel!, consoleFile: process.env.VPHI_RMA_CONSOLE });
    run = guest.run;
    for (const c of [CMD.loop, CMD.loopBench, CMD.card, CMD.cardBench])
      for (const l of subtestDiags(findResult(run.ktap, c), BENCH_DIAG)) console.log(`vphi-scif-rma (${c}): ${l}`);
  }, RMA.timeoutMs + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, RMA.commands));

  it('the card came online (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'state-online', 'node-1-running']) expectPassed(run, CMD.boot, name);
  });

  describe('the host loopback node 0 (vphi-scif-rma serve)', () => {
    for (const name of SUBTESTS) it(name, () => expectPassed(run, CMD.loop, name));
    it('soak moved its bytes with no mismatch', () => {
      const r = findResult(run.ktap, CMD.loop, 'soak');
      expect(r?.diagnostics.some((d) => /^soak: transfers=[1-9]\d* bytes=\d+ mismatches=0 failed=0/.test(d)), explain(r)).toBe(true);
    });
    it('bench', () => {
      expectPassed(run, CMD.loopBench, 'bench');
      const r = findResult(run.ktap, CMD.loopBench, 'bench');
      for (const d of BENCH_DIRS)
        expect(r!.diagnostics.some((x) => x.startsWith(`rma_${d}_bytes=4096 MBps=`)), `${d}\n${explain(r)}`).toBe(true);
    });
  });

  describe("the card's RMA agent on node 1 (port 2003)", () => {
    for (const name of SUBTESTS) it(name, () => expectPassed(run, CMD.card, name));
    it(`soak: ${SOAK_MIB} MiB with no mismatch`, () => {
      const r = findResult(run.ktap, CMD.card, 'soak');
      const m = r?.diagnostics.map((d) => /^soak: transfers=\d+ bytes=(\d+) mismatches=0 failed=0/.exec(d)).find(Boolean);
      expect(m && Number(m[1]) >= SOAK_MIB * 1024 * 1024, explain(r)).toBe(true);
    });
    it('bench', () => {
      expectPassed(run, CMD.cardBench, 'bench');
      const r = findResult(run.ktap, CMD.cardBench, 'bench');
      for (const d of BENCH_DIRS)
        expect(r!.diagnostics.some((x) => x.startsWith(`rma_${d}_bytes=16777216 MBps=`)), `${d}\n${explain(r)}`).toBe(true);
    });
  });

  it('the guest passed with no failed test', () => {
    expect(run.rc, run.lines.slice(-60).join('\n')).toBe(0);
  });
});
