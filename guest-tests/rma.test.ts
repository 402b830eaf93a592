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
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
/**
 * Opt-in (VPHI_RMA_GUEST=1) until a guest-kernel oops seen once under the full
 * parallel suite (__queue_work, from the host SCIF driver) is understood; it
 * passed on 4.9.45 and 5.8.1 when run on its own.
 */
const OPT_IN = process.env.VPHI_RMA_GUEST === '1';
if (kernel && !OPT_IN) console.log('SKIP: MIC guest RMA suite is opt-in (VPHI_RMA_GUEST=1)');
const ready = OPT_IN && kernel !== null && nativeAvailable() && existsSync(qemuBinary());

const SOAK_MIB = Math.max(1, Number(process.env.VPHI_RMA_SOAK_MIB ?? 256));
/** Per guest command (init.sh's vphi.timeout) and for the whole guest. */
const COMMAND_TIMEOUT_S = 900;
const GUEST_TIMEOUT_MS = 2400 * 1000;
/** Seconds mic-scif-boot waits for `online` (its default: 30). */
const ONLINE_TIMEOUT = process.env.VPHI_SCIF_ONLINE_TIMEOUT;

const APERTURE = 0x2000_0000;
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

const CMD = {
  boot: 'mic-scif-boot',
  loop: 'mic-scif-rma-loop all',
  loopBench: 'mic-scif-rma-loop bench --bench-max 4194304 --bench-total 4194304',
  card: `vphi-scif-rma all --node 1 --soak-bytes ${SOAK_MIB * 1024 * 1024}`,
  cardBench: 'vphi-scif-rma bench --node 1',
} as const;

const explain = (r: KtapResult | undefined): string => (r ? [...r.diagnostics.map((d) => `# ${d}`), r.line].join('\n') : 'no such result');

/** The diagnostics worth printing of a command's subtests: "rma_...=" (bench) and "soak: ...". */
const benchLines = (r: KtapResult | undefined): string[] =>
  (r?.subtests?.results ?? []).flatMap((x) => x.diagnostics.filter((d) => /^(rma_|soak:)/.test(d)));

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
  let dir: string;
  let server: DeviceServer<X100Card>;
  let run: GuestResult;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vphi-rma-test-'));
    const socketPath = join(dir, 'card.sock');
    server = new DeviceServer(loadNativeBinding(), x100Spec({ apertureSize: APERTURE, services: cardServices('all') }), { socketPath });
    const lines: string[] = [];
    try {
      run = await runGuest({
        socketPath,
        kernel: kernel!,
        append: [MIC_APPEND, `vphi.timeout=${COMMAND_TIMEOUT_S}`, 'vphi.scif_strict=1', ONLINE_TIMEOUT && `vphi.scif_online_timeout=${ONLINE_TIMEOUT}`]
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
    } finally {
      if (process.env.VPHI_RMA_CONSOLE) writeFileSync(process.env.VPHI_RMA_CONSOLE, lines.join('\n') + '\n');
    }
    for (const c of [CMD.loop, CMD.loopBench, CMD.card, CMD.cardBench]) for (const l of benchLines(findResult(run.ktap, c))) console.log(`vphi-scif-rma (${c}): ${l}`);
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

  it('the card came online (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'state-online', 'node-1-running']) {
      const r = findResult(run.ktap, CMD.boot, name);
      expect(r?.ok && !r.skipped, `${name}\n${explain(r)}`).toBe(true);
    }
  });

  /** A subtest of cmd must have passed (not skipped). */
  const passed = (cmd: string, name: string): void => {
    const doc = findResult(run.ktap, cmd);
    const r = findResult(run.ktap, cmd, name);
    expect(r?.ok && !r.skipped, `${cmd}: ${name}\n${r ? explain(r) : explain(doc)}`).toBe(true);
  };

  describe('the host loopback node 0 (vphi-scif-rma serve)', () => {
    for (const name of SUBTESTS) it(name, () => passed(CMD.loop, name));
    it('soak moved its bytes with no mismatch', () => {
      const r = findResult(run.ktap, CMD.loop, 'soak');
      expect(r?.diagnostics.some((d) => /^soak: transfers=[1-9]\d* bytes=\d+ mismatches=0 failed=0/.test(d)), explain(r)).toBe(true);
    });
    it('bench', () => {
      passed(CMD.loopBench, 'bench');
      const r = findResult(run.ktap, CMD.loopBench, 'bench');
      for (const d of BENCH_DIRS)
        expect(r!.diagnostics.some((x) => x.startsWith(`rma_${d}_bytes=4096 MBps=`)), `${d}\n${explain(r)}`).toBe(true);
    });
  });

  describe("the card's RMA agent on node 1 (port 2003)", () => {
    const { card, cardBench } = CMD;
    for (const name of SUBTESTS) it(name, () => passed(card, name));
    it(`soak: ${SOAK_MIB} MiB with no mismatch`, () => {
      const r = findResult(run.ktap, card, 'soak');
      const m = r?.diagnostics.map((d) => /^soak: transfers=\d+ bytes=(\d+) mismatches=0 failed=0/.exec(d)).find(Boolean);
      expect(m && Number(m[1]) >= SOAK_MIB * 1024 * 1024, explain(r)).toBe(true);
    });
    it('bench', () => {
      passed(cardBench, 'bench');
      const r = findResult(run.ktap, cardBench, 'bench');
      for (const d of BENCH_DIRS)
        expect(r!.diagnostics.some((x) => x.startsWith(`rma_${d}_bytes=16777216 MBps=`)), `${d}\n${explain(r)}`).toBe(true);
    });
  });

  it('the guest passed with no failed test', () => {
    expect(run.rc, run.lines.slice(-60).join('\n')).toBe(0);
  });
});
