/**
 * Pretty printing and filtering of trace files (`vphi trace FILE`).
 * One JSON event per line in, one aligned human line out.
 */
import { Field } from '../regs/define.ts';

export interface TraceFilter {
  /** Register names; a trailing * matches a prefix (SPAD*, DSTAT*). */
  regs?: string[];
  /** Block names (sbox-intr, spad, dma0 …). */
  blocks?: string[];
  /** Event kinds (mmio, cfg, irq, dma, card, conn, reset, refused). */
  kinds?: string[];
}

/** One parsed trace line: `us` (µs since the trace started), `kind`, the rest by kind. */
export type TraceEvent = Record<string, unknown> & { kind?: string; us?: number };
type Ev = TraceEvent;

function matchName(name: unknown, pats: string[]): boolean {
  if (typeof name !== 'string') return false;
  return pats.some((p) => (p.endsWith('*') ? name.startsWith(p.slice(0, -1)) : name === p));
}

export function matches(e: Ev, f: TraceFilter): boolean {
  if (f.kinds?.length && !f.kinds.includes(String(e.kind))) return false;
  if (f.regs?.length && !matchName(e.reg, f.regs)) return false;
  if (f.blocks?.length && !matchName(e.block, f.blocks)) return false;
  return true;
}

const hex = (v: unknown, width = 8): string =>
  typeof v === 'number' ? `0x${(v >>> 0).toString(16).padStart(width, '0')}` : String(v);

function fields(f: unknown): string {
  if (!f || typeof f !== 'object') return '';
  const parts = Object.entries(f as Record<string, number>)
    .filter(([, v]) => v !== 0)
    .map(([k, v]) => (v === 1 ? k : `${k}=0x${v.toString(16)}`));
  return parts.length ? ` {${parts.join(' ')}}` : '';
}

const REST_SKIP = new Set(['kind', 'us', 'time']);

export function formatEvent(e: Ev): string {
  const t = typeof e.us === 'number' ? `${(e.us / 1000).toFixed(3).padStart(11)} ms` : ''.padStart(14);
  switch (e.kind) {
    case 'mmio': {
      const dir = e.op === 'w' ? 'W' : 'R';
      const name = e.unknown ? `<unknown>` : `${e.block}.${e.reg}`;
      const size = typeof e.size === 'number' ? e.size : 4;
      let s = `${t}  mmio ${dir} bar${e.bar} ${hex(e.off, 5)} ${name.padEnd(22)} ${dir === 'W' ? '<-' : '->'} ${hex(e.val, size * 2)}`;
      if (e.op === 'w' && typeof e.now === 'number' && e.now !== e.val) s += ` (now ${hex(e.now)})`;
      if (e.ignored) s += ' (read-only: ignored)';
      return s + fields(e.fields);
    }
    case 'cfg': {
      const dir = e.op === 'w' ? 'W' : 'R';
      const size = typeof e.size === 'number' ? e.size : 4;
      return `${t}  cfg  ${dir} ${hex(e.off, 3)} ${String(e.reg).padEnd(28)} ${dir === 'W' ? '<-' : '->'} ${hex(e.val, size * 2)}`;
    }
    case 'irq':
      return `${t}  irq  ${String(e.mode)} ${e.mode === 'msix' ? `vector ${e.vector}` : 'INTA'} ${e.action}${e.src ? ` (${e.src})` : ''}${e.level !== undefined ? ` level=${e.level ? 1 : 0}` : ''}`;
    default: {
      const rest = Object.entries(e)
        .filter(([k, v]) => !REST_SKIP.has(k) && v !== undefined)
        .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : typeof v === 'number' && v > 255 ? `0x${v.toString(16)}` : String(v)}`)
        .join(' ');
      return `${t}  ${String(e.kind).padEnd(4)} ${rest}`;
    }
  }
}

/** A `regdef` line's fields (writer.ts), as Fields; undefined if it declares none. */
function declaredFields(e: Ev): Field[] | undefined {
  if (!Array.isArray(e.fields)) return undefined;
  const out: Field[] = [];
  for (const x of e.fields as unknown[]) {
    if (!Array.isArray(x) || typeof x[0] !== 'string' || typeof x[1] !== 'number' || typeof x[2] !== 'number') return undefined;
    try {
      out.push(new Field(x[0], x[1], x[2], ''));
    } catch {
      return undefined;
    }
  }
  return out.length ? out : undefined;
}

/**
 * Parse a whole trace text; malformed lines are counted, not fatal. The
 * `regdef` lines (a register's fields, writer.ts) are not events: they
 * give the later accesses of their register `fields`, decoded by name
 * from the access's `word` (a 1- or 2-byte access) or `val`, as an
 * in-memory tracer has them.
 */
export function parseTrace(text: string, f: TraceFilter = {}): { events: TraceEvent[]; bad: number } {
  const events: TraceEvent[] = [];
  const regs = new Map<string, Field[]>();
  let bad = 0;
  for (const raw of text.split('\n')) {
    if (!raw.trim()) continue;
    let e: Ev;
    try {
      e = JSON.parse(raw) as Ev;
    } catch {
      bad++;
      continue;
    }
    if (e === null || typeof e !== 'object' || Array.isArray(e)) {
      bad++;
      continue;
    }
    if (e.kind === 'regdef') {
      const fields = declaredFields(e);
      if (fields && typeof e.reg === 'string') regs.set(`${String(e.bar)}:${e.reg}`, fields);
      else bad++;
      continue;
    }
    if (!matches(e, f)) continue;
    if (e.kind === 'mmio' && e.fields === undefined && typeof e.reg === 'string') {
      const fields = regs.get(`${String(e.bar)}:${e.reg}`);
      const v = typeof e.word === 'number' ? e.word : e.val;
      if (fields && typeof v === 'number') e.fields = Object.fromEntries(fields.map((x) => [x.name, x.ex(v)]));
    }
    events.push(e);
  }
  return { events, bad };
}

/** Format a whole trace text; malformed lines are reported, not fatal. */
export function formatTrace(text: string, f: TraceFilter = {}): { lines: string[]; bad: number } {
  const { events, bad } = parseTrace(text, f);
  return { lines: events.map(formatEvent), bad };
}
