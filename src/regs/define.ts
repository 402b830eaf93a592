/**
 * Declarative register definitions, in the spirit of QEMU's
 * hw/registerfields.h: one line per register, its fields under it, so a
 * block file reads like the datasheet. Definitions are plain data (offset,
 * access, reset value, fields); behaviour is attached separately as hooks
 * (see file.ts), and trace decoding comes from the data for free.
 *
 * The fields are the one source of truth for bit positions: behaviour code
 * reads and writes them by name (`DSTAT.f.COUNT.ex(v)`, FIELD_EX32;
 * `.dp(v, x)`, FIELD_DP32), never through hand masks. Field names are
 * literal types, so a misspelt name fails type-checking; masks and shifts
 * are computed once, when the field is declared.
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

/** What a card reset (RGCR) does to a register: back to its reset value, or nothing. */
export type CardReset = 'clear' | 'keep';

/** A bit field of a 32-bit value: bits lo .. lo+width-1. */
export class Field<N extends string = string> {
  /** The field's bits in place. */
  readonly mask: number;
  /** The largest value the field holds. */
  readonly max: number;

  constructor(
    readonly name: N,
    readonly lo: number,
    readonly width: number,
    readonly doc: string,
  ) {
    if (!Number.isInteger(lo) || !Number.isInteger(width) || lo < 0 || width < 1) throw new Error(`field ${name}: bad bits ${lo}+${width}`);
    this.max = width >= 32 ? 0xffffffff : 2 ** width - 1;
    this.mask = lo + width <= 32 ? (this.max * 2 ** lo) >>> 0 : 0;
  }

  /** The field's value in `v` (FIELD_EX32). */
  ex(v: number): number {
    return this.width >= 32 ? v >>> 0 : (v >>> this.lo) & this.max;
  }

  /** `v` with the field replaced by `x` (FIELD_DP32). */
  dp(v: number, x: number): number {
    return ((v & ~this.mask) | ((x << this.lo) & this.mask)) >>> 0;
  }

  /** `x` placed in the field, every other bit 0. */
  val(x: number): number {
    return ((x << this.lo) & this.mask) >>> 0;
  }

  /** True if any bit of the field is set in `v`. */
  isSet(v: number): boolean {
    return (v & this.mask) !== 0;
  }
}

/** The fields of a register (or layout) by name. */
export type FieldMap<F extends string> = { readonly [K in F]: Field<K> };

export interface RegisterDef<F extends string = string> {
  readonly name: string;
  /** Byte offset within the block (32-bit registers, 4-byte aligned). */
  readonly offset: number;
  readonly access: Access;
  readonly reset: number;
  readonly doc: string;
  readonly fields: readonly Field<F>[];
  /** The fields by name: `DRAR_HI.f.SIZE.ex(v)`. */
  readonly f: FieldMap<F>;
  /** Bits a write may change (default: all). */
  readonly writeMask: number;
  /** Bits that read back as 0 once a write has taken effect (self-clearing "go" bits). */
  readonly selfClear: number;
  /** What a card reset does to it; undefined: as its block says. */
  readonly cardReset: CardReset | undefined;
  /** For registers declared as an array: the element index; else -1. */
  readonly index: number;
  /** For arrays: the array's base name (e.g. "SPAD" for SPAD3). */
  readonly group: string;
}

export interface RegOptions<F extends string = string> {
  writeMask?: number;
  /** Self-clearing bits: a mask, or a field's name. */
  selfClear?: number | F;
  cardReset?: CardReset;
}

/** A bit field of a 32-bit register: `field('DB', 0, 4, 'host doorbells 0-3')` is bits 3:0. */
export function field<N extends string>(name: N, lo: number, width: number, doc: string): Field<N> {
  if (lo + width > 32) throw new Error(`field ${name}: bits ${lo}+${width} outside 32`);
  return new Field(name, lo, width, doc);
}

/** A bit field of a memory structure (layout()): bit `lo` counts from bit 0 of byte 0. */
export function wideField<N extends string>(name: N, lo: number, width: number, doc: string): Field<N> {
  return new Field(name, lo, width, doc);
}

/** Bit `lo` alone. */
export function bit<N extends string>(name: N, lo: number, doc: string): Field<N> {
  return new Field(name, lo, 1, doc);
}

/** Index fields by name; throws on a name used twice or (`limit`) a field past bit limit-1. */
function fieldMap<F extends string>(owner: string, fields: readonly Field<F>[], limit: number): FieldMap<F> {
  const f: Record<string, Field<F>> = {};
  for (const x of fields) {
    if (x.lo + x.width > limit) throw new Error(`${owner}: field ${x.name} (bits ${x.lo}+${x.width}) is outside ${limit} bits`);
    if (f[x.name]) throw new Error(`${owner}: field ${x.name} declared twice`);
    f[x.name] = x;
  }
  return Object.freeze(f) as FieldMap<F>;
}

/** One 32-bit register. */
export function reg<F extends string = never>(
  name: string,
  offset: number,
  access: Access,
  reset: number,
  doc: string,
  fields: readonly Field<F>[] = [],
  opts: RegOptions<NoInfer<F>> = {},
): RegisterDef<F> {
  if (offset % 4 !== 0) throw new Error(`register ${name}: offset 0x${offset.toString(16)} is not 4-byte aligned`);
  const f = fieldMap(`register ${name}`, fields, 32);
  let selfClear = 0;
  if (typeof opts.selfClear === 'string') {
    const sc = (f as Record<string, Field>)[opts.selfClear];
    if (!sc) throw new Error(`register ${name}: selfClear names no field ${opts.selfClear}`);
    selfClear = sc.mask;
  } else {
    selfClear = (opts.selfClear ?? 0) >>> 0;
  }
  return {
    name,
    offset,
    access,
    reset: reset >>> 0,
    doc,
    fields,
    f,
    writeMask: (opts.writeMask ?? 0xffffffff) >>> 0,
    selfClear,
    cardReset: opts.cardReset,
    index: -1,
    group: name,
  };
}

/**
 * A copy of `def` under another name and offset, as element `index` of
 * the array `def.name` (SPAD3 of SPAD, DCAR3 of DCAR). It shares the
 * template's fields, so code reads every copy through `def.f`.
 */
export function regAt<F extends string>(def: RegisterDef<F>, name: string, offset: number, index: number, doc = def.doc): RegisterDef<F> {
  if (offset % 4 !== 0) throw new Error(`register ${name}: offset 0x${offset.toString(16)} is not 4-byte aligned`);
  return { ...def, name, offset, index, group: def.name, doc };
}

/** `count` copies of `def`, `${def.name}${i}` at `def.offset + i * stride`. */
export function repeat<F extends string>(def: RegisterDef<F>, count: number, stride: number): RegisterDef<F>[] {
  return Array.from({ length: count }, (_, i) => regAt(def, `${def.name}${i}`, def.offset + i * stride, i));
}

/**
 * `count` registers `name0..name{count-1}` at `offset + i * stride`, sharing
 * access, reset, doc and fields (SPAD0..15, SMPT0..31, MXAR0..15).
 */
export function regArray<F extends string = never>(
  name: string,
  count: number,
  offset: number,
  stride: number,
  access: Access,
  reset: number | ((i: number) => number),
  doc: string,
  fields: readonly Field<F>[] = [],
  opts: RegOptions<NoInfer<F>> = {},
): RegisterDef<F>[] {
  if (typeof reset === 'number') return repeat(reg(name, offset, access, reset, doc, fields, opts), count, stride);
  return Array.from({ length: count }, (_, i) =>
    regAt(reg(name, offset, access, reset(i), doc, fields, opts), `${name}${i}`, offset + i * stride, i));
}

/** Each field's mask by name (for code that mirrors a driver's bit constants). */
export function masksOf<F extends string>(r: { readonly fields: readonly Field<F>[] }): { readonly [K in F]: number } {
  return Object.fromEntries(r.fields.map((x) => [x.name, x.mask])) as { readonly [K in F]: number };
}

/** The bits of all `fields` together. */
export function maskOf(fields: readonly Field[]): number {
  let m = 0;
  for (const f of fields) m |= f.mask;
  return m >>> 0;
}

/** A named block of registers placed at `base` within a BAR. */
export interface BlockDef {
  readonly name: string;
  readonly base: number;
  readonly doc: string;
  readonly regs: readonly RegisterDef[];
  /** What a card reset does to the block's registers (a register may say otherwise). */
  readonly cardReset: CardReset;
}

export interface BlockOptions {
  /** Default 'keep'. */
  cardReset?: CardReset;
}

export function block(name: string, base: number, doc: string, regs: readonly (RegisterDef | RegisterDef[])[], opts: BlockOptions = {}): BlockDef {
  const flat = regs.flat();
  const seen = new Map<number, string>();
  for (const r of flat) {
    const prev = seen.get(r.offset);
    if (prev) throw new Error(`block ${name}: ${r.name} overlaps ${prev} at 0x${r.offset.toString(16)}`);
    seen.set(r.offset, r.name);
  }
  return { name, base, doc, regs: flat, cardReset: opts.cardReset ?? 'keep' };
}

/**
 * `count` copies of a block of registers at `base + i * stride`, named
 * `${name}${i}`, each register renamed `${reg}${i}` (DMA channels 0-7:
 * dma3 holds DCAR3 … DCHERRMSK3). The templates keep their fields, so
 * behaviour code reads every copy through the template's `f`.
 */
export function blockArray(
  name: string,
  count: number,
  base: number,
  stride: number,
  doc: (i: number) => string,
  templates: readonly RegisterDef[],
  opts: BlockOptions = {},
): BlockDef[] {
  return Array.from({ length: count }, (_, i) =>
    block(`${name}${i}`, base + i * stride, doc(i), templates.map((t) => regAt(t, `${t.name}${i}`, t.offset, i)), opts));
}

/** Extract a field's value from a register value. */
export function getField(value: number, f: Field): number {
  return f.ex(value);
}

/** Replace a field within a register value. */
export function setField(value: number, f: Field, v: number): number {
  return f.dp(value, v);
}

/** Look a field up by name (throws on a typo, so hooks fail loudly at construction). */
export function fieldOf(r: { readonly name: string; readonly fields: readonly Field[] }, name: string): Field {
  const f = r.fields.find((x) => x.name === name);
  if (!f) throw new Error(`register ${r.name} has no field ${name}`);
  return f;
}

/** Decode a value into its named fields (for the trace and for humans). */
export function decodeFields(r: RegisterDef, value: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const f of r.fields) out[f.name] = f.ex(value);
  return out;
}

/**
 * A field of a memory structure wider than 32 bits (a DMA descriptor),
 * read from the structure's little-endian 32-bit words. Fields of up to 53
 * bits (numbers stay exact) and at most two words are decoded by ex().
 */
export class WordField<N extends string = string> {
  readonly word: number;
  readonly shift: number;
  /** Bits taken from `word` (the rest come from word + 1). */
  private readonly lowBits: number;
  private readonly lowMax: number;
  private readonly highMax: number;

  constructor(readonly def: Field<N>) {
    this.word = def.lo >>> 5;
    this.shift = def.lo & 31;
    this.lowBits = Math.min(def.width, 32 - this.shift);
    this.lowMax = 2 ** this.lowBits - 1;
    this.highMax = 2 ** (def.width - this.lowBits) - 1;
  }

  get name(): N { return this.def.name; }
  get lo(): number { return this.def.lo; }
  get width(): number { return this.def.width; }

  /** The field's value in the structure `w` (its 32-bit words). */
  ex(w: ArrayLike<number>): number {
    const low = this.lowBits === 32 ? w[this.word] >>> 0 : (w[this.word] >>> this.shift) & this.lowMax;
    if (this.lowBits === this.def.width) return low;
    return ((w[this.word + 1] >>> 0) & this.highMax) * 2 ** this.lowBits + low;
  }

  /** The field's bytes within the structure's bytes `b` (byte-aligned fields). */
  bytes(b: Uint8Array): Uint8Array {
    return b.subarray(this.def.lo >>> 3, (this.def.lo + this.def.width) >>> 3);
  }
}

/** The layout of a structure in memory: its fields, by bit position from byte 0. */
export interface Layout<F extends string = string> {
  readonly name: string;
  readonly size: number;
  readonly doc: string;
  readonly fields: readonly WordField<F>[];
  readonly f: { readonly [K in F]: WordField<K> };
  /** Every field that ex() can decode, by name (for the trace). */
  decode(w: ArrayLike<number>): Record<string, number>;
}

/** A memory structure of `size` bytes (a multiple of 4) with bit fields across its words. */
export function layout<F extends string>(name: string, size: number, doc: string, fields: readonly Field<F>[]): Layout<F> {
  if (size % 4 !== 0) throw new Error(`layout ${name}: size ${size} is not a multiple of 4`);
  fieldMap(`layout ${name}`, fields, size * 8);
  const words = fields.map((x) => {
    const w = new WordField(x);
    if (x.width <= 53 && w.shift + x.width > 64) throw new Error(`layout ${name}: field ${x.name} spans more than two words`);
    return w;
  });
  const f: Record<string, WordField<F>> = {};
  for (const w of words) f[w.name] = w;
  const narrow = words.filter((w) => w.width <= 53);
  return {
    name,
    size,
    doc,
    fields: words,
    f: Object.freeze(f) as { readonly [K in F]: WordField<K> },
    decode: (w) => Object.fromEntries(narrow.map((x) => [x.name, x.ex(w)])),
  };
}
