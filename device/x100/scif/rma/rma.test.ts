import { describe, expect, it } from 'vitest';
import { LinuxScifHost } from '../testing.ts';
import { SCIF } from '../msg.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { HostRma } from './testing.ts';
import { cardDmaRegion } from '../../card.ts';
import { SCIF_FENCE_INIT_PEER, SCIF_FENCE_INIT_SELF, SCIF_MAP_FIXED, SCIF_RMA_USECPU, SCIF_SIGNAL_LOCAL, SCIF_SIGNAL_REMOTE, W } from './window.ts';

async function rig() {
  const h = new LinuxScifHost();
  await h.bringUp();
  const rma = new HostRma(h);
  const l = h.card.scif.api.open();
  l.bind(6000);
  l.listen(8);
  const connect = async () => {
    const acc = l.accept();
    const hep = h.connectStart(6000);
    await h.settle();
    expect(h.connectFinish(hep)).toBe('connected');
    await h.settle();
    const { ep } = await acc;
    return { hep, ep: ep as CardEndpoint };
  };
  const scif = h.card.scif;
  /** Free card memory: the SCIF region and the card-program buffers. */
  const free = () => scif.alloc.bytesFree() + scif.buffers.bytesFree();
  /** Settle the card and the host double until `p` is done. */
  const run = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    p.then(() => (done = true), () => (done = true));
    for (let i = 0; i < 100 && !done; i++) await h.settle();
    return p;
  };
  return { h, rma, l, connect, scif, run, free, base: free() };
}

const fill = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);
const events = (h: LinuxScifHost, action: string) => h.env.tracer.events.filter((e) => e.kind === 'scif' && e.action === action);

describe('SCIF RMA: a host program registers memory on a card endpoint', () => {
  it('ALLOC_REQ → GNT with the image in GDDR, REGISTER → ACK, the window recorded with its MSAs; UNREGISTER → ACK frees it', async () => {
    const { h, rma, connect, scif, base, free } = await rig();
    const { hep, ep } = await connect();
    const afterConnect = free();
    const ram = h.kzalloc(5 * 4096);
    const w = await rma.register(hep, ram, 5 * 4096, { offset: 0x10000n });
    expect(typeof w).not.toBe('string');
    if (typeof w === 'string') return;
    // ALLOC_GNT: p1 = the image's CPA; its lookups point at page arrays in GDDR.
    const gnt = h.received(SCIF.ALLOC_GNT)[0];
    const rw = Number(gnt.payload[1]);
    expect(h.card.aperture.readBigUInt64LE(rw + W.nr_pages)).toBe(5n);
    const st = scif.rma.st(ep);
    expect(st.remote.list).toHaveLength(1);
    const win = st.remote.list[0];
    expect(win).toMatchObject({ offset: 0x10000n, nrPages: 5, prot: 3, hostWin: w.handle });
    expect(win.chunks).toEqual([{ addr: h.msa(ram), pages: 5 }]);
    // The image is gone once the page list was read (scif_destroy_remote_lookup()).
    expect(free()).toBe(afterConnect);
    expect(events(h, 'window-register')[0]).toMatchObject({ owner: 'host', offset: '0x10000', len: 5 * 4096, pages: 5 });
    expect(await rma.unregister(w)).toBe(true);
    expect(h.received(SCIF.UNREGISTER_ACK)[0].payload.slice(0, 2)).toEqual([hep.handle, w.handle]);
    expect(st.remote.list).toHaveLength(0);
    await rma.close(hep);
    await ep.close();
    expect(free()).toBe(base);
  });

  it('reads a page list of one chunk per page and of many chunks (lookups spanning pages)', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(600 * 4096);
    const a = await rma.register(hep, ram, 3 * 4096, { chunkPages: 1, offset: 0n });
    const b = await rma.register(hep, ram, 600 * 4096, { chunkPages: 1, offset: 0x100000n });
    expect(typeof a).not.toBe('string');
    expect(typeof b).not.toBe('string');
    const [wa, wb] = scif.rma.st(ep).remote.list;
    expect(wa.chunks.map((c) => c.addr)).toEqual([0, 1, 2].map((i) => h.msa(ram + i * 4096)));
    expect(wb.chunks).toHaveLength(600);
    expect(wb.chunks[599]).toEqual({ addr: h.msa(ram + 599 * 4096), pages: 1 });
    // scif_off_to_dma_addr() on the card's record.
    expect(scif.rma.st(ep).remote.translate(0x100000n + 513n * 4096n + 5n)).toEqual({ addr: h.msa(ram + 513 * 4096) + 5n, contig: 4091n });
  });

  it('REGISTER on an endpoint that is no longer connected → NACK and the image freed; FREE_VIRT frees an abandoned grant; ALLOC_REJ when GDDR is out', async () => {
    const { h, rma, connect, scif, run, free: cardFree } = await rig();
    const { hep, ep } = await connect();
    const before = cardFree();
    // FREE_VIRT after GNT
    const g = await rma.allocOnly(hep, 8);
    expect(g?.uop).toBe(SCIF.ALLOC_GNT);
    expect(cardFree()).toBe(before);
    // NACK: the card endpoint went DISCONNECTED between ALLOC_GNT and REGISTER (scif_recv_reg()).
    const ram = h.kzalloc(4096);
    const p = rma.register(hep, ram, 4096);
    await Promise.resolve();
    ep.state = 'DISCONNECTED';
    expect(String(await p)).toBe('ENOTCONN');
    expect(h.received(SCIF.REGISTER_NACK)).toHaveLength(1);
    expect(cardFree()).toBe(before);
    ep.state = 'CONNECTED';
    // More pages than the SCIF region holds: ALLOC_REJ → -ENOMEM.
    expect(String(await rma.register(hep, 0, 4096 * 100_000))).toBe('ENOMEM');
    expect(cardFree()).toBe(before);
  });

  it('100 rounds of connect / register / close leave no card memory behind', async () => {
    const { h, rma, connect, scif, base, run, free } = await rig();
    const ram = h.kzalloc(4 * 4096);
    for (let i = 0; i < 100; i++) {
      const { hep, ep } = await connect();
      const w = await rma.register(hep, ram, 4 * 4096, { offset: 0n });
      expect(typeof w).not.toBe('string');
      const buf = h.card.scif.api.allocBuffer!(8192);
      await run(ep.register!(buf, 0x4000n, 3, SCIF_MAP_FIXED, () => buf.free()));
      // Alternate who closes first.
      if (i % 2) {
        await rma.close(hep);
        await h.settle();
        await ep.close();
      } else {
        const c = ep.close();
        await h.settle();
        await c;
        await rma.close(hep);
      }
      await h.settle();
    }
    expect(scif.rma.endpointCount).toBe(0);
    expect(scif.rma.remote.imageCount).toBe(0);
    expect(free()).toBe(base);
  });

  it('node loss (card reset, host SCIF_EXIT) drops every window and image without a message', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    await rma.register(hep, h.kzalloc(4096), 4096);
    const buf = scif.api.allocBuffer!(4096);
    let freed = 0;
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED, () => freed++));
    await rma.allocOnly; // (no pending grant)
    const n = h.tx.length;
    h.remove();
    await h.settle();
    expect(scif.state).toBe('exited');
    expect(freed).toBe(1);
    expect(scif.rma.endpointCount).toBe(0);
    expect(h.tx.slice(n).map((m) => m.uop)).toEqual([SCIF.EXIT]);
  });
});

describe('SCIF RMA: card reset', () => {
  it('drops every window; a buffer freed after the reset does not touch the new session', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    await rma.register(hep, h.kzalloc(4096), 4096);
    const buf = scif.api.allocBuffer!(4096);
    let freed = 0;
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED, () => freed++));
    h.resetCard();
    await h.settle();
    expect(scif.state).toBe('off');
    expect(freed).toBe(1);
    expect(scif.rma.endpointCount).toBe(0);
    expect(scif.alloc.allocations()).toBe(0);
    expect(scif.buffers.allocations()).toBe(0);
    const fresh = scif.buffers.alloc(4096);
    buf.free();
    expect(scif.buffers.allocations()).toBe(1);
    scif.buffers.release(fresh);
  });
});

describe('SCIF RMA: the card registers its own memory', () => {
  it('ALLOC_REQ, the page list written into the host window through the SMPT, REGISTER → ACK; the host copies through BAR0 + CPA', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const buf = scif.api.allocBuffer!(3 * 4096);
    buf.write(0, fill(3 * 4096, 1));
    const off = await run(ep.register!(buf, 0n, 3, 0));
    // alloc_iova() top-down below 2^63: the first 3-page window.
    expect(off).toBe((1n << 63n) - 4096n * 4n);
    const [pw] = rma.remoteList(hep);
    expect(pw).toMatchObject({ offset: off, prot: 3, nrPages: 3 });
    expect(pw.dmaAddr).toEqual([buf.addr]);
    expect(pw.numPages).toEqual([3n]);
    expect(Buffer.from(rma.readFromCard(hep, off + 100n, 9000))).toEqual(Buffer.from(fill(3 * 4096, 1).subarray(100, 9100)));
    rma.writeToCard(hep, off + 4090n, Uint8Array.of(9, 8, 7, 6, 5, 4, 3, 2));
    expect([...buf.read(4090, 8)]).toEqual([9, 8, 7, 6, 5, 4, 3, 2]);
    expect(events(h, 'window-register').find((e) => e.owner === 'card')).toMatchObject({ len: 3 * 4096, pages: 3 });
    // Fixed offsets: checks of scif_register(), overlap refused.
    await expect(ep.register!(buf, 0x1001n, 3, SCIF_MAP_FIXED)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(ep.register!(buf, 0n, 4, SCIF_MAP_FIXED)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(ep.register!({ addr: buf.addr + 1n, len: 4096 }, 0n, 3, SCIF_MAP_FIXED)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(ep.register!(buf, 0n, 3, 0x40)).rejects.toMatchObject({ code: 'EINVAL' });
    const second = scif.api.allocBuffer!(4096);
    await expect(ep.register!(second, off + 4096n, 3, SCIF_MAP_FIXED)).rejects.toMatchObject({ code: 'ENOMEM' });
    expect(await run(ep.register!(second, 0x2000n, 1, SCIF_MAP_FIXED))).toBe(0x2000n);
  });

  it('ALLOC_REJ → ENOMEM, REGISTER_NACK → ENOTCONN, and the caller keeps its memory', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const buf = scif.api.allocBuffer!(4096);
    let freed = 0;
    rma.rejectAllocs = true;
    await expect(run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED, () => freed++))).rejects.toMatchObject({ code: 'ENOMEM' });
    rma.rejectAllocs = false;
    hep.state = 'CLOSING';
    await expect(run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED, () => freed++))).rejects.toMatchObject({ code: 'ENOTCONN' });
    expect(freed).toBe(0);
    expect(h.tx.filter((m) => m.uop === SCIF.REGISTER_NACK)).toHaveLength(1);
    expect(rma.peer.size).toBe(0);
    expect(scif.rma.st(ep).reserved.list).toHaveLength(0);
  });

  it('unregister → UNREGISTER_ACK frees; NACK while the host maps it keeps the window until SCIF_MUNMAP', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const a = scif.api.allocBuffer!(4096);
    const b = scif.api.allocBuffer!(2 * 4096);
    const freed: string[] = [];
    await run(ep.register!(a, 0n, 3, SCIF_MAP_FIXED, () => freed.push('a')));
    await run(ep.register!(b, 0x1000n, 3, SCIF_MAP_FIXED, () => freed.push('b')));
    // SCIF_WINDOW_FULL: not a whole window → ENXIO; unaligned → EINVAL.
    await expect(ep.unregister!(0x1000n, 0x1000n)).rejects.toMatchObject({ code: 'ENXIO' });
    await expect(ep.unregister!(0x800n, 0x1000n)).rejects.toMatchObject({ code: 'EINVAL' });
    const [, pb] = rma.remoteList(hep);
    rma.map(pb, 2);
    const u = ep.unregister!(0n, 0x3000n);
    await h.settle();
    await u;
    expect(h.received(SCIF.UNREGISTER_ACK).length + h.received(SCIF.UNREGISTER_NACK).length).toBe(0); // the host's rx: none from the card to the host
    expect(freed).toEqual(['a']);
    // The NACKed window is still the card's (scif_query_window() finds it) until the host's last mapping goes.
    expect(scif.rma.st(ep).self.list).toHaveLength(1);
    rma.map(pb, -2);
    await h.settle();
    expect(freed).toEqual(['a', 'b']);
    expect(scif.rma.st(ep).self.list).toHaveLength(0);
    expect(events(h, 'unregister-nack')).toHaveLength(1);
  });

  it('the host closing first: DISCNCT, then the card unregisters its windows with the zombie host endpoint', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const buf = scif.api.allocBuffer!(4096);
    let freed = 0;
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED, () => freed++));
    h.close(hep);
    await h.settle();
    expect(freed).toBe(1);
    expect(rma.peer.size).toBe(0);
    expect(h.tx.filter((m) => m.uop === SCIF.UNREGISTER_ACK)).toHaveLength(1);
    await ep.close();
  });
});

describe('SCIF RMA: card-initiated copies', () => {
  it('card program buffers end below the card DMA driver\'s GDDR (rings, bounce buffers) and the SCIF region', async () => {
    const { h, scif } = await rig();
    const dmaRegion = cardDmaRegion(h.card.aperture.byteLength);
    expect(scif.buffers.base + scif.buffers.size).toBe(dmaRegion.base);
    expect(dmaRegion.base + dmaRegion.size).toBe(scif.alloc.base);
    // The buffer handed out first is the highest one: it must not be where a channel's ring sits.
    const buf = scif.api.allocBuffer!(1 << 20);
    expect(buf.addr + BigInt(1 << 20)).toBeLessThanOrEqual(BigInt(dmaRegion.base));
  });

  it('writeto / readfrom between a card window and a host window, in steps contiguous at both ends', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(4 * 4096);
    h.ram.set(fill(4 * 4096, 3), ram);
    await rma.register(hep, ram, 4 * 4096, { offset: 0x40000n, chunkPages: 1 });
    const buf = scif.api.allocBuffer!(4 * 4096);
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED));
    await run(ep.readfrom!(0x10n, 3 * 4096, 0x40000n + 0x30n, 0)); // on a card DMA channel: the fake clock must run
    expect(Buffer.from(buf.read(0x10, 3 * 4096))).toEqual(Buffer.from(h.ram.subarray(ram + 0x30, ram + 0x30 + 3 * 4096)));
    buf.write(0, fill(4096, 9));
    await ep.writeto!(0n, 4096, 0x40000n + 4096n * 3n, SCIF_RMA_USECPU);
    expect(Buffer.from(h.ram.subarray(ram + 3 * 4096, ram + 4 * 4096))).toEqual(Buffer.from(fill(4096, 9)));
    // Outside the host's windows: ENXIO; outside ours: ENXIO; bad flags: EINVAL.
    await expect(ep.writeto!(0n, 4096, 0x50000n, 0)).rejects.toMatchObject({ code: 'ENXIO' });
    await expect(ep.writeto!(0x10000n, 4096, 0x40000n, 0)).rejects.toMatchObject({ code: 'ENXIO' });
    await expect(ep.writeto!(0n, 4096, 0x40000n, 0x100)).rejects.toMatchObject({ code: 'EINVAL' });
    // Protection: a read-only card window cannot be written into.
    const ro = scif.api.allocBuffer!(4096);
    await run(ep.register!(ro, 0x100000n, 1, SCIF_MAP_FIXED));
    await expect(ep.readfrom!(0x100000n, 8, 0x40000n, 0)).rejects.toMatchObject({ code: 'EPERM' });
  });

  it('the trace ties each DMA descriptor to the endpoint, the windows and the copy it serves', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(4 * 4096);
    h.ram.set(fill(4 * 4096, 4), ram);
    await rma.register(hep, ram, 4 * 4096, { offset: 0x40000n });
    const buf = scif.api.allocBuffer!(4 * 4096);
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED));
    await run(ep.readfrom!(0n, 2 * 4096, 0x40000n + 4096n, 0)); // same line offset: DMA straight from the host window
    await run(ep.writeto!(0x1000n, 4096, 0x40000n, 0));
    const starts = events(h, 'readfrom-start').concat(events(h, 'writeto-start'));
    expect(starts.map((e) => [e.ep, e.mover])).toEqual([[ep.id, 'dma'], [ep.id, 'dma']]);
    const [r, w] = starts.map((e) => e.copy);
    expect(r).not.toBe(w);
    expect(events(h, 'readfrom')[0]).toMatchObject({ copy: r, ep: ep.id, len: 2 * 4096 });
    const descs = h.env.tracer.events.filter((e) => e.kind === 'dma' && e.type === 'MEMCPY' && e.ch as number >= 4);
    const of = (copy: unknown) => descs.filter((e) => (e.rma as { copy?: number } | undefined)?.copy === copy);
    expect(of(r).length).toBeGreaterThan(0);
    expect(of(w).length).toBeGreaterThan(0);
    expect(of(r).length + of(w).length).toBe(descs.length); // every descriptor is named
    expect(of(r)[0].rma).toEqual({ ep: ep.id, src: 'host:0x41000', dst: 'card:0x0', copy: r });
    expect(of(w)[0].rma).toMatchObject({ ep: ep.id, src: 'card:0x1000', dst: 'host:0x40000' });
    // A host-initiated descriptor (the host programs its own channel): named by the windows it touches.
    expect(scif.rma.attribute(BigInt(h.msa(ram + 0x2040)), buf.addr + 0x3000n)).toEqual({ ep: ep.id, src: 'host:0x42040', dst: 'card:0x3000' });
    expect(scif.rma.attribute(0x123000n, 0x456000n)).toBeUndefined();
  });

  it('an injected mover carries the copy, and fences wait for it', async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(4096);
    await rma.register(hep, ram, 4096, { offset: 0n });
    const buf = scif.api.allocBuffer!(4096);
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED));
    buf.write(0, fill(4096, 5));
    let release!: () => void;
    const calls: [bigint, bigint, number][] = [];
    scif.rma.copies.dma = async (dst, src, len) => {
      calls.push([dst, src, len]);
      await new Promise<void>((r) => (release = r));
      await scif.rma.copies.cpu(dst, src, len);
    };
    const copy = ep.writeto!(0n, 4096, 0n, 0);
    await Promise.resolve();
    const mark = await run(ep.fenceMark!(SCIF_FENCE_INIT_SELF));
    // The host's WAIT on a mark taken now waits for the copy too.
    const hostMark = await rma.fence(hep, SCIF.MARK, 0n, 0n);
    expect(hostMark?.uop).toBe(SCIF.MARK_ACK);
    let waited = false;
    const wait = ep.fenceWait!(mark).then(() => (waited = true));
    const hostWait = rma.fence(hep, SCIF.WAIT, 0n, hostMark!.payload[2] | 0xffff_ffff_8000_0000n);
    await h.settle();
    expect(waited).toBe(false);
    expect(calls).toEqual([[h.msa(ram), buf.addr, 4096]]);
    release();
    await copy;
    await wait;
    await h.settle();
    expect((await hostWait)?.uop).toBe(SCIF.WAIT_ACK);
    expect(Buffer.from(h.ram.subarray(ram, ram + 4096))).toEqual(Buffer.from(fill(4096, 5)));
  });
});

describe('SCIF RMA: fences and signals', () => {
  it("the host's MARK / WAIT / SIG_LOCAL / SIG_REMOTE: ACKed, the 8-byte writes in card and host windows, NACK outside writable windows", async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(4096);
    await rma.register(hep, ram, 4096, { offset: 0x9000n });
    const buf = scif.api.allocBuffer!(4096);
    await run(ep.register!(buf, 0x2000n, 3, SCIF_MAP_FIXED));
    const ro = scif.api.allocBuffer!(4096);
    await run(ep.register!(ro, 0x3000n, 1, SCIF_MAP_FIXED));
    const mark = await rma.fence(hep, SCIF.MARK, 0n, 0n);
    expect(mark?.uop).toBe(SCIF.MARK_ACK);
    expect(mark!.payload[0]).toBe(hep.handle);
    expect((await rma.fence(hep, SCIF.WAIT, 0n, mark!.payload[2]))?.uop).toBe(SCIF.WAIT_ACK);
    // SIG_LOCAL: the receiver's (card's) own windows.
    expect((await rma.fence(hep, SCIF.SIG_LOCAL, 0x2010n, 0x1122334455667788n))?.uop).toBe(SCIF.SIG_ACK);
    expect(Buffer.from(buf.read(0x10, 8)).readBigUInt64LE()).toBe(0x1122334455667788n);
    // SIG_REMOTE: the requester's (host's) windows.
    const ack = await rma.fence(hep, SCIF.SIG_REMOTE, 0x9008n, 0xabcdn);
    expect(ack?.uop).toBe(SCIF.SIG_ACK);
    expect(ack!.payload[0]).toBe(hep.handle);
    expect(Buffer.from(h.ram.subarray(ram + 8, ram + 16)).readBigUInt64LE()).toBe(0xabcdn);
    // Read-only window, no window, the 8 bytes past a window's end: SIG_NACK.
    expect((await rma.fence(hep, SCIF.SIG_LOCAL, 0x3000n, 1n))?.uop).toBe(SCIF.SIG_NACK);
    expect((await rma.fence(hep, SCIF.SIG_LOCAL, 0x8000n, 1n))?.uop).toBe(SCIF.SIG_NACK);
    expect((await rma.fence(hep, SCIF.SIG_REMOTE, 0x9ffcn, 1n))?.uop).toBe(SCIF.SIG_NACK);
    expect(events(h, 'signal').length).toBeGreaterThanOrEqual(5);
  });

  it("the card's own fences: INIT_PEER marks are negative, waits and signals go to the host; INIT_SELF signals write both windows", async () => {
    const { h, rma, connect, scif, run } = await rig();
    const { hep, ep } = await connect();
    const ram = h.kzalloc(4096);
    await rma.register(hep, ram, 4096, { offset: 0x9000n });
    const buf = scif.api.allocBuffer!(4096);
    await run(ep.register!(buf, 0n, 3, SCIF_MAP_FIXED));
    const mark = await run(ep.fenceMark!(SCIF_FENCE_INIT_PEER));
    expect(mark).toBe((0x80000000 | 100) | 0);
    expect(mark).toBeLessThan(0);
    await run(ep.fenceWait!(mark));
    expect(h.tx.filter((m) => m.uop === SCIF.WAIT_ACK)).toHaveLength(1);
    // INIT_PEER, both flags: SIG_LOCAL (roff, rval) makes the host write rval at roff of its own windows,
    // then SIG_REMOTE (loff, lval) makes it write lval at loff of the card's.
    await run(ep.fenceSignal!(0x18n, 0x77n, 0x9000n, 0x66n, SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE));
    expect(Buffer.from(buf.read(0x18, 8)).readBigUInt64LE()).toBe(0x77n);
    expect(Buffer.from(h.ram.subarray(ram, ram + 8)).readBigUInt64LE()).toBe(0x66n);
    expect(h.rx.filter((m) => m.uop === SCIF.SIG_LOCAL || m.uop === SCIF.SIG_REMOTE).map((m) => [m.uop, m.payload[0], m.payload[1]])).toEqual([
      [SCIF.SIG_LOCAL, hep.handle, 0x9000n],
      [SCIF.SIG_REMOTE, hep.handle, 0x18n],
    ]);
    // INIT_SELF: the card writes lval at loff (own) and rval at roff (host).
    await run(ep.fenceSignal!(0x20n, 0x5555n, 0x9010n, 0x6666n, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE));
    expect(Buffer.from(buf.read(0x20, 8)).readBigUInt64LE()).toBe(0x5555n);
    expect(Buffer.from(h.ram.subarray(ram + 0x10, ram + 0x18)).readBigUInt64LE()).toBe(0x6666n);
    await expect(ep.fenceSignal!(0x2n, 0n, 0n, 0n, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(ep.fenceSignal!(0x5000n, 0n, 0n, 0n, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL)).rejects.toMatchObject({ code: 'ENXIO' });
    await expect(ep.fenceMark!(3)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(run(ep.fenceSignal!(0n, 0n, 0x5000n, 0n, SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL))).rejects.toMatchObject({ code: 'ENXIO' });
    expect(scif.rma.st(ep).self.list).toHaveLength(1);
  });
});
