/**
 * Options shared by several subcommands, declared once. `vphi serve` and
 * `vphi boot` both serve the card: they take CARD_OPTIONS and read them with
 * cardSettings().
 */
import { DEFAULT_APERTURE_SIZE } from '../../device/x100/pci/identity.ts';
import { parseSize, type OptionSpecs } from './args.ts';

export const CARD_OPTIONS = {
  'socket-path': { type: 'string', value: 'PATH', help: 'the vfio-user socket to listen on' },
  aperture: { type: 'string', value: 'SIZE', help: `BAR0, the aperture onto card memory (default ${DEFAULT_APERTURE_SIZE >> 20}M)` },
  trace: { type: 'string', value: 'FILE', help: 'log every register access, DMA and interrupt (see vphi trace)' },
  services: { type: 'string', value: 'LIST', help: 'card services to run: echo,sink,source,rma, all (default) or none' },
  service: { type: 'string', multiple: true, value: 'FILE', help: 'also run a card program of your own (a module written against the card-side SCIF API)' },
  verbose: { type: 'boolean', short: 'v', help: 'log connections and resets to stderr' },
} as const satisfies OptionSpecs;

/** The card's settings as the options gave them. */
export interface CardSettings {
  socketPath?: string;
  apertureSize?: number;
  trace?: string;
  /** `--services LIST` (default all). */
  services?: string;
  /** `--service FILE`, repeatable. */
  serviceFiles?: string[];
  verbose: boolean;
}

export function cardSettings(v: {
  'socket-path'?: string;
  aperture?: string;
  trace?: string;
  services?: string;
  service?: string[];
  verbose?: boolean;
}): CardSettings {
  return {
    socketPath: v['socket-path'],
    apertureSize: v.aperture !== undefined ? parseSize(v.aperture, '--aperture') : undefined,
    trace: v.trace,
    services: v.services,
    serviceFiles: v.service ?? [],
    verbose: !!v.verbose,
  };
}

export const SIZE_NOTE = 'SIZE is bytes or 512M / 1G / 0x20000000.';
