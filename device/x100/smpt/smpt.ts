/**
 * Card → host address translation through the SMPT registers. Translations
 * are never cached: every access reads the live register.
 */
import type { RegisterFile } from '../../../src/regs/file.ts';
import { SMPT, SMPT_ENTRIES, SMPT_PAGE_SHIFT, SMPT_PAGE_SIZE, SYSTEM_WINDOW_BASE, SYSTEM_WINDOW_END } from './regs.ts';

export class Smpt {
  private readonly entries: { get(): number }[];

  constructor(regs: RegisterFile) {
    this.entries = Array.from({ length: SMPT_ENTRIES }, (_, i) => regs.ref(`SMPT${i}`));
  }

  /** True if `cardAddr` lies in the system-memory window. */
  static inWindow(cardAddr: bigint): boolean {
    return cardAddr >= SYSTEM_WINDOW_BASE && cardAddr < SYSTEM_WINDOW_END;
  }

  /** The SMPT entry covering a window address. */
  static entryOf(cardAddr: bigint): number {
    return Number((cardAddr - SYSTEM_WINDOW_BASE) >> SMPT_PAGE_SHIFT);
  }

  /** Bytes from `cardAddr` to the end of its 16 GiB page. */
  static bytesToPageEnd(cardAddr: bigint): bigint {
    return SMPT_PAGE_SIZE - ((cardAddr - SYSTEM_WINDOW_BASE) & (SMPT_PAGE_SIZE - 1n));
  }

  /** Host bus address for a window address (inverse of mic_to_dma_addr()). */
  translate(cardAddr: bigint): bigint {
    const i = Smpt.entryOf(cardAddr);
    const hostPage = BigInt(SMPT.f.HOST_PAGE.ex(this.entries[i].get()));
    return (hostPage << SMPT_PAGE_SHIFT) + ((cardAddr - SYSTEM_WINDOW_BASE) & (SMPT_PAGE_SIZE - 1n));
  }
}
