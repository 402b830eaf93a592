/**
 * SMPT: the system memory page table (mic_x100_smpt_hw_init(),
 * mic_x100_smpt_set() in host/mic_x100.c). 32 entries, each
 * redirecting one 16 GiB page of the card's system-memory window
 * 0x80_0000_0000..0x87_FFFF_FFFF to host (guest bus) memory.
 */
import { bit, block, field, reg, repeat } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

export const SMPT_ENTRIES = 32;
export const SMPT_PAGE_SHIFT = 34n; // 16 GiB pages
export const SMPT_PAGE_SIZE = 1n << SMPT_PAGE_SHIFT;
/** Card address of the system-memory window. */
export const SYSTEM_WINDOW_BASE = 0x80_0000_0000n;
export const SYSTEM_WINDOW_END = SYSTEM_WINDOW_BASE + BigInt(SMPT_ENTRIES) * SMPT_PAGE_SIZE;

/** SMPTn: card page n of the system window (mic_x100_smpt_set(): the host page << 2). */
export const SMPT = reg('SMPT', 0x000, 'RW', 0, 'card page n of the system window → host address bits 63:34', [
  bit('NO_SNOOP', 0, 'no-snoop (the host always writes 0)'),
  field('HOST_PAGE', 2, 30, 'host DMA address bits 63:34'),
]);

export const SMPT_BLOCK = block('smpt', SBOX_BASE + 0x3100, 'system memory page table', [repeat(SMPT, SMPT_ENTRIES, 4)]);
