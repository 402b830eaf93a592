/**
 * Host-side helpers for integration tests that boot a guest.
 *
 * `buildTestInitramfs` packs busybox, guest-tests/init.sh as /init and every
 * guest program (.cache/guest/bin/*, into /opt/vphi/bin), cached by content
 * hash. `runGuest` boots it with the Debian kernel under TCG, the card
 * attached when a socket is given, and waits for `VPHI-GUEST-DONE rc=N`.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { basename, join } from 'node:path';
import { startQemu, type QemuExit } from '../src/qemu/run.ts';
import { debianKernel } from '../src/qemu/kernel.ts';
import { buildInitramfs, GUEST_CACHE, guestProgramFiles, REPO_ROOT, type InitramfsFile } from './initramfs.ts';
import { parseKtap, type KtapDocument } from './ktap.ts';
import { micFirmwareFiles } from './firmware.ts';

const GUEST_TESTS = join(REPO_ROOT, 'guest-tests');
const GUEST_BIN = join(GUEST_CACHE, 'bin');

/**
 * Compile any guest-tests/*.c whose binary in .cache/guest/bin is missing or
 * older than its source or than any header beside it, exactly as
 * scripts/setup does.
 */
export function ensureGuestPrograms(): void {
  const files = readdirSync(GUEST_TESTS);
  const newestHeader = Math.max(0, ...files.filter((f) => f.endsWith('.h')).map((f) => statSync(join(GUEST_TESTS, f)).mtimeMs));
  for (const s of files.filter((f) => f.endsWith('.c'))) {
    const src = join(GUEST_TESTS, s);
    const bin = join(GUEST_BIN, basename(s, '.c'));
    if (existsSync(bin) && statSync(bin).mtimeMs >= Math.max(statSync(src).mtimeMs, newestHeader)) continue;
    mkdirSync(GUEST_BIN, { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`; // parallel test workers may race here
    execFileSync('gcc', ['-static', '-O2', '-Wall', '-Werror', '-o', tmp, src], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, bin);
  }
}

/**
 * The test initramfs; `tests` (command lines, e.g. `vphi-probe spad`) are
 * what init runs when the kernel command line has no `vphi.tests=`. With no
 * tests at all, init starts a shell. `extraFiles` are added as given (e.g.
 * firmware under /lib/firmware, scripts into /opt/vphi/bin). Returns the
 * path of the cached file.
 */
export async function buildTestInitramfs(tests: string[] = [], extraFiles: InitramfsFile[] = []): Promise<string> {
  ensureGuestPrograms();
  const init = readFileSync(join(GUEST_TESTS, 'init.sh'), 'utf8');
  const files: InitramfsFile[] = [...guestProgramFiles(GUEST_BIN), ...extraFiles];
  if (tests.length) files.push({ path: '/etc/vphi/tests', data: `${tests.join('\n')}\n`, mode: 0o644 });
  const h = createHash('sha256');
  h.update(readFileSync(join(GUEST_TESTS, 'initramfs.ts')));
  h.update(init);
  h.update(readFileSync(join(GUEST_CACHE, 'busybox')));
  for (const f of files) {
    h.update(`\0${f.path}\0${f.mode ?? ''}\0`);
    h.update(f.hostPath !== undefined ? readFileSync(f.hostPath) : Buffer.from(f.data ?? ''));
  }
  const out = join(GUEST_CACHE, `initramfs-${h.digest('hex').slice(0, 16)}.cpio.gz`);
  if (!existsSync(out)) {
    await buildInitramfs({ out, init, files });
    pruneInitramfs(out);
  } else {
    const now = new Date();
    utimesSync(out, now, now); // in use: keep it from being pruned
  }
  return out;
}

/** Drop cached initramfs files other than `keep` not used for a day. */
function pruneInitramfs(keep: string): void {
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const f of readdirSync(GUEST_CACHE)) {
    const p = join(GUEST_CACHE, f);
    if (!/^initramfs-[0-9a-f]+\.cpio\.gz$/.test(f) || p === keep) continue;
    try {
      const st = statSync(p);
      if (Math.max(st.atimeMs, st.mtimeMs) < dayAgo) unlinkSync(p);
    } catch {
      // raced with another worker
    }
  }
}

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
  /** More files for the initramfs (see buildTestInitramfs). */
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
  const initrd = await buildTestInitramfs([], o.files);
  const timeoutMs = o.timeoutMs ?? 120_000;
  const append = [testsParam(o.tests), o.append].filter(Boolean).join(' ');
  const t0 = Date.now();
  const q = startQemu(
    { kernel, initrd, append, memoryMiB: o.memoryMiB ?? 512, socketPath: o.socketPath, extraArgs: o.extraArgs },
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

/**
 * What a MIC guest needs beyond the test programs: the firmware files the
 * driver loads (/lib/firmware/mic/...) and the mic-*.sh test scripts
 * (mic-NAME.sh as /opt/vphi/bin/mic-NAME, mic-lib.sh in /opt/vphi/lib).
 */
export function micGuestFiles(): InitramfsFile[] {
  const dir = join(REPO_ROOT, 'guest-tests');
  const scripts = readdirSync(dir)
    .filter((f) => /^mic-.*\.sh$/.test(f))
    .sort()
    .map((f) =>
      f === 'mic-lib.sh'
        ? { path: '/opt/vphi/lib/mic-lib.sh', hostPath: join(dir, f), mode: 0o644 }
        : { path: `/opt/vphi/bin/${basename(f, '.sh')}`, hostPath: join(dir, f), mode: 0o755 },
    );
  return [...micFirmwareFiles(), ...scripts];
}
