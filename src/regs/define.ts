/**
 * Declarative register definitions, in the spirit of QEMU's
 * hw/registerfields.h: one line per register, its fields under it, so a
 * block file reads like the datasheet. Definitions are plain data (offset,
 * access, reset value, fields); behaviour is attached separately as hooks
 * (see file.ts), and trace decoding comes from the data for free.
 */

/**
 * How a register reacts to a write.
 * - RO:  writes are ignored (and traced as such).
 * - RW:  the writable bits take the written value.
 * - W1C: writing 1 to a bit clears it; 0 leaves it.
 * - W1S: writing 1 to a bit sets it; 0 leaves it.
 * - WO:  write-only; reads return 0.
 */
export type Access = 'RO' | 'RW' | 'W1C' | 'W1S' | 'WO';

export interface FieldDef {
  readonly name: string;
  /** Lowest bit. */
  readonly lo: number;
  readonly width: number;
  readonly doc: string;
}

export interface RegisterDef {
  readonly name: string;
  /** Byte offset within the block (32-bit registers, 4-byte aligned). */
  readonly offset: number;
  readonly access: Access;
  readonly reset: number;
  readonly doc: string;
  readonly fields: readonly FieldDef[];
  /** Bits a write may change (default: all). */
  readonly writeMask: number;
  /** Bits that read back as 0 once a write has taken effect (self-clearing "go" bits). */
  readonly selfClear: number;
  /** For registers declared as an array: the element index; else -1. */
  readonly index: number;
  /** For arrays: the array's base name (e.g. "SPAD" for SPAD3). */
  readonly group: string;
}

export interface RegOptions {
  writeMask?: number;
  selfClear?: number;
}

/** A bit field: `field('DB', 0, 4, 'host doorbells 0-3')` is bits 3:0. */
export function field(name: string, lo: number, width: number, doc: string): FieldDef {
  if (lo < 0 || width < 1 || lo + width > 32) throw new Error(`field ${name}: bits ${lo}+${width} outside 32`);
  return { name, lo, width, doc };
}

/** Bit `lo` alone. */
export function bit(name: string, lo: number, doc: string): FieldDef {
  return field(name, lo, 1, doc);
}

/** One 32-bit register. */
export function reg(
  name: string,
  offset: number,
  access: Access,
  reset: number,
  doc: string,
  fields: readonly FieldDef[] = [],
  opts: RegOptions = {},
): RegisterDef {
  if (offset % 4 !== 0) throw new Error(`register ${name}: offset 0x${offset.toString(16)} is not 4-byte aligned`);
  return {
    name,
    offset,
    access,
    reset: reset >>> 0,
    doc,
    fields,
    writeMask: (opts.writeMask ?? 0xffffffff) >>> 0,
    selfClear: (opts.selfClear ?? 0) >>> 0,
    index: -1,
    group: name,
  };
}

/**
 * `count` registers `name0..name{count-1}` at `offset + i * stride`, sharing
 * access, reset, doc and fields (SPAD0..15, SMPT0..31, MXAR0..15).
 */
export function regArray(
  name: string,
  count: number,
  offset: number,
  stride: number,
  access: Access,
  reset: number | ((i: number) => number),
  doc: string,
  fields: readonly FieldDef[] = [],
  opts: RegOptions = {},
): RegisterDef[] {
  const out: RegisterDef[] = [];
  for (let i = 0; i < count; i++) {
    const r = reg(`${name}${i}`, offset + i * stride, access, typeof reset === 'function' ? reset(i) : reset, doc, fields, opts);
    out.push({ ...r, index: i, group: name });
  }
  return out;
}

/** A named block of registers placed at `base` within a BAR. */
export interface BlockDef {
  readonly name: string;
  readonly base: number;
  readonly doc: string;
  readonly regs: readonly RegisterDef[];
}

export function block(name: string, base: number, doc: string, regs: readonly (RegisterDef | RegisterDef[])[]): BlockDef {
  const flat = regs.flat();
  const seen = new Map<number, string>();
  for (const r of flat) {
    const prev = seen.get(r.offset);
    if (prev) throw new Error(`block ${name}: ${r.name} overlaps ${prev} at 0x${r.offset.toString(16)}`);
    seen.set(r.offset, r.name);
  }
  return { name, base, doc, regs: flat };
}

/** Extract a field's value from a register value. */
export function getField(value: number, f: FieldDef): number {
  if (f.width === 32) return value >>> 0;
  return (value >>> f.lo) & ((1 << f.width) - 1);
}

/** Replace a field within a register value. */
export function setField(value: number, f: FieldDef, v: number): number {
  if (f.width === 32) return v >>> 0;
  const mask = ((1 << f.width) - 1) << f.lo;
  return ((value & ~mask) | ((v << f.lo) & mask)) >>> 0;
}

/** Look a field up by name (throws on a typo, so hooks fail loudly in tests). */
export function fieldOf(r: RegisterDef, name: string): FieldDef {
  const f = r.fields.find((x) => x.name === name);
  if (!f) throw new Error(`register ${r.name} has no field ${name}`);
  return f;
}

/** Decode a value into its named fields (for the trace and for humans). */
export function decodeFields(r: RegisterDef, value: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of r.fields) out[f.name] = getField(value, f);
  return out;
}
