/**
 * The card → host interrupt path (mic_x100_intr_init[] in host/mic_x100.h, mic_x100_ack_interrupt()
 * in host/mic_x100.c) and the host → card doorbells.
 *
 * Raising source k: set SICR0 bit k; if SICE0 bit k is set, then with
 * MSI-X send one message to every entry i whose MXARi has bit k, and clear
 * SICR0 bit k if SIAC0 bit k is set; with INTx, the line is the level of
 * (SICR0 & SICE0). A source enabled later (SICE0 write) while pending is
 * delivered then.
 */
import type { RegisterFile } from '../../../src/regs/file.ts';
import type { InterruptDelivery } from '../../../src/irq/delivery.ts';
import type { Tracer } from '../../../src/trace/tracer.ts';
import { APICICR_LO, SDBIC, SOURCE_BITS } from './regs.ts';
import { Doorbells } from './doorbells.ts';
import type { IrqFaults } from '../faults/faults.ts';

/** A readable name for source bit k. */
export function sourceName(k: number): string {
  if (k < 4) return `DB${k}`;
  if (k >= 8 && k < 16) return `DMA${k - 8}`;
  if (k === 30) return 'ERR';
  return `SRC${k}`;
}

export class InterruptController {
  private readonly sicr0;
  private readonly sice0;
  private readonly siac0;
  private readonly mxar: { get(): number }[];
  /** Host → card doorbells 0-15: blocks subscribe to the ones they own. */
  readonly doorbells: Doorbells;

  constructor(
    private readonly regs: RegisterFile,
    private readonly irq: InterruptDelivery,
    tracer: Tracer,
    /** Injected faults: lost doorbells and MSI-X messages. */
    private readonly faults?: IrqFaults,
  ) {
    this.doorbells = new Doorbells(tracer, faults);
    this.sicr0 = regs.ref('SICR0');
    this.sice0 = regs.ref('SICE0');
    this.siac0 = regs.ref('SIAC0');
    this.mxar = Array.from({ length: 16 }, (_, i) => regs.ref(`MXAR${i}`));

    regs.hook('SICR0', { postWrite: () => this.updateIntx() });
    regs.hook('SICE0', { postWrite: (_v, old, now) => this.deliverNewlyEnabled(old, now) });
    regs.hook('SICC0', {
      write: (v) => {
        const old = this.sice0.get();
        this.sice0.set(old & ~v);
        this.updateIntx();
        return 0;
      },
    });
    for (let n = 0; n < 8; n++) {
      regs.hook(`APICICR${n}_LO`, {
        postWrite: (v) => {
          if (APICICR_LO.f.SEND.isSet(v)) this.doorbells.ring(n, v);
        },
      });
      regs.hook(`RDMASR${n}`, { postWrite: () => this.doorbells.ring(8 + n) });
      regs.hook(`RDMASR${17 + n}`, { postWrite: () => this.doorbells.ring(8 + n) });
    }
    for (let n = 0; n < 4; n++) {
      regs.hook(`SDBIC${n}`, {
        postWrite: (v) => {
          if (SDBIC.f.DBREQ.isSet(v)) this.raise(n);
        },
      });
    }
  }

  /** The card raises source `k` (0-3 doorbells, 8-15 DMA channels, 30 error). */
  raise(k: number): void {
    const bitk = (1 << k) >>> 0;
    if (!(bitk & SOURCE_BITS)) return;
    this.sicr0.set(this.sicr0.get() | bitk);
    if (this.sice0.get() & bitk) this.send(k);
    else this.updateIntx();
  }

  private send(k: number): void {
    const bitk = (1 << k) >>> 0;
    if (this.irq.mode() === 'msix') {
      for (let i = 0; i < 16; i++) {
        // A lost message (drop-irq) is gone: SIAC0 still clears the source as if it had been sent.
        if (this.mxar[i].get() & bitk && !this.faults?.dropMsix(i)) this.irq.raise(i, sourceName(k));
      }
      if (this.siac0.get() & bitk) this.sicr0.set(this.sicr0.get() & ~bitk);
    } else {
      this.updateIntx();
    }
  }

  /** Sources that became enabled while pending are delivered now. */
  private deliverNewlyEnabled(old: number, now: number): void {
    const fresh = now & ~old & this.sicr0.get() & SOURCE_BITS;
    for (let k = 0; fresh >>> k; k++) if ((fresh >>> k) & 1) this.send(k);
    this.updateIntx();
  }

  /** INTx follows (SICR0 & SICE0) when MSI-X is off. */
  updateIntx(): void {
    this.irq.setIntxLevel(this.irq.mode() === 'intx' && (this.sicr0.get() & this.sice0.get() & SOURCE_BITS) !== 0);
  }
}
