/**
 * End to end: the x100 card served in this process, a Debian guest under
 * TCG, vphi-dma in the guest driving the DMA engine through BAR4 exactly as
 * drivers/dma/mic_x100_dma.c does. One guest runs vphi-dma once per group
 * (so that a failure names its group), then `vphi-dma all` (every group in
 * one process, on channels the first runs left behind, the error channel
 * still stopped). Every KTAP subtest is checked by name;
 * the host side then checks card memory against the patterns the guest
 * announced ("# gddr-check ADDR LEN SEED", "# gddr-u64 ADDR VALUE"), the
 * DMA errors in the trace, and the stopped channel's registers.
 * Skipped without the native addon or the guest kernel (run scripts/setup).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { nativeAvailable } from '../src/binding/native.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { debianKernel } from '../src/qemu/kernel.ts';
import type { DmaEvent, Tracer } from '../src/trace/tracer.ts';
import type { X100Card } from '../device/x100/card.ts';
import type { ChannelState } from '../device/x100/dma/engine.ts';
import { DCHERR_DESC_TYPE, DCHERR_DST_ADDR, DCHERR_SRC_ADDR, DSTAT_COUNT_MASK, DSTAT_QUIESCE } from '../device/x100/dma/regs.ts';
import type { CardGuest } from './card-guest.ts';
import type { GuestResult } from './guest.ts';
import { findResult, summarize, type KtapResult } from './ktap.ts';
import { DMA, DMA_GROUPS, runSuite } from './suites.ts';
import { patternMismatch as firstMismatch } from '../src/pattern.ts';

const ready = nativeAvailable() && existsSync(debianKernel()) && existsSync(qemuBinary());
/** vphi-dma's default channel for its error tests. */
const ERR_CH = 3;

/** The subtests of each vphi-dma group, in order (find-device first). */
const GROUPS: Record<(typeof DMA_GROUPS)[number], string[]> = {
  copy: [
    'copy-setup',
    ...['host-to-card', 'card-to-host', 'card-to-card'].flatMap((d) => ['64B', '4KiB', '64KiB', '1MiB', '4MiB'].map((s) => `${d}-${s}`)),
    'host-to-card-4MiB-small-pages',
    'card-to-host-4MiB-small-pages',
    'copy-batch-mixed',
  ],
  wrap: ['wrap-setup', 'wrap-laps', 'wrap-data'],
  status: ['status-setup', 'status-no-interrupt', 'status-interrupt', 'status-interrupt-masked', 'status-to-card-memory', 'status-linux-interrupt-pair'],
  errors: [
    'error-bad-type',
    'error-other-channel-works',
    'error-cleared-by-card-reset',
    'error-src-outside-card-memory',
    'error-src-unmapped-guest',
    'error-dst-unmapped-guest',
    'error-other-channel-after-errors',
  ],
};


/** Where card memory differs from the pattern (null: it matches). */
function patternMismatch(mem: Buffer, addr: number, len: number, seed: number): string | null {
  const at = firstMismatch(mem.subarray(addr, addr + len), seed);
  return at < 0 ? null : `first differing byte at 0x${(addr + at).toString(16)}: 0x${mem[addr + at].toString(16)}`;
}

/** Keeps what these checks need; every other trace call is a no-op. */
function dmaTracer(): Tracer & { errors: DmaEvent[]; engine: Record<string, unknown>[] } {
  const errors: DmaEvent[] = [];
  const engine: Record<string, unknown>[] = [];
  const noop = (): void => {};
  return {
    enabled: true,
    errors,
    engine,
    mmio: noop,
    cfg: noop,
    irq: noop,
    dma: (e) => {
      if (e.op === 'error') errors.push(e);
    },
    event: (kind, data) => {
      if (kind === 'dma-engine') engine.push(data);
    },
    close: noop,
  };
}

/** The guest's commands: one per group, then all of them in one process. */
const COMMANDS = DMA.commands;
const subtestsOf = (cmd: string): string[] => (cmd === 'vphi-dma all' ? DMA_GROUPS.flatMap((g) => GROUPS[g]) : GROUPS[cmd.split(' ')[1] as keyof typeof GROUPS]);

const explain = (r: KtapResult | undefined): string => (r ? [r.line, ...r.diagnostics.map((d) => `# ${d}`)].join('\n') : 'no such result');

describe.skipIf(!ready)('vphi-dma: the DMA engine driven from the guest', () => {
  let guest: CardGuest;
  let card: X100Card;
  let tracer: ReturnType<typeof dmaTracer>;
  let run: GuestResult;
  /**
   * The error channel when the guest reported its last error test (after
   * that, nothing touches it until the guest powers off, and the detach then
   * resets the card).
   */
  let stopped: { state: ChannelState; dstat: number; dcherr: number } | undefined;
  let stats: X100Card['dma']['stats'] | undefined;

  beforeAll(async () => {
    tracer = dmaTracer();
    guest = await runSuite(DMA, {
      tracer,
      onLine: (l, c) => {
        if (/^\s*(not )?ok \d+ - error-dst-unmapped-guest\b/.test(l)) {
          stopped = { state: c.dma.channel(ERR_CH), dstat: c.bar4.get(`DSTAT${ERR_CH}`), dcherr: c.bar4.get(`DCHERR${ERR_CH}`) };
        }
        if (/VPHI-GUEST-DONE/.test(l)) stats = { ...c.dma.stats };
      },
    });
    run = guest.run;
    card = guest.card;
  }, DMA.timeoutMs + 20_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => {
    const why = run.lines.slice(-60).join('\n');
    expect(run.ktap.results.map((r) => r.name), why).toEqual(COMMANDS);
    for (const cmd of COMMANDS) {
      const doc = findResult(run.ktap, cmd)?.subtests;
      expect(doc, `${cmd}: no KTAP output\n${why}`).toBeDefined();
      expect(doc!.errors, cmd).toEqual([]);
      expect(doc!.results.map((r) => r.name), cmd).toEqual(['find-device', ...subtestsOf(cmd)]);
    }
    expect(run.rc, why).toBe(0);
  });

  for (const cmd of COMMANDS) {
    it(`${cmd}: every subtest passed`, () => {
      const failed: string[] = [];
      const names = subtestsOf(cmd);
      for (const name of ['find-device', ...names]) {
        const r = findResult(run.ktap, cmd, name);
        if (!r?.ok || r.skipped) failed.push(`${name}:\n${explain(r)}`);
      }
      expect(failed.join('\n\n')).toBe('');
      const doc = findResult(run.ktap, cmd)!;
      expect(doc.ok, explain(doc)).toBe(true);
      expect(summarize(doc.subtests!)).toMatchObject({ total: names.length + 1, failed: 0, skipped: 0, ok: true });
    });
  }

  it('card memory holds what the guest copied there (host side)', () => {
    const mem = card.aperture;
    // The last announcement for an address wins: `vphi-dma all` rewrote what the group runs left.
    const last = new Map<number, { addr: number; len: number; seed: number }>();
    let announced = 0;
    for (const l of run.lines) {
      const m = l.match(/# gddr-check 0x([0-9a-f]+) (\d+) 0x([0-9a-f]+)/);
      if (!m) continue;
      const c = { addr: parseInt(m[1], 16), len: Number(m[2]), seed: parseInt(m[3], 16) };
      const prev = last.get(c.addr);
      if (prev) expect(prev.len, `card 0x${c.addr.toString(16)} announced twice with different lengths`).toBe(c.len);
      last.set(c.addr, c);
      announced++;
    }
    const checks = [...last.values()];
    // Per run: copy 5 host->card, 5 card->card, 1 from scattered pages; wrap 1; errors 3 (other channel twice, after the reset).
    expect(announced).toBe(30);
    expect(checks.length).toBe(15);
    expect(checks.reduce((n, c) => n + c.len, 0)).toBeGreaterThan(14 << 20);
    for (let i = 0; i < checks.length; i++) {
      for (let j = i + 1; j < checks.length; j++) {
        const [a, b] = [checks[i], checks[j]];
        expect(a.addr + a.len <= b.addr || b.addr + b.len <= a.addr, 'announced ranges overlap').toBe(true);
      }
    }
    for (const c of checks) {
      expect(patternMismatch(mem, c.addr, c.len, c.seed), `card 0x${c.addr.toString(16)}+${c.len} seed 0x${c.seed.toString(16)}`).toBeNull();
    }
    const u64 = run.lines.flatMap((l) => {
      const m = l.match(/# gddr-u64 0x([0-9a-f]+) 0x([0-9a-f]+)/);
      return m ? [{ addr: parseInt(m[1], 16), value: BigInt(`0x${m[2]}`) }] : [];
    });
    expect(u64.length).toBe(2);
    const lastU64 = u64[u64.length - 1];
    expect(mem.readBigUInt64LE(lastU64.addr)).toBe(lastU64.value);
  });

  it('the engine reported each bad descriptor on the error channel, where the guest saw it stop', () => {
    const seen = run.lines.flatMap((l) => {
      const m = l.match(/# dma-error ch(\d+) index (\d+) dcherr 0x([0-9a-f]+)/);
      return m ? [{ ch: Number(m[1]), idx: Number(m[2]), dcherr: parseInt(m[3], 16) }] : [];
    });
    const traced = tracer.errors.map((e) => ({ ch: e.ch, idx: e.idx, dcherr: e.dcherr }));
    expect(traced).toEqual(seen);
    const perRun = [
      { ch: ERR_CH, idx: 2, dcherr: DCHERR_DESC_TYPE }, // type 7
      { ch: ERR_CH, idx: 3, dcherr: DCHERR_SRC_ADDR }, // source past card memory (after a reset and one copy)
      { ch: ERR_CH, idx: 2, dcherr: DCHERR_SRC_ADDR }, // source in unmapped guest memory
      { ch: ERR_CH, idx: 2, dcherr: DCHERR_DST_ADDR }, // destination in unmapped guest memory
    ];
    expect(traced).toEqual([...perRun, ...perRun]); // `vphi-dma errors`, then `vphi-dma all`
    for (const k of [0, 4]) {
      expect(String(tracer.errors[k].reason)).toMatch(/type 7/);
      expect(String(tracer.errors[k + 1].reason)).toMatch(/source 0x20000000\b/);
      expect(String(tracer.errors[k + 2].reason)).toMatch(/source 0xc000000000\b/);
      expect(String(tracer.errors[k + 3].reason)).toMatch(/destination 0xc000000000\b/);
    }
    // Card resets cleared the errors: three per run, plus the one `all` needed for the channel `errors` left stopped.
    expect(tracer.engine.filter((e) => e.action === 'reset').length).toBeGreaterThanOrEqual(7);
    // Interrupts: status-interrupt and status-linux-interrupt-pair, in each of two runs (the masked one raised nothing).
    expect(stats).toMatchObject({ errors: 8, interrupts: 4 });

    // The last error, as the registers held it while the guest still ran.
    expect(stopped).toBeDefined();
    expect(stopped!.state).toMatchObject({ tail: 2, error: DCHERR_DST_ADDR, enabled: true, hostOwned: true, size: 64 });
    expect(stopped!.dcherr).toBe(DCHERR_DST_ADDR);
    expect(stopped!.dstat & DSTAT_QUIESCE).toBe(DSTAT_QUIESCE);
    expect(stopped!.dstat & DSTAT_COUNT_MASK).toBe(2);
    expect(stopped!.state.head).toBe(5);
  });
});
