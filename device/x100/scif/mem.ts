/**
 * Loads and stores the SCIF node makes through the card's address space
 * (GDDR CPAs and SMPT-window MSAs alike). Every access asks the address
 * space for a fresh view: guest RAM can be unmapped at any time, so views
 * are never kept.
 */
import type { CardAddressSpace } from '../memory.ts';

export function readU32(mem: CardAddressSpace, addr: bigint): number {
  const v = mem.view(addr, 4, false);
  return new DataView(v.buffer, v.byteOffset, 4).getUint32(0, true);
}

/** WRITE_ONCE(*u32): one 4-byte store. */
export function writeU32(mem: CardAddressSpace, addr: bigint, value: number): void {
  const v = mem.view(addr, 4, true);
  new DataView(v.buffer, v.byteOffset, 4).setUint32(0, value >>> 0, true);
}

export function writeU8(mem: CardAddressSpace, addr: bigint, value: number): void {
  mem.view(addr, 1, true)[0] = value & 0xff;
}

export function readBytes(mem: CardAddressSpace, addr: bigint, len: number): Uint8Array {
  return mem.read(addr, len);
}

export function writeBytes(mem: CardAddressSpace, addr: bigint, src: Uint8Array): void {
  let o = 0;
  for (const s of mem.segments(addr, src.byteLength, true)) {
    s.view.set(src.subarray(o, o + s.view.byteLength));
    o += s.view.byteLength;
  }
}

export function fill(mem: CardAddressSpace, addr: bigint, len: number, value = 0): void {
  for (const s of mem.segments(addr, len, true)) s.view.fill(value);
}

/**
 * writeq(): one untorn 64-bit store. On an 8-byte aligned view this is a
 * single Atomics.store of a BigUint64Array element, which a concurrent
 * reader (the host CPU polling the device page) sees whole or not at all.
 * An unaligned view falls back to high half first, then low half, so a
 * reader polling for "non-zero" never takes a half-written address whose
 * low half is non-zero.
 */
export function storeU64Untorn(mem: CardAddressSpace, addr: bigint, value: bigint): void {
  const v = mem.view(addr, 8, true);
  const val = BigInt.asUintN(64, value);
  if (v.byteOffset % 8 === 0) {
    Atomics.store(new BigUint64Array(v.buffer, v.byteOffset, 1), 0, val);
    return;
  }
  const dv = new DataView(v.buffer, v.byteOffset, 8);
  dv.setUint32(4, Number(val >> 32n), true);
  dv.setUint32(0, Number(val & 0xffffffffn), true);
}
