/**
 * Fault injection: the faults armed on one card (spec.ts), and the narrow
 * questions its blocks ask before they act: the DMA engine before each
 * descriptor and after each copy, the interrupt controller before it
 * passes on a doorbell or sends an MSI-X message. A card crash is the
 * card's own act (X100Card.crash()), started from here on its timer.
 *
 * Every fault armed and every one that fires is traced (kind `fault`) and
 * logged at warn, traced or not.
 */
import { type Tracer, warn } from '../../../src/trace/tracer.ts';
import { DMA_ERROR_BITS, type FaultSpec, formatFaultSpec } from './spec.ts';

/** The DCHERR field name an injected descriptor failure sets. */
export type DmaErrorField = (typeof DMA_ERROR_BITS)[keyof typeof DMA_ERROR_BITS];

/** What the DMA engine asks (engine.ts). */
export interface DmaFaults {
  /** Before descriptor execution on channel ch: the DCHERR field to fail it with, or null. */
  descriptor(ch: number, idx: number): DmaErrorField | null;
  /** Channel ch moved `bytes`: how many ms it must now pause (dma-slow), 0 for none. */
  throttle(ch: number, bytes: number): number;
}

/** What the interrupt controller asks (interrupts/controller.ts). */
export interface IrqFaults {
  /** Host → card doorbell db rang: true if this ring is lost. */
  dropDoorbell(db: number): boolean;
  /** An MSI-X message on vector v is about to go out: true if it is lost. */
  dropMsix(vector: number): boolean;
}

export interface FaultsEnv {
  tracer: Tracer;
  after(ms: number, fn: () => void): () => void;
  /** card-crash fired: the card OS stops. */
  crash(reason: string): void;
}

export type FaultState = 'armed' | 'active' | 'done' | 'lifted';

/** One armed fault, as `vphi ctl status` shows it. */
export interface FaultRecord {
  id: number;
  spec: string;
  state: FaultState;
  /** How often it fired. */
  fired: number;
  /** dma-error: descriptors still let through; drop-*: rings or messages still to lose. */
  remaining?: number;
}

interface Armed {
  rec: FaultRecord;
  f: FaultSpec;
  cancel?: () => void;
}

export class CardFaults implements DmaFaults, IrqFaults {
  private readonly armed: Armed[] = [];
  private nextId = 1;
  /** dma-slow: MB/s per channel (0: none) and the pause owed in ms, not yet taken. */
  private readonly rate = new Map<number, number>();
  private readonly owed = new Map<number, number>();

  constructor(private readonly env: FaultsEnv) {}

  /** Arm a fault; returns its record. */
  arm(f: FaultSpec): FaultRecord {
    const rec: FaultRecord = { id: this.nextId++, spec: formatFaultSpec(f), state: 'armed', fired: 0 };
    const a: Armed = { rec, f };
    switch (f.kind) {
      case 'dma-error':
        rec.remaining = f.after;
        break;
      case 'drop-doorbell':
      case 'drop-irq':
        rec.remaining = f.count;
        break;
      case 'card-crash':
        a.cancel = this.env.after(f.after * 1000, () => {
          a.cancel = undefined;
          this.fire(a, 'the card OS stops');
          rec.state = 'done';
          this.env.crash(`injected fault ${rec.id} (${rec.spec})`);
        });
        break;
      case 'dma-slow':
        // The newest dma-slow of a channel is the one in force.
        for (const o of this.armed) if (o.f.kind === 'dma-slow' && o.f.chan === f.chan && o.rec.state === 'active') o.rec.state = 'lifted';
        if (f.mbps > 0) {
          this.rate.set(f.chan, f.mbps);
          rec.state = 'active';
        } else {
          this.rate.delete(f.chan);
          rec.state = 'done';
        }
        this.owed.delete(f.chan);
        break;
    }
    this.armed.push(a);
    this.trace({ action: 'armed', id: rec.id, spec: rec.spec });
    warn(this.env.tracer, 'fault', `fault ${rec.id} armed: ${rec.spec}`, { id: rec.id, spec: rec.spec });
    return { ...rec };
  }

  /** Every fault armed so far, oldest first. */
  list(): FaultRecord[] {
    return this.armed.map((a) => ({ ...a.rec }));
  }

  /** Disarm everything (faults that fired stay listed as done); dma-slow is lifted. */
  clear(): number {
    let n = 0;
    for (const a of this.armed) {
      if (a.rec.state !== 'armed' && a.rec.state !== 'active') continue;
      a.cancel?.();
      a.rec.state = 'lifted';
      n++;
    }
    this.rate.clear();
    this.owed.clear();
    if (n) this.trace({ action: 'cleared', count: n });
    return n;
  }

  descriptor(ch: number, idx: number): DmaErrorField | null {
    let hit: DmaErrorField | null = null;
    for (const a of this.armed) {
      const f = a.f;
      if (f.kind !== 'dma-error' || f.chan !== ch || a.rec.state !== 'armed') continue;
      if (a.rec.remaining! > 0) {
        a.rec.remaining!--;
        continue;
      }
      if (hit) continue; // one failure per descriptor; the next fault takes the retry
      hit = DMA_ERROR_BITS[f.bit];
      a.rec.state = 'done';
      this.fire(a, `DMA channel ${ch} fails descriptor ${idx} with DCHERR.${hit}`, { ch, idx, field: hit });
    }
    return hit;
  }

  throttle(ch: number, bytes: number): number {
    const mbps = this.rate.get(ch);
    if (!mbps || bytes <= 0) return 0;
    // MB/s = bytes per µs: bytes / mbps µs, taken in whole ms so timers stay coarse.
    const owed = (this.owed.get(ch) ?? 0) + bytes / mbps / 1000;
    const pause = Math.floor(owed);
    this.owed.set(ch, owed - pause);
    if (pause > 0) {
      for (const a of this.armed) if (a.f.kind === 'dma-slow' && a.f.chan === ch && a.rec.state === 'active') a.rec.fired++;
      this.trace({ action: 'throttle', ch, bytes, pauseMs: pause });
    }
    return pause;
  }

  dropDoorbell(db: number): boolean {
    return this.drop('drop-doorbell', db, `host → card doorbell ${db} is lost`, { db });
  }

  dropMsix(vector: number): boolean {
    return this.drop('drop-irq', vector, `MSI-X message on vector ${vector} is lost`, { vector });
  }

  private drop(kind: 'drop-doorbell' | 'drop-irq', n: number, what: string, data: Record<string, unknown>): boolean {
    for (const a of this.armed) {
      const f = a.f;
      if (f.kind !== kind || a.rec.state !== 'armed' || (f.kind === 'drop-doorbell' ? f.db : (f as { vector: number }).vector) !== n) continue;
      a.rec.remaining!--;
      if (a.rec.remaining === 0) a.rec.state = 'done';
      this.fire(a, what, data);
      return true;
    }
    return false;
  }

  private fire(a: Armed, what: string, data: Record<string, unknown> = {}): void {
    a.rec.fired++;
    this.trace({ action: 'fired', id: a.rec.id, spec: a.rec.spec, ...data, ...(a.rec.remaining !== undefined ? { remaining: a.rec.remaining } : {}) });
    warn(this.env.tracer, 'fault', `fault ${a.rec.id} (${a.rec.spec}): ${what}`, { id: a.rec.id, ...data });
  }

  private trace(data: Record<string, unknown>): void {
    if (this.env.tracer.enabled) this.env.tracer.event('fault', data);
  }
}
