/**
 * Declarative C struct layouts, in the spirit of the register framework's
 * field declarations (src/regs/define.ts): a struct is one line with its
 * members under it, each at the offset the kernel's compiler gives it.
 * Behaviour reads and writes members by name; the trace decodes a struct
 * from the same data.
 */

export type MemberType = 'u8' | 's8' | 'u16' | 'u32' | 'u64';

export interface MemberDef {
  readonly name: string;
  readonly offset: number;
  readonly type: MemberType;
  readonly doc: string;
}

export interface StructDef<N extends string = string> {
  readonly name: string;
  /** sizeof() as the kernel sees it (the guest config: no spinlock debugging). */
  readonly size: number;
  readonly doc: string;
  readonly members: readonly MemberDef[];
  /** Byte offset of a member by name. */
  readonly offsetOf: Readonly<Record<N, number>>;
}

const WIDTH: Record<MemberType, number> = { u8: 1, s8: 1, u16: 2, u32: 4, u64: 8 };

export function widthOf(t: MemberType): number {
  return WIDTH[t];
}

export function member<N extends string>(name: N, offset: number, type: MemberType, doc: string): MemberDef & { name: N } {
  return { name, offset, type, doc };
}

/** A struct: members must fit inside `size` and not overlap. */
export function struct<const M extends readonly (MemberDef & { name: string })[]>(
  name: string,
  size: number,
  doc: string,
  members: M,
): StructDef<M[number]['name']> {
  const sorted = [...members].sort((a, b) => a.offset - b.offset);
  let end = 0;
  for (const m of sorted) {
    if (m.offset < end) throw new Error(`struct ${name}: member ${m.name} at ${m.offset} overlaps the one before`);
    end = m.offset + WIDTH[m.type];
    if (end > size) throw new Error(`struct ${name}: member ${m.name} ends at ${end}, past sizeof ${size}`);
  }
  const offsetOf = Object.fromEntries(members.map((m) => [m.name, m.offset])) as Record<M[number]['name'], number>;
  return { name, size, doc, members, offsetOf };
}

/** A DataView over exactly `len` bytes of `b`. */
export function dataView(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

export function getMember(v: DataView, m: MemberDef, base = 0): number | bigint {
  const o = base + m.offset;
  switch (m.type) {
    case 'u8': return v.getUint8(o);
    case 's8': return v.getInt8(o);
    case 'u16': return v.getUint16(o, true);
    case 'u32': return v.getUint32(o, true);
    case 'u64': return v.getBigUint64(o, true);
  }
}

export function setMember(v: DataView, m: MemberDef, value: number | bigint, base = 0): void {
  const o = base + m.offset;
  switch (m.type) {
    case 'u8': v.setUint8(o, Number(value) & 0xff); return;
    case 's8': v.setInt8(o, Number(value)); return;
    case 'u16': v.setUint16(o, Number(value) & 0xffff, true); return;
    case 'u32': v.setUint32(o, Number(value) >>> 0, true); return;
    case 'u64': v.setBigUint64(o, BigInt.asUintN(64, BigInt(value)), true); return;
  }
}

/** Every member by name (u64 as bigint). */
export function decode<N extends string>(s: StructDef<N>, b: Uint8Array): Record<N, number | bigint> {
  const v = dataView(b);
  const out = {} as Record<N, number | bigint>;
  for (const m of s.members) out[m.name as N] = getMember(v, m);
  return out;
}
