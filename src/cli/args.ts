/**
 * Argument parsing for the vphi CLI, over node's util.parseArgs: every
 * mistake becomes one clear line (a UsageError), never a stack trace.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  override name = 'UsageError';
}

/** One option, declared once: what parseArgs needs plus its line in the usage. */
export interface OptionSpec {
  readonly type: 'string' | 'boolean';
  readonly short?: string;
  readonly multiple?: boolean;
  /** The value's name in the usage (PATH, SIZE, N). */
  readonly value?: string;
  /** The command refuses to run without it. */
  readonly required?: boolean;
  readonly help: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** util.parseArgs, strict; its errors become one-line UsageErrors. */
export function parseOptions<O extends OptionSpecs>(args: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    const quoted = /'([^']*)'/.exec(err.message)?.[1];
    if (err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new UsageError(`unknown argument ${quoted}`);
    if (err.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new UsageError(`unexpected argument "${quoted}"`);
    // "Option '--fd <value>' argument missing", "Option '-v' does not take an argument"
    throw new UsageError(err.message.replace(/\. To specify.*$/s, '').replace(/^Option/, 'option'));
  }
}

/** "512M", "1G", "64k", "0x20000000" or plain bytes → bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: cannot read "${text}" as a size (examples: 512M, 1G, 0x20000000)`);
  const n = Number(m[1]);
  const mul = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return n * mul;
}

/** A size in MiB; a plain number is MiB already (QEMU's -m). */
export function parseMiB(text: string, what: string): number {
  return Math.floor(parseSize(/^\d+$/.test(text.trim()) ? `${text}M` : text, what) / (1 << 20));
}

export function parseIntArg(text: string, what: string, min = 0): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${what}: expected a whole number >= ${min}, got "${text}"`);
  return n;
}

/** `--reg A,B --reg C` → [A, B, C]. */
export function commaList(values?: string[]): string[] | undefined {
  return values?.flatMap((x) => x.split(',')).filter(Boolean);
}
