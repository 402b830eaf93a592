/**
 * `vphi test`: the guest suites (guest-tests/suites.ts), each in its own
 * guest under TCG against a card served in this process; the MIC suites
 * boot a MIC guest kernel, the others the Debian one.
 *
 * stdout: one KTAP document as the guests print it, a subtest per suite
 * holding the guest's own document (a subtest per guest command), the
 * card's warnings as diagnostics where they happened. stderr: a
 * progress line per finished command, `[3/12] ok     scif: mic-scif-boot
 * (41.2 s)`, and the summary `N passed, N failed, N skipped`.
 *
 * Without a MIC kernel the MIC suites are skipped after one line
 * `SKIP: no MIC guest kernel`; a skip is no failure. Exit status 0 when
 * nothing that ran failed, 1 otherwise (a command the guest never reached
 * counts as failed), 2 for a bad argument.
 */
import { existsSync } from 'node:fs';
import { nativeAvailable } from '../binding/native.ts';
import { qemuBinary } from '../qemu/command.ts';
import { debianKernel, micKernel } from '../qemu/kernel.ts';
import { runSuite, SUITES, type Suite } from '../../guest-tests/suites.ts';
import { untraced, type WarnFn } from '../trace/tracer.ts';
import { commaList, UsageError } from './args.ts';
import { stderrLogger } from './serve.ts';

export interface TestOptions {
  /** The MIC guest kernel (default micKernel()). */
  kernel?: string;
  /** Suite names (repeated or comma-separated); default every suite. */
  only?: string[];
  list?: boolean;
}

/**
 * Runs one suite's guest, every console line to onLine and the card's
 * warnings (a guest misprogramming it) to onWarn; rejects when the guest
 * fails to finish.
 */
export type SuiteRunner = (suite: Suite, kernel: string | undefined, onLine: (line: string) => void, onWarn: WarnFn) => Promise<void>;

/** What runTests talks to; tests replace it. */
export interface TestEnv {
  suites: readonly Suite[];
  micKernel(): string | null;
  /** What is missing to boot a guest of this kind (QEMU, the addon, the Debian kernel), or null. */
  missing(kind: Suite['kernel']): string | null;
  run: SuiteRunner;
  out(text: string): void;
  err(text: string): void;
  now(): number;
}

export function defaultEnv(): TestEnv {
  const log = stderrLogger(false);
  return {
    suites: SUITES,
    micKernel,
    missing(kind) {
      if (!nativeAvailable()) return 'the native addon is not built (run scripts/setup)';
      if (!existsSync(qemuBinary())) return `no QEMU at ${qemuBinary()} (run scripts/setup)`;
      if (kind === 'debian' && !existsSync(debianKernel())) return `no Debian guest kernel at ${debianKernel()} (run scripts/setup)`;
      return null;
    },
    async run(suite, kernel, onLine, onWarn) {
      const guest = await runSuite(suite, { kernel, log, tracer: untraced(onWarn), onLine: (l) => onLine(l) });
      guest.close();
    },
    out: (t) => void process.stdout.write(t),
    err: (t) => void process.stderr.write(t),
    now: () => Date.now(),
  };
}

/** The suites --only names, in registry order; an unknown name is a UsageError listing them. */
export function selectSuites(suites: readonly Suite[], only?: string[]): Suite[] {
  const names = commaList(only);
  if (!names?.length) return [...suites];
  const known = suites.map((s) => s.name);
  const bad = names.filter((n) => !known.includes(n));
  if (bad.length) throw new UsageError(`--only: unknown suite ${bad.map((n) => `"${n}"`).join(', ')} (suites: ${known.join(', ')})`);
  return suites.filter((s) => names.includes(s.name));
}

const TOP_RESULT = /^(not ok|ok)\s+(\d+)\s+(.*)$/;
/** A failed subtest of the running command (init.sh indents the program's KTAP 4 spaces). */
const SUB_FAILED = /^ {4}not ok\s+\d+\s+(?:-\s+)?(.*?)(?:\s+#.*)?$/;

export async function runTests(o: TestOptions, env: TestEnv = defaultEnv()): Promise<number> {
  const suites = selectSuites(env.suites, o.only);
  if (o.list) {
    const w = Math.max(...suites.map((s) => s.name.length));
    for (const s of suites) env.out(`${s.name.padEnd(w)}  ${s.kernel.padEnd(6)}  ${s.commands.length} command(s)  ${s.summary}\n`);
    return 0;
  }
  if (o.kernel !== undefined && !existsSync(o.kernel)) throw new UsageError(`--kernel: ${o.kernel} does not exist`);
  const kernel = o.kernel ?? env.micKernel();
  const runs = (s: Suite) => s.kernel === 'debian' || kernel !== null;
  for (const kind of new Set(suites.filter(runs).map((s) => s.kernel))) {
    const why = env.missing(kind);
    if (why) throw new Error(`test: ${why}`);
  }
  const skippedSuites = suites.filter((s) => !runs(s));
  if (skippedSuites.length) {
    env.err(`SKIP: no MIC guest kernel (scripts/build-guest-kernel, MIC_GUEST_KERNEL or --kernel FILE): ${skippedSuites.map((s) => s.name).join(', ')} skipped\n`);
  }

  const total = suites.filter(runs).reduce((n, s) => n + s.commands.length, 0);
  const count = { passed: 0, failed: 0, skipped: skippedSuites.reduce((n, s) => n + s.commands.length, 0) };
  let done = 0;
  const t0 = env.now();
  const progress = (status: 'ok' | 'not ok' | 'skip', what: string, tail: string) => {
    done++;
    if (status === 'ok') count.passed++;
    else if (status === 'skip') count.skipped++;
    else count.failed++;
    env.err(`[${done}/${total}] ${status.padEnd(6)} ${what}${tail}\n`);
  };

  env.out(`KTAP version 1\n1..${suites.length}\n`);
  for (const [i, suite] of suites.entries()) {
    if (!runs(suite)) {
      env.out(`ok ${i + 1} ${suite.name} # SKIP no MIC guest kernel\n`);
      continue;
    }
    env.err(`vphi test: ${suite.name}: booting the ${suite.kernel === 'mic' ? 'MIC' : 'Debian'} guest (${suite.commands.length} command(s))\n`);
    env.out(`# Subtest: ${suite.name}\n`);
    let started = false;
    let inKtap = false;
    let finished = false;
    let since = env.now();
    let failedSubs: string[] = [];
    let reported = 0;
    let suiteOk = true;
    const onLine = (line: string) => {
      if (finished) return;
      if (!started) {
        if (/VPHI-GUEST-START\b/.test(line)) {
          started = true;
          since = env.now();
        }
        return;
      }
      if (/VPHI-GUEST-DONE\b/.test(line)) {
        finished = true;
        return;
      }
      if (!inKtap && !/^K?TAP version \d+/.test(line)) return; // before init's KTAP
      inKtap = true;
      env.out(`    ${line}\n`);
      const sub = SUB_FAILED.exec(line);
      if (sub) failedSubs.push(sub[1]);
      const m = TOP_RESULT.exec(line);
      if (!m || Number(m[2]) !== reported + 1 || reported >= suite.commands.length) return;
      reported++;
      const skip = /\s#\s*SKIP\b/i.test(m[3]);
      const desc = m[3].replace(/\s+#.*$/, '');
      const status = m[1] === 'ok' ? (skip ? 'skip' : 'ok') : 'not ok';
      if (status === 'not ok') suiteOk = false;
      const secs = ((env.now() - since) / 1000).toFixed(1);
      progress(status, `${suite.name}: ${desc}`, ` (${secs} s)${status === 'not ok' && failedSubs.length ? `: ${failedSubs.join(', ')} failed` : ''}`);
      since = env.now();
      failedSubs = [];
    };
    // Within the suite's subtest, where the guest was when the card warned (vphi-dma errors misprograms it on purpose).
    const onWarn: WarnFn = (kind, msg) => env.out(`    # card warning (${kind}): ${msg.replace(/\n/g, ' ')}\n`);
    let error: Error | undefined;
    try {
      await env.run(suite, kernel ?? undefined, onLine, onWarn);
    } catch (e) {
      error = e as Error;
    }
    const left = suite.commands.slice(reported);
    if (left.length) suiteOk = false;
    for (const cmd of left) progress('not ok', `${suite.name}: ${cmd}`, ' (did not run)');
    if (error) {
      env.err(`vphi test: ${suite.name}: ${error.message}\n`);
      env.out(`    # ${suite.name}: ${error.message.split('\n')[0]}\n`);
    }
    env.out(`${suiteOk ? 'ok' : 'not ok'} ${i + 1} ${suite.name}\n`);
  }
  env.err(`${count.passed} passed, ${count.failed} failed, ${count.skipped} skipped (${Math.round((env.now() - t0) / 1000)} s)\n`);
  return count.failed ? 1 : 0;
}
