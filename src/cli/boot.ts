/**
 * `vphi boot`: serve the card and boot a QEMU guest with it under TCG,
 * the guest's serial console on this terminal. The guest is the Debian
 * kernel set-up unpacked, unless MIC_GUEST_KERNEL or --kernel names a MIC
 * kernel; the initramfs is vphi's own (busybox, the guest test programs,
 * a shell), unless --initrd names another.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { qemuArgs, qemuBinary } from '../qemu/command.ts';
import { buildGuestInitramfs, micGuestFiles } from '../guest/image.ts';
import { debianKernel, MIC_APPEND } from '../qemu/kernel.ts';
import { UsageError } from './args.ts';
import type { CardSettings } from './options.ts';
import { startCards, stderrLogger } from './serve.ts';
import { cardPath } from './options.ts';

export interface BootOptions extends CardSettings {
  kernel?: string;
  initrd?: string;
  append?: string;
  memoryMiB?: number;
}

export async function boot(o: BootOptions): Promise<number> {
  const log = stderrLogger(o.verbose);
  const kernel = o.kernel ?? process.env.MIC_GUEST_KERNEL ?? debianKernel();
  if (!existsSync(kernel)) throw new UsageError(`kernel ${kernel} does not exist${o.kernel ? '' : ' (run scripts/setup)'}`);
  if (o.initrd && !existsSync(o.initrd)) throw new UsageError(`--initrd: ${o.initrd} does not exist`);
  // The MIC firmware files and test scripts are small: always include them,
  // so `echo boot > /sys/class/mic/mic0/state` works in a MIC guest.
  const initrd = o.initrd ?? (await buildGuestInitramfs([], micGuestFiles()));
  const dir = o.socketPath ? null : mkdtempSync(join(process.env.XDG_RUNTIME_DIR ?? tmpdir(), 'vphi-'));
  const socketPath = o.socketPath ?? join(dir as string, 'card.sock');
  let servers;
  try {
    servers = await startCards({ ...o, socketPath }, log);
  } catch (e) {
    if (dir) rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  // Harmless on a kernel without the MIC stack; required on one with it built in.
  const append = [MIC_APPEND, o.append].filter(Boolean).join(' ');
  const socketPaths = servers.map((_, k) => cardPath(socketPath, k));
  const args = qemuArgs({ kernel, initrd, append, memoryMiB: o.memoryMiB ?? 512, socketPaths });
  process.stderr.write(
    `vphi: booting ${kernel} with ${servers.length > 1 ? `${servers.length} cards on ${socketPaths.join(', ')}` : `the card on ${socketPath}`}${o.trace ? `, tracing to ${o.trace}${servers.length > 1 ? ' (.1, .2, ... for the others)' : ''}` : ''}\n`,
  );
  const qemu = spawn(qemuBinary(), args, { stdio: 'inherit' });
  const code = await new Promise<number>((resolve) => {
    qemu.on('exit', (c, sig) => resolve(c ?? (sig ? 128 : 1)));
    qemu.on('error', (e) => {
      log('error', `cannot start QEMU: ${e.message}`);
      resolve(1);
    });
    const stop = () => qemu.kill('SIGTERM');
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  for (const s of servers) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  if (o.trace) process.stderr.write(`vphi: trace written to ${o.trace} (read it with: vphi trace ${o.trace})\n`);
  return code;
}
