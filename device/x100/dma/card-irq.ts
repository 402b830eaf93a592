/**
 * The card's own DMA interrupts: a card-owned channel (DCR owner bit 0)
 * interrupts the card's APIC, never the host (SICR0). On the card, Linux
 * irq ch is channel ch's (mic_dma_setup_irq() passes ch_num as intr_src to
 * _mic_request_threaded_irq() in card/mic_x100.c); the card-side driver
 * (card-driver.ts) subscribes here. An interrupt nobody listens for is
 * traced and dropped.
 */
import type { Tracer } from '../../../src/trace/tracer.ts';
import type { CardDmaInterrupt } from './engine.ts';
import { DMA_CHANNELS } from './regs.ts';

export type CardDmaHandler = (ch: number, kind: CardDmaInterrupt) => void;

export class CardDmaIrq {
  private readonly subs: CardDmaHandler[][] = Array.from({ length: DMA_CHANNELS }, () => []);
  /** Interrupts raised, by channel (diagnostics and tests). */
  readonly raised: number[] = new Array<number>(DMA_CHANNELS).fill(0);

  constructor(private readonly tracer: Tracer) {}

  /** `fn` runs on every interrupt of channel `ch` until the returned function is called. */
  subscribe(ch: number, fn: CardDmaHandler): () => void {
    if (!Number.isInteger(ch) || ch < 0 || ch >= DMA_CHANNELS) throw new RangeError(`DMA channel ${ch} is not 0-${DMA_CHANNELS - 1}`);
    const list = this.subs[ch];
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** The engine interrupts the card for channel `ch` (DmaEnv.raiseCard). */
  raise(ch: number, kind: CardDmaInterrupt): void {
    const list = this.subs[ch];
    this.raised[ch]++;
    if (this.tracer.enabled) this.tracer.event('card-dma-irq', { ch, kind, handlers: list.length });
    for (const fn of [...list]) fn(ch, kind);
  }
}
