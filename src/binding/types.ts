/**
 * The typed contract between the TypeScript device model and the native
 * libvfio-user adapter (native/). The real addon and the mock (mock.ts)
 * both implement it, so almost every test runs without native code.
 *
 * Design rules (DEVELOPERS.md): native/ stays thin. It owns the vfio-user
 * context, the memfd mappings and the poll loop; every decision (what a
 * register means, whether an interrupt is pending, what to trace) is made
 * in TypeScript.
 */

/** libvfio-user region indices for a PCI device (VFU_PCI_DEV_*_REGION_IDX). */
export const REGION = {
  BAR0: 0,
  BAR1: 1,
  BAR2: 2,
  BAR3: 3,
  BAR4: 4,
  BAR5: 5,
  ROM: 6,
  CONFIG: 7,
} as const;

/** libvfio-user IRQ types (enum vfu_dev_irq_type). */
export const IRQ_TYPE = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
export type IrqType = (typeof IRQ_TYPE)[keyof typeof IRQ_TYPE];

/** libvfio-user reset reasons (enum vfu_reset_type). */
export const RESET_TYPE = { DEVICE: 0, LOST_CONN: 1, PCI_FLR: 2 } as const;

/** A BAR served by JavaScript callbacks (every access is trapped). */
export interface TrappedRegion {
  kind: 'trapped';
  index: number;
  size: number;
}

/**
 * A BAR backed by a memfd that the native side creates and maps, and that
 * QEMU maps too (exactly one mmap area covering the BAR). Accesses that
 * QEMU does not satisfy through its mapping arrive as region accesses and
 * are served by the native side straight from the same mapping.
 */
export interface MemfdRegion {
  kind: 'memfd';
  index: number;
  size: number;
  /** Name given to memfd_create (visible in /proc/PID/fd). */
  name: string;
}

export type RegionSpec = TrappedRegion | MemfdRegion;

export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  subsystemVendorId: number;
  subsystemId: number;
  revision: number;
  /** 24-bit class code: base << 16 | sub << 8 | prog-if. */
  classCode: number;
  /** Config 0x3D: 0 none, 1 INTA. */
  interruptPin: number;
}

/** Memory-type bits libvfio-user does not set itself (it sets only the I/O bit). */
export interface BarFlags {
  index: number;
  is64: boolean;
  prefetchable: boolean;
}

export interface ContextOptions {
  /** UNIX socket path. Its directory is created 0700, the socket 0600. */
  socketPath: string;
  pci: PciIdentity;
  regions: RegionSpec[];
  barFlags: BarFlags[];
  /** MSI-X capability: vector count, and the BAR holding table (offset 0) and PBA (offset 0x1000). */
  msix: { vectors: number; bar: number };
  /** Add a PCI Express endpoint capability (the card sits behind a pcie-root-port). */
  pcie: boolean;
  /** Offer INTx as a fallback. */
  intx: boolean;
  /**
   * Serve on this already-listening UNIX socket (handed over by a parent,
   * vhost-user style --fd) instead of binding socketPath.
   */
  listenFd?: number;
}

export interface DmaRegionInfo {
  /** Guest bus address of the first byte (bigint: IOVAs are 64-bit). */
  iova: bigint;
  length: number;
  /** Protection bits from the client (PROT_READ=1, PROT_WRITE=2). */
  prot: number;
  /**
   * The server's mapping of the region, or null when QEMU sent the region
   * without an fd (message-based DMA, which vphi refuses). The ArrayBuffer
   * is detached by the native side before the memory is unmapped, so a
   * stale view reads as length 0 instead of touching freed memory.
   */
  memory: ArrayBuffer | null;
}

export interface ContextCallbacks {
  /**
   * A trapped access to region `index`. `len` bytes at `offset`. For a
   * write the data is in `scratch[0..len)`; for a read, fill it. Must not
   * throw: an exception is reported and the access fails with EIO.
   */
  onAccess(index: number, offset: number, len: number, isWrite: boolean): void;
  onDmaMap(info: DmaRegionInfo): void;
  /** Called before the mapping is torn down. */
  onDmaUnmap(iova: bigint, length: number): void;
  /** Device reset (RESET_TYPE). */
  onReset(type: number): void;
  /** MSI-X/INTx mask state changed (irq_state callback). */
  onIrqState(type: IrqType, start: number, count: number, masked: boolean): void;
  /** A client attached (true) or went away (false). */
  onConnection(attached: boolean): void;
  /** libvfio-user log lines (level is syslog's: 3 err, 6 info, 7 debug). */
  onLog(level: number, message: string): void;
  /** A second client was refused while one is attached. */
  onRefused(reason: string): void;
  /**
   * Called after each batch of client messages has been handled (one poll
   * wake-up). Lets the device retry pending interrupts once QEMU has handed
   * over new eventfds or changed config space (MSI-X enable, masks).
   */
  onPoll?(): void;
}

export interface NativeContext {
  /** Shared scratch buffer for trapped accesses (at least 4096 bytes). */
  readonly scratch: Buffer;
  /** The memfd-backed BAR's memory, shared with QEMU (no copy). */
  regionMemory(index: number): Buffer;
  /** The memfd of a memfd-backed region (to hand to tools, or for tests). */
  regionFd(index: number): number;
  /**
   * Raise MSI-X vector `vector` (type MSIX) or INTx (type INTX, vector 0).
   * Returns true when the eventfd was written; false when the client has
   * not handed over an eventfd for that vector yet (ENOENT). The caller
   * keeps it pending; it never throws for that.
   */
  trigger(type: IrqType, vector: number): boolean;
  /** The IRQ type the client enabled (the one with eventfds), or -1. */
  activeIrqType(): number;
  /** Read `len` bytes of PCI config space (for MSI-X control, command register). */
  readConfig(offset: number, len: number): number;
  /** libvfio-user log level forwarded to onLog (7 = debug gives every region access). */
  setLogLevel(level: number): void;
  /** True while a client is attached. */
  attached(): boolean;
  /** Stop polling, destroy the context, unmap and close everything. Idempotent. */
  close(): void;
}

export interface Binding {
  createContext(options: ContextOptions, callbacks: ContextCallbacks): NativeContext;
}
