/**
 * The typed contract between the TypeScript device model and a vfio-user
 * server (libvfio-user's vfu_ctx_t). Two implementations obey it: the
 * native addon (native.ts over native/) and the mock (mock.ts), whose
 * simulated client plays QEMU. contract.ts holds the one test suite that
 * both pass; every rule written on the interfaces below is checked there.
 *
 * The native side stays thin: it owns the vfio-user context, the memfd
 * mappings and the poll loop; every decision (what a register means,
 * whether an interrupt is pending, what to trace) is made in TypeScript.
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

/**
 * What createContext() checks (it throws, creating nothing, when one fails):
 * - region indices 0..6, each declared once; sizes are powers of two, a
 *   trapped BAR at least 16 bytes, a memfd BAR at least 4096;
 * - the upper half of a 64-bit BAR (index + 1) is no region and has no
 *   barFlags; BAR5 cannot be 64-bit;
 * - msix.vectors is 1..256 (the table sits below the PBA at 0x1000); the
 *   MSI-X BAR, when listed, holds table and PBA. When it is not listed it is
 *   declared as a trapped 8 KiB BAR, served through onAccess like any other;
 * - every ContextCallbacks member but onPoll is a function.
 */
export interface ContextOptions {
  /**
   * UNIX socket path. Its directory is created 0700, the socket 0600; a
   * stale socket is replaced, a live one or a non-socket refused; close()
   * removes it. Unused with listenFd. (The mock binds no socket; it only
   * names it in onRefused.)
   */
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
   * vhost-user style --fd) instead of binding socketPath. The given fd is
   * closed at once (the server keeps its own duplicate); the socket's bound
   * path stays the parent's to remove and names it in messages.
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
   * The server's mapping of the region (writes reach the client's memory),
   * or null when the client sent the region without an fd (ROMs, VGA
   * memory, BARs on every boot; guest RAM only when the VM lacks shared
   * memory). The binding says nothing about a null region: what to make of
   * it is the caller's. The ArrayBuffer is detached right after onDmaUnmap
   * returns, so a stale view reads as length 0 instead of touching freed
   * memory.
   */
  memory: ArrayBuffer | null;
}

/**
 * Calls from the server, only ever on the main thread, never from inside
 * createContext(). Any callback may throw: the exception never reaches the
 * client or the caller; it is reported as onLog(3, "vphi: NAME threw: ...")
 * (onAccess: "vphi: onAccess(region I, offset 0xO, N bytes, read|write)
 * threw: ...", and that access fails with EIO).
 */
export interface ContextCallbacks {
  /**
   * A trapped access to region `index`: `len` bytes at `offset`, split into
   * chunks of at most scratch.length bytes (one call each, in order). For a
   * write the data is in `scratch[0..len)`; for a read, fill it. Accesses to
   * a memfd BAR and to config space never come here.
   */
  onAccess(index: number, offset: number, len: number, isWrite: boolean): void;
  /** The client mapped a DMA region (an identical re-map is not reported again). */
  onDmaMap(info: DmaRegionInfo): void;
  /**
   * A mapped region goes away: the client unmapped it, the client went away,
   * or close(). Called while info.memory is still intact; detached after.
   */
  onDmaUnmap(iova: bigint, length: number): void;
  /**
   * Device reset (RESET_TYPE): the client reset the device (DEVICE), or it
   * went away (LOST_CONN: after every onDmaUnmap, before onConnection(false)).
   * Config space is back at its initial contents before this is called
   * (libvfio-user resets none of it itself). close() does not call it.
   */
  onReset(type: number): void;
  /** MSI-X/INTx mask state changed (libvfio-user's irq_state callback). */
  onIrqState(type: IrqType, start: number, count: number, masked: boolean): void;
  /**
   * A client attached (true), or went away (false: after its onDmaUnmap and
   * onReset(LOST_CONN), or from close() while it is attached).
   */
  onConnection(attached: boolean): void;
  /** libvfio-user's and the server's log lines (syslog levels: 3 err, 6 info, 7 debug). */
  onLog(level: number, message: string): void;
  /**
   * A second client was refused while one is attached: its VERSION gets an
   * EBUSY error reply and it is closed. `reason` is "a client is already
   * attached to SOCKET". The attached client is not disturbed.
   */
  onRefused(reason: string): void;
  /**
   * Called after each batch of client messages has been handled (one poll
   * wake-up), unless the batch was served by directReads() alone. Lets the device retry pending interrupts once QEMU has handed
   * over new eventfds or changed config space (MSI-X enable, masks).
   */
  onPoll?(): void;
}

/**
 * Registers of a trapped region that the binding reads itself, without
 * calling onAccess: the register file's own arrays, shared (the binding
 * keeps them alive and reads them at each access, so changes show at
 * once). Only REGION_READs of whole, aligned dwords (4..64 bytes) whose
 * every dword has a slot are served this way; anything else, and every
 * write, goes to onAccess. The read that would bring a slot's spinReads to
 * spinThreshold goes to onAccess too, so that the spin warning is the
 * register file's (SpinWatch); the reads served here keep its counts as
 * SpinWatch.read() would.
 */
export interface DirectReads {
  /** Dword index within the region → slot, or -1 (onAccess serves it). */
  slot: Int32Array;
  /** Slot → the register's stored value, which a read returns. */
  value: Uint32Array;
  /** SpinWatch's state: slot → the value last read, and reads of it without a change. */
  spinValue: Uint32Array;
  spinReads: Uint32Array;
  /** [0]: reads without a change that make a spin warning; 0: off. */
  spinThreshold: Uint32Array;
}

/**
 * One vfio-user server for one PCI function, serving one client at a time.
 * A new context listens with no client attached; the client attaches,
 * sends requests, and goes away; the next one finds config space as it
 * was at creation and the memfd BARs as the last one left them.
 */
export interface NativeContext {
  /** Shared scratch buffer for trapped accesses (4096 bytes). */
  readonly scratch: Buffer;
  /**
   * The memfd-backed BAR's memory, shared with the client (no copy; the same
   * Buffer on every call). Throws for any other region and after close();
   * the Buffer has length 0 after close().
   */
  regionMemory(index: number): Buffer;
  /** The memfd of a memfd-backed region (to hand to tools); throws for any other region. */
  regionFd(index: number): number;
  /**
   * Raise MSI-X vector `vector` (type MSIX) or INTx (type INTX, vector 0).
   * Throws only for a bad request: a vector outside 0..msix.vectors-1 or an
   * INTx vector other than 0 (RangeError), INTx when options.intx is false,
   * any other type (RangeError); it checks those even after close().
   * Otherwise it returns true when it wrote the vector's eventfd, and false
   * (the caller keeps the interrupt pending) while no client is attached,
   * after close(), when `type` is not activeIrqType() (libvfio-user keeps
   * one eventfd array for INTx/MSI/MSI-X, so raising another type could
   * signal the wrong interrupt), or when the client has not handed over an
   * eventfd for that vector (vfu_irq_trigger's ENOENT).
   */
  trigger(type: IrqType, vector: number): boolean;
  /**
   * The IRQ type whose eventfds the client hands over, derived from config
   * space: MSIX while MSI-X Enable is set, else INTX when options.intx, else
   * -1. Always -1 while no client is attached and after close().
   */
  activeIrqType(): number;
  /**
   * Read `len` (1..4) bytes of PCI config space, little-endian: 256 bytes,
   * 4096 with options.pcie; RangeError outside. It holds the identity, the
   * BAR memory-type bits of barFlags, and a capability list with MSI-X
   * (table at offset 0, PBA at 0x1000 of msix.bar) and, with pcie, a PCI
   * Express v2 endpoint capability. Throws after close().
   */
  readConfig(offset: number, len: number): number;
  /**
   * Which log lines reach onLog: level <= `level` (0..7, RangeError outside;
   * 3 at creation; 7 gives libvfio-user's line for every config access).
   */
  setLogLevel(level: number): void;
  /**
   * Serve aligned dword reads of trapped region `index` from `table`
   * (DirectReads) instead of onAccess; null: every access to onAccess again.
   * RangeError for a region that is not trapped, or a table whose slot
   * array does not cover the region (one entry per dword) or names a slot
   * past the value and spin arrays. A batch of client messages served
   * entirely this way calls no callback, onPoll included.
   */
  directReads(index: number, table: DirectReads | null): void;
  /**
   * Let the OS take back this process's pages of the memfd BARs and of the
   * client's DMA regions (MADV_DONTNEED on their shared mappings): every
   * byte stays as it was (it lives in the memfds) and the next access
   * faults the page back in; only this process's RSS falls. For a device
   * that holds no guest memory any more (a reset card). Returns the bytes
   * of the mappings it covered. Throws after close().
   */
  dropResidentPages(): number;
  /** True while a client is attached (from onConnection(true) to onConnection(false)). */
  attached(): boolean;
  /**
   * Stop serving and release everything; idempotent. While a client is
   * attached it reports onDmaUnmap for each mapped region and then
   * onConnection(false), but no onReset. Afterwards regionMemory() Buffers
   * and DMA ArrayBuffers have length 0.
   */
  close(): void;
}

export interface Binding {
  createContext(options: ContextOptions, callbacks: ContextCallbacks): NativeContext;
}
