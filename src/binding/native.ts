/**
 * The real binding: native/ (libvfio-user through a Node addon), wrapped so
 * that it matches types.ts exactly. The addon is thin: it owns the vfio-user
 * context, the memfd mappings and the poll loop; every decision is made by
 * the caller through ContextCallbacks.
 *
 * Notes on the native behaviour (see native/*.cc):
 * - The MSI-X BAR (options.msix.bar) need not be listed in options.regions:
 *   if it is not, the addon declares it as a trapped 8 KiB BAR (table page
 *   and PBA page). QEMU emulates table and PBA, so it rarely sees accesses;
 *   any that arrive go to onAccess like every trapped region.
 * - activeIrqType() is derived from config space, because libvfio-user keeps
 *   a single eventfd array for INTx/MSI/MSI-X: MSI-X Enable set -> MSIX,
 *   else INTX when options.intx, else -1; -1 while no client is attached.
 * - Exceptions thrown by any callback are caught and reported through
 *   onLog(3, ...); for onAccess the access then fails with EIO.
 * - trigger(type, v) returns false unless `type` is activeIrqType(): the
 *   shared eventfd array would otherwise raise the wrong kind of interrupt.
 * - Config space goes back to its initial contents on every reset (client
 *   reset and lost connection, before onReset): libvfio-user resets nothing
 *   there, and a new QEMU would otherwise inherit the previous guest's
 *   command register, BAR addresses and MSI-X Enable.
 * - A DMA region without an fd goes to onDmaMap with memory null and is
 *   logged at LOG_WARNING (4), not as an error: ROMs, VGA memory and BARs
 *   arrive that way on every boot. Guest RAM must have an fd
 *   (memory-backend-memfd,share=on); deciding that RAM is missing is up to
 *   the caller.
 * - NOTHING blocks the event loop for long: a client that connects but does
 *   not send its VERSION is dropped after 1 s (libvfio-user reads it with a
 *   blocking recv inside vfu_attach_ctx; a per-context timer signal,
 *   SIGRTMAX-3, interrupts it), and an attached client's socket has 1 s
 *   receive/send timeouts.
 * - listenFd: the addon takes the socket over; the given fd number is closed
 *   at once (the addon serves on its own duplicate, closed by close()).
 *   socketPath is then not used at all; messages name the socket's bound
 *   path (getsockname), which stays the parent's to remove. Without listenFd, socketPath is created (parent
 *   directory 0700, socket 0600) and removed by close().
 * - onPoll (optional) runs after each batch of client requests.
 * - close() also reports onDmaUnmap for mapped regions and
 *   onConnection(false) if a client was attached; it does not call onReset.
 *   After close() the regionMemory() buffers and DMA ArrayBuffers are
 *   detached (length 0). Contexts still open when the process exits are
 *   closed from process 'exit' (so the socket file goes away).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { Binding, ContextCallbacks, ContextOptions, IrqType, NativeContext } from './types.ts';

/** Where node-gyp puts the addon (native/binding.gyp). */
export const ADDON_PATH = fileURLToPath(
  new URL('../../native/build/Release/vphi_native.node', import.meta.url),
);

/** The raw addon object: what native/addon.cc exports. */
interface RawContext {
  readonly scratch: Buffer;
  regionMemory(index: number): ArrayBuffer;
  regionFd(index: number): number;
  trigger(type: number, vector: number): boolean;
  activeIrqType(): number;
  readConfig(offset: number, len: number): number;
  setLogLevel(level: number): void;
  attached(): boolean;
  close(): void;
}

interface RawAddon {
  Context: new (options: ContextOptions, callbacks: ContextCallbacks) => RawContext;
  scratchSize: number;
}

let addon: RawAddon | undefined;
let loadError: Error | undefined;

function loadAddon(): RawAddon {
  if (addon) return addon;
  if (loadError) throw loadError;
  try {
    const require = createRequire(import.meta.url);
    addon = require(ADDON_PATH) as RawAddon;
    return addon;
  } catch (err) {
    loadError = new Error(
      `cannot load the native addon ${ADDON_PATH} (build it with \`bash scripts/setup\`): ${
        (err as Error).message
      }`,
      { cause: err },
    );
    throw loadError;
  }
}

/** True when the addon is built and loads. */
export function nativeAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

/** Why nativeAvailable() is false (for skip messages), or undefined. */
export function nativeLoadError(): string | undefined {
  return nativeAvailable() ? undefined : loadError?.message;
}

/** Open contexts, closed on process exit (the addon's own cleanup hook only runs for workers). */
const openContexts = new Set<NativeContextImpl>();
let exitHookInstalled = false;

function closeAllOnExit(): void {
  for (const ctx of [...openContexts]) {
    try {
      ctx.close();
    } catch {
      // exiting anyway
    }
  }
}

class NativeContextImpl implements NativeContext {
  readonly scratch: Buffer;
  private readonly raw: RawContext;
  private readonly memories = new Map<number, Buffer>();

  constructor(raw: RawAddon, options: ContextOptions, callbacks: ContextCallbacks) {
    this.raw = new raw.Context(options, callbacks);
    this.scratch = this.raw.scratch;
    openContexts.add(this);
    if (!exitHookInstalled) {
      process.once('exit', closeAllOnExit);
      exitHookInstalled = true;
    }
  }

  regionMemory(index: number): Buffer {
    let b = this.memories.get(index);
    if (!b) {
      // A view on the external ArrayBuffer over our mapping: no copy.
      b = Buffer.from(this.raw.regionMemory(index));
      this.memories.set(index, b);
    }
    return b;
  }

  regionFd(index: number): number {
    return this.raw.regionFd(index);
  }

  trigger(type: IrqType, vector: number): boolean {
    return this.raw.trigger(type, vector);
  }

  activeIrqType(): number {
    return this.raw.activeIrqType();
  }

  readConfig(offset: number, len: number): number {
    return this.raw.readConfig(offset, len);
  }

  setLogLevel(level: number): void {
    this.raw.setLogLevel(level);
  }

  attached(): boolean {
    return this.raw.attached();
  }

  close(): void {
    openContexts.delete(this);
    this.raw.close();
    this.memories.clear();
  }
}

/** The native binding; throws (with the reason) if the addon cannot be loaded. */
export function loadNativeBinding(): Binding {
  const raw = loadAddon();
  return {
    createContext(options: ContextOptions, callbacks: ContextCallbacks): NativeContext {
      return new NativeContextImpl(raw, options, callbacks);
    },
  };
}
