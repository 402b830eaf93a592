/**
 * Where things are in the repository and its private cache (.cache/, made
 * by scripts/setup). The one definition of the repository root.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const CACHE_DIR = join(REPO_ROOT, '.cache');
/** The Debian guest kernel, busybox, the built guest programs, cached initramfs images. */
export const GUEST_CACHE = join(CACHE_DIR, 'guest');
/** The guest programs scripts/setup built: `guest-tests/<prog>.c` (+ `guest-tests/<prog>/*.c`) → `<prog>`. */
export const GUEST_BIN = join(GUEST_CACHE, 'bin');
/** Sources of the guest programs: the C programs scripts/setup builds, the mic-*.sh scripts taken as they are. */
export const GUEST_SOURCES = join(REPO_ROOT, 'guest-tests');
