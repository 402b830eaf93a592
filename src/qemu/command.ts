/**
 * The QEMU command line for a guest with (optionally) the vphi card.
 *
 * Pure: builds argv, starts nothing. The card is a vfio-user-pci device
 * behind a pcie-root-port; guest RAM is a shared memfd because the device
 * does DMA only through fd-mapped guest memory.
 */
import { join } from 'node:path';
import { CACHE_DIR } from '../paths.ts';

export interface GuestOptions {
  /** bzImage to boot with -kernel. */
  kernel: string;
  /** Initramfs for -initrd. */
  initrd?: string;
  /** Appended to the default kernel command line (`console=ttyS0 panic=-1`). */
  append?: string;
  /** Guest RAM in MiB. */
  memoryMiB: number;
  /** The card's vfio-user socket; no card when absent (QEMU cannot start without a listening socket). */
  socketPath?: string;
  /** Several cards: one vfio-user socket each, each behind its own root port (instead of socketPath). */
  socketPaths?: string[];
  /** vCPUs (default 1). */
  smp?: number;
  /** Appended verbatim, last. */
  extraArgs?: string[];
}

/** Kernel command line always passed; `append` is added after it. */
export const DEFAULT_APPEND = 'console=ttyS0 panic=-1';

/** The private QEMU set-up unpacked (`VPHI_QEMU` overrides). */
export function qemuBinary(): string {
  return process.env.VPHI_QEMU || join(CACHE_DIR, 'qemu/bin/qemu-system-x86_64');
}

/** The `-device` JSON for the card on root port `bus`. */
export function cardDeviceJson(socketPath: string, bus = 'rp0'): string {
  return JSON.stringify({ driver: 'vfio-user-pci', socket: { type: 'unix', path: socketPath }, bus });
}

/** argv (without the binary) for a TCG q35 guest, serial console (and monitor) on stdio. */
export function qemuArgs(o: GuestOptions): string[] {
  if (!Number.isInteger(o.memoryMiB) || o.memoryMiB <= 0) throw new RangeError(`memoryMiB must be a positive integer, got ${o.memoryMiB}`);
  if (o.smp !== undefined && (!Number.isInteger(o.smp) || o.smp <= 0)) throw new RangeError(`smp must be a positive integer, got ${o.smp}`);
  const append = [DEFAULT_APPEND, o.append?.trim()].filter(Boolean).join(' ');
  const args = [
    '-machine', 'q35',
    '-accel', 'tcg',
    '-m', `${o.memoryMiB}M`,
    '-object', `memory-backend-memfd,id=mem,size=${o.memoryMiB}M,share=on`,
    '-machine', 'memory-backend=mem',
    '-smp', String(o.smp ?? 1),
    '-nographic',
    '-no-reboot',
    // The serial console on stdio, multiplexed with the monitor (Ctrl-A c; Ctrl-A x quits).
    '-serial', 'mon:stdio',
    '-nic', 'none',
    // QEMU dies with its parent, even if that parent is SIGKILLed.
    '-run-with', 'exit-with-parent=on',
    '-kernel', o.kernel,
  ];
  if (o.initrd) args.push('-initrd', o.initrd);
  args.push('-append', append);
  const cards = o.socketPaths ?? (o.socketPath ? [o.socketPath] : []);
  if (cards.length <= 1) {
    args.push('-device', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1');
    if (cards.length) args.push('-device', cardDeviceJson(cards[0]));
  } else {
    cards.forEach((path, k) => args.push('-device', `pcie-root-port,id=rp${k},bus=pcie.0,chassis=${k + 1}`, '-device', cardDeviceJson(path, `rp${k}`)));
  }
  if (o.extraArgs) args.push(...o.extraArgs);
  return args;
}
