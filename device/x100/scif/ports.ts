/**
 * The card's SCIF port table (drivers/misc/mic/scif/scif_ports.c): an idr
 * of reference-counted ports. scif_get_new_port() takes the lowest free
 * port in SCIF_PORT_RSVD + 1 .. SCIF_PORT_COUNT - 1; accepted endpoints
 * take another reference on their listener's port.
 */
export const SCIF_PORT_COUNT = 0x10000;
/** SCIF_PORT_RSVD (include/linux/scif.h) */
export const SCIF_PORT_RSVD = 1088;

export class PortTable {
  private readonly ref = new Map<number, number>();

  /** scif_rsrv_port(): true if `pn` was free and is now taken. */
  reserve(pn: number): boolean {
    if (!Number.isInteger(pn) || pn < 1 || pn >= SCIF_PORT_COUNT || this.ref.has(pn)) return false;
    this.ref.set(pn, 1);
    return true;
  }

  /** scif_get_new_port(): the port taken, or -1 (-ENOSPC) if none is free. */
  getNew(): number {
    for (let pn = SCIF_PORT_RSVD + 1; pn < SCIF_PORT_COUNT; pn++) {
      if (!this.ref.has(pn)) {
        this.ref.set(pn, 1);
        return pn;
      }
    }
    return -1;
  }

  /** scif_get_port() */
  get(pn: number): void {
    const n = this.ref.get(pn);
    if (n !== undefined) this.ref.set(pn, n + 1);
  }

  /** scif_put_port() */
  put(pn: number): void {
    const n = this.ref.get(pn);
    if (n === undefined) return;
    if (n <= 1) this.ref.delete(pn);
    else this.ref.set(pn, n - 1);
  }

  inUse(pn: number): boolean {
    return this.ref.has(pn);
  }

  clear(): void {
    this.ref.clear();
  }
}
