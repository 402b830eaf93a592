/**
 * Tracing: every config-space and BAR access, interrupt, DMA map/unmap,
 * DMA transfer and reset as one JSON line, named by register. Off by
 * default: NO_TRACE's `enabled` is false and every call site checks it
 * first, so a disabled trace costs one property load.
 *
 * A register access reaches a tracer through access() (RegisterFile): the
 * trace file writes its raw offset, value and size beside the register's
 * name and decodes the fields only when the trace is read (writer.ts,
 * format.ts parseTrace); a tracer without access() gets the decoded
 * MmioEvent through mmio() (mmioEvent()).
 *
 * Warnings are not trace: guest misprogramming (a DMA channel error, an
 * access to an undeclared BAR offset) and internal faults always go to
 * stderr as pino warn lines, rate-limited per kind, traced or not
 * (`warn(tracer, kind, msg, data)`).
 */
import pino from 'pino';
import { decodeFields, type RegisterDef } from '../regs/define.ts';
import { TraceWriter, type LineParts } from './writer.ts';

export interface MmioEvent {
  bar: number;
  op: 'r' | 'w';
  off: number;
  size: number;
  /** The value read, or the value the guest wrote. */
  val: number;
  block: string | null;
  reg: string | null;
  fields?: Record<string, number>;
  /** After a write: the register's stored value. */
  now?: number;
  unknown?: boolean;
  /** A write to a read-only register. */
  ignored?: boolean;
  /**
   * A 1- or 2-byte access: the whole register the fields decode from (a
   * read: the register's value; a write: the written bytes over the old
   * value). Only in trace files (the fields are decoded when read).
   */
  word?: number;
}

/**
 * One register as the trace names it, made once per register by its
 * RegisterFile, so an access is traced without building names or objects.
 * `def` null: an offset no register covers (traced as unknown).
 */
export class TraceRegister {
  /** The writer that last declared it (writer.ts: a `regdef` line before its first access). */
  declaredTo: object | null = null;
  /** The constant text of its lines, as bytes (writer.ts), made on first use. */
  parts: LineParts | null = null;

  constructor(
    readonly bar: number,
    readonly block: string | null,
    readonly def: RegisterDef | null,
    /** Offset within the BAR (-1 for an undeclared offset). */
    readonly abs: number,
  ) {}
}

/**
 * A register access as an MmioEvent, fields decoded from `word`: what a
 * tracer without access() gets. `now` (writes): the register after the write.
 */
export function mmioEvent(r: TraceRegister, op: 'r' | 'w', off: number, size: number, val: number, word: number, now: number): MmioEvent {
  const def = r.def;
  if (!def) return { bar: r.bar, op, off, size, val, block: null, reg: null, unknown: true };
  return {
    bar: r.bar,
    op,
    off,
    size,
    val,
    block: r.block,
    reg: def.name,
    fields: def.fields.length ? decodeFields(def, word) : undefined,
    ...(op === 'w' ? { now } : {}),
    ...(op === 'w' && def.access === 'RO' ? { ignored: true } : {}),
  };
}

export interface CfgEvent {
  op: 'r' | 'w';
  off: number;
  size: number;
  val: number;
  reg: string;
}

export interface IrqEvent {
  /** 'msix', 'intx' */
  mode: string;
  /** MSI-X vector, or 0 for INTx. */
  vector: number;
  /** raise: the device asked; deliver: the eventfd was written; pending: held (no fd/masked); level: INTx level change. */
  action: 'raise' | 'deliver' | 'pending' | 'level' | 'mask' | 'unmask';
  /** Decoded interrupt source(s), e.g. "DMA2" or "DB0". */
  src?: string;
  level?: boolean;
}

export interface DmaEvent {
  op: 'map' | 'unmap' | 'read' | 'write' | 'copy' | 'error' | 'refused';
  iova?: string;
  len?: number;
  [k: string]: unknown;
}

/** A warning sink: `kind` groups warnings for rate limiting ('dma-error', 'mmio-undeclared', 'internal'). */
export type WarnFn = (kind: string, msg: string, data?: Record<string, unknown>) => void;

export interface Tracer {
  readonly enabled: boolean;
  /**
   * Warnings, whether or not tracing is enabled. A tracer without one
   * warns to stderr (see warn()); every tracer made here has one.
   */
  readonly warn?: WarnFn;
  mmio(e: MmioEvent): void;
  /**
   * A guest access of register `r` (RegisterFile), if the tracer takes it
   * raw: `val` the value read or written, `word` the whole register the
   * fields decode from, `now` (writes) the register after the write;
   * `later`: a later piece of the same guest access (the dwords of an
   * 8-byte read), at the same time as the one before. Without it the
   * register file calls mmio(mmioEvent(...)).
   */
  access?(r: TraceRegister, op: 'r' | 'w', off: number, size: number, val: number, word: number, now: number, later: boolean): void;
  cfg(e: CfgEvent): void;
  irq(e: IrqEvent): void;
  dma(e: DmaEvent): void;
  /** Anything else: reset, connection, card state changes. */
  event(kind: string, data: Record<string, unknown>): void;
  close(): void;
}

const noop = (): void => {};

export interface RateLimit {
  /** Lines per kind per window (default 10). */
  perWindow?: number;
  /** Window length in ms (default 1000). */
  windowMs?: number;
  /** Clock in ms (default Date.now). */
  now?: () => number;
}

/**
 * The one rate limiter of warnings: at most `perWindow` lines of a kind in
 * each window; the rest are counted, and the first line of that kind in a
 * later window carries `suppressed: K`.
 */
export function rateLimited(sink: WarnFn, o: RateLimit = {}): WarnFn {
  const limit = o.perWindow ?? 10;
  const windowMs = o.windowMs ?? 1000;
  const now = o.now ?? Date.now;
  const kinds = new Map<string, { start: number; shown: number; dropped: number }>();
  return (kind, msg, data) => {
    const t = now();
    let k = kinds.get(kind);
    if (!k) kinds.set(kind, (k = { start: t, shown: 0, dropped: 0 }));
    let suppressed = 0;
    if (t - k.start >= windowMs) {
      suppressed = k.dropped;
      k.start = t;
      k.shown = 0;
      k.dropped = 0;
    }
    if (k.shown >= limit) {
      k.dropped++;
      return;
    }
    k.shown++;
    const last = k.shown === limit ? ` (more ${kind} warnings in the next ${windowMs} ms are counted, not shown)` : '';
    sink(kind, msg + last, suppressed ? { ...data, suppressed } : data);
  };
}

/** Rate-limited warnings through a pino logger, at warn level. */
export function warnLog(logger: pino.Logger, o: RateLimit = {}): WarnFn {
  return rateLimited((kind, msg, data) => logger.warn({ kind, ...data }, msg), o);
}

let stderrWarn: WarnFn | undefined;

/** The default warning sink: pino to stderr (created on first use). */
export const STDERR_WARN: WarnFn = (kind, msg, data) => {
  stderrWarn ??= warnLog(pino({ base: { name: 'vphi' } }, pino.destination({ dest: 2, sync: true })));
  stderrWarn(kind, msg, data);
};

/** Report a warning through `t`, or to stderr if `t` has no warning sink. */
export function warn(t: Tracer, kind: string, msg: string, data?: Record<string, unknown>): void {
  (t.warn ?? STDERR_WARN)(kind, msg, data);
}

/** No trace; warnings still go to `warnTo` (default stderr). */
export function untraced(warnTo: WarnFn = STDERR_WARN): Tracer {
  return { enabled: false, warn: warnTo, mmio: noop, cfg: noop, irq: noop, dma: noop, event: noop, close: noop };
}

/** The default: tracing off, warnings to stderr. */
export const NO_TRACE: Tracer = untraced();

/** @deprecated The old name of NO_TRACE (it does warn). */
export const NULL_TRACER: Tracer = NO_TRACE;

export interface TracerOptions {
  /** Where warnings go (default stderr); e.g. warnLog(cliLogger). */
  warn?: WarnFn;
}

/** A tracer writing JSON lines to `dest` (a file path or a writable fd): see writer.ts. */
export function createTracer(dest: string | number, opts: TracerOptions = {}): Tracer {
  const w = new TraceWriter(dest);
  return {
    enabled: true,
    warn: opts.warn ?? STDERR_WARN,
    mmio: (e) => w.line('mmio', e),
    access: (r, op, off, size, val, word, now, later) => w.access(r, op, off, size, val, word, now, later),
    cfg: (e) => w.line('cfg', e),
    irq: (e) => w.line('irq', e),
    dma: (e) => w.line('dma', e),
    event: (kind, data) => w.line(kind, data),
    close: () => w.close(),
  };
}

/**
 * A tracer that keeps events in memory (tests, and `vphi` self-checks).
 * Warnings are kept too, rate-limited as on stderr, in `warnings`.
 */
export function memoryTracer(limit: RateLimit = {}): Tracer & { events: Record<string, unknown>[]; warnings: Record<string, unknown>[] } {
  const events: Record<string, unknown>[] = [];
  const warnings: Record<string, unknown>[] = [];
  return {
    enabled: true,
    events,
    warnings,
    warn: rateLimited((kind, msg, data) => warnings.push({ kind, msg, ...data }), limit),
    mmio: (e) => events.push({ kind: 'mmio', ...e }),
    cfg: (e) => events.push({ kind: 'cfg', ...e }),
    irq: (e) => events.push({ kind: 'irq', ...e }),
    dma: (e) => events.push({ kind: 'dma', ...e }),
    event: (kind, data) => events.push({ kind, ...data }),
    close: noop,
  };
}
