/**
 * The kill, reset and cycles modes of `npm run soak` (scripts/soak.ts has
 * the usage): MIC guests against one `vphi serve` process
 * (guest-tests/serve-guest.ts), whose fds, memfds and RSS are read from /proc.
 */
import { killAndAwaitReset, killWhileOnline, resetViaMonitor, startMicQemu, startServe, waitLines, type Check, type ProcStats, type ServeProc } from '../guest-tests/serve-guest.ts';
import { rng } from '../src/testing/rng.ts';

const out = (s: string) => process.stdout.write(`${s}\n`);
const mib = (kib: number) => (kib / 1024).toFixed(1);
const fmt = (p: ProcStats) => `fds=${p.fds} memfds=${p.memfds} rss=${mib(p.rssKiB)} MiB (anon ${mib(p.anonKiB)}, shmem ${mib(p.shmemKiB)})`;
/** V8's share of the server's memory (its control socket): heap used of total, and external (ArrayBuffers) memory. */
const heap = (m: Record<string, number>) => `heap ${mib(m.heapUsedKiB)} of ${mib(m.heapTotalKiB)} MiB, external ${mib(m.externalKiB)}`;
const secs = (t0: number) => ((Date.now() - t0) / 1000).toFixed(0);


const guestLog = (l: string) => {
  if (/^not ok|^# .*(failed|killed)|Kernel panic|BUG:|WARNING:/.test(l)) out(`  guest: ${l.trim()}`);
};

async function withServe(name: string, fn: (s: ServeProc) => Promise<number>): Promise<number> {
  const s = await startServe(name);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/** The soak a killed guest runs: far more than it has time for. */
const KILL_SOAK = 'vphi-scif-rma soak --node 1 --soak-bytes 68719476736';
/** The last guest of the kill mode: every RMA subtest (a short soak). */
const FINAL_RMA = 'vphi-scif-rma all --node 1 --soak-bytes 16777216';

export async function soakKill(kernel: string, kills: number, seed: number): Promise<number> {
  out(`soak --kill ${kills}: one vphi serve, ${kills} guests SIGKILLed in the RMA soak, then vphi-scif-rma all (${kernel}, seed ${seed})`);
  const rand = rng(seed);
  const t0 = Date.now();
  return withServe('vphi-soak-kill', async (s) => {
    const base = s.stats();
    const baseHeap = await s.memory();
    out(`serve pid ${s.pid}, before any guest: ${fmt(base)}; ${heap(baseHeap)}`);
    const after: ProcStats[] = [];
    const heaps: Record<string, number>[] = [];
    let failures = 0;
    for (let i = 1; i <= kills; i++) {
      const ti = Date.now();
      const q = await startMicQemu({ kernel, socketPath: s.socketPath, tests: ['mic-scif-boot', KILL_SOAK], commandTimeoutS: 7200, timeoutMs: 900_000, onLine: guestLog });
      let note = '';
      try {
        await waitLines(q, /^# Subtest: vphi-scif-rma/, 1, 400_000);
        if (!q.lines.some((l) => /^ok 1 mic-scif-boot/.test(l))) throw new Error(`kill ${i}: mic-scif-boot did not pass: ${q.lines.filter((l) => /^(not )?ok 1/.test(l)).join('; ')}`);
        const delayMs = Math.round(2000 + rand() * 18000);
        await new Promise((r) => setTimeout(r, delayMs));
        if (q.proc.exitCode !== null || q.proc.signalCode !== null) throw new Error(`kill ${i}: QEMU ended on its own\n${q.lines.slice(-20).join('\n')}`);
        const st = await s.status();
        const busy = st.dma.filter((c) => c.enabled && c.head !== c.tail).length;
        note = `killed ${(delayMs / 1000).toFixed(1)} s into the soak (scif ${st.scif.state}, ${busy} DMA ch with work queued)`;
      } catch (e) {
        q.kill();
        await q.exited;
        throw e;
      }
      const { status, idle } = await killAndAwaitReset(s, q);
      const alive = s.alive();
      const p = s.stats();
      after.push(p);
      const h = alive ? await s.memory() : baseHeap;
      heaps.push(h);
      if (idle !== null || !alive) failures++;
      out(`kill ${String(i).padStart(2)}: ${note}; ${alive ? 'server alive' : 'SERVER DEAD'}, card ${idle ?? 'ready and idle'}; ${fmt(p)}; ${heap(h)}; ${secs(ti)} s`);
    }
    // The last guest: boot to online and every RMA subtest.
    const tf = Date.now();
    const q = await startMicQemu({ kernel, socketPath: s.socketPath, tests: ['mic-scif-boot', FINAL_RMA], commandTimeoutS: 1200, timeoutMs: 1_500_000, onLine: guestLog });
    let finalOk = false;
    try {
      const m = await q.waitFor(/VPHI-GUEST-DONE rc=(\d+)/, 1_490_000);
      finalOk = m[1] === '0';
      out(`final guest: ${q.lines.filter((l) => /^(not )?ok \d/.test(l)).join('; ')} (rc ${m[1]}, ${secs(tf)} s)`);
    } finally {
      q.kill();
      await q.exited;
    }
    await s.until('client detached', () => s.detaches() > kills, 30_000);
    const end = s.stats();
    const first = after[0];
    const last = after[after.length - 1];
    const leak = last.fds > first.fds || last.memfds > first.memfds;
    out(`summary: ${kills} kills, ${failures} failed; fds ${first.fds} -> ${last.fds}, memfds ${first.memfds} -> ${last.memfds}, RSS ${mib(first.rssKiB)} -> ${mib(last.rssKiB)} MiB (first vs last kill; V8 heap used ${mib(heaps[0].heapUsedKiB)} -> ${mib(heaps[heaps.length - 1].heapUsedKiB)}, heap total ${mib(heaps[0].heapTotalKiB)} -> ${mib(heaps[heaps.length - 1].heapTotalKiB)}); before any guest ${fmt(base)}, after the final guest ${fmt(end)}`);
    out(`soak --kill: ${leak ? 'LEAK' : 'no fd/memfd leak'}, final guest ${finalOk ? 'passed' : 'FAILED'}, ${secs(t0)} s`);
    return failures === 0 && !leak && finalOk && s.alive() ? 0 : 1;
  });
}

export async function soakReset(kernel: string): Promise<number> {
  out(`soak --reset: system_reset with the card online, then QEMU killed with the card online (${kernel})`);
  const t0 = Date.now();
  return withServe('vphi-soak-reset', async (s) => {
    const base = s.stats();
    const checks: Check[] = [];
    const r = await resetViaMonitor(s, kernel, guestLog);
    checks.push(...r.checks);
    out(`system_reset: card ready ${r.readyMs} ms after the command (${secs(t0)} s)`);
    const k = await killWhileOnline(s, kernel, r.q, guestLog);
    checks.push(...k.checks);
    for (const c of checks) out(`${c.ok ? 'ok' : 'not ok'} - ${c.name}${c.detail ? ` # ${c.detail}` : ''}`);
    const bad = checks.filter((c) => !c.ok).length;
    out(`soak --reset: ${checks.length - bad}/${checks.length} checks passed; serve ${fmt(base)} -> ${fmt(s.stats())}; ${secs(t0)} s`);
    return bad === 0 ? 0 : 1;
  });
}

export async function soakCycles(kernel: string, cycles: number): Promise<number> {
  out(`soak --cycles ${cycles}: one guest, mic-cycle ${cycles} --rma against a vphi serve process (${kernel})`);
  const t0 = Date.now();
  return withServe('vphi-soak-cycles', async (s) => {
    const base = s.stats();
    out(`serve pid ${s.pid}, before the guest: ${fmt(base)}`);
    const samples: { cycle: number; p: ProcStats }[] = [];
    const failed: string[] = [];
    const cmd = `mic-cycle ${cycles} --rma`;
    const q = await startMicQemu({
      kernel,
      socketPath: s.socketPath,
      tests: [cmd],
      commandTimeoutS: 120 + cycles * 120,
      timeoutMs: (300 + cycles * 120) * 1000,
      onLine: (l) => {
        const m = /^\s+(not )?ok \d+ - (\S+)/.exec(l);
        if (!m) return;
        if (m[1]) {
          failed.push(m[2]);
          out(`  FAILED ${m[2]}`);
        }
        const c = /^reset-(\d+)$/.exec(m[2]);
        if (c) {
          const p = s.stats();
          samples.push({ cycle: Number(c[1]), p });
          if (Number(c[1]) % 10 === 0 || Number(c[1]) === 1) out(`cycle ${c[1]}: ${fmt(p)} (${secs(t0)} s)`);
        }
      },
    });
    let rc = -1;
    try {
      const m = await q.waitFor(/VPHI-GUEST-DONE rc=(\d+)/, (240 + cycles * 120) * 1000);
      rc = Number(m[1]);
    } finally {
      q.kill();
      await q.exited;
    }
    const first = samples[0]?.p;
    const last = samples[samples.length - 1]?.p;
    const growthKiB = first && last ? last.rssKiB - first.rssKiB : NaN;
    // The goal is on the whole RSS: a card reset gives back the pages of guest RAM and the aperture (dropResidentPages).
    const anonGrowthKiB = first && last ? last.anonKiB - first.anonKiB : NaN;
    const shmemGrowthKiB = first && last ? last.shmemKiB - first.shmemKiB : NaN;
    const peak = Math.max(...samples.map((x) => x.p.rssKiB));
    out(`summary: ${samples.length} cycles, ${failed.length} failed checks${failed.length ? ` (${failed.join(', ')})` : ''}, guest rc ${rc}; RSS ${first ? mib(first.rssKiB) : '?'} -> ${last ? mib(last.rssKiB) : '?'} MiB (growth ${mib(growthKiB)} MiB from cycle 1 to ${samples.length}: anon ${mib(anonGrowthKiB)}, shmem ${mib(shmemGrowthKiB)}; peak ${mib(peak)}), before the guest ${mib(base.rssKiB)} MiB; fds ${first?.fds} -> ${last?.fds}, memfds ${first?.memfds} -> ${last?.memfds}; ${secs(t0)} s`);
    return failed.length === 0 && rc === 0 && samples.length === cycles && growthKiB < 5 * 1024 ? 0 : 1;
  });
}
