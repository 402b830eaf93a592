/**
 * Where guest kernels come from.
 *
 * - The Debian kernel (scripts/setup unpacks it into .cache/guest/vmlinuz)
 *   has no MIC drivers; it runs every test that drives the card directly.
 * - A MIC kernel (Linux 4.4-5.9 with the MIC host stack built in, built by
 *   scripts/build-guest-kernel): MIC_GUEST_KERNEL first, then
 *   ~/.cache/vphi/bzImage.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { GUEST_CACHE } from '../paths.ts';


/**
 * A MIC stack built in also builds the card-side cosm_client, which spins
 * forever on the host's own loopback SCIF node and freezes the guest at
 * boot. Blacklisting its initcall is harmless on any other kernel.
 */
export const MIC_APPEND = 'initcall_blacklist=cosm_client_init';

export function debianKernel(): string {
  return join(GUEST_CACHE, 'vmlinuz');
}

/** The MIC guest kernel, or null when there is none. */
export function micKernel(): string | null {
  const env = process.env.MIC_GUEST_KERNEL;
  if (env) return existsSync(env) ? env : null;
  const cached = join(homedir(), '.cache/vphi/bzImage');
  return existsSync(cached) ? cached : null;
}
