/**
 * Host (guest-RAM) memory as the card sees it through vfio-user DMA: a
 * table of regions QEMU mapped, each with a zero-copy view of the
 * fd-mapped guest RAM. Addresses are guest bus addresses (IOVAs).
 *
 * Every access is bounds-checked against the table; an access to an
 * unmapped or refused (no fd) range, or one that straddles two regions,
 * fails with a HostMemoryError instead of touching anything, and an
 * unmapped region's views are detached by the binding right after
 * onDmaUnmap, before libvfio-user's dma_controller_remove_region() unmaps
 * the memory.
 */
import type { DmaRegionInfo } from '../binding/types.ts';
import { type Tracer, NULL_TRACER } from '../trace/tracer.ts';

export class HostMemoryError extends Error {
  constructor(
    message: string,
    readonly iova: bigint,
    readonly len: number,
  ) {
    super(message);
    this.name = 'HostMemoryError';
  }
}

interface Region {
  iova: bigint;
  end: bigint; // exclusive
  length: number;
  prot: number;
  bytes: Uint8Array | null;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

export class HostMemory {
  /** Sorted by iova. */
  private regions: Region[] = [];

  constructor(private readonly tracer: Tracer = NULL_TRACER) {}

  map(info: DmaRegionInfo): void {
    const r: Region = {
      iova: info.iova,
      end: info.iova + BigInt(info.length),
      length: info.length,
      prot: info.prot,
      bytes: info.memory ? new Uint8Array(info.memory) : null,
    };
    this.regions = [...this.regions.filter((x) => x.iova !== r.iova), r].sort((a, b) => (a.iova < b.iova ? -1 : 1));
    if (this.tracer.enabled) {
      this.tracer.dma({ op: info.memory ? 'map' : 'refused', iova: hex(info.iova), len: info.length, prot: info.prot });
    }
  }

  unmap(iova: bigint, length: number): void {
    this.regions = this.regions.filter((x) => x.iova !== iova);
    if (this.tracer.enabled) this.tracer.dma({ op: 'unmap', iova: hex(iova), len: length });
  }

  /** Drop every region (the client went away). */
  clear(): void {
    this.regions = [];
  }

  /** The mapped regions, for diagnostics. */
  list(): { iova: bigint; length: number; usable: boolean }[] {
    return this.regions.map((r) => ({ iova: r.iova, length: r.length, usable: r.bytes !== null }));
  }

  /**
   * A zero-copy view of [iova, iova+len). Throws HostMemoryError if the
   * range is not entirely inside one usable region.
   */
  view(iova: bigint, len: number, write = false): Uint8Array {
    const end = iova + BigInt(len);
    for (const r of this.regions) {
      if (iova >= r.iova && end <= r.end) {
        if (!r.bytes) {
          throw new HostMemoryError(`guest memory at ${hex(iova)} was mapped without an fd (use memory-backend-memfd,share=on)`, iova, len);
        }
        if (write && !(r.prot & 2)) throw new HostMemoryError(`guest memory at ${hex(iova)} is not writable`, iova, len);
        const off = Number(iova - r.iova);
        if (r.bytes.byteLength < off + len) {
          throw new HostMemoryError(`guest memory at ${hex(iova)} is no longer mapped`, iova, len);
        }
        return r.bytes.subarray(off, off + len);
      }
      if (iova < r.end && end > r.iova) {
        throw new HostMemoryError(`access ${hex(iova)}+${len} straddles the end of a guest memory region`, iova, len);
      }
    }
    throw new HostMemoryError(`no guest memory mapped at ${hex(iova)}+${len}`, iova, len);
  }

  /** view() without the error: null where view() would throw (a peer card's BAR is looked for next). */
  tryView(iova: bigint, len: number, write = false): Uint8Array | null {
    const end = iova + BigInt(len);
    for (const r of this.regions) {
      if (iova >= r.iova && end <= r.end) {
        const off = Number(iova - r.iova);
        if (!r.bytes || (write && !(r.prot & 2)) || r.bytes.byteLength < off + len) return null;
        return r.bytes.subarray(off, off + len);
      }
    }
    return null;
  }

  read(iova: bigint, dst: Uint8Array): void {
    dst.set(this.view(iova, dst.byteLength));
  }

  write(iova: bigint, src: Uint8Array): void {
    this.view(iova, src.byteLength, true).set(src);
  }

  readU32(iova: bigint): number {
    const v = this.view(iova, 4);
    return (v[0] | (v[1] << 8) | (v[2] << 16) | (v[3] << 24)) >>> 0;
  }

  readU64(iova: bigint): bigint {
    const v = this.view(iova, 8);
    return new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true);
  }

  writeU32(iova: bigint, value: number): void {
    const v = this.view(iova, 4, true);
    new DataView(v.buffer, v.byteOffset, 4).setUint32(0, value >>> 0, true);
  }

  writeU64(iova: bigint, value: bigint): void {
    const v = this.view(iova, 8, true);
    new DataView(v.buffer, v.byteOffset, 8).setBigUint64(0, value, true);
  }
}
