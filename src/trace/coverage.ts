/**
 * Register coverage of a trace (`vphi trace FILE --coverage`): for every
 * declared block, register and field, how often the guest read and wrote
 * it; the undeclared offsets it touched; the share of declared registers
 * it touched at all. Only guest BAR accesses (mmio events) count.
 *
 * What a count means:
 * - a register's reads and writes: the guest accesses of it, of any size.
 * - a field's reads: the reads of its register (a read returns every field).
 * - a field's writes: the writes of its register that change the field.
 *   "Before" is the register's last known value: the `now` of its previous
 *   write, what its previous read returned, or its declared reset value
 *   before either (and after a `reset` event). A write changes the field if
 *   the field's value in the written word (the event's `fields`: the value
 *   the guest wrote, spread over the register) or in the register after it
 *   (`now`) differs from before. So a W1C bit cleared by writing 1, and a
 *   self-clearing go bit, count; rewriting an RW field with the value it
 *   holds does not; a write the card ignores (RO, `ignored`) changes no field.
 */
import type { Field } from '../regs/define.ts';
import type { TraceEvent } from './format.ts';

/** One declared register, with where it sits (RegisterFile.listing() and its BAR). */
export interface DeclaredRegister {
  bar: number;
  block: string;
  name: string;
  /** Offset within the BAR. */
  abs: number;
  reset: number;
  fields: readonly Field[];
}

/** The declarations of one BAR from its RegisterFile listing: `declared(MMIO_BAR, bar4.listing())`. */
export function declared(bar: number, listing: readonly { abs: number; block: string; def: { name: string; reset: number; fields: DeclaredRegister['fields'] } }[]): DeclaredRegister[] {
  return listing.map((r) => ({ bar, block: r.block, name: r.def.name, abs: r.abs, reset: r.def.reset, fields: r.def.fields }));
}

export interface FieldRow {
  name: string;
  reads: number;
  writes: number;
}

export interface RegisterRow {
  bar: number;
  block: string;
  name: string;
  abs: number;
  reads: number;
  writes: number;
  fields: FieldRow[];
}

export interface BlockRow {
  name: string;
  bar: number;
  /** The lowest offset of its registers. */
  base: number;
  reads: number;
  writes: number;
  /** Registers read or written at least once. */
  touched: number;
  registers: RegisterRow[];
}

export interface UndeclaredRow {
  bar: number;
  off: number;
  reads: number;
  writes: number;
}

export interface CoverageReport {
  blocks: BlockRow[];
  undeclared: UndeclaredRow[];
  /** Declared registers. */
  registers: number;
  /** Declared registers read or written at least once. */
  touched: number;
  /** mmio events counted. */
  accesses: number;
}

/** `value` of `size` bytes at byte `off & 3`, spread over `old` (RegisterFile.write()). */
function spread(value: number, size: number, off: number, old: number): number {
  if (size >= 4) return value >>> 0;
  const shift = (off & 3) * 8;
  const lane = ((size === 1 ? 0xff : 0xffff) << shift) >>> 0;
  return (((value << shift) & lane) | (old & ~lane)) >>> 0;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

export function coverage(decls: readonly DeclaredRegister[], events: readonly TraceEvent[]): CoverageReport {
  const rows: RegisterRow[] = [];
  const last: number[] = [];
  const byName = new Map<string, number>();
  const byDword = new Map<string, number>();
  for (const d of decls) {
    const i = rows.length;
    rows.push({ bar: d.bar, block: d.block, name: d.name, abs: d.abs, reads: 0, writes: 0, fields: d.fields.map((f) => ({ name: f.name, reads: 0, writes: 0 })) });
    last.push(d.reset >>> 0);
    byName.set(`${d.bar}:${d.name}`, i);
    byDword.set(`${d.bar}:${d.abs >>> 2}`, i);
  }
  const undeclared = new Map<string, UndeclaredRow>();
  let accesses = 0;

  for (const e of events) {
    if (e.kind === 'reset') {
      decls.forEach((d, i) => (last[i] = d.reset >>> 0));
      continue;
    }
    if (e.kind !== 'mmio') continue;
    const bar = num(e.bar) ?? -1;
    const off = num(e.off) ?? -1;
    const write = e.op === 'w';
    accesses++;
    const i = (typeof e.reg === 'string' && !e.unknown ? byName.get(`${bar}:${e.reg}`) : undefined) ?? (e.unknown ? undefined : byDword.get(`${bar}:${off >>> 2}`));
    if (i === undefined) {
      const k = `${bar}:${off}`;
      const u = undeclared.get(k) ?? { bar, off, reads: 0, writes: 0 };
      undeclared.set(k, u);
      if (write) u.writes++;
      else u.reads++;
      continue;
    }
    const r = rows[i];
    const d = decls[i];
    const size = num(e.size) ?? 4;
    const val = num(e.val) ?? 0;
    if (!write) {
      r.reads++;
      for (const f of r.fields) f.reads++;
      last[i] = spread(val, size, off, last[i]);
      continue;
    }
    r.writes++;
    if (e.ignored) continue;
    const fields = e.fields && typeof e.fields === 'object' ? (e.fields as Record<string, unknown>) : undefined;
    const wval = spread(val, size, off, last[i]);
    const now = num(e.now);
    d.fields.forEach((f, j) => {
      const before = f.ex(last[i]);
      const written = num(fields?.[f.name]) ?? f.ex(wval);
      if (written !== before || (now !== undefined && f.ex(now) !== before)) r.fields[j].writes++;
    });
    last[i] = now ?? wval;
  }

  const blocks: BlockRow[] = [];
  for (const r of rows) {
    let b = blocks.at(-1);
    if (!b || b.name !== r.block || b.bar !== r.bar) blocks.push((b = { name: r.block, bar: r.bar, base: r.abs, reads: 0, writes: 0, touched: 0, registers: [] }));
    b.registers.push(r);
    b.base = Math.min(b.base, r.abs);
    b.reads += r.reads;
    b.writes += r.writes;
    if (r.reads + r.writes) b.touched++;
  }
  const touched = rows.filter((r) => r.reads + r.writes).length;
  return {
    blocks,
    undeclared: [...undeclared.values()].sort((a, b) => a.bar - b.bar || a.off - b.off),
    registers: rows.length,
    touched,
    accesses,
  };
}

/** "42 of 310 registers (13.5%) touched" */
export function shareLine(r: CoverageReport): string {
  const pct = r.registers ? (100 * r.touched) / r.registers : 0;
  return `${r.touched} of ${r.registers} registers (${pct.toFixed(1)}%) touched`;
}

const hex = (v: number, width = 5) => `0x${v.toString(16).padStart(width, '0')}`;
const rw = (reads: number, writes: number) => `R ${String(reads).padStart(6)}  W ${String(writes).padStart(6)}`;

/** The report as text: blocks, their registers and fields, the undeclared offsets, the share. */
export function formatCoverage(r: CoverageReport): string[] {
  const width = Math.max(12, ...r.blocks.flatMap((b) => b.registers.flatMap((x) => [x.name.length + 2, ...x.fields.map((f) => f.name.length + 4)])));
  const lines: string[] = [];
  for (const b of r.blocks) {
    lines.push(`${b.name} (bar${b.bar} ${hex(b.base)}): ${b.touched} of ${b.registers.length} registers touched`);
    for (const x of b.registers) {
      lines.push(`  ${x.name.padEnd(width - 2)} ${hex(x.abs)}  ${rw(x.reads, x.writes)}`);
      for (const f of x.fields) lines.push(`    ${f.name.padEnd(width - 4)} ${' '.repeat(7)}  ${rw(f.reads, f.writes)}`);
    }
  }
  if (r.undeclared.length) {
    lines.push(`undeclared offsets: ${r.undeclared.length}`);
    for (const u of r.undeclared) lines.push(`  ${`bar${u.bar}`.padEnd(width - 2)} ${hex(u.off)}  ${rw(u.reads, u.writes)}`);
  } else {
    lines.push('undeclared offsets: none');
  }
  lines.push(`${shareLine(r)}, ${r.accesses} accesses`);
  return lines;
}
