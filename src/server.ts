/**
 * The glue between a binding (native or mock) and a device model: it
 * creates the vfio-user context from the device's static description,
 * routes trapped accesses to the device's register files, DMA map/unmap
 * to HostMemory, interrupts through InterruptDelivery, and turns
 * libvfio-user's config-space log lines into decoded trace events.
 *
 * The device model itself never sees the binding: guest memory,
 * interrupts and the clock are injected through DeviceEnv.
 */
import { REGION, type Binding, type ContextOptions, type NativeContext } from './binding/types.ts';
import { HostMemory } from './dma/host-memory.ts';
import { InterruptDelivery } from './irq/delivery.ts';
import { type CapLocation, configName, parseRegionLog, walkCapabilities } from './pci/config-names.ts';
import { type FabricPort, type PciFabric, type PeerBus, peerBus } from './pci/fabric.ts';
import type { RegisterFile } from './regs/file.ts';
import { type Tracer, NULL_TRACER } from './trace/tracer.ts';

/** What a device model is given by the server. */
export interface DeviceEnv {
  /** Memory of a memfd-backed BAR (shared with QEMU). */
  regionMemory(index: number): Buffer;
  /** Guest RAM by bus address. */
  host: HostMemory;
  irq: InterruptDelivery;
  tracer: Tracer;
  /** Run `fn` later on the event loop, after the current access has been answered. */
  schedule(fn: () => void): void;
  /** Run `fn` after `ms` milliseconds; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
  /** Other devices' BARs on the host's PCIe fabric (peer-to-peer), if this device is on one. */
  peers?: PeerBus;
  /**
   * The device holds no guest memory any more (a reset): this process's
   * pages of guest RAM and of the memfd BARs may go (contents stay;
   * NativeContext.dropResidentPages).
   */
  dropResidentPages?(): void;
}

export interface DeviceModel {
  /** Trapped BARs, by region index, served by register files. */
  readonly registerFiles: ReadonlyMap<number, RegisterFile>;
  /** Device reset (vfio-user reset, or the client went away). */
  reset(reason: string): void;
  close?(): void;
}

/** A device's static description (the context options but the socket path) and its constructor. */
export interface DeviceSpec<D extends DeviceModel> extends Omit<ContextOptions, 'socketPath'> {
  create(env: DeviceEnv): D;
}

export interface ServerOptions {
  socketPath: string;
  tracer?: Tracer;
  /** Operational messages (connection, refusals, libvfio-user errors). */
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
  /** The PCIe fabric shared with the other devices of this process (several cards). */
  fabric?: PciFabric;
}

const LOG_ERR = 3;
const LOG_WARNING = 4;
const LOG_DEBUG = 7;

export class DeviceServer<D extends DeviceModel> {
  readonly ctx: NativeContext;
  readonly device: D;
  readonly host: HostMemory;
  readonly irq: InterruptDelivery;
  private readonly tracer: Tracer;
  private readonly closers: (() => void)[] = [];
  private caps: CapLocation[] = [];
  private files: (RegisterFile | undefined)[] = [];
  private closed = false;

  constructor(binding: Binding, spec: DeviceSpec<D>, opts: ServerOptions) {
    this.tracer = opts.tracer ?? NULL_TRACER;
    const log = opts.log ?? (() => {});
    this.host = new HostMemory(this.tracer);
    const t = this.tracer;
    // Callbacks fire only once a client attaches, after the constructor has
    // set this.irq and this.device.
    const { create, ...options } = spec;
    const sizes = new Map(spec.regions.map((r) => [r.index, r.size]));
    this.ctx = binding.createContext(
      { ...options, socketPath: opts.socketPath },
      {
        onAccess: (index, offset, len, isWrite) => {
          const f = this.files[index];
          if (f) f.access(offset, this.ctx.scratch, len, isWrite);
          else if (!isWrite) this.ctx.scratch.fill(0, 0, len);
        },
        onDmaMap: (info) => {
          if (!info.memory) {
            const range = `0x${info.iova.toString(16)}+0x${info.length.toString(16)}`;
            const bar = this.ownBarAt(info.iova);
            if (bar >= 0) {
              // QEMU offers every device region (our own BARs included) as a
              // DMA target, without an fd. The card never DMAs to itself.
              log('info', `ignoring DMA region ${range}: it is this card's own BAR${bar}`);
            } else if (info.iova === 0n) {
              // Low guest RAM starts at bus address 0: without an fd, the VM was
              // started without shared memory and the card can reach none of it.
              log('error', `refusing DMA region ${range}: guest RAM arrived without an fd, so the card cannot reach it; guest RAM must be memory-backend-memfd,share=on`);
            } else {
              // ROMs and device memory arrive this way on every boot.
              log('info', `DMA region ${range} arrived without an fd: the card cannot reach it`);
            }
          }
          this.host.map(info);
        },
        onDmaUnmap: (iova, length) => this.host.unmap(iova, length),
        onReset: (type) => {
          if (t.enabled) t.event('reset', { type });
          this.irq.reset();
          this.device.reset(`vfio-user reset type ${type}`);
        },
        onIrqState: (type, start, count, masked) => this.irq.onIrqState(type, start, count, masked),
        onConnection: (attached) => {
          if (t.enabled) t.event('conn', { attached });
          log('info', attached ? 'client attached' : 'client detached');
          if (!attached) {
            this.host.clear();
            this.irq.reset();
            this.device.reset('client detached');
          }
        },
        onLog: (level, message) => {
          if (level >= LOG_DEBUG) {
            if (t.enabled) {
              const a = parseRegionLog(message);
              if (a && a.region === REGION.CONFIG) {
                t.cfg({ op: a.op, off: a.off, size: a.size, val: a.val, reg: configName(a.off, this.caps) });
              }
            }
            return;
          }
          log(level <= LOG_ERR ? 'error' : level <= LOG_WARNING ? 'warn' : 'info', `libvfio-user: ${message}`);
        },
        onRefused: (reason) => {
          if (t.enabled) t.event('refused', { reason });
          log('warn', `refused a second client: ${reason}`);
        },
        onPoll: () => this.irq.retry(),
      },
    );
    // The capability list is fixed once the context exists.
    this.caps = walkCapabilities((o) => this.ctx.readConfig(o, 1));
    const msix = this.caps.find((c) => c.id === 0x11);
    this.irq = new InterruptDelivery(this.ctx, spec.msix.vectors, msix ? msix.offset : 0, this.tracer);
    if (t.enabled) this.ctx.setLogLevel(LOG_DEBUG);
    let peers: PeerBus | undefined;
    if (opts.fabric) {
      const port: FabricPort = {
        barBase: (i) => this.barBase(i),
        barSize: (i) => sizes.get(i) ?? 0,
        barMemory: (i) => (spec.regions.some((r) => r.index === i && r.kind === 'memfd') ? this.ctx.regionMemory(i) : null),
        barAccess: (i, offset, buf, len, isWrite) => {
          const f = this.files[i];
          if (f) f.access(offset, buf, len, isWrite);
          else if (!isWrite) buf.fill(0, 0, len);
        },
      };
      this.closers.push(opts.fabric.attach(port));
      peers = peerBus(opts.fabric, port);
    }
    this.device = create({
      peers,
      regionMemory: (i) => this.ctx.regionMemory(i),
      host: this.host,
      irq: this.irq,
      tracer: this.tracer,
      dropResidentPages: () => {
        if (this.closed) return;
        let bytes: number;
        try {
          bytes = this.ctx.dropResidentPages();
        } catch {
          return; // the context closed under us (process exit): nothing is mapped any more
        }
        if (t.enabled) t.event('resident', { dropped: bytes });
      },
      schedule: (fn) => setImmediate(fn),
      after: (ms, fn) => {
        const t = setTimeout(fn, ms);
        t.unref();
        return () => clearTimeout(t);
      },
    });
    for (const [index, f] of this.device.registerFiles) {
      this.files[index] = f;
      f.tracer = this.tracer;
      // Plain register reads (SPADs, status words without side effects) are served by the binding itself.
      this.ctx.directReads(index, f.directReads());
    }
  }

  /** Bus address of memory BAR `index` as the guest programmed it (0n: unassigned, or an I/O BAR). */
  barBase(index: number): bigint {
    if (index < 0 || index > 5) return 0n;
    const lo = this.ctx.readConfig(0x10 + 4 * index, 4);
    if (lo & 1) return 0n;
    const is64 = ((lo >>> 1) & 3) === 2;
    return BigInt((lo & ~0xf) >>> 0) | (is64 && index < 5 ? BigInt(this.ctx.readConfig(0x14 + 4 * index, 4)) << 32n : 0n);
  }

  /** The index of our own memory BAR that starts at `iova`, or -1. */
  private ownBarAt(iova: bigint): number {
    for (let i = 0; i < 6; i++) {
      const lo = this.ctx.readConfig(0x10 + 4 * i, 4);
      if (lo & 1) continue; // I/O BAR
      const base = this.barBase(i);
      if (base !== 0n && base === iova) return i;
      if (((lo >>> 1) & 3) === 2) i++;
    }
    return -1;
  }

  /** Run `fn` when the server closes (sockets that live beside it: the control socket). */
  onClose(fn: () => void): void {
    this.closers.push(fn);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const fn of this.closers.splice(0)) fn();
    this.device.close?.();
    this.ctx.close();
    this.tracer.close();
  }
}
