import { describe, expect, it } from 'vitest';
import { HostMemory, HostMemoryError } from './host-memory.ts';

function memory() {
  const m = new HostMemory();
  const ram = new ArrayBuffer(0x2000);
  m.map({ iova: 0x10000n, length: 0x2000, prot: 3, memory: ram });
  m.map({ iova: 0x20000n, length: 0x1000, prot: 1, memory: new ArrayBuffer(0x1000) });
  m.map({ iova: 0x40000n, length: 0x1000, prot: 3, memory: null }); // offered without an fd (a peer card's BAR)
  return { m, ram: new Uint8Array(ram) };
}

describe('HostMemory', () => {
  it('tryView() gives the same view as view() where view() succeeds', () => {
    const { m, ram } = memory();
    ram[0x123] = 0xab;
    expect(m.tryView(0x10100n, 0x100, true)![0x23]).toBe(0xab);
    expect(m.view(0x10100n, 0x100, true)[0x23]).toBe(0xab);
    expect(m.tryView(0x20000n, 8)).not.toBeNull();
  });

  it('tryView() is null exactly where view() throws: unmapped, no fd, read-only for a write, straddling', () => {
    const { m } = memory();
    for (const [iova, len, write] of [[0x30000n, 4, false], [0x40000n, 4, false], [0x20000n, 4, true], [0x11ffcn, 8, false], [0xfffcn, 8, false]] as const) {
      expect(m.tryView(iova, len, write), `${iova}+${len}`).toBeNull();
      expect(() => m.view(iova, len, write), `${iova}+${len}`).toThrow(HostMemoryError);
    }
  });
});
