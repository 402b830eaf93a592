/**
 * Host-side helpers for integration tests that boot a guest.
 *
 * `runGuest` boots the guest initramfs (src/guest/image.ts) with the Debian
 * kernel under TCG, the card attached when a socket is given, and waits for
 * `VPHI-GUEST-DONE rc=N`.
 */
import { existsSync } from 'node:fs';
import { startQemu, type QemuExit } from '../src/qemu/run.ts';
import { debianKernel } from '../src/qemu/kernel.ts';
import { buildGuestInitramfs } from '../src/guest/image.ts';
import type { InitramfsFile } from '../src/guest/initramfs.ts';
import { parseKtap, type KtapDocument } from './ktap.ts';

/** The `vphi.tests=` kernel parameter for init.sh: tests joined by ',', quoted when there are spaces. */
export function testsParam(tests: string[]): string {
  const cmds = tests.map((t) => {
    const words = t.trim().split(/\s+/).filter(Boolean);
    if (!words.length) throw new Error('empty test command');
    for (const w of words) {
      if (/[,"]/.test(w)) throw new Error(`test argument ${JSON.stringify(w)}: ',' and '"' cannot go into vphi.tests`);
    }
    return words.join(' ');
  });
  const value = cmds.join(',');
  return value.includes(' ') ? `vphi.tests="${value}"` : `vphi.tests=${value}`;
}

export interface GuestRun {
  socketPath?: string;
  /** Several cards: one socket each (instead of socketPath). */
  socketPaths?: string[];
  /** Guest RAM (default 512). */
  memoryMiB?: number;
  /** Command lines to run in the guest, e.g. `vphi-probe all --bar0-size 0x20000000`. */
  tests: string[];
  /** Extra kernel command line (`vphi.KEY=VALUE` reaches the programs as VPHI_KEY). */
  append?: string;
  /** For the whole run, boot included (default 120 s). */
  timeoutMs?: number;
  /** Default: the Debian kernel set-up unpacked. */
  kernel?: string;
  extraArgs?: string[];
  onLine?: (line: string) => void;
  /** More files for the initramfs (see buildGuestInitramfs). */
  files?: InitramfsFile[];
}

export interface GuestResult {
  /** Every serial line. */
  lines: string[];
  /** The KTAP document init.sh printed (one subtest per test). */
  ktap: KtapDocument;
  /** From `VPHI-GUEST-DONE rc=N`: the number of failed tests. */
  rc: number;
  /** Host time from spawning QEMU to VPHI-GUEST-START (init running), and to VPHI-GUEST-DONE. */
  bootMs: number;
  totalMs: number;
  exit: QemuExit;
}

/** Boot a guest that runs `tests` and powers off; rejects if it never prints VPHI-GUEST-DONE. */
export async function runGuest(o: GuestRun): Promise<GuestResult> {
  if (!o.tests.length) throw new Error('runGuest: no tests (an empty list would start an interactive shell)');
  const kernel = o.kernel ?? debianKernel();
  if (!existsSync(kernel)) throw new Error(`no guest kernel at ${kernel}: run scripts/setup`);
  const initrd = await buildGuestInitramfs([], o.files);
  const timeoutMs = o.timeoutMs ?? 120_000;
  const append = [testsParam(o.tests), o.append].filter(Boolean).join(' ');
  const t0 = Date.now();
  const q = startQemu(
    { kernel, initrd, append, memoryMiB: o.memoryMiB ?? 512, socketPath: o.socketPath, socketPaths: o.socketPaths, extraArgs: o.extraArgs },
    { onLine: o.onLine, timeoutMs: timeoutMs + 10_000 },
  );
  try {
    await q.waitFor(/VPHI-GUEST-START\b/, timeoutMs);
    const bootMs = Date.now() - t0;
    const m = await q.waitFor(/VPHI-GUEST-DONE rc=(\d+)/, Math.max(1, timeoutMs - bootMs));
    const totalMs = Date.now() - t0;
    // poweroff -f follows at once; do not wait long for it.
    let grace: NodeJS.Timeout | undefined;
    const exit = await Promise.race([q.exited, new Promise<QemuExit>((r) => (grace = setTimeout(() => r({ code: null, signal: 'timeout' }), 5_000)))]);
    clearTimeout(grace);
    const start = q.lines.findIndex((l) => l.includes('VPHI-GUEST-START'));
    return { lines: q.lines, ktap: parseKtap(q.lines.slice(start)), rc: Number(m[1]), bootMs, totalMs, exit };
  } finally {
    q.kill();
    await q.exited;
  }
}

