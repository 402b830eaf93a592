/**
 * npm run soak: the SCIF RMA integrity soak against the card in a MIC guest
 * (vphi-scif-rma soak: random sizes 1 B..4 MiB, random offsets, alignments
 * and flag mixes, both directions, host- and card-initiated, each copy
 * checked by pattern + CRC32). Prints transfers, bytes and mismatches;
 * exits 1 on any mismatch or failure. Not a test: the suite runs 256 MiB
 * of the same (guest-tests/rma.test.ts).
 *
 *   VPHI_SOAK_GIB (10)   how much to move
 *   MIC_GUEST_KERNEL     else ~/.cache/vphi/bzImage
 */
import { micKernel } from '../src/qemu/kernel.ts';
import { runMicGuest } from '../guest-tests/card-guest.ts';
import { runMain } from './main.ts';

async function main(): Promise<number> {
  const kernel = micKernel();
  if (!kernel) {
    process.stdout.write('SKIP: no MIC guest kernel (scripts/build-guest-kernel, or MIC_GUEST_KERNEL)\n');
    return 0;
  }
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
