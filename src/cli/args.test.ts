import { describe, expect, it } from 'vitest';
import { parseIntArg, parseSize, UsageError } from './args.ts';

describe('CLI argument parsing', () => {
  it('reads sizes with units', () => {
    expect(parseSize('512M', 'x')).toBe(512 << 20);
    expect(parseSize('1G', 'x')).toBe(1 << 30);
    expect(parseSize('64KiB', 'x')).toBe(64 << 10);
    expect(parseSize('0x20000000', 'x')).toBe(0x20000000);
    expect(parseSize('4096', 'x')).toBe(4096);
  });

  it('names the option in one line when a value is bad', () => {
    expect(() => parseSize('lots', '--aperture')).toThrow(UsageError);
    expect(() => parseSize('lots', '--aperture')).toThrow(/^--aperture: cannot read "lots" as a size/);
    expect(() => parseIntArg('-1', '--fd')).toThrow(/--fd: expected a whole number >= 0/);
  });
});
