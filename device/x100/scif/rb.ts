/**
 * The SCIF ring buffer (drivers/misc/mic/scif/scif_rb.c): a power-of-two
 * byte ring whose producer and consumer offsets are u32s published where
 * the other side can read them. One side only writes the ring and the
 * producer offset, the other only reads the ring and writes the consumer
 * offset. At most size - 1 bytes are outstanding (CIRC_CNT / CIRC_SPACE).
 *
 * All locations are card addresses (GDDR or the SMPT window), reached
 * through the card's address space on every access.
 */
import type { CardAddressSpace } from '../memory.ts';
import { readBytes, readU32, writeBytes, writeU32 } from './mem.ts';

/** CIRC_CNT(head, tail, size) */
export const circCnt = (head: number, tail: number, size: number): number => (head - tail) & (size - 1);
/** CIRC_SPACE(head, tail, size) */
export const circSpace = (head: number, tail: number, size: number): number => (tail - (head + 1)) & (size - 1);

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export class ScifRb {
  currentReadOffset = 0;
  currentWriteOffset = 0;

  /**
   * scif_rb_init(): `readPtr` may be null until the peer's qp is known
   * (scif_setup_qp_connect() leaves inbound_q.read_ptr NULL); a reader
   * may fetch records, but not publish its offset, before then.
   */
  constructor(
    private readonly mem: CardAddressSpace,
    readonly base: bigint,
    readonly size: number,
    public readPtr: bigint | null,
    readonly writePtr: bigint,
    initial?: { read: number; write: number },
  ) {
    if (!isPowerOfTwo(size)) throw new RangeError(`ring size ${size} is not a power of two`);
    this.currentReadOffset = initial ? initial.read : readPtr === null ? 0 : readU32(mem, readPtr) & (size - 1);
    this.currentWriteOffset = initial ? initial.write : readU32(mem, writePtr) & (size - 1);
  }

  /** scif_rb_space(): reload the consumer offset, then the free bytes. */
  space(): number {
    if (this.readPtr !== null) this.currentReadOffset = readU32(this.mem, this.readPtr) & (this.size - 1);
    return circSpace(this.currentWriteOffset, this.currentReadOffset, this.size);
  }

  /** scif_rb_write(): all of `msg` or nothing (false is -ENOMEM); visible to the peer at commit(). */
  write(msg: Uint8Array): boolean {
    if (this.space() < msg.byteLength) return false;
    const off = this.currentWriteOffset;
    const first = Math.min(msg.byteLength, this.size - off);
    // memcpy_torb(): split at the end of the ring, continue at its base.
    writeBytes(this.mem, this.base + BigInt(off), msg.subarray(0, first));
    if (first < msg.byteLength) writeBytes(this.mem, this.base, msg.subarray(first));
    this.currentWriteOffset = (off + msg.byteLength) & (this.size - 1);
    return true;
  }

  /** scif_rb_commit(): publish the producer offset. */
  commit(): void {
    writeU32(this.mem, this.writePtr, this.currentWriteOffset);
  }

  /** scif_rb_count(): reload the producer offset only if fewer than `size` bytes are cached. */
  count(size: number): number {
    if (circCnt(this.currentWriteOffset, this.currentReadOffset, this.size) < size) {
      this.currentWriteOffset = readU32(this.mem, this.writePtr) & (this.size - 1);
    }
    return circCnt(this.currentWriteOffset, this.currentReadOffset, this.size);
  }

  /** scif_rb_get_next(): `size` bytes, or null if fewer are there. */
  getNext(size: number): Uint8Array | null {
    if (this.count(size) < size) return null;
    const off = this.currentReadOffset;
    this.currentReadOffset = (off + size) & (this.size - 1);
    // memcpy_fromrb()
    const first = Math.min(size, this.size - off);
    const out = new Uint8Array(size);
    out.set(readBytes(this.mem, this.base + BigInt(off), first));
    if (first < size) out.set(readBytes(this.mem, this.base, size - first), first);
    return out;
  }

  /** scif_rb_update_read_ptr(): publish the consumer offset. */
  updateReadPtr(): void {
    if (this.readPtr !== null) writeU32(this.mem, this.readPtr, this.currentReadOffset);
  }
}
