/**
 * BAR4 offsets by register name ('DHPR0', 'SPAD0', 'SMPT3', 'DCR'), from
 * the card's own declarations through the RegisterFile listing, so the
 * bench never carries an offset of its own.
 */
import { BAR4_BLOCKS } from '../../device/x100/card.ts';
import { MMIO_BAR, MMIO_BAR_SIZE } from '../../device/x100/pci/identity.ts';
import { RegisterFile } from '../../src/regs/file.ts';

let offsets: Map<string, number> | undefined;

/** The BAR4 offset of the register named `name` (throws for an unknown name). */
export function bar4Offset(name: string): number {
  offsets ??= new Map(new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, BAR4_BLOCKS).listing().map((r) => [r.def.name, r.abs]));
  const off = offsets.get(name);
  if (off === undefined) throw new Error(`BAR4 declares no register ${name}`);
  return off;
}
