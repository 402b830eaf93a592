/**
 * Fault specs: `KIND[:key=value,...]`, as `--fault SPEC` and `vphi ctl
 * fault SPEC` take them. One parse, one clear error line per mistake.
 *
 *   dma-error:chan=N[,after=K][,bit=src|dst|type|ring]
 *                          channel N fails the (K+1)-th descriptor from now with that
 *                          DCHERR bit (default src), as a hardware error would look
 *   drop-doorbell:db=N[,count=K]   the next K host → card doorbells on N are lost (default 1)
 *   drop-irq:vector=N[,count=K]    the next K MSI-X messages on vector N are lost (default 1)
 *   card-crash[:after=SECONDS]     the card OS stops (default: at once)
 *   dma-slow:chan=N,mbps=X         channel N moves at most X MB/s (10^6 bytes/s); mbps=0 lifts it
 */
import { DMA_CHANNELS } from '../dma/regs.ts';
import { DOORBELL_COUNT } from '../interrupts/doorbells.ts';
import { MSIX_VECTORS } from '../pci/identity.ts';

/** Which DCHERR field an injected descriptor failure sets (regs.ts DMA_CH.DCHERR). */
export const DMA_ERROR_BITS = { src: 'SRC_ADDR', dst: 'DST_ADDR', type: 'DESC_TYPE', ring: 'RING_FETCH' } as const;
export type DmaErrorBit = keyof typeof DMA_ERROR_BITS;

export type FaultSpec =
  | { kind: 'dma-error'; chan: number; after: number; bit: DmaErrorBit }
  | { kind: 'drop-doorbell'; db: number; count: number }
  | { kind: 'drop-irq'; vector: number; count: number }
  | { kind: 'card-crash'; after: number }
  | { kind: 'dma-slow'; chan: number; mbps: number };

export type FaultKind = FaultSpec['kind'];

export class FaultSpecError extends Error {}

interface KeyDef {
  /** Integer range, or 'number' for a non-negative real. */
  min?: number;
  max?: number;
  real?: boolean;
  values?: readonly string[];
  required?: boolean;
  default?: number | string;
}

const KINDS: Record<FaultKind, Record<string, KeyDef>> = {
  'dma-error': {
    chan: { min: 0, max: DMA_CHANNELS - 1, required: true },
    after: { min: 0, max: 2 ** 31, default: 0 },
    bit: { values: Object.keys(DMA_ERROR_BITS), default: 'src' },
  },
  'drop-doorbell': { db: { min: 0, max: DOORBELL_COUNT - 1, required: true }, count: { min: 1, max: 2 ** 31, default: 1 } },
  'drop-irq': { vector: { min: 0, max: MSIX_VECTORS - 1, required: true }, count: { min: 1, max: 2 ** 31, default: 1 } },
  'card-crash': { after: { real: true, min: 0, max: 86400, default: 0 } },
  'dma-slow': { chan: { min: 0, max: DMA_CHANNELS - 1, required: true }, mbps: { real: true, min: 0, max: 1e6, required: true } },
};

export const FAULT_KINDS = Object.keys(KINDS) as FaultKind[];

/** Parse `KIND[:key=value,...]`; throws FaultSpecError naming the first mistake. */
export function parseFaultSpec(text: string): FaultSpec {
  const s = text.trim();
  const colon = s.indexOf(':');
  const kind = (colon < 0 ? s : s.slice(0, colon)) as FaultKind;
  const keys = KINDS[kind];
  if (!keys) throw new FaultSpecError(`fault "${s}": unknown kind "${kind}" (kinds: ${FAULT_KINDS.join(', ')})`);
  const out: Record<string, number | string> = { kind };
  const given = new Set<string>();
  for (const part of colon < 0 ? [] : s.slice(colon + 1).split(',')) {
    if (part === '' && colon === s.length - 1) continue;
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const def = keys[key];
    if (!def) throw new FaultSpecError(`fault ${kind}: unknown key "${key}" (keys: ${Object.keys(keys).join(', ') || 'none'})`);
    if (eq < 0) throw new FaultSpecError(`fault ${kind}: ${key} needs a value (${key}=...)`);
    if (given.has(key)) throw new FaultSpecError(`fault ${kind}: ${key} given twice`);
    given.add(key);
    out[key] = value(kind, key, part.slice(eq + 1), def);
  }
  for (const [key, def] of Object.entries(keys)) {
    if (given.has(key)) continue;
    if (def.required) throw new FaultSpecError(`fault ${kind}: ${key}=... is required`);
    out[key] = def.default as number | string;
  }
  return out as unknown as FaultSpec;
}

function value(kind: string, key: string, v: string, def: KeyDef): number | string {
  if (def.values) {
    if (!def.values.includes(v)) throw new FaultSpecError(`fault ${kind}: ${key}=${v}: want one of ${def.values.join(', ')}`);
    return v;
  }
  const n = def.real ? (/^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN) : /^(0x[0-9a-f]+|\d+)$/i.test(v) ? Number(v) : NaN;
  const what = def.real ? 'a number' : 'an integer';
  if (!Number.isFinite(n) || n < (def.min ?? 0) || n > (def.max ?? Infinity)) {
    throw new FaultSpecError(`fault ${kind}: ${key}=${v}: want ${what} from ${def.min ?? 0} to ${def.max}`);
  }
  return n;
}

/** The spec back as text (canonical: every key, in declaration order). */
export function formatFaultSpec(f: FaultSpec): string {
  const rest = Object.keys(KINDS[f.kind]).map((k) => `${k}=${(f as unknown as Record<string, unknown>)[k]}`);
  return rest.length ? `${f.kind}:${rest.join(',')}` : f.kind;
}
