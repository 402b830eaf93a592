/**
 * SCIF end to end with the real host stack: the x100 card served in this
 * process, the MIC guest kernel (mic_host, scif, mic_cosm built in) under
 * TCG, and guest-tests/vphi-scif.c talking to the card's services through
 * the /dev/scif ioctls. In one guest, in order:
 *
 *   mic-scif-boot          bootmode/firmware/..., `boot`, wait for `online`
 *   mic-scif-loop all      every client subtest against the host's own
 *                          loopback node 0, served by `vphi-scif serve`
 *   mic-scif-loop bench    rtt and stream on the loopback
 *   vphi-scif all --node 1 every client subtest against the card's services
 *   vphi-scif bench --node 1
 *   vphi-scif cycle ...    CYCLES x (shutdown, reset, boot) and CYCLES x
 *                          (reset, boot), each holding an echo connection
 *                          across it that must see the disconnect
 *
 * Each KTAP result is its own test, and each must pass: a card that does
 * not come online fails.
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC
 * guest kernel"), VPHI_SCIF_CYCLES (20), VPHI_SCIF_ONLINE_TIMEOUT (seconds, 30).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { GUEST_BIN } from '../src/paths.ts';
import type { GuestResult } from './guest.ts';
import { findResult, parseKtap } from './ktap.ts';
import { expectPassed, expectRanToEnd, explain, micSuiteKernel, micSuiteReady, subtestDiags, type MicGuest } from './mic-guest.ts';
import { runSuite, SCIF, SCIF_CMD as CMD, SCIF_CYCLES as CYCLES } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

/** vphi-scif's subtests, in its order. */
const CLIENT = ['nodeids', 'echo', 'sink', 'source', 'refused', 'dial', 'many', 'close-host', 'close-card'];
const BENCH = ['rtt', 'stream'];

/** The benchmark diagnostics ("rtt_us=...", "stream_...") of a command's subtests. */
const BENCH_DIAG = /^(rtt_us|stream_)/;

describe('vphi-scif on the build host (static, no SCIF needed)', () => {
  it('selftest: pattern() and crc32() are those of the card services', () => {
    const out = execFileSync(join(GUEST_BIN, 'vphi-scif'), ['selftest'], { encoding: 'utf8' });
    const doc = parseKtap(out.split('\n'));
    expect(doc.results.map((r) => [r.name, r.ok]), out).toEqual([['selftest', true]]);
  });

  it('serve: a word that is neither a known port nor SERVICE=PORT is a usage error (status 2)', () => {
    let status: number | null = null;
    try {
      execFileSync(join(GUEST_BIN, 'vphi-scif'), ['serve', 'bogus=1'], { stdio: 'pipe' });
    } catch (e) {
      status = (e as { status: number | null }).status;
    }
    expect(status).toBe(2);
  });
});

describe.skipIf(!ready)('SCIF through /dev/scif (Linux MIC host stack, vphi-scif)', () => {
  let guest: MicGuest;
  let run: GuestResult;

  beforeAll(async () => {
    guest = await runSuite(SCIF, { kernel: kernel! });
    run = guest.run;
    for (const l of [...subtestDiags(findResult(run.ktap, CMD.loopBench), BENCH_DIAG), ...subtestDiags(findResult(run.ktap, CMD.cardBench), BENCH_DIAG)])
      console.log(`vphi-scif: ${l}`);
  }, SCIF.timeoutMs + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, SCIF.commands));

  it('the card was booted (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'node-1-running', 'scif-peer-dev1']) {
      const r = findResult(run.ktap, CMD.boot, name);
      expect(r?.ok, `${name}\n${explain(r)}`).toBe(true);
    }
  });

  it('the card came online', () => expectPassed(run, CMD.boot, 'state-online'));

  describe('the host loopback node 0 (vphi-scif serve)', () => {
    for (const name of CLIENT) it(name, () => expectPassed(run, CMD.loop, name));
    for (const name of BENCH) {
      it(`bench ${name}`, () => {
        expectPassed(run, CMD.loopBench, name);
        const r = findResult(run.ktap, CMD.loopBench, name);
        expect(r!.diagnostics.some((d) => /^(rtt_us|stream_(h2c|c2h)_bytes)=\d/.test(d)), explain(r)).toBe(true);
      });
    }
  });

  describe("the card's services on node 1", () => {
    for (const name of CLIENT) it(name, () => expectPassed(run, CMD.card, name));
    for (const name of BENCH) it(`bench ${name}`, () => expectPassed(run, CMD.cardBench, name));
    // Each cycle holds an echo connection across it, which must see the disconnect.
    for (let k = 1; k <= CYCLES; k++) {
      it(`cycle shutdown-${k}: shutdown, reset, boot, online`, () => expectPassed(run, CMD.shutdown, `shutdown-${k}`));
    }
    for (let k = 1; k <= CYCLES; k++) {
      it(`cycle reset-${k}: reset, boot, online`, () => expectPassed(run, CMD.reset, `reset-${k}`));
    }
  });

  it('the guest passed with no failed test', () => {
    expect(run.rc, run.lines.slice(-60).join('\n')).toBe(0);
  });
});
