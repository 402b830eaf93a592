/**
 * A mock binding: the same contract as the native addon, with a simulated
 * client in place of QEMU, so the device model and the server glue are
 * tested without native code (in the manner of serialport's mock binding).
 */
import {
  type Binding,
  type ContextCallbacks,
  type ContextOptions,
  type DmaRegionInfo,
  IRQ_TYPE,
  type IrqType,
  type NativeContext,
} from './types.ts';

/** Where the mock places its capabilities in config space. */
export const MOCK_MSIX_CAP = 0x40;
export const MOCK_PCIE_CAP = 0x50;

export class MockContext implements NativeContext {
  readonly scratch = Buffer.alloc(4096);
  readonly config = Buffer.alloc(4096);
  /** Vectors for which the "client" has handed over an eventfd. */
  readonly eventfds = new Set<number>();
  /** Every successful trigger, in order: [type, vector]. */
  readonly triggered: [IrqType, number][] = [];
  readonly logLevel: number[] = [];
  private readonly memories = new Map<number, Buffer>();
  private dmaRegions = new Map<bigint, DmaRegionInfo>();
  private isAttached = false;
  closed = false;

  constructor(
    readonly options: ContextOptions,
    readonly callbacks: ContextCallbacks,
  ) {
    const c = this.config;
    const p = options.pci;
    c.writeUInt16LE(p.vendorId, 0);
    c.writeUInt16LE(p.deviceId, 2);
    c[8] = p.revision;
    c.writeUIntLE(p.classCode, 9, 3);
    c.writeUInt16LE(p.subsystemVendorId, 0x2c);
    c.writeUInt16LE(p.subsystemId, 0x2e);
    c[0x3d] = p.interruptPin;
    c[0x34] = MOCK_MSIX_CAP;
    c[MOCK_MSIX_CAP] = 0x11;
    c[MOCK_MSIX_CAP + 1] = options.pcie ? MOCK_PCIE_CAP : 0;
    c.writeUInt16LE(options.msix.vectors - 1, MOCK_MSIX_CAP + 2);
    c.writeUInt32LE(options.msix.bar, MOCK_MSIX_CAP + 4);
    c.writeUInt32LE(0x1000 | options.msix.bar, MOCK_MSIX_CAP + 8);
    if (options.pcie) c[MOCK_PCIE_CAP] = 0x10;
    for (const r of options.regions) {
      if (r.kind === 'memfd') this.memories.set(r.index, Buffer.alloc(r.size));
    }
  }

  regionMemory(index: number): Buffer {
    const m = this.memories.get(index);
    if (!m) throw new Error(`region ${index} is not memfd-backed`);
    return m;
  }

  regionFd(): number {
    return -1;
  }

  trigger(type: IrqType, vector: number): boolean {
    if (type === IRQ_TYPE.MSIX && !this.eventfds.has(vector)) return false;
    this.triggered.push([type, vector]);
    return true;
  }

  activeIrqType(): number {
    return this.config.readUInt16LE(MOCK_MSIX_CAP + 2) & 0x8000 ? IRQ_TYPE.MSIX : IRQ_TYPE.INTX;
  }

  readConfig(offset: number, len: number): number {
    return this.config.readUIntLE(offset, len);
  }

  setLogLevel(level: number): void {
    this.logLevel.push(level);
  }

  attached(): boolean {
    return this.isAttached;
  }

  close(): void {
    this.closed = true;
  }

  // ---- the simulated client ----

  connect(): void {
    this.isAttached = true;
    this.callbacks.onConnection(true);
  }

  disconnect(): void {
    for (const [iova, r] of this.dmaRegions) this.callbacks.onDmaUnmap(iova, r.length);
    this.dmaRegions.clear();
    this.eventfds.clear();
    this.isAttached = false;
    this.callbacks.onConnection(false);
  }

  /** The guest enables MSI-X (and optionally sets the function mask). */
  enableMsix(enable = true, functionMask = false): void {
    const o = MOCK_MSIX_CAP + 2;
    let v = this.config.readUInt16LE(o) & 0x07ff;
    if (enable) v |= 0x8000;
    if (functionMask) v |= 0x4000;
    this.config.writeUInt16LE(v, o);
  }

  /** QEMU hands over the eventfd for `vector` (the guest unmasked it). */
  giveEventfd(vector: number): void {
    this.eventfds.add(vector);
  }

  /** A trapped read of `size` bytes; returns the value. */
  read(index: number, offset: number, size: 1 | 2 | 4 | 8): number | bigint {
    this.scratch.fill(0, 0, size);
    this.callbacks.onAccess(index, offset, size, false);
    return size === 8 ? this.scratch.readBigUInt64LE(0) : this.scratch.readUIntLE(0, size);
  }

  /** A trapped write. */
  write(index: number, offset: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    if (size === 8) this.scratch.writeBigUInt64LE(BigInt(value), 0);
    else this.scratch.writeUIntLE(Number(value), 0, size);
    this.callbacks.onAccess(index, offset, size, true);
  }

  /** QEMU maps guest RAM: `memory` plays the fd-mapped region (null: no fd). */
  dmaMap(iova: bigint, memory: ArrayBuffer | null, length = memory?.byteLength ?? 0, prot = 3): void {
    const info = { iova, length, prot, memory };
    this.dmaRegions.set(iova, info);
    this.callbacks.onDmaMap(info);
  }

  dmaUnmap(iova: bigint): void {
    const r = this.dmaRegions.get(iova);
    if (!r) return;
    this.dmaRegions.delete(iova);
    this.callbacks.onDmaUnmap(iova, r.length);
  }
}

export class MockBinding implements Binding {
  readonly contexts: MockContext[] = [];

  createContext(options: ContextOptions, callbacks: ContextCallbacks): MockContext {
    const c = new MockContext(options, callbacks);
    this.contexts.push(c);
    return c;
  }

  get last(): MockContext {
    const c = this.contexts[this.contexts.length - 1];
    if (!c) throw new Error('no mock context created yet');
    return c;
  }
}
