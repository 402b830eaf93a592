/**
 * The host's PCIe fabric between devices served by one process: a bus
 * address that falls in another device's memory BAR, as the guest
 * programmed it in that device's config space, reaches that device
 * directly (a peer-to-peer write through the root complex). This is how
 * one MIC card writes into another's aperture and rings its doorbells
 * (scif_node_add(): the peer's BAR0 and BAR4 bus addresses, through the
 * card's SMPT).
 *
 * Only devices in the same process are peers. Guest RAM is not here: it
 * is the HostMemory of each device's own DMA maps.
 */

/** One device's side: its BARs and how a peer reaches them. */
export interface FabricPort {
  /** Bus address of memory BAR `index` as programmed in config space, or 0n if unassigned. */
  barBase(index: number): bigint;
  /** Size of BAR `index` in bytes (0 if the device has no such BAR). */
  barSize(index: number): number;
  /** The memory behind a memfd BAR, or null for a trapped one. */
  barMemory(index: number): Uint8Array | null;
  /** A trapped access to BAR `index` at `offset` (len 1, 2 or 4), as a host access would be. */
  barAccess(index: number, offset: number, buf: Buffer, len: number, isWrite: boolean): void;
}

/** Where a peer access landed. */
export interface PeerHit {
  port: FabricPort;
  index: number;
  offset: number;
}

export class PciFabric {
  private readonly ports: FabricPort[] = [];

  /** Join the fabric; returns the function that leaves it. */
  attach(port: FabricPort): () => void {
    this.ports.push(port);
    return () => {
      const i = this.ports.indexOf(port);
      if (i >= 0) this.ports.splice(i, 1);
    };
  }

  get size(): number {
    return this.ports.length;
  }

  /** The BAR of a device other than `self` that holds all of [addr, addr+len), or null. */
  find(self: FabricPort, addr: bigint, len: number): PeerHit | null {
    if (this.ports.length < 2) return null;
    const end = addr + BigInt(len);
    for (const port of this.ports) {
      if (port === self) continue;
      for (let index = 0; index < 6; index++) {
        const size = port.barSize(index);
        if (!size) continue;
        const base = port.barBase(index);
        if (base === 0n) continue;
        if (addr >= base && end <= base + BigInt(size)) return { port, index, offset: Number(addr - base) };
      }
    }
    return null;
  }
}

/** A device's view of its peers on the fabric (what CardAddressSpace consults before guest RAM). */
export interface PeerBus {
  /** A zero-copy view of a peer's memfd BAR covering [addr, addr+len), or null if no peer BAR holds it. */
  view(addr: bigint, len: number): Uint8Array | null;
  /** A 32-bit access to a peer's trapped BAR; false if no peer BAR holds it. */
  access32(addr: bigint, value: number, isWrite: boolean): { ok: boolean; value: number };
}

/** `self`'s PeerBus on `fabric`. */
export function peerBus(fabric: PciFabric, self: FabricPort): PeerBus {
  const buf = Buffer.alloc(4);
  return {
    view(addr, len) {
      const hit = fabric.find(self, addr, len);
      if (!hit) return null;
      const mem = hit.port.barMemory(hit.index);
      return mem ? mem.subarray(hit.offset, hit.offset + len) : null;
    },
    access32(addr, value, isWrite) {
      const hit = fabric.find(self, addr, 4);
      if (!hit || hit.port.barMemory(hit.index)) return { ok: false, value: 0 };
      buf.writeUInt32LE(isWrite ? value >>> 0 : 0, 0);
      hit.port.barAccess(hit.index, hit.offset, buf, 4, isWrite);
      return { ok: true, value: buf.readUInt32LE(0) };
    },
  };
}
