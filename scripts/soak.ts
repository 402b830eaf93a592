/**
 * npm run soak [-- MODE]: soaks against the card in MIC guests. Not tests
 * (the suite runs short forms of them: rma.test.ts, reset.test.ts).
 *
 * (default) the SCIF RMA integrity soak (vphi-scif-rma soak: random sizes
 *   1 B..4 MiB, random offsets, alignments and flag mixes, both directions,
 *   host- and card-initiated, each copy checked by pattern + CRC32).
 *   Prints transfers, bytes and mismatches; exits 1 on any mismatch or
 *   failure. The card is served in this process.
 *     VPHI_SOAK_GIB (10)   how much to move
 *
 * --kill N (20): one `vphi serve` process; N MIC guests in a row each boot
 *   the card and run the RMA soak, SIGKILLed at a random moment 2-20 s into
 *   it. After each kill the server must be alive and the card reset and
 *   idle (vphi ctl status); its fds, memfds and VmRSS are printed. Then a
 *   last guest boots the card to online and passes vphi-scif-rma all.
 *   Exits 1 on a failure or a leak (fd or memfd count after the last kill
 *   above that after the first).
 *
 * --reset: `system_reset` on the guest's QMP monitor while the card is
 *   online brings the card back to `ready` and the rebooted guest boots it
 *   online again; then QEMU SIGKILLed while the card is online leaves it
 *   ready with its DMA channels idle, and a new QEMU boots it online.
 *
 * --cycles N (100): one guest, `mic-cycle N --rma` (boot, an RMA check,
 *   reset, N times) against a `vphi serve` process; prints the failures and
 *   the server's RSS growth (goal: 0 failures, < 5 MiB).
 *
 * --seed N: the kill mode's random moments (default: the time).
 * MIC_GUEST_KERNEL: else ~/.cache/vphi/bzImage.
 */
import { parseArgs } from 'node:util';
import { micKernel } from '../src/qemu/kernel.ts';
import { runMicGuest } from '../guest-tests/card-guest.ts';
import { runMain } from './main.ts';
import { soakCycles, soakKill, soakReset } from './soak-modes.ts';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { kill: { type: 'string' }, cycles: { type: 'string' }, reset: { type: 'boolean' }, seed: { type: 'string' } },
  });
  const kernel = micKernel();
  if (!kernel) {
    process.stdout.write('SKIP: no MIC guest kernel (scripts/build-guest-kernel, or MIC_GUEST_KERNEL)\n');
    return 0;
  }
  const count = (v: string | undefined, what: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`--${what} wants a positive integer, got '${v}'`);
    return n;
  };
  if (values.kill !== undefined) return soakKill(kernel, count(values.kill, 'kill'), values.seed !== undefined ? Number(values.seed) : Date.now());
  if (values.cycles !== undefined) return soakCycles(kernel, count(values.cycles, 'cycles'));
  if (values.reset) return soakReset(kernel);
  return soakRma(kernel);
}

async function soakRma(kernel: string): Promise<number> {
  const gib = Number(process.env.VPHI_SOAK_GIB ?? 10);
  if (!(gib > 0)) throw new Error(`VPHI_SOAK_GIB must be a positive number, got '${process.env.VPHI_SOAK_GIB}'`);
  const bytes = Math.round(gib * 2 ** 30);
  const timeoutS = 600 + Math.ceil(bytes / 10e6); // well above the ~40 MB/s seen under TCG
  const cmd = `vphi-scif-rma soak --node 1 --soak-bytes ${bytes}`;
  process.stdout.write(`soak: ${gib} GiB of SCIF RMA against the card (${kernel})\n`);
  const t0 = Date.now();
  const guest = await runMicGuest({
    kernel,
    name: 'vphi-soak',
    tests: ['mic-scif-boot', cmd],
    commandTimeoutS: timeoutS,
    timeoutMs: (timeoutS + 120) * 1000,
    card: {
      log: (level, msg) => {
        if (level !== 'info') process.stderr.write(`vphi: ${msg}\n`);
      },
    },
    onLine: (l) => {
      if (/soak:|not ok/.test(l)) process.stdout.write(`${l.trim()}\n`);
    },
  });
  try {
    const res = guest.run;
    const summary = res.lines.map((l) => /soak: transfers=(\d+) bytes=(\d+) mismatches=(\d+) failed=(\d+)/.exec(l)).find(Boolean);
    if (!summary) {
      process.stdout.write(`soak: no summary line (guest rc ${res.rc})\n`);
      return 1;
    }
    const [, transfers, moved, mismatches, failed] = summary.map(Number);
    process.stdout.write(`soak: ${transfers} transfers, ${moved} bytes, ${mismatches} mismatches, ${failed} failed, ${((Date.now() - t0) / 1000).toFixed(0)} s\n`);
    return mismatches === 0 && failed === 0 && res.rc === 0 ? 0 : 1;
  } finally {
    guest.close();
  }
}

runMain('soak', main);
