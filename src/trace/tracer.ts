/**
 * Tracing: every config-space and BAR access, interrupt, DMA map/unmap,
 * DMA transfer and reset as one JSON line, decoded by register and field
 * name. Off by default: the NULL_TRACER's `enabled` is false and every
 * call site checks it first, so a disabled trace costs one property load.
 */
import { mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import pino from 'pino';

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

export interface Tracer {
  readonly enabled: boolean;
  mmio(e: MmioEvent): void;
  cfg(e: CfgEvent): void;
  irq(e: IrqEvent): void;
  dma(e: DmaEvent): void;
  /** Anything else: reset, connection, card state changes. */
  event(kind: string, data: Record<string, unknown>): void;
  close(): void;
}

const noop = (): void => {};

export const NULL_TRACER: Tracer = {
  enabled: false,
  mmio: noop,
  cfg: noop,
  irq: noop,
  dma: noop,
  event: noop,
  close: noop,
};

/** A tracer writing JSON lines to `dest` (a file path or a writable fd). */
export function createTracer(dest: string | number): Tracer {
  // Open synchronously so that close() can always flush what is buffered.
  let fd: number;
  if (typeof dest === 'string') {
    mkdirSync(dirname(dest), { recursive: true });
    fd = openSync(dest, 'w');
  } else {
    fd = dest;
  }
  const stream = pino.destination({ dest: fd, sync: false, minLength: 4096 });
  const t0 = process.hrtime.bigint();
  const log = pino(
    {
      base: undefined,
      messageKey: 'msg',
      formatters: { level: () => ({}) },
      // Microseconds since the trace started: precise, and stable to diff.
      // (First property, and no level before it: hence no leading comma.)
      timestamp: () => `"us":${Number((process.hrtime.bigint() - t0) / 1000n)}`,
    },
    stream,
  );
  let open = true;
  return {
    enabled: true,
    mmio: (e) => log.info({ kind: 'mmio', ...e }),
    cfg: (e) => log.info({ kind: 'cfg', ...e }),
    irq: (e) => log.info({ kind: 'irq', ...e }),
    dma: (e) => log.info({ kind: 'dma', ...e }),
    event: (kind, data) => log.info({ kind, ...data }),
    close: () => {
      if (!open) return;
      open = false;
      stream.flushSync();
      stream.end();
    },
  };
}

/** A tracer that keeps events in memory (tests, and `vphi` self-checks). */
export function memoryTracer(): Tracer & { events: Record<string, unknown>[] } {
  const events: Record<string, unknown>[] = [];
  return {
    enabled: true,
    events,
    mmio: (e) => events.push({ kind: 'mmio', ...e }),
    cfg: (e) => events.push({ kind: 'cfg', ...e }),
    irq: (e) => events.push({ kind: 'irq', ...e }),
    dma: (e) => events.push({ kind: 'dma', ...e }),
    event: (kind, data) => events.push({ kind, ...data }),
    close: noop,
  };
}
