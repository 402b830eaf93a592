/**
 * vphi's guest initramfs: busybox, src/guest/init.sh as /init, and every
 * guest program scripts/setup built (.cache/guest/bin/*, into
 * /opt/vphi/bin), cached in .cache/guest by content hash. Nothing is
 * compiled here.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { GUEST_CACHE, GUEST_SOURCES } from '../paths.ts';
import { buildInitramfs, guestProgramFiles, setUpBusybox, type InitramfsFile } from './initramfs.ts';
import { micFirmwareFiles } from './firmware.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The /init of the image: runs `vphi.tests=` (or /etc/vphi/tests) as KTAP, else a shell. */
export const INIT_SCRIPT = join(HERE, 'init.sh');

/**
 * The guest initramfs; `tests` (command lines, e.g. `vphi-probe spad`) are
 * what init runs when the kernel command line has no `vphi.tests=`. With no
 * tests at all, init starts a shell. `extraFiles` are added as given (e.g.
 * firmware under /lib/firmware, scripts into /opt/vphi/bin). Returns the
 * path of the cached file; a NotSetUpError if set-up has not run.
 */
export async function buildGuestInitramfs(tests: string[] = [], extraFiles: InitramfsFile[] = []): Promise<string> {
  const busybox = setUpBusybox();
  const init = readFileSync(INIT_SCRIPT, 'utf8');
  const files: InitramfsFile[] = [...guestProgramFiles(), ...extraFiles];
  if (tests.length) files.push({ path: '/etc/vphi/tests', data: `${tests.join('\n')}\n`, mode: 0o644 });
  const h = createHash('sha256');
  for (const src of ['initramfs.ts', 'cpio.ts']) h.update(readFileSync(join(HERE, src)));
  h.update(init);
  h.update(readFileSync(busybox));
  for (const f of files) {
    h.update(`\0${f.path}\0${f.mode ?? ''}\0`);
    h.update(f.hostPath !== undefined ? readFileSync(f.hostPath) : Buffer.from(f.data ?? ''));
  }
  const out = join(GUEST_CACHE, `initramfs-${h.digest('hex').slice(0, 16)}.cpio.gz`);
  if (!existsSync(out)) {
    await buildInitramfs({ out, init, files, busybox });
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

/**
 * What a MIC guest needs beyond the guest programs: the firmware files the
 * driver loads (request_firmware() in mic_x100_load_firmware(), from
 * /lib/firmware/mic/...) and the mic-*.sh scripts (mic-NAME.sh as
 * /opt/vphi/bin/mic-NAME, mic-lib.sh in /opt/vphi/lib).
 */
export function micGuestFiles(): InitramfsFile[] {
  const scripts = readdirSync(GUEST_SOURCES)
    .filter((f) => /^mic-.*\.sh$/.test(f))
    .sort()
    .map((f) =>
      f === 'mic-lib.sh'
        ? { path: '/opt/vphi/lib/mic-lib.sh', hostPath: join(GUEST_SOURCES, f), mode: 0o644 }
        : { path: `/opt/vphi/bin/${basename(f, '.sh')}`, hostPath: join(GUEST_SOURCES, f), mode: 0o755 },
    );
  return [...micFirmwareFiles(), ...scripts];
}
