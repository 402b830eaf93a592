/**
 * Options shared by several subcommands, declared once. `vphi serve` and
 * `vphi boot` both serve the card: they take CARD_OPTIONS and read them with
 * cardSettings().
 */
import { DEFAULT_APERTURE_SIZE } from '../../device/x100/pci/identity.ts';
import { FaultSpecError, parseFaultSpec, type FaultSpec } from '../../device/x100/faults/spec.ts';
import { parseIntArg, parseSize, UsageError, type OptionSpecs } from './args.ts';

/** Cards one process serves at most (a MIC host carried up to eight). */
export const MAX_CARDS = 8;

export const CARD_OPTIONS = {
  'socket-path': { type: 'string', value: 'PATH', help: 'the vfio-user socket to listen on (card k > 0 of --cards: PATH.k)' },
  cards: { type: 'string', value: 'N', help: `serve N cards (1-${MAX_CARDS}, default 1): mic0..micN-1, SCIF nodes 1..N, card to card over P2P` },
  aperture: { type: 'string', value: 'SIZE', help: `BAR0, the aperture onto card memory (default ${DEFAULT_APERTURE_SIZE >> 20}M)` },
  trace: { type: 'string', value: 'FILE', help: 'log every register access, DMA and interrupt (see vphi trace)' },
  services: { type: 'string', value: 'LIST', help: 'card services to run: echo,sink,source,rma, all (default) or none; peer-rma (2010) only when named' },
  service: { type: 'string', multiple: true, value: 'FILE', help: 'also run a card program of your own (a module written against the card-side SCIF API)' },
  fault: { type: 'string', multiple: true, value: 'SPEC', help: 'inject a fault (repeatable; see FAULTS below, and vphi ctl)' },
  verbose: { type: 'boolean', short: 'v', help: 'log connections and resets to stderr' },
} as const satisfies OptionSpecs;

/** The card's settings as the options gave them. */
export interface CardSettings {
  socketPath?: string;
  /** `--cards N` (default 1). */
  cards?: number;
  apertureSize?: number;
  trace?: string;
  /** `--services LIST` (default all). */
  services?: string;
  /** `--service FILE`, repeatable. */
  serviceFiles?: string[];
  /** `--fault SPEC`, repeatable: armed at power-on. */
  faults?: FaultSpec[];
  verbose: boolean;
}

export function cardSettings(v: {
  'socket-path'?: string;
  cards?: string;
  aperture?: string;
  trace?: string;
  services?: string;
  service?: string[];
  fault?: string[];
  verbose?: boolean;
}): CardSettings {
  return {
    socketPath: v['socket-path'],
    cards: v.cards !== undefined ? parseCards(v.cards) : undefined,
    apertureSize: v.aperture !== undefined ? parseSize(v.aperture, '--aperture') : undefined,
    trace: v.trace,
    services: v.services,
    serviceFiles: v.service ?? [],
    faults: (v.fault ?? []).map((s) => {
      try {
        return parseFaultSpec(s);
      } catch (e) {
        if (e instanceof FaultSpecError) throw new UsageError(`--fault: ${e.message}`);
        throw e;
      }
    }),
    verbose: !!v.verbose,
  };
}

function parseCards(text: string): number {
  const n = parseIntArg(text, '--cards', 1);
  if (n > MAX_CARDS) throw new UsageError(`--cards: at most ${MAX_CARDS}, got ${n}`);
  return n;
}

/** Card k's copy of a per-card path (socket, trace): PATH for card 0, PATH.k for the others. */
export function cardPath(path: string, k: number): string {
  return k === 0 ? path : `${path}.${k}`;
}

export const SIZE_NOTE = 'SIZE is bytes or 512M / 1G / 0x20000000.';

export const FAULTS_NOTE = [
  'FAULTS (--fault SPEC, or at run time: vphi ctl --socket-path PATH fault SPEC), SPEC = KIND[:key=value,...]:',
  '  dma-error:chan=N[,after=K][,bit=src|dst|type|ring]  channel N fails the (K+1)-th descriptor from now',
  '  drop-doorbell:db=N[,count=K]   the next K host -> card doorbells on N are lost',
  '  drop-irq:vector=N[,count=K]    the next K MSI-X messages on vector N are lost',
  '  card-crash[:after=SECONDS]     the card OS stops: no heartbeat, no SCIF answer, post code CR',
  '  dma-slow:chan=N,mbps=X         channel N moves at most X MB/s (10^6 bytes/s); mbps=0 lifts it',
  'The card serves its control socket at PATH.ctl (0600, JSON lines) beside --socket-path PATH.',
].join('\n');
