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
 * Each KTAP result is its own test. A card that does not come online fails
 * (CARD_SCIF_NODE); VPHI_SCIF_STRICT=1 is kept for one-off runs.
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC
 * guest kernel"), VPHI_SCIF_CYCLES (20), VPHI_SCIF_STRICT=1,
 * VPHI_SCIF_ONLINE_TIMEOUT (seconds, 30).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadNativeBinding, nativeAvailable } from '../src/binding/native.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { MIC_APPEND, micKernel } from '../src/qemu/kernel.ts';
import { DeviceServer } from '../src/server.ts';
import { x100Spec, type X100Card } from '../device/x100/card.ts';
import { cardServices } from '../device/x100/services/index.ts';
import { micGuestFiles } from '../src/guest/image.ts';
import { GUEST_BIN } from '../src/paths.ts';
import { runGuest, type GuestResult } from './guest.ts';
import { findResult, parseKtap, type KtapResult } from './ktap.ts';

const kernel = micKernel();
if (!kernel) console.log('SKIP: no MIC guest kernel');
const ready = kernel !== null && nativeAvailable() && existsSync(qemuBinary());

/**
 * True once the card's SCIF node and services are merged: a card that does
 * not come online (or a service that does not answer) then fails.
 */
const CARD_SCIF_NODE = true;
const STRICT = CARD_SCIF_NODE || process.env.VPHI_SCIF_STRICT === '1';
const CYCLES = Math.max(1, Number(process.env.VPHI_SCIF_CYCLES ?? 20));
/** Per guest command (init.sh's vphi.timeout) and for the whole guest: a cycle takes a few seconds, 10 at most. */
const COMMAND_TIMEOUT_S = 60 + CYCLES * 10;
const GUEST_TIMEOUT_MS = (120 + 2 * CYCLES * 10) * 1000;
/** Seconds mic-scif-boot waits for `online` (its default: 30). */
const ONLINE_TIMEOUT = process.env.VPHI_SCIF_ONLINE_TIMEOUT;

const APERTURE = 0x2000_0000;
/** vphi-scif's subtests, in its order. */
const CLIENT = ['nodeids', 'echo', 'sink', 'source', 'refused', 'dial', 'many', 'close-host', 'close-card'];
const BENCH = ['rtt', 'stream'];

const CMD = {
  boot: 'mic-scif-boot',
  loop: 'mic-scif-loop all',
  loopBench: 'mic-scif-loop bench',
  card: 'vphi-scif all --node 1',
  cardBench: 'vphi-scif bench --node 1',
  shutdown: `vphi-scif cycle --how shutdown --cycles ${CYCLES}`,
  reset: `vphi-scif cycle --how reset --cycles ${CYCLES}`,
} as const;

const explain = (r: KtapResult | undefined): string => (r ? [...r.diagnostics.map((d) => `# ${d}`), r.line].join('\n') : 'no such result');

/** The benchmark diagnostics ("rtt_us=...", "stream_...") of a command's subtests. */
const benchLines = (r: KtapResult | undefined): string[] =>
  (r?.subtests?.results ?? []).flatMap((x) => x.diagnostics.filter((d) => /^(rtt_us|stream_)/.test(d)));

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
  let dir: string;
  let server: DeviceServer<X100Card>;
  let run: GuestResult;
  let online = false;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vphi-scif-test-'));
    const socketPath = join(dir, 'card.sock');
    server = new DeviceServer(loadNativeBinding(), x100Spec({ apertureSize: APERTURE, services: cardServices('all') }), { socketPath });
    const lines: string[] = [];
    try {
      run = await runGuest({
        socketPath,
        kernel: kernel!,
        append: [MIC_APPEND, `vphi.timeout=${COMMAND_TIMEOUT_S}`, STRICT && 'vphi.scif_strict=1', ONLINE_TIMEOUT && `vphi.scif_online_timeout=${ONLINE_TIMEOUT}`]
          .filter(Boolean)
          .join(' '),
        tests: Object.values(CMD),
        files: micGuestFiles(),
        memoryMiB: 512,
        timeoutMs: GUEST_TIMEOUT_MS,
        onLine: (l) => lines.push(l),
      });
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- guest console (last 60 lines) ---\n${lines.slice(-60).join('\n')}`);
    }
    const st = findResult(run.ktap, CMD.boot, 'state-online');
    online = !!st?.ok && !st.skipped;
    if (!online && !STRICT) console.log('SKIP: card SCIF node not online');
    for (const l of [...benchLines(findResult(run.ktap, CMD.loopBench)), ...benchLines(findResult(run.ktap, CMD.cardBench))])
      console.log(`vphi-scif: ${l}`);
  }, GUEST_TIMEOUT_MS + 30_000);

  afterAll(() => {
    server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the guest ran every command to the end', () => {
    const why = run.lines.slice(-80).join('\n');
    expect(run.ktap.errors, why).toEqual([]);
    expect(run.ktap.results.map((r) => r.name), why).toEqual(Object.values(CMD));
  });

  it('the card was booted (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'node-1-running', 'scif-peer-dev1']) {
      const r = findResult(run.ktap, CMD.boot, name);
      expect(r?.ok, `${name}\n${explain(r)}`).toBe(true);
    }
  });

  it('the card came online', (ctx) => {
    const r = findResult(run.ktap, CMD.boot, 'state-online');
    if (!online && !STRICT) ctx.skip();
    expect(online, `card SCIF node not online:\n${explain(r)}`).toBe(true);
  });

  describe('the host loopback node 0 (vphi-scif serve)', () => {
    for (const name of CLIENT) {
      it(name, () => {
        const r = findResult(run.ktap, CMD.loop, name);
        expect(r?.ok && !r.skipped, explain(r)).toBe(true);
      });
    }
    for (const name of BENCH) {
      it(`bench ${name}`, () => {
        const r = findResult(run.ktap, CMD.loopBench, name);
        expect(r?.ok && !r.skipped, explain(r)).toBe(true);
        expect(r!.diagnostics.some((d) => /^(rtt_us|stream_(h2c|c2h)_bytes)=\d/.test(d)), explain(r)).toBe(true);
      });
    }
  });

  describe("the card's services on node 1", () => {
    /** A subtest of a card command: skipped with the card offline unless STRICT. */
    const cardResult = (ctx: { skip: () => void }, cmd: string, name: string): void => {
      if (!online && !STRICT) ctx.skip();
      const doc = findResult(run.ktap, cmd);
      const r = findResult(run.ktap, cmd, name);
      expect(r?.ok && !r.skipped, `${cmd}: ${name}\n${r ? explain(r) : explain(doc)}`).toBe(true);
    };
    for (const name of CLIENT) it(name, (ctx) => cardResult(ctx, CMD.card, name));
    for (const name of BENCH) it(`bench ${name}`, (ctx) => cardResult(ctx, CMD.cardBench, name));
    // Each cycle holds an echo connection across it, which must see the disconnect.
    for (let k = 1; k <= CYCLES; k++) {
      it(`cycle shutdown-${k}: shutdown, reset, boot, online`, (ctx) => cardResult(ctx, CMD.shutdown, `shutdown-${k}`));
    }
    for (let k = 1; k <= CYCLES; k++) {
      it(`cycle reset-${k}: reset, boot, online`, (ctx) => cardResult(ctx, CMD.reset, `reset-${k}`));
    }
  });

  it('the guest passed with no failed test', () => {
    expect(run.rc, run.lines.slice(-60).join('\n')).toBe(0);
  });
});
