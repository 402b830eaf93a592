/**
 * A fake environment for card unit tests: the mock binding's context plays
 * QEMU (card memory is its memfd BAR, guest RAM arrives through its DMA
 * map, interrupts go through a real InterruptDelivery to its eventfds),
 * and time only moves when the test says so (FakeClock).
 */
import { MOCK_MSIX_CAP, MockContext } from '../../src/binding/mock.ts';
import { IRQ_TYPE, type IrqType } from '../../src/binding/types.ts';
import { HostMemory } from '../../src/dma/host-memory.ts';
import { InterruptDelivery } from '../../src/irq/delivery.ts';
import type { DeviceEnv } from '../../src/server.ts';
import { FakeClock } from '../../src/testing/fake-clock.ts';
import { memoryTracer } from '../../src/trace/tracer.ts';
import type { PeerBus } from '../../src/pci/fabric.ts';
import { X100Card, type X100Options, x100Spec } from './card.ts';
import { APER_BAR } from './pci/identity.ts';

export const FAKE_MSIX_CAP = MOCK_MSIX_CAP;

export class FakeEnv implements DeviceEnv {
  readonly tracer = memoryTracer();
  readonly host = new HostMemory(this.tracer);
  readonly clock = new FakeClock();
  /** The context, with its simulated client attached (QEMU after vfio_realize). */
  readonly ctx: MockContext;
  readonly aperture: Buffer;
  /** The context's config space. */
  readonly config: Buffer;
  /** Eventfd indices the client handed over (INTx's is 0). */
  readonly eventfds: Set<number>;
  /** Every interrupt that reached an eventfd: [type, vector]. */
  readonly fired: [IrqType, number][];
  readonly irq: InterruptDelivery;
  readonly schedule = this.clock.schedule;
  readonly after = this.clock.after;
  /** Other cards on a PciFabric (set before the card is made). */
  peers?: PeerBus;
  /** As DeviceServer: the context's (MockContext.drops counts them). */
  readonly dropResidentPages = (): void => {
    this.ctx.dropResidentPages();
  };

  constructor(apertureSize = 4 << 20) {
    const { create: _create, ...options } = x100Spec({ apertureSize });
    this.ctx = new MockContext(
      { ...options, socketPath: 'fake-env' },
      {
        onAccess() {},
        onDmaMap: (info) => this.host.map(info),
        onDmaUnmap: (iova, length) => this.host.unmap(iova, length),
        onReset: () => this.irq.reset(),
        onIrqState: (type, start, count, masked) => this.irq.onIrqState(type, start, count, masked),
        onConnection() {},
        onLog() {},
        onRefused() {},
        onPoll: () => this.irq.retry(),
      },
    );
    this.irq = new InterruptDelivery(this.ctx, options.msix.vectors, FAKE_MSIX_CAP, this.tracer);
    this.aperture = this.ctx.regionMemory(APER_BAR);
    this.config = this.ctx.config;
    this.eventfds = this.ctx.eventfds;
    this.fired = this.ctx.triggered;
    this.ctx.connect();
    // vfio_intx_enable(): QEMU hands over the INTx eventfd as it realizes the device.
    this.ctx.giveEventfd(0);
  }

  get now(): number {
    return this.clock.now;
  }

  set now(ms: number) {
    this.clock.now = ms;
  }

  /** How many times schedule() was called. */
  get scheduled(): number {
    return this.clock.scheduled;
  }

  set scheduled(n: number) {
    this.clock.scheduled = n;
  }

  regionMemory(index: number): Buffer {
    return this.ctx.regionMemory(index);
  }

  /** Run scheduled work until none is left (or `max` rounds). */
  drain(max = 10_000): number {
    return this.clock.drain(max);
  }

  /** Move the clock forward, firing due timers. */
  advance(ms: number): void {
    this.clock.advance(ms);
  }

  /** The guest enables MSI-X and unmasks every vector (QEMU hands over all eventfds). */
  enableMsix(): void {
    this.ctx.enableMsix();
    for (let v = 0; v < this.irq.vectors; v++) this.ctx.giveEventfd(v);
  }

  /** Map `size` bytes of guest RAM at bus address `iova` (unmapping what the client had mapped there). */
  mapRam(iova: bigint, size: number): Uint8Array {
    if (this.ctx.dmaRegion(iova)) this.ctx.dmaUnmap(iova);
    const ab = new ArrayBuffer(size);
    this.ctx.dmaMap(iova, ab);
    return new Uint8Array(ab);
  }

  msixVectors(): number[] {
    return this.fired.filter(([t]) => t === IRQ_TYPE.MSIX).map(([, v]) => v);
  }
}

/** A card on a fake environment, with BAR4 accessors named like the driver's. */
export function makeCard(opts: X100Options & { apertureSize?: number } = {}, beforeCard?: (env: FakeEnv) => void) {
  const env = new FakeEnv(opts.apertureSize);
  beforeCard?.(env);
  const card = new X100Card(env, opts);
  const r = (off: number) => card.bar4.read(off, 4);
  const w = (off: number, v: number) => card.bar4.write(off, 4, v);
  return { env, card, r, w };
}
