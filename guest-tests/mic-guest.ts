/**
 * The MIC guest suites' vitest side (mic, scif, rma, fault .test.ts): is
 * there a MIC guest kernel, and the helpers that turn a guest's KTAP into
 * vitest results. The run itself is card-guest.ts's runMicGuest (the card
 * served in this process with every card service, the MIC guest kernel
 * under TCG, `tests` run in order by init.sh, strict SCIF).
 */
import { existsSync } from 'node:fs';
import { expect } from 'vitest';
import { nativeAvailable } from '../src/binding/native.ts';
import { qemuBinary } from '../src/qemu/command.ts';
import { micKernel } from '../src/qemu/kernel.ts';
import type { GuestResult } from './guest.ts';
import { findResult, type KtapResult } from './ktap.ts';

export { runMicGuest, type MicGuest, type MicGuestOptions } from './card-guest.ts';

/** The MIC guest kernel, or null after one loud "SKIP: no MIC guest kernel". */
export function micSuiteKernel(): string | null {
  const kernel = micKernel();
  if (!kernel) console.log('SKIP: no MIC guest kernel');
  return kernel;
}

/** A MIC guest can run here: a kernel, the addon, QEMU. */
export const micSuiteReady = (kernel: string | null): boolean => kernel !== null && nativeAvailable() && existsSync(qemuBinary());

/** A KTAP result with its diagnostics, for an assertion message. */
export const explain = (r: KtapResult | undefined): string => (r ? [...r.diagnostics.map((d) => `# ${d}`), r.line].join('\n') : 'no such result');

/** The diagnostics of a command's subtests that match `re` (bench figures, soak summaries). */
export const subtestDiags = (r: KtapResult | undefined, re: RegExp): string[] => (r?.subtests?.results ?? []).flatMap((x) => x.diagnostics.filter((d) => re.test(d)));

/** Every command ran to the end, in order. */
export function expectRanToEnd(run: GuestResult, cmds: readonly string[]): void {
  const why = run.lines.slice(-80).join('\n');
  expect(run.ktap.errors, why).toEqual([]);
  expect(run.ktap.results.map((r) => r.name), why).toEqual(cmds);
}

/** A subtest of cmd passed (not skipped). */
export function expectPassed(run: GuestResult, cmd: string, name: string): void {
  const r = findResult(run.ktap, cmd, name);
  expect(r?.ok && !r.skipped, `${cmd}: ${name}\n${explain(r ?? findResult(run.ktap, cmd))}`).toBe(true);
}
