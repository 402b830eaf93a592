/**
 * Regenerates docs/register-coverage.txt: the BAR4 register coverage
 * (`vphi trace FILE --coverage`) of one MIC guest run in which the real
 * host drivers probe and boot the card, bring it online, talk to every card
 * service, run SCIF RMA through the DMA engine, and reset it.
 *
 *   node --import tsx scripts/coverage-report.ts     (needs a MIC guest kernel)
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { micKernel } from '../src/qemu/kernel.ts';
import { REPO_ROOT } from '../src/paths.ts';
import { runMicGuest } from '../guest-tests/card-guest.ts';
import { runMain } from './main.ts';

const TESTS = [
  'mic-scif-boot',
  'vphi-scif all --node 1',
  'vphi-scif-rma aligned unaligned ordered usecpu vcopy card-writeto card-readfrom fence signal mmap errors --node 1',
  'vphi-scif cycle --how reset --cycles 1',
];

async function main(): Promise<number> {
  const kernel = micKernel();
  if (!kernel) {
    process.stderr.write('coverage-report: no MIC guest kernel (scripts/build-guest-kernel, or MIC_GUEST_KERNEL)\n');
    return 1;
  }
  const dir = mkdtempSync(join(tmpdir(), 'vphi-coverage-'));
  const trace = join(dir, 'run.trace');
  try {
    process.stderr.write(`coverage-report: booting the MIC guest (${TESTS.length} commands) ...\n`);
    const guest = await runMicGuest({ kernel, name: 'vphi-coverage', tests: TESTS, commandTimeoutS: 600, timeoutMs: 900_000, card: { trace } });
    guest.close(); // and with it the trace, complete before it is read
    const res = guest.run;
    if (res.rc !== 0) process.stderr.write(`coverage-report: the guest reported ${res.rc} failed command(s); the report is of what ran\n`);
    const report = execFileSync(join(REPO_ROOT, 'bin/vphi'), ['trace', trace, '--coverage'], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const out = join(REPO_ROOT, 'docs/register-coverage.txt');
    const head = [
      '# BAR4 register coverage of one MIC guest run (scripts/coverage-report.ts regenerates it)',
      '#',
      '# The unmodified Linux MIC host drivers against vphi, in this order:',
      ...TESTS.map((t) => `#   ${t}`),
      '# R / W: guest reads and writes of each register; under it its fields',
      "# (a field's writes are the writes that change it, its reads its register's reads).",
      '',
    ];
    writeFileSync(out, head.join('\n') + report);
    process.stderr.write(`coverage-report: wrote ${out}: ${report.trim().split('\n').pop()}\n`);
    return 0;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain('coverage-report', main);
