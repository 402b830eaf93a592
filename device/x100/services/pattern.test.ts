import { describe, expect, it } from 'vitest';
import { PatternStream, crc32, crc32Table, pattern } from './pattern.ts';

describe('pattern', () => {
  it('matches the contract vector: pattern(1, 8) and its CRC32', () => {
    const p = pattern(1, 8);
    expect(Buffer.from(p).toString('hex')).toBe('6c59883cdb85885e');
    expect(crc32(p)).toBe(0xab3b8c88);
    expect(crc32Table(p)).toBe(0xab3b8c88);
  });

  it('cuts the stream after n bytes, mid-word', () => {
    expect(Buffer.from(pattern(1, 5)).toString('hex')).toBe('6c59883cdb');
    expect(pattern(7, 0).length).toBe(0);
  });

  it('streams the same bytes whatever the chunking', () => {
    const whole = pattern(0xdeadbeef, 1001);
    const s = new PatternStream(0xdeadbeef);
    const parts: Uint8Array[] = [];
    for (const k of [1, 2, 3, 4, 5, 7, 13, 100, 866]) parts.push(s.next(k));
    expect(Buffer.concat(parts).equals(Buffer.from(whole))).toBe(true);
  });

  it('running CRC equals the CRC of the whole, table and zlib alike', () => {
    const d = pattern(3, 4099);
    const run = crc32(d.subarray(1000), crc32(d.subarray(0, 1000)));
    expect(run).toBe(crc32(d));
    expect(crc32Table(d)).toBe(crc32(d));
    expect(crc32(new Uint8Array(0))).toBe(0);
  });
});
