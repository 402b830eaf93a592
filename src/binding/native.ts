/**
 * The real binding: native/ (libvfio-user through a Node addon), wrapped so
 * that it matches types.ts exactly; the rules every binding obeys are
 * written there and checked by contract.ts. What only the native binding
 * does:
 * - Nothing blocks the event loop for long: a client that connects but does
 *   not send its VERSION is dropped after 1 s (libvfio-user reads it with a
 *   blocking recv inside vfu_attach_ctx; a per-context timer signal,
 *   SIGRTMAX-3, interrupts it), and an attached client's socket has 1 s
 *   receive/send timeouts.
 * - Contexts still open when the process exits are closed from process
 *   'exit' (so the socket file goes away); in a worker, the addon's
 *   environment cleanup hook closes them.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import type { Binding, ContextCallbacks, ContextOptions, DirectReads, IrqType, NativeContext } from './types.ts';

/** Where node-gyp puts the addon (native/binding.gyp); VPHI_ADDON_PATH another build (npm run fuzz: ASan/UBSan). */
export const ADDON_PATH =
  process.env.VPHI_ADDON_PATH || fileURLToPath(new URL('../../native/build/Release/vphi_native.node', import.meta.url));

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
  directReads(index: number, table: DirectReads | null): void;
  dropResidentPages(): number;
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

  directReads(index: number, table: DirectReads | null): void {
    this.raw.directReads(index, table);
  }

  dropResidentPages(): number {
    return this.raw.dropResidentPages();
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
