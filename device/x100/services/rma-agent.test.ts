import { describe, expect, it } from 'vitest';
import { memoryTracer } from '../../../src/trace/tracer.ts';
import { ERRNO } from '../scif/api.ts';
import { LinuxScifHost } from '../scif/testing.ts';
import { HostRma } from '../scif/rma/testing.ts';
import { SCIF_FENCE_INIT_PEER, SCIF_FENCE_INIT_SELF, SCIF_MAP_FIXED, SCIF_SIGNAL_LOCAL, SCIF_SIGNAL_REMOTE } from '../scif/rma/window.ts';
import { crc32, pattern } from '../../../src/pattern.ts';
import { RmaAgentService } from './rma.ts';
import { RMA_OP, RMA_PORT, RMA_REPLY_SIZE, decodeRmaReply, encodeRmaRequest, type RmaReply, type RmaRequest } from './rma-wire.ts';

/** Free card memory: the SCIF region and the card-program buffers. */
const cardFree = (h: LinuxScifHost) => h.card.scif.alloc.bytesFree() + h.card.scif.buffers.bytesFree();

/** The agent on the real card node, driven by the Linux host double over SCIF. */
async function rig() {
  const h = new LinuxScifHost();
  await h.bringUp();
  const rma = new HostRma(h);
  const agent = new RmaAgentService({ tracer: memoryTracer() });
  agent.start(h.card.scif.api);
  await h.settle();
  const base = cardFree(h);
  const hep = h.connectStart(RMA_PORT);
  await h.settle();
  expect(h.connectFinish(hep)).toBe('connected');
  await h.settle();
  let tag = 0n;
  const call = async (op: number, o: Partial<RmaRequest> = {}): Promise<RmaReply> => {
    const req: RmaRequest = { op, flags: 0, a: 0n, b: 0n, c: 0n, d: 0n, tag: ++tag, ...o };
    const out = encodeRmaRequest(req);
    for (let sent = 0; sent < out.length; ) {
      sent += h.send(hep, out.subarray(sent));
      await h.settle();
    }
    const got: number[] = [];
    for (let i = 0; i < 200 && got.length < RMA_REPLY_SIZE; i++) {
      await h.settle();
      got.push(...h.recv(hep, RMA_REPLY_SIZE - got.length));
    }
    const r = decodeRmaReply(Uint8Array.from(got));
    expect(r.tag).toBe(req.tag);
    return r;
  };
  return { h, rma, agent, hep, call, base };
}

describe('RMA agent on the card node (port 2003)', () => {
  it('REGISTER fresh zeroed GDDR, FILL / CRC / PEEK with the card CPU; the host sees the window and its bytes through BAR0', async () => {
    const { h, rma, hep, call } = await rig();
    const reg = await call(RMA_OP.REGISTER, { a: 0x3000n, b: 0x10000n, c: 3n, flags: SCIF_MAP_FIXED });
    expect(reg).toMatchObject({ status: 0, value: 0x10000n });
    const [w] = rma.remoteList(hep);
    expect(w).toMatchObject({ offset: 0x10000n, nrPages: 3, prot: 3 });
    expect([...rma.readFromCard(hep, 0x10000n, 16)]).toEqual(new Array(16).fill(0));
    expect((await call(RMA_OP.FILL, { a: 0x10000n, b: 0x3000n, c: 1n })).status).toBe(0);
    expect(Buffer.from(rma.readFromCard(hep, 0x10000n, 0x3000))).toEqual(Buffer.from(pattern(1, 0x3000)));
    expect(await call(RMA_OP.CRC, { a: 0x10000n, b: 8n })).toMatchObject({ status: 0, value: 0xab3b8c88n });
    expect((await call(RMA_OP.PEEK, { a: 0x10000n })).value).toBe(Buffer.from(pattern(1, 8)).readBigUInt64LE());
    // The host writes through BAR0 (mmap, or a USECPU copy); the agent's CRC sees it.
    rma.writeToCard(hep, 0x10ffcn, pattern(7, 100));
    expect((await call(RMA_OP.CRC, { a: 0x10ffcn, b: 100n })).value).toBe(BigInt(crc32(pattern(7, 100))));
    // Non-fixed: the offset alloc_iova() gives, top-down below 2^63.
    const r2 = await call(RMA_OP.REGISTER, { a: 0x1000n, c: 3n });
    expect(r2).toMatchObject({ status: 0, value: (1n << 63n) - 0x2000n });
    // Larger than the whole SCIF region (1 MiB here): taken from the GDDR below it.
    expect(h.card.scif.alloc.size).toBe(1 << 20);
    expect((await call(RMA_OP.REGISTER, { a: 0x180000n, b: 0x100000n, c: 3n, flags: SCIF_MAP_FIXED })).status).toBe(0);
    expect(await call(RMA_OP.CRC, { a: 0x17fff8n + 0x100000n, b: 8n })).toMatchObject({ status: 0, value: BigInt(crc32(new Uint8Array(8))) });
  });

  it('WRITETO / READFROM against a host window, fences and signals', async () => {
    const { h, rma, hep, call } = await rig();
    const ram = h.kzalloc(0x4000);
    h.ram.set(pattern(3, 0x4000), ram);
    const hw = await rma.register(hep, ram, 0x4000, { offset: 0x80000n });
    expect(typeof hw).not.toBe('string');
    await call(RMA_OP.REGISTER, { a: 0x4000n, b: 0n, c: 3n, flags: SCIF_MAP_FIXED });
    expect((await call(RMA_OP.READFROM, { a: 0n, b: 0x4000n, c: 0x80000n })).status).toBe(0);
    expect((await call(RMA_OP.CRC, { a: 0n, b: 0x4000n })).value).toBe(BigInt(crc32(pattern(3, 0x4000))));
    await call(RMA_OP.FILL, { a: 0x100n, b: 0x1000n, c: 9n });
    expect((await call(RMA_OP.WRITETO, { a: 0x100n, b: 0x1000n, c: 0x80040n })).status).toBe(0);
    expect(Buffer.from(h.ram.subarray(ram + 0x40, ram + 0x1040))).toEqual(Buffer.from(pattern(9, 0x1000)));
    const mark = await call(RMA_OP.FENCE_MARK, { flags: SCIF_FENCE_INIT_SELF });
    expect(mark.status).toBe(0);
    expect((await call(RMA_OP.FENCE_WAIT, { a: mark.value })).status).toBe(0);
    const pm = await call(RMA_OP.FENCE_MARK, { flags: SCIF_FENCE_INIT_PEER });
    expect(pm.status).toBe(0);
    expect(pm.value >> 31n).toBe((1n << 33n) - 1n); // a negative int, sign-extended
    expect((await call(RMA_OP.FENCE_WAIT, { a: pm.value })).status).toBe(0);
    // INIT_SELF signal: lval at loff (card window), rval at roff (host window); PEEK checks the card side.
    const sig = await call(RMA_OP.FENCE_SIGNAL, { a: 0x2000n, b: 0x1111n, c: 0x80008n, d: 0x2222n, flags: SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE });
    expect(sig.status).toBe(0);
    expect((await call(RMA_OP.PEEK, { a: 0x2000n })).value).toBe(0x1111n);
    expect(Buffer.from(h.ram.subarray(ram + 8, ram + 16)).readBigUInt64LE()).toBe(0x2222n);
    // The host's own INIT_PEER signal into the agent's window, checked with PEEK.
    expect((await rma.fence(hep, 36, 0x3008n, 0xfeedn))?.uop).toBe(38);
    expect((await call(RMA_OP.PEEK, { a: 0x3008n })).value).toBe(0xfeedn);
  });

  it('errors as the card-side SCIF API returns them', async () => {
    const { h, rma, hep, call } = await rig();
    const ram = h.kzalloc(0x1000);
    await rma.register(hep, ram, 0x1000, { offset: 0x80000n, prot: 1 });
    const st = async (op: number, o: Partial<RmaRequest>) => (await call(op, o)).status;
    expect(await st(RMA_OP.REGISTER, { a: 0n, c: 3n })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.REGISTER, { a: 100n, c: 3n })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.REGISTER, { a: 0x1000n, b: 0x800n, c: 3n, flags: SCIF_MAP_FIXED })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.REGISTER, { a: 0x1000n, c: 4n })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.REGISTER, { a: 1n << 30n, c: 3n })).toBe(-ERRNO.ENOMEM);
    expect(await st(RMA_OP.REGISTER, { a: 0x1000n, b: 0n, c: 1n, flags: SCIF_MAP_FIXED })).toBe(0);
    expect(await st(RMA_OP.FILL, { a: 0x1000n, b: 8n, c: 1n })).toBe(-ERRNO.ENXIO);
    expect(await st(RMA_OP.CRC, { a: 0xff8n, b: 16n })).toBe(-ERRNO.ENXIO);
    expect(await st(RMA_OP.PEEK, { a: 0x5000n })).toBe(-ERRNO.ENXIO);
    // Card window read-only: READFROM into it → EPERM; host window read-only: WRITETO into it → EPERM.
    expect(await st(RMA_OP.READFROM, { a: 0n, b: 8n, c: 0x80000n })).toBe(-ERRNO.EPERM);
    expect(await st(RMA_OP.WRITETO, { a: 0n, b: 8n, c: 0x80000n })).toBe(-ERRNO.EPERM);
    expect(await st(RMA_OP.WRITETO, { a: 0n, b: 8n, c: 0x90000n })).toBe(-ERRNO.ENXIO);
    expect(await st(RMA_OP.WRITETO, { a: 0n, b: 8n, c: 0x80000n, flags: 0x40 })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.UNREGISTER, { a: 0x4000n, b: 0x1000n })).toBe(-ERRNO.ENXIO);
    expect(await st(RMA_OP.FENCE_MARK, { flags: 3 })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.FENCE_SIGNAL, { a: 2n, flags: SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL })).toBe(-ERRNO.EINVAL);
    expect(await st(RMA_OP.FENCE_SIGNAL, { a: 0n, flags: SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL })).toBe(-ERRNO.EPERM);
    expect(await st(RMA_OP.FENCE_SIGNAL, { c: 0x9000n, flags: SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL })).toBe(-ERRNO.ENXIO);
  });

  it('UNREGISTER frees the memory; closing the connection unregisters and frees the rest (no leak)', async () => {
    const { h, rma, hep, call, base } = await rig();
    const afterConnect = cardFree(h);
    await call(RMA_OP.REGISTER, { a: 0x2000n, b: 0n, c: 3n, flags: SCIF_MAP_FIXED });
    await call(RMA_OP.REGISTER, { a: 0x1000n, b: 0x2000n, c: 3n, flags: SCIF_MAP_FIXED });
    expect(rma.remoteList(hep)).toHaveLength(2);
    expect((await call(RMA_OP.UNREGISTER, { a: 0n, b: 0x2000n })).status).toBe(0);
    expect(rma.remoteList(hep)).toHaveLength(1);
    expect(cardFree(h)).toBe(afterConnect - 0x1000);
    expect((await call(RMA_OP.FILL, { a: 0n, b: 8n })).status).toBe(-ERRNO.ENXIO);
    // The host closes: DISCNCT; the card unregisters the last window with the zombie host endpoint.
    h.close(hep);
    await h.settle();
    await h.settle();
    expect(rma.peer.size).toBe(0);
    expect(cardFree(h)).toBe(base);
  });

  it('UNREGISTER while the host maps the window: NACKed, the bytes stay reachable until SCIF_MUNMAP frees them', async () => {
    const { h, rma, hep, call } = await rig();
    await call(RMA_OP.REGISTER, { a: 0x1000n, b: 0n, c: 3n, flags: SCIF_MAP_FIXED });
    await call(RMA_OP.FILL, { a: 0n, b: 0x1000n, c: 5n });
    const free = cardFree(h);
    const [w] = rma.remoteList(hep);
    rma.map(w, 1);
    expect((await call(RMA_OP.UNREGISTER, { a: 0n, b: 0x1000n })).status).toBe(0);
    expect(Buffer.from(rma.readFromCard(hep, 0n, 0x1000))).toEqual(Buffer.from(pattern(5, 0x1000)));
    expect(cardFree(h)).toBe(free);
    rma.map(w, -1);
    await h.settle();
    expect(cardFree(h)).toBe(free + 0x1000);
  });
});
