import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './paths.ts';
import { PatternStream, crc32, pattern, patternFill, patternMismatch } from './pattern.ts';

describe('pattern', () => {
  it('is the LCG stream of the known vector', () => {
    expect([...pattern(1, 8)]).toEqual([0x6c, 0x59, 0x88, 0x3c, 0xdb, 0x85, 0x88, 0x5e]);
    expect(crc32(pattern(1, 8))).toBe(0xab3b8c88);
  });

  it('is cut after n bytes, and a longer stream starts with a shorter one', () => {
    expect([...pattern(1, 3)]).toEqual([0x6c, 0x59, 0x88]);
    expect(pattern(7, 4099).subarray(0, 1000)).toEqual(pattern(7, 1000));
    const b = new Uint8Array(10);
    patternFill(b, 1);
    expect([...b.subarray(0, 8)]).toEqual([...pattern(1, 8)]);
  });

  it('reports the first differing offset', () => {
    const b = pattern(0xdeadbeef, 4099);
    expect(patternMismatch(b, 0xdeadbeef)).toBe(-1);
    b[4097] ^= 0x10;
    expect(patternMismatch(b, 0xdeadbeef)).toBe(4097);
    b[5] ^= 1;
    expect(patternMismatch(b, 0xdeadbeef)).toBe(5);
    expect(patternMismatch(pattern(2, 64), 1)).toBe(0);
  });

  it('crc32 is zlib\'s and continues', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    const p = pattern(3, 100);
    expect(crc32(p.subarray(40), crc32(p.subarray(0, 40)))).toBe(crc32(p));
  });

  // The C side (guest-tests/pattern.h), through the static guest program that scripts/setup builds.
  it('matches the C pattern.h (vphi-dma selftest)', () => {
    const bin = join(REPO_ROOT, '.cache/guest/bin/vphi-dma');
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run scripts/setup`);
    const out = execFileSync(bin, ['selftest'], { encoding: 'utf8' });
    expect(out).toMatch(/^# vphi-dma: 0 of 4 failed$/m);
    const lines = [...out.matchAll(/^# pattern-crc (0x[0-9a-f]+) (\d+) (0x[0-9a-f]+)$/gm)];
    expect(lines.length).toBe(4);
    for (const [, seed, len, crc] of lines) expect(crc32(pattern(Number(seed), Number(len))), `seed ${seed} len ${len}`).toBe(Number(crc));
  });

  it('streams the same bytes whatever the chunking (PatternStream)', () => {
    const whole = pattern(0xdeadbeef, 1001);
    const s = new PatternStream(0xdeadbeef);
    const parts: Uint8Array[] = [];
    for (const k of [1, 2, 3, 4, 5, 7, 13, 100, 866]) parts.push(s.next(k));
    expect(Buffer.concat(parts).equals(whole)).toBe(true);
  });
});
