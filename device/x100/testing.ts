/**
 * A fake environment for card unit tests: card memory and guest RAM are
 * plain buffers, interrupts land on a recording port, and time only moves
 * when the test says so.
 */
import { HostMemory } from '../../src/dma/host-memory.ts';
import { InterruptDelivery } from '../../src/irq/delivery.ts';
import { IRQ_TYPE, type IrqType } from '../../src/binding/types.ts';
import { memoryTracer } from '../../src/trace/tracer.ts';
import type { DeviceEnv } from '../../src/server.ts';
import { X100Card, type X100Options } from './card.ts';

export const FAKE_MSIX_CAP = 0x40;

export class FakeEnv implements DeviceEnv {
  readonly aperture: Buffer;
  readonly tracer = memoryTracer();
  readonly host = new HostMemory(this.tracer);
  readonly config = Buffer.alloc(256);
  readonly eventfds = new Set<number>();
  readonly fired: [IrqType, number][] = [];
  readonly irq: InterruptDelivery;
  private queue: (() => void)[] = [];
  private timers: { at: number; fn: () => void; live: boolean }[] = [];
  now = 0;
  /** How many times schedule() was called. */
  scheduled = 0;

  constructor(apertureSize = 4 << 20) {
    this.aperture = Buffer.alloc(apertureSize);
    this.irq = new InterruptDelivery(
      {
        trigger: (type, v) => {
          if (type === IRQ_TYPE.MSIX && !this.eventfds.has(v)) return false;
          this.fired.push([type, v]);
          return true;
        },
        readConfig: (o, l) => this.config.readUIntLE(o, l),
      },
      16,
      FAKE_MSIX_CAP,
      this.tracer,
    );
  }

  regionMemory(): Buffer {
    return this.aperture;
  }

  schedule(fn: () => void): void {
    this.scheduled++;
    this.queue.push(fn);
  }

  after(ms: number, fn: () => void): () => void {
    const t = { at: this.now + ms, fn, live: true };
    this.timers.push(t);
    return () => { t.live = false; };
  }

  /** Run scheduled work until none is left (or `max` rounds). */
  drain(max = 10_000): number {
    let n = 0;
    while (this.queue.length && n < max) {
      const q = this.queue;
      this.queue = [];
      for (const fn of q) fn();
      n++;
    }
    return n;
  }

  /** Move the clock forward, firing due timers. */
  advance(ms: number): void {
    this.now += ms;
    for (const t of this.timers) {
      if (t.live && t.at <= this.now) {
        t.live = false;
        t.fn();
      }
    }
    this.timers = this.timers.filter((t) => t.live);
  }

  /** The guest enables MSI-X and unmasks every vector (QEMU hands over all eventfds). */
  enableMsix(): void {
    this.config.writeUInt16LE(0x8000 | 15, FAKE_MSIX_CAP + 2);
    for (let v = 0; v < 16; v++) this.eventfds.add(v);
  }

  /** Map `size` bytes of guest RAM at bus address `iova`. */
  mapRam(iova: bigint, size: number): Uint8Array {
    const ab = new ArrayBuffer(size);
    this.host.map({ iova, length: size, prot: 3, memory: ab });
    return new Uint8Array(ab);
  }

  msixVectors(): number[] {
    return this.fired.filter(([t]) => t === IRQ_TYPE.MSIX).map(([, v]) => v);
  }
}

/** A card on a fake environment, with BAR4 accessors named like the driver's. */
export function makeCard(opts: X100Options & { apertureSize?: number } = {}) {
  const env = new FakeEnv(opts.apertureSize);
  const card = new X100Card(env, opts);
  const r = (off: number) => card.bar4.read(off, 4);
  const w = (off: number, v: number) => card.bar4.write(off, 4, v);
  return { env, card, r, w };
}
