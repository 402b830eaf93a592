/**
 * BAR4 registers by name ('DHPR0', 'SPAD0', 'SMPT3', 'DCR') and their
 * fields ('DSTAT0'.'COUNT'), from the card's own declarations through the
 * RegisterFile listing, so the bench never carries an offset or a mask of
 * its own.
 */
import { BAR4_BLOCKS } from '../../device/x100/card.ts';
import { MMIO_BAR, MMIO_BAR_SIZE } from '../../device/x100/pci/identity.ts';
import type { RegisterDef } from '../../src/regs/define.ts';
import { RegisterFile } from '../../src/regs/file.ts';

let regs: Map<string, { abs: number; def: RegisterDef }> | undefined;

function lookup(name: string): { abs: number; def: RegisterDef } {
  regs ??= new Map(new RegisterFile('bar4', MMIO_BAR, MMIO_BAR_SIZE, BAR4_BLOCKS).listing().map((r) => [r.def.name, r]));
  const r = regs.get(name);
  if (!r) throw new Error(`BAR4 declares no register ${name}`);
  return r;
}

/** The BAR4 offset of the register named `name` (throws for an unknown name). */
export function bar4Offset(name: string): number {
  return lookup(name).abs;
}

/** Field `field` of register `reg`: read it out of a value, or put it into one. */
export function bar4Field(reg: string, field: string): { get(v: number): number; set(v: number, x: number): number } {
  const f = lookup(reg).def.fields.find((d) => d.name === field);
  if (!f) throw new Error(`BAR4 register ${reg} declares no field ${field}`);
  const mask = f.width >= 32 ? 0xffffffff : ((1 << f.width) - 1) >>> 0;
  return {
    get: (v) => ((v >>> f.lo) & mask) >>> 0,
    set: (v, x) => ((v & ~((mask << f.lo) >>> 0)) | ((x & mask) << f.lo)) >>> 0,
  };
}
