/**
 * The byte pattern every card service and test uses: a 32-bit LCG state
 * s = seed, advanced s = s·1664525 + 1013904223 (mod 2^32) before each
 * 4-byte word, each word written little-endian, the stream cut after n
 * bytes. And the IEEE/zlib CRC-32 that checks a copy.
 */
import * as zlib from 'node:zlib';

const LCG_MUL = 1664525;
const LCG_ADD = 1013904223;

/** pattern(seed, n) as a stream: next(k) gives the following k bytes. */
export class PatternStream {
  private s: number;
  /** Bytes of the current word not handed out yet (0..3), and the word. */
  private left = 0;
  private word = 0;

  constructor(seed: number) {
    this.s = seed >>> 0;
  }

  next(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let i = 0;
    while (i < n && this.left > 0) {
      out[i++] = this.word >>> (8 * (4 - this.left));
      this.left--;
    }
    while (n - i >= 4) {
      this.s = (Math.imul(this.s, LCG_MUL) + LCG_ADD) >>> 0;
      out[i] = this.s;
      out[i + 1] = this.s >>> 8;
      out[i + 2] = this.s >>> 16;
      out[i + 3] = this.s >>> 24;
      i += 4;
    }
    if (i < n) {
      this.s = (Math.imul(this.s, LCG_MUL) + LCG_ADD) >>> 0;
      this.word = this.s;
      this.left = 4;
      while (i < n) {
        out[i++] = this.word >>> (8 * (4 - this.left));
        this.left--;
      }
    }
    return out;
  }
}

export function pattern(seed: number, n: number): Uint8Array {
  return new PatternStream(seed).next(n);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** zlib's crc32() without zlib (Node before 20.15). */
export function crc32Table(data: Uint8Array, prev = 0): number {
  let c = (prev ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const zlibCrc32 = (zlib as { crc32?: (d: Uint8Array, v?: number) => number }).crc32;

/** CRC-32 (IEEE, as zlib's crc32()); `prev` continues a running CRC. */
export function crc32(data: Uint8Array, prev = 0): number {
  return zlibCrc32 ? zlibCrc32(data, prev) >>> 0 : crc32Table(data, prev);
}
