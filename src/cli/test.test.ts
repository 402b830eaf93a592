/**
 * `vphi test` against a fake guest runner that prints what init.sh prints
 * (src/guest/init.sh): the progress lines, the KTAP on stdout, the summary
 * and the exit status. The real guests run in guest-tests/vphi-test.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { Suite } from '../../guest-tests/suites.ts';
import { UsageError } from './args.ts';
import { runTests, selectSuites, type TestEnv } from './test.ts';

const suite = (name: string, kernel: Suite['kernel'], commands: string[]): Suite => ({
  name,
  summary: `the ${name} suite`,
  kernel,
  commands,
  timeoutMs: 1000,
  card: { apertureSize: 1 << 20, services: 'none' },
});

const SUITES = [suite('probe', 'debian', ['vphi-probe all']), suite('mic', 'mic', ['mic-probe', 'mic-boot'])];

/** What init.sh prints for these command results (true: ok, false: not ok, 'skip'), with a failing subtest in each failure. */
function initOutput(results: [string, boolean | 'skip'][], done = true): string[] {
  const lines = ['[    1.0] Linux booting', 'VPHI-GUEST-START uptime=1.00 kernel=5.8.1', 'KTAP version 1', `1..${results.length}`];
  results.forEach(([cmd, r], i) => {
    lines.push('    KTAP version 1', '    1..2', '    ok 1 - first', r === false ? '    not ok 2 - second' : '    ok 2 - second');
    lines.push(r === 'skip' ? `ok ${i + 1} ${cmd} # SKIP` : `${r ? 'ok' : 'not ok'} ${i + 1} ${cmd}`);
  });
  if (done) lines.push(`VPHI-GUEST-DONE rc=${results.filter(([, r]) => r === false).length}`);
  return lines;
}

interface Fake {
  env: TestEnv;
  out: string[];
  err: string[];
  ran: string[];
}

function fake(guests: Record<string, string[] | Error>, o: { micKernel?: string | null; missing?: string | null; suites?: Suite[] } = {}): Fake {
  const f: Fake = { out: [], err: [], ran: [], env: undefined as unknown as TestEnv };
  let t = 0;
  f.env = {
    suites: o.suites ?? SUITES,
    micKernel: () => (o.micKernel === undefined ? '/k/bzImage' : o.micKernel),
    missing: () => o.missing ?? null,
    async run(s, kernel, onLine, onWarn) {
      f.ran.push(`${s.name}:${kernel ?? '-'}`);
      const g = guests[s.name];
      if (s.name === 'dma') onWarn('dma-error', 'DMA channel 3 stopped at descriptor 2\nmore');
      if (g instanceof Error) {
        onLine('VPHI-GUEST-START uptime=1.00 kernel=5.8.1');
        throw g;
      }
      for (const l of g ?? []) onLine(l);
    },
    out: (s) => void f.out.push(s),
    err: (s) => void f.err.push(s),
    now: () => (t += 500),
  };
  return f;
}

const errText = (f: Fake) => f.err.join('');
const outText = (f: Fake) => f.out.join('');

describe('vphi test', () => {
  it('runs every suite, prints a progress line per command and the summary, exit 0 when all passed', async () => {
    const f = fake({ probe: initOutput([['vphi-probe all', true]]), mic: initOutput([['mic-probe', true], ['mic-boot', true]]) });
    expect(await runTests({}, f.env)).toBe(0);
    expect(f.ran).toEqual(['probe:/k/bzImage', 'mic:/k/bzImage']);
    const progress = f.err.filter((l) => l.startsWith('['));
    expect(progress.map((l) => l.replace(/\(\d+\.\d s\)/, '(T)'))).toEqual([
      '[1/3] ok     probe: vphi-probe all (T)\n',
      '[2/3] ok     mic: mic-probe (T)\n',
      '[3/3] ok     mic: mic-boot (T)\n',
    ]);
    expect(errText(f)).toMatch(/^3 passed, 0 failed, 0 skipped \(\d+ s\)$/m);
  });

  it('streams one KTAP document: a subtest per suite holding the guest KTAP, indented', async () => {
    const f = fake({ probe: initOutput([['vphi-probe all', true]]), mic: initOutput([['mic-probe', true], ['mic-boot', false]]) });
    await runTests({}, f.env);
    const out = outText(f).split('\n');
    expect(out.slice(0, 4)).toEqual(['KTAP version 1', '1..2', '# Subtest: probe', '    KTAP version 1']);
    expect(out).toContain('        ok 2 - second');
    expect(out).toContain('    ok 1 vphi-probe all');
    expect(out).toContain('ok 1 probe');
    expect(out).toContain('    not ok 2 mic-boot');
    expect(out).toContain('not ok 2 mic');
    // The boot log before init's KTAP stays out of it.
    expect(out.some((l) => /Linux booting|VPHI-GUEST/.test(l))).toBe(false);
  });

  it('a failed command fails the run (exit 1) and its progress line names the failed subtests', async () => {
    const f = fake({ probe: initOutput([['vphi-probe all', true]]), mic: initOutput([['mic-probe', false], ['mic-boot', 'skip']]) });
    expect(await runTests({}, f.env)).toBe(1);
    expect(errText(f)).toMatch(/^\[2\/3\] not ok mic: mic-probe \(\d+\.\d s\): second failed$/m);
    expect(errText(f)).toMatch(/^\[3\/3\] skip   mic: mic-boot/m);
    expect(errText(f)).toMatch(/^1 passed, 1 failed, 1 skipped/m);
  });

  it('a guest that dies counts the commands it never reached as failed, and the next suite still runs', async () => {
    const mic = initOutput([['mic-probe', true], ['mic-boot', true]], false).slice(0, -2);
    const f = fake({ probe: new Error('the guest timed out after 1 s'), mic });
    expect(await runTests({}, f.env)).toBe(1);
    expect(f.ran).toEqual(['probe:/k/bzImage', 'mic:/k/bzImage']);
    expect(errText(f)).toMatch(/^\[1\/3\] not ok probe: vphi-probe all \(did not run\)$/m);
    expect(errText(f)).toMatch(/^vphi test: probe: the guest timed out after 1 s$/m);
    expect(errText(f)).toMatch(/^\[3\/3\] not ok mic: mic-boot \(did not run\)$/m);
    expect(errText(f)).toMatch(/^1 passed, 2 failed, 0 skipped/m);
    expect(outText(f)).toMatch(/^not ok 1 probe$/m);
  });

  it('without a MIC kernel the MIC suites are skipped with one SKIP line, and a skip is no failure', async () => {
    const f = fake({ probe: initOutput([['vphi-probe all', true]]) }, { micKernel: null });
    expect(await runTests({}, f.env)).toBe(0);
    expect(f.ran).toEqual(['probe:-']);
    expect(f.err.filter((l) => l.includes('SKIP: no MIC guest kernel'))).toHaveLength(1);
    expect(outText(f)).toMatch(/^ok 2 mic # SKIP no MIC guest kernel$/m);
    expect(errText(f)).toMatch(/^1 passed, 0 failed, 2 skipped/m);
  });

  it("the card's warnings are KTAP diagnostics inside their suite, not noise on stderr", async () => {
    const f = fake({ dma: initOutput([['vphi-dma errors', true]]) }, { suites: [suite('dma', 'debian', ['vphi-dma errors'])] });
    expect(await runTests({}, f.env)).toBe(0);
    expect(outText(f)).toMatch(/^# Subtest: dma\n {4}# card warning \(dma-error\): DMA channel 3 stopped at descriptor 2 more\n/m);
    expect(errText(f)).not.toMatch(/stopped/);
  });

  it('--kernel is the MIC kernel the suites boot', async () => {
    const f = fake({ mic: initOutput([['mic-probe', true], ['mic-boot', true]]) });
    expect(await runTests({ only: ['mic'], kernel: __filename }, f.env)).toBe(0);
    expect(f.ran).toEqual([`mic:${__filename}`]);
  });

  it('--only picks suites (repeated or comma-separated) in registry order; an unknown one is a usage error', async () => {
    expect(selectSuites(SUITES, ['mic,probe']).map((s) => s.name)).toEqual(['probe', 'mic']);
    expect(selectSuites(SUITES, ['mic', 'mic']).map((s) => s.name)).toEqual(['mic']);
    expect(() => selectSuites(SUITES, ['nosuch'])).toThrow(UsageError);
    expect(() => selectSuites(SUITES, ['nosuch'])).toThrow('--only: unknown suite "nosuch" (suites: probe, mic)');
    const f = fake({});
    await expect(runTests({ kernel: '/no/such/bzImage' }, f.env)).rejects.toThrow(UsageError);
    expect(f.ran).toEqual([]);
  });

  it('--list names the suites and boots nothing', async () => {
    const f = fake({});
    expect(await runTests({ list: true }, f.env)).toBe(0);
    expect(f.ran).toEqual([]);
    expect(outText(f)).toMatch(/^probe +debian +1 command\(s\) +the probe suite$/m);
    expect(outText(f)).toMatch(/^mic +mic +2 command\(s\) +the mic suite$/m);
  });

  it('what a guest needs and is missing (QEMU, the addon) is an error before anything boots', async () => {
    const f = fake({}, { missing: 'no QEMU at /x/qemu (run scripts/setup)' });
    await expect(runTests({}, f.env)).rejects.toThrow('test: no QEMU at /x/qemu (run scripts/setup)');
    expect(f.ran).toEqual([]);
  });
});
