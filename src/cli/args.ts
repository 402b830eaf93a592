/**
 * Argument parsing helpers for the vphi CLI: every mistake becomes one
 * clear line (a UsageError), never a stack trace.
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** "512M", "1G", "64k", "0x20000000" or plain bytes → bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^(0x[0-9a-f]+|\d+)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: cannot read "${text}" as a size (examples: 512M, 1G, 0x20000000)`);
  const n = Number(m[1]);
  const mul = { '': 1, k: 1 << 10, m: 1 << 20, g: 1 << 30, t: 2 ** 40 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return n * mul;
}

export function parseIntArg(text: string, what: string, min = 0): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`${what}: expected a whole number >= ${min}, got "${text}"`);
  return n;
}
