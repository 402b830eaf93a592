/**
 * The card's physical address space (mic_x100_smpt_set(), mic_to_dma_addr()), as seen by
 * the DMA engine and the card model:
 *   0 .. aperture-1                 card GDDR (the BAR0 memfd)
 *   0x80_0000_0000 .. +512 GiB      host memory through the SMPT; a host
 *                                   address in another card's BAR reaches
 *                                   that card (peer-to-peer, PciFabric)
 * Anything else (including the card's own MMIO view) is an error for DMA.
 * Ranges that cross a 16 GiB SMPT page are split, each part translated by
 * its own entry. Copies are single TypedArray.set()s between mapped views:
 * never byte loops.
 */
import { HostMemoryError, type HostMemory } from '../../src/dma/host-memory.ts';
import { Smpt } from './smpt/smpt.ts';
import type { PeerBus } from '../../src/pci/fabric.ts';

export class CardAddressError extends Error {
  constructor(
    message: string,
    readonly addr: bigint,
  ) {
    super(message);
    this.name = 'CardAddressError';
  }
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export interface Segment {
  /** Card address of the segment. */
  addr: bigint;
  view: Uint8Array;
}

export class CardAddressSpace {
  private readonly apertureSize: bigint;

  constructor(
    readonly aperture: Buffer,
    readonly smpt: Smpt,
    readonly host: HostMemory,
    /** Other cards' BARs (several cards in one process); absent for a lone card. */
    readonly peers?: PeerBus,
  ) {
    this.apertureSize = BigInt(aperture.byteLength);
  }

  /**
   * Zero-copy views covering [addr, addr+len), split at SMPT page
   * boundaries. Throws CardAddressError if any byte is outside GDDR and the
   * system window, or not backed by mapped guest RAM.
   */
  segments(addr: bigint, len: number, write: boolean): Segment[] {
    const end = addr + BigInt(len);
    if (addr >= 0n && end <= this.apertureSize) {
      const o = Number(addr);
      return [{ addr, view: this.aperture.subarray(o, o + len) }];
    }
    if (!Smpt.inWindow(addr) || !Smpt.inWindow(end - 1n)) {
      throw new CardAddressError(`card address ${hex(addr)}+${len} is outside card memory and the system window`, addr);
    }
    const out: Segment[] = [];
    let a = addr;
    while (a < end) {
      const n = Number(Smpt.bytesToPageEnd(a) < end - a ? Smpt.bytesToPageEnd(a) : end - a);
      const hostAddr = this.smpt.translate(a);
      // Guest RAM first: it is where nearly every access goes, and a peer
      // card's BAR is never fd-mapped guest RAM (QEMU offers it without an fd).
      const view = this.host.tryView(hostAddr, n, write) ?? this.peers?.view(hostAddr, n);
      if (view) {
        out.push({ addr: a, view });
      } else {
        try {
          this.host.view(hostAddr, n, write); // throws, saying why
        } catch (e) {
          if (e instanceof HostMemoryError) {
            throw new CardAddressError(`card address ${hex(a)} (SMPT${Smpt.entryOf(a)} → host ${hex(hostAddr)}): ${e.message}`, a);
          }
          throw e;
        }
      }
      a += BigInt(n);
    }
    return out;
  }

  /** One contiguous view (throws if the range had to be split). */
  view(addr: bigint, len: number, write: boolean): Uint8Array {
    const s = this.segments(addr, len, write);
    if (s.length !== 1) throw new CardAddressError(`card address ${hex(addr)}+${len} crosses an SMPT page`, addr);
    return s[0].view;
  }

  /**
   * A 32-bit MMIO access through the system window to a peer card's
   * trapped BAR (mic_send_p2p_intr() rings a peer's doorbell this way).
   */
  mmio32(addr: bigint, value: number, isWrite: boolean): number {
    if (!Smpt.inWindow(addr) || !Smpt.inWindow(addr + 3n)) throw new CardAddressError(`MMIO at card address ${hex(addr)} is outside the system window`, addr);
    const hostAddr = this.smpt.translate(addr);
    const r = this.peers?.access32(hostAddr, value, isWrite);
    if (!r?.ok) throw new CardAddressError(`card address ${hex(addr)} (SMPT${Smpt.entryOf(addr)} → host ${hex(hostAddr)}) is no peer card's registers`, addr);
    return r.value;
  }

  /** Copy `len` bytes from card address `src` to card address `dst`. */
  copy(dst: bigint, src: bigint, len: number): void {
    if (len === 0) return;
    copySegments(this.segments(dst, len, true), this.segments(src, len, false));
  }

  readU64(addr: bigint): bigint {
    const v = this.view(addr, 8, false);
    return new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true);
  }

  writeU64(addr: bigint, value: bigint): void {
    const v = this.view(addr, 8, true);
    new DataView(v.buffer, v.byteOffset, 8).setBigUint64(0, value, true);
  }

  read(addr: bigint, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let o = 0;
    for (const s of this.segments(addr, len, false)) {
      out.set(s.view, o);
      o += s.view.byteLength;
    }
    return out;
  }
}

/**
 * Copy between two segment lists covering the same number of bytes: one
 * TypedArray.set() per overlapping piece (a single one in the common case
 * where neither side crosses a 16 GiB SMPT page).
 */
export function copySegments(to: Segment[], from: Segment[]): void {
  if (to.length === 1 && from.length === 1) {
    to[0].view.set(from[0].view);
    return;
  }
  let fi = 0, fo = 0, ti = 0, tOff = 0;
  while (fi < from.length && ti < to.length) {
    const fv = from[fi].view, tv = to[ti].view;
    const n = Math.min(fv.byteLength - fo, tv.byteLength - tOff);
    tv.set(fv.subarray(fo, fo + n), tOff);
    fo += n;
    tOff += n;
    if (fo === fv.byteLength) { fi++; fo = 0; }
    if (tOff === tv.byteLength) { ti++; tOff = 0; }
  }
}
