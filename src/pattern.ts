/**
 * The one test byte pattern, shared by the card services, the tests and
 * the guest programs (guest-tests/pattern.h): pattern(seed, n) starts from a
 * 32-bit state s = seed; for each 4-byte word s = s·1664525 + 1013904223
 * (mod 2^32), written little-endian; the stream is cut after n bytes.
 * pattern(1, 8) = 6c 59 88 3c db 85 88 5e, CRC32 0xab3b8c88 (zlib's crc32).
 */
import { crc32 as zlibCrc32 } from 'node:zlib';

const step = (s: number): number => (Math.imul(s, 1664525) + 1013904223) >>> 0;

/** Fill `b` with the first b.length bytes of pattern(seed). */
export function patternFill(b: Uint8Array, seed: number): void {
  let s = seed >>> 0;
  const n = b.length;
  for (let i = 0; i < n; i += 4) {
    s = step(s);
    b[i] = s;
    if (i + 1 < n) b[i + 1] = s >>> 8;
    if (i + 2 < n) b[i + 2] = s >>> 16;
    if (i + 3 < n) b[i + 3] = s >>> 24;
  }
}

/** pattern(seed, n) as a new Buffer. */
export function pattern(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n);
  patternFill(b, seed);
  return b;
}

/** The offset of the first byte of `b` that differs from pattern(seed, b.length), or -1. */
export function patternMismatch(b: Uint8Array, seed: number): number {
  let s = seed >>> 0;
  const n = b.length;
  for (let i = 0; i < n; i += 4) {
    s = step(s);
    for (let k = 0; k < 4 && i + k < n; k++) if (b[i + k] !== ((s >>> (8 * k)) & 0xff)) return i + k;
  }
  return -1;
}

/** zlib's CRC32 of `b` (continuing from `crc`). */
export function crc32(b: Uint8Array, crc = 0): number {
  return zlibCrc32(b, crc) >>> 0;
}

/** pattern(seed, n) as a stream: next(k) gives the following k bytes (the source service, DIAL). */
export class PatternStream {
  private s: number;
  /** Bytes of the current word not handed out yet (0..3), and the word. */
  private left = 0;
  private word = 0;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  next(n: number): Buffer {
    const out = Buffer.alloc(n);
    let i = 0;
    for (; i < n && this.left > 0; this.left--) out[i++] = this.word >>> (8 * (4 - this.left));
    for (; n - i >= 4; i += 4) {
      this.s = step(this.s);
      out.writeUInt32LE(this.s, i);
    }
    if (i < n) {
      this.word = this.s = step(this.s);
      for (this.left = 4; i < n; this.left--) out[i++] = this.word >>> (8 * (4 - this.left));
    }
    return out;
  }
}
