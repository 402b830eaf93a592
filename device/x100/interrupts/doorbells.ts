/**
 * Host → card doorbells 0-15, dispatched to the card block that owns each
 * (the card side of mic_x100_send_sbox_intr() and
 * mic_x100_send_rdmasr_intr()). The boot ROM subscribes to doorbell 7 (the
 * boot interrupt); once the card OS runs, its SCIF node subscribes to the
 * doorbell it published as h2c_scif_db (scif_setup_qp() on the card).
 * A ring nobody owns is traced, as a real card's APIC would drop it.
 */
import type { Tracer } from '../../../src/trace/tracer.ts';
import type { IrqFaults } from '../faults/faults.ts';

export const DOORBELL_COUNT = 16;

/** `apicicrLow` is the APICICRn low value written, for doorbells 0-7. */
export type DoorbellHandler = (db: number, apicicrLow?: number) => void;

export class Doorbells {
  private readonly subs: DoorbellHandler[][] = Array.from({ length: DOORBELL_COUNT }, () => []);

  constructor(
    private readonly tracer: Tracer,
    /** Injected faults: a lost ring (drop-doorbell) reaches no block. */
    private readonly faults?: Pick<IrqFaults, 'dropDoorbell'>,
  ) {}

  /** `fn` runs on every ring of doorbell `db` until the returned function is called. */
  subscribe(db: number, fn: DoorbellHandler): () => void {
    if (!Number.isInteger(db) || db < 0 || db >= DOORBELL_COUNT) throw new RangeError(`doorbell ${db} is not 0-${DOORBELL_COUNT - 1}`);
    const list = this.subs[db];
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** How many blocks listen on `db`. */
  subscribers(db: number): number {
    return this.subs[db]?.length ?? 0;
  }

  /** The host rang doorbell `db`. */
  ring(db: number, apicicrLow?: number): void {
    const list = this.subs[db];
    if (this.faults?.dropDoorbell(db)) {
      if (this.tracer.enabled) this.tracer.event('doorbell', { db, ...(apicicrLow !== undefined ? { apicicrLow } : {}), owners: list.length, lost: true });
      return;
    }
    if (this.tracer.enabled) this.tracer.event('doorbell', { db, ...(apicicrLow !== undefined ? { apicicrLow } : {}), owners: list.length });
    // A handler may unsubscribe itself (or another) while we iterate.
    for (const fn of list.slice()) fn(db, apicicrLow);
  }
}
