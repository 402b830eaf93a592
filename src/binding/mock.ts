/**
 * A mock binding: the contract of types.ts, kept exactly as the native
 * addon keeps it (contract.ts runs the same suite against both), with a
 * simulated client in place of QEMU, so the device model and the server
 * glue are tested without native code (in the manner of serialport's mock
 * binding). The client's methods are what QEMU's vfio-user-pci sends; each
 * one is a batch of messages, so onPoll follows it.
 */
import {
  type Binding,
  type ContextCallbacks,
  type ContextOptions,
  type DirectReads,
  type DmaRegionInfo,
  IRQ_TYPE,
  type IrqType,
  type NativeContext,
  REGION,
  RESET_TYPE,
} from './types.ts';

/** Where the mock places its capabilities in config space. */
export const MOCK_MSIX_CAP = 0x40;
export const MOCK_PCIE_CAP = 0x50;

/** What the native addon uses (native/context.h kScratchSize, kMsixPbaOffset). */
export const SCRATCH_SIZE = 4096;
const MSIX_PBA_OFFSET = 0x1000;
const MAX_REGIONS = 7;
const BARS = 6;

const EBUSY = 16;
const EINVAL = 22;
const EIO = 5;
const ENOENT = 2;

const LOG_ERR = 3;
const LOG_DEBUG = 7;

/** MSI-X Message Control (include/uapi/linux/pci_regs.h PCI_MSIX_FLAGS_*). */
const MSIX_FLAGS_ENABLE = 0x8000;
const MSIX_FLAGS_MASKALL = 0x4000;

/** The answer to one client request: 0 or an errno, and the data read. */
export interface AccessResult {
  error: number;
  data: Buffer;
}

const CALLBACKS = ['onAccess', 'onDmaMap', 'onDmaUnmap', 'onReset', 'onIrqState', 'onConnection', 'onLog', 'onRefused'] as const;

/** The checks of native/addon.cc ParseOptions and the callbacks' presence, with its messages. */
function checkOptions(o: ContextOptions, cbs: ContextCallbacks): void {
  const declared = new Map<number, ContextOptions['regions'][number]>();
  for (const r of o.regions) {
    if (!Number.isInteger(r.index) || r.index < 0 || r.index >= MAX_REGIONS) {
      throw new RangeError(`options.regions[].index = ${r.index} is out of range`);
    }
    if (declared.has(r.index)) throw new Error(`region ${r.index} is declared twice`);
    if (!(r.size > 0) || (r.size & (r.size - 1)) !== 0) {
      throw new RangeError(`region ${r.index}: size must be a power of two`);
    }
    if (r.kind === 'trapped' && r.size < 16) throw new RangeError(`region ${r.index}: a BAR is at least 16 bytes`);
    if (r.kind === 'memfd' && r.size < 4096) {
      throw new RangeError(`region ${r.index}: a memfd region is at least one page (4096 bytes)`);
    }
    declared.set(r.index, r);
  }
  const flags = new Map(o.barFlags.map((f) => [f.index, f]));
  const is64 = (i: number) => flags.get(i)?.is64 ?? false;
  if (!(o.msix.vectors >= 1 && o.msix.vectors <= MSIX_PBA_OFFSET / 16)) {
    throw new RangeError(`options.msix.vectors = ${o.msix.vectors} is out of range`);
  }
  for (let i = 0; i < BARS; i++) {
    if (!is64(i)) continue;
    if (i === BARS - 1) throw new RangeError('BAR5 cannot be 64-bit (no upper half)');
    if (declared.has(i + 1)) throw new Error(`BAR${i} is 64-bit, so BAR${i + 1} is its upper half and cannot be a region`);
    if (is64(i + 1) || flags.get(i + 1)?.prefetchable) {
      throw new Error(`barFlags for BAR${i + 1}, the upper half of 64-bit BAR${i}`);
    }
    if (i > 0 && is64(i - 1)) throw new Error(`BAR${i} is the upper half of BAR${i - 1}`);
  }
  const mb = o.msix.bar;
  if (mb > 0 && is64(mb - 1)) throw new Error(`the MSI-X BAR${mb} is the upper half of a 64-bit BAR`);
  const pbaEnd = MSIX_PBA_OFFSET + Math.ceil(o.msix.vectors / 64) * 8;
  const msixRegion = declared.get(mb);
  if (msixRegion && msixRegion.size < pbaEnd) {
    throw new RangeError(`the MSI-X BAR${mb} has ${msixRegion.size} bytes; table and PBA need ${pbaEnd}`);
  }
  for (const name of CALLBACKS) {
    if (typeof cbs[name] !== 'function') throw new TypeError(`callbacks.${name} must be a function`);
  }
  if (cbs.onPoll !== undefined && typeof cbs.onPoll !== 'function') throw new TypeError('callbacks.onPoll must be a function');
}

/** Detach an ArrayBuffer (what napi_detach_arraybuffer does to the native side's). */
function detach(ab: ArrayBuffer): void {
  try {
    structuredClone(ab, { transfer: [ab] });
  } catch {
    // not transferable (already detached, or not ours to detach)
  }
}

/** libvfio-user's debug_region_access() value format (%#zx). */
const hex = (v: number | bigint) => (v === 0 || v === 0n ? '0' : `0x${v.toString(16)}`);

export class MockContext implements NativeContext {
  readonly scratch = Buffer.alloc(SCRATCH_SIZE);
  /** Config space; tests may poke it as a client that bypasses the config write rules would. */
  readonly config: Buffer;
  /**
   * Eventfds the client has handed over, by index: libvfio-user keeps one
   * array for INTx/MSI/MSI-X (irqs->efds), so INTx's is index 0.
   */
  readonly eventfds = new Set<number>();
  /** Every trigger that wrote an eventfd, in order: [type, vector]. */
  readonly triggered: [IrqType, number][] = [];
  /** Every setLogLevel() argument, in order. */
  readonly logLevel: number[] = [];
  private level = LOG_ERR;
  private readonly pristine: Buffer;
  private readonly memories = new Map<number, Buffer>();
  private readonly trapped = new Set<number>();
  private readonly direct = new Map<number, DirectReads>();
  private readonly dmaRegions = new Map<bigint, DmaRegionInfo>();
  private isAttached = false;
  private isClosed = false;

  constructor(
    readonly options: ContextOptions,
    readonly callbacks: ContextCallbacks,
  ) {
    checkOptions(options, callbacks);
    const c = (this.config = Buffer.alloc(options.pcie ? 4096 : 256));
    const p = options.pci;
    c.writeUInt16LE(p.vendorId, 0);
    c.writeUInt16LE(p.deviceId, 2);
    c.writeUInt16LE(0x10, 6); // status: capabilities list
    c[8] = p.revision;
    c.writeUIntLE(p.classCode, 9, 3);
    c.writeUInt16LE(p.subsystemVendorId, 0x2c);
    c.writeUInt16LE(p.subsystemId, 0x2e);
    c[0x3d] = p.interruptPin;
    for (const f of options.barFlags) {
      if (!options.regions.some((r) => r.index === f.index) && f.index !== options.msix.bar) continue;
      c.writeUInt32LE((f.is64 ? 0x4 : 0) | (f.prefetchable ? 0x8 : 0), 0x10 + 4 * f.index);
    }
    c[0x34] = MOCK_MSIX_CAP;
    c[MOCK_MSIX_CAP] = 0x11;
    c[MOCK_MSIX_CAP + 1] = options.pcie ? MOCK_PCIE_CAP : 0;
    c.writeUInt16LE(options.msix.vectors - 1, MOCK_MSIX_CAP + 2);
    c.writeUInt32LE(options.msix.bar, MOCK_MSIX_CAP + 4);
    c.writeUInt32LE(MSIX_PBA_OFFSET | options.msix.bar, MOCK_MSIX_CAP + 8);
    if (options.pcie) {
      c[MOCK_PCIE_CAP] = 0x10;
      c.writeUInt16LE(0x0002, MOCK_PCIE_CAP + 2); // version 2, endpoint
    }
    this.pristine = Buffer.from(c);
    for (const r of options.regions) {
      if (r.kind === 'memfd') this.memories.set(r.index, Buffer.alloc(r.size));
      else this.trapped.add(r.index);
    }
    // The MSI-X BAR, when not listed: a trapped 8 KiB BAR (table and PBA pages).
    if (!options.regions.some((r) => r.index === options.msix.bar)) this.trapped.add(options.msix.bar);
  }

  // ---- NativeContext ----

  regionMemory(index: number): Buffer {
    if (this.isClosed) throw new Error('context is closed');
    const m = this.memories.get(index);
    if (!m) throw new Error(`region ${index} is not memfd-backed`);
    return m;
  }

  /** The mock has no memfd: -1 for a memfd region. */
  regionFd(index: number): number {
    if (this.isClosed) throw new Error('context is closed');
    if (!this.memories.has(index)) throw new Error(`region ${index} is not memfd-backed`);
    return -1;
  }

  trigger(type: IrqType, vector: number): boolean {
    if (type === IRQ_TYPE.MSIX) {
      if (!Number.isInteger(vector) || vector < 0 || vector >= this.options.msix.vectors) {
        throw new RangeError(`MSI-X vector ${vector} out of range (0..${this.options.msix.vectors - 1})`);
      }
    } else if (type === IRQ_TYPE.INTX) {
      if (!this.options.intx) throw new Error('INTx is not offered (options.intx)');
      if (vector !== 0) throw new RangeError('INTx has only vector 0');
    } else {
      throw new RangeError(`trigger: irq type ${type} is not supported (INTX or MSIX)`);
    }
    if (type !== this.activeIrqType() || !this.eventfds.has(vector)) return false;
    this.triggered.push([type, vector]);
    return true;
  }

  activeIrqType(): number {
    if (this.isClosed || !this.isAttached) return -1;
    if (this.config.readUInt16LE(MOCK_MSIX_CAP + 2) & MSIX_FLAGS_ENABLE) return IRQ_TYPE.MSIX;
    return this.options.intx ? IRQ_TYPE.INTX : -1;
  }

  readConfig(offset: number, len: number): number {
    if (this.isClosed) throw new Error('context is closed');
    if (!(len >= 1 && len <= 4 && offset >= 0 && offset + len <= this.config.length)) {
      throw new RangeError(`readConfig(${offset}, ${len}): len is 1..4 within ${this.config.length} bytes`);
    }
    return this.config.readUIntLE(offset, len);
  }

  setLogLevel(level: number): void {
    if (!(Number.isInteger(level) && level >= 0 && level <= LOG_DEBUG)) throw new RangeError('log level is 0..7 (syslog)');
    this.logLevel.push(level);
    this.level = level;
  }

  /** How often dropResidentPages() was called (the mock has no pages to drop). */
  drops = 0;

  dropResidentPages(): number {
    if (this.isClosed) throw new Error('context is closed');
    this.drops++;
    let bytes = 0;
    for (const m of this.memories.values()) bytes += m.length;
    for (const r of this.dmaRegions.values()) if (r.memory) bytes += r.length;
    return bytes;
  }

  directReads(index: number, table: DirectReads | null): void {
    if (this.isClosed) throw new Error('context is closed');
    if (!this.trapped.has(index)) throw new RangeError(`directReads: region ${index} is not trapped`);
    if (table === null || table === undefined) {
      this.direct.delete(index);
      return;
    }
    const dwords = this.trappedSize(index) / 4;
    const slots = table.value.length;
    const need = (name: keyof DirectReads, type: typeof Int32Array | typeof Uint32Array, min: number) => {
      const a = table[name];
      if (!(a instanceof type)) throw new TypeError(`directReads: ${name} must be a${type === Int32Array ? 'n Int32Array' : ' Uint32Array'}`);
      if (a.length < min) throw new RangeError(`directReads: ${name} has ${a.length} elements, needs ${min}`);
    };
    need('slot', Int32Array, dwords);
    need('value', Uint32Array, 0);
    need('spinValue', Uint32Array, slots);
    need('spinReads', Uint32Array, slots);
    need('spinThreshold', Uint32Array, 1);
    for (let d = 0; d < dwords; d++) {
      if (table.slot[d] >= slots) throw new RangeError(`directReads: slot[${d}] is ${table.slot[d]}, past the ${slots} values`);
    }
    this.direct.set(index, table);
  }

  attached(): boolean {
    return this.isAttached && !this.isClosed;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const wasAttached = this.isAttached;
    this.unmapAll();
    this.isAttached = false;
    this.eventfds.clear();
    this.direct.clear();
    for (const m of this.memories.values()) detach(m.buffer as ArrayBuffer);
    if (wasAttached) this.call('onConnection', () => this.callbacks.onConnection(false));
  }

  get closed(): boolean {
    return this.isClosed;
  }

  // ---- calling the callbacks as native/ does (Context::CallJs) ----

  private call(what: string | (() => string), fn: () => void): boolean {
    try {
      fn();
      return true;
    } catch (err) {
      const stack = err instanceof Object && typeof (err as Error).stack === 'string' ? (err as Error).stack : String(err);
      this.log(LOG_ERR, `vphi: ${typeof what === 'string' ? what : what()} threw: ${stack}`);
      return false;
    }
  }

  private log(level: number, message: string): void {
    if (level > this.level) return;
    try {
      this.callbacks.onLog(level, message);
    } catch {
      // A throwing logger has nowhere to report to.
    }
  }

  private poll(): void {
    if (this.isClosed || !this.callbacks.onPoll) return;
    this.call('onPoll', () => this.callbacks.onPoll!());
  }

  private client(): void {
    if (this.isClosed) throw new Error('mock client: the context is closed');
    if (!this.isAttached) throw new Error('mock client: no client attached (call connect() first)');
  }

  private unmapAll(): void {
    for (const [iova, r] of [...this.dmaRegions]) this.unmapRegion(iova, r);
  }

  private unmapRegion(iova: bigint, r: DmaRegionInfo): void {
    this.dmaRegions.delete(iova);
    this.call('onDmaUnmap', () => this.callbacks.onDmaUnmap(iova, r.length));
    if (r.memory) detach(r.memory);
  }

  private resetDevice(type: number): void {
    this.pristine.copy(this.config);
    this.call('onReset', () => this.callbacks.onReset(type));
  }

  // ---- the simulated client ----

  /** A client attaches (its VERSION negotiated). */
  connect(): void {
    if (this.isClosed) throw new Error('mock client: the context is closed');
    if (this.isAttached) throw new Error('mock client: a client is already attached (see refuseSecond())');
    this.isAttached = true;
    this.call('onConnection', () => this.callbacks.onConnection(true));
  }

  /** A second client tries to attach; returns the errno its VERSION gets (EBUSY). */
  refuseSecond(): number {
    this.client();
    const reason = `a client is already attached to ${this.options.listenFd !== undefined ? `fd ${this.options.listenFd}` : this.options.socketPath}`;
    this.call('onRefused', () => this.callbacks.onRefused(reason));
    return EBUSY;
  }

  /** The client goes away (vfu_reset_ctx_quiesced(): DMA regions, reset, eventfds, then detach). */
  disconnect(): void {
    this.client();
    this.unmapAll();
    this.resetDevice(RESET_TYPE.LOST_CONN);
    this.eventfds.clear();
    this.isAttached = false;
    this.call('onConnection', () => this.callbacks.onConnection(false));
    this.poll();
  }

  /** VFIO_USER_DEVICE_RESET. */
  reset(): void {
    this.client();
    this.resetDevice(RESET_TYPE.DEVICE);
    this.poll();
  }

  /**
   * VFIO_USER_REGION_READ / _WRITE of `data.length` (write) or `count`
   * (read) bytes. Config space and memfd BARs are served without
   * JavaScript; trapped BARs through onAccess in scratch-sized chunks.
   */
  access(index: number, offset: number, dataOrCount: Buffer | number): AccessResult {
    this.client();
    if (typeof dataOrCount === 'number') {
      const data = this.directRead(index, offset, dataOrCount);
      if (data) return { error: 0, data }; // no callback at all, onPoll included
    }
    const r = this.serve(index, offset, dataOrCount);
    this.poll();
    return r;
  }

  /** native/poll.cc DirectRead(): whole aligned dwords (4..64 bytes) that all have a slot, unless one would reach the spin threshold. */
  private directRead(index: number, offset: number, count: number): Buffer | undefined {
    const t = this.direct.get(index);
    if (!t || offset % 4 !== 0 || count % 4 !== 0 || count === 0 || count > 64) return undefined;
    const first = offset / 4;
    const n = count / 4;
    if (first + n > this.trappedSize(index) / 4) return undefined;
    const threshold = t.spinThreshold[0];
    const slots: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = t.slot[first + i];
      if (s < 0 || s >= t.value.length) return undefined;
      const reads = t.spinReads[s];
      if (threshold !== 0 && reads !== 0 && t.spinValue[s] === t.value[s] && reads + 1 === threshold) return undefined;
      slots.push(s);
    }
    const data = Buffer.alloc(count);
    slots.forEach((s, i) => {
      const v = t.value[s];
      data.writeUInt32LE(v, 4 * i);
      if (threshold === 0) return;
      if (t.spinReads[s] === 0 || t.spinValue[s] !== v) {
        t.spinValue[s] = v;
        t.spinReads[s] = 1;
      } else if (t.spinReads[s] < threshold) {
        t.spinReads[s]++;
      }
    });
    return data;
  }

  private serve(index: number, offset: number, dataOrCount: Buffer | number): AccessResult {
    const isWrite = typeof dataOrCount !== 'number';
    const count = isWrite ? dataOrCount.length : dataOrCount;
    const data = isWrite ? dataOrCount : Buffer.alloc(count);
    const fail = (error: number) => ({ error, data: Buffer.alloc(0) });
    const size = index === REGION.CONFIG ? this.config.length : (this.memories.get(index)?.length ?? (this.trapped.has(index) ? this.trappedSize(index) : 0));
    if (offset < 0 || count < 0 || offset + count > size) return fail(EINVAL);
    if (index === REGION.CONFIG) this.configAccess(offset, data, isWrite);
    else if (this.memories.has(index)) {
      const m = this.memories.get(index)!;
      if (isWrite) data.copy(m, offset);
      else m.copy(data, 0, offset, offset + count);
    } else {
      for (let done = 0; done < count; ) {
        const n = Math.min(SCRATCH_SIZE, count - done);
        const at = offset + done;
        if (isWrite) data.copy(this.scratch, 0, done, done + n);
        const ok = this.call(
          () => `onAccess(region ${index}, offset ${hex(at)}, ${n} bytes, ${isWrite ? 'write' : 'read'})`,
          () => this.callbacks.onAccess(index, at, n, isWrite),
        );
        if (!ok) return fail(EIO);
        if (!isWrite) this.scratch.copy(data, done, 0, n);
        done += n;
      }
    }
    if (count === 1 || count === 2 || count === 4 || count === 8) {
      const v = count === 8 ? data.readBigUInt64LE(0) : data.readUIntLE(0, count);
      this.log(LOG_DEBUG, isWrite ? `region${index}: wrote ${hex(v)} to (${hex(offset)}:${count})` : `region${index}: read ${hex(v)} from (${hex(offset)}:${count})`);
    } else {
      this.log(LOG_DEBUG, `region${index}: ${isWrite ? 'wrote' : 'read'} ${count} bytes at ${hex(offset)}`);
    }
    return { error: 0, data: isWrite ? Buffer.alloc(0) : data };
  }

  private trappedSize(index: number): number {
    return this.options.regions.find((r) => r.index === index)?.size ?? 2 * MSIX_PBA_OFFSET;
  }

  /** Config writes: the identity is read-only, MSI-X Message Control takes Enable and Function Mask only. */
  private configAccess(offset: number, data: Buffer, isWrite: boolean): void {
    if (!isWrite) {
      this.config.copy(data, 0, offset, offset + data.length);
      return;
    }
    const ctrl = MOCK_MSIX_CAP + 2;
    for (let i = 0; i < data.length; i++) {
      const o = offset + i;
      if (o < 4 || (o >= 8 && o < 0x0c) || (o >= 0x2c && o < 0x30) || o === 0x34 || o === 0x3d) continue;
      if (o >= MOCK_MSIX_CAP && o < MOCK_MSIX_CAP + 12 && o !== ctrl + 1) continue;
      if (o === ctrl + 1) {
        const writable = (MSIX_FLAGS_ENABLE | MSIX_FLAGS_MASKALL) >> 8;
        this.config[o] = (this.config[o] & ~writable) | (data[i] & writable);
        continue;
      }
      if (this.options.pcie && o >= MOCK_PCIE_CAP && o < MOCK_PCIE_CAP + 4) continue;
      this.config[o] = data[i];
    }
  }

  /** A trapped read of `size` bytes; returns the value (throws on EIO/EINVAL). */
  read(index: number, offset: number, size: 1 | 2 | 4 | 8): number | bigint {
    const r = this.access(index, offset, size);
    if (r.error) throw new Error(`mock client: read of region ${index} at ${hex(offset)} failed (errno ${r.error})`);
    return size === 8 ? r.data.readBigUInt64LE(0) : r.data.readUIntLE(0, size);
  }

  /** A trapped write (throws on EIO/EINVAL). */
  write(index: number, offset: number, size: 1 | 2 | 4 | 8, value: number | bigint): void {
    const b = Buffer.alloc(size);
    if (size === 8) b.writeBigUInt64LE(BigInt(value), 0);
    else b.writeUIntLE(Number(value), 0, size);
    const r = this.access(index, offset, b);
    if (r.error) throw new Error(`mock client: write of region ${index} at ${hex(offset)} failed (errno ${r.error})`);
  }

  /** The guest writes MSI-X Message Control: Enable (and optionally the Function Mask). */
  enableMsix(enable = true, functionMask = false): void {
    const b = Buffer.alloc(2);
    b.writeUInt16LE((enable ? MSIX_FLAGS_ENABLE : 0) | (functionMask ? MSIX_FLAGS_MASKALL : 0));
    this.access(REGION.CONFIG, MOCK_MSIX_CAP + 2, b);
  }

  /** VFIO_USER_DEVICE_SET_IRQS with an eventfd for `vector` (INTx: 0), as QEMU sends when the guest unmasks it. */
  giveEventfd(vector: number): void {
    this.client();
    this.eventfds.add(vector);
    this.poll();
  }

  /** The client reports a mask change (libvfio-user's irq_state callback). */
  setIrqState(type: IrqType, start: number, count: number, masked: boolean): void {
    this.client();
    this.call('onIrqState', () => this.callbacks.onIrqState(type, start, count, masked));
    this.poll();
  }

  /**
   * VFIO_USER_DMA_MAP: `memory` plays the fd-mapped region (null: no fd).
   * It is detached after its onDmaUnmap, as the native side detaches its
   * mappings: pass an ArrayBuffer of its own, not a pooled Buffer's.
   */
  dmaMap(iova: bigint, memory: ArrayBuffer | null, length = memory?.byteLength ?? 0, prot = 3): void {
    this.client();
    const had = this.dmaRegions.get(iova);
    if (!had || had.length !== length) {
      const info = { iova, length, prot, memory };
      this.dmaRegions.set(iova, info);
      this.call('onDmaMap', () => this.callbacks.onDmaMap(info));
    }
    this.poll();
  }

  /** The DMA region the client has mapped at `iova`, if any. */
  dmaRegion(iova: bigint): DmaRegionInfo | undefined {
    return this.dmaRegions.get(iova);
  }

  /** VFIO_USER_DMA_UNMAP; returns 0, or ENOENT when nothing is mapped there. */
  dmaUnmap(iova: bigint, length?: number): number {
    this.client();
    const r = this.dmaRegions.get(iova);
    const error = r && (length === undefined || r.length === length) ? 0 : ENOENT;
    if (r && !error) this.unmapRegion(iova, r);
    this.poll();
    return error;
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
