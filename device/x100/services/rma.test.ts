import { describe, expect, it } from 'vitest';
import { memoryTracer } from '../../../src/trace/tracer.ts';
import { ERRNO, type ScifEndpoint } from '../scif/api.ts';
import { EchoService } from './echo.ts';
import { crc32, pattern } from '../../../src/pattern.ts';
import { RmaAgentService } from './rma.ts';
import {
  RMA_OP,
  RMA_PORT,
  RMA_REPLY_SIZE,
  decodeRmaReply,
  encodeRmaRequest,
  type RmaReply,
  type RmaRequest,
} from './rma-wire.ts';
import { recvExact, sendAll } from './stream.ts';
import { FakeScifFabric } from './testing.ts';

function rig(nodes = [0, 1]) {
  const f = new FakeScifFabric({ nodes });
  const tracer = memoryTracer();
  const agent = new RmaAgentService({ tracer });
  agent.start(f.api(1));
  const connect = async () => {
    const ep = f.api(0).open();
    await ep.connect({ node: 1, port: RMA_PORT });
    return ep;
  };
  const req = (op: number, o: Partial<RmaRequest> = {}): RmaRequest => ({
    op,
    flags: 0,
    a: 0n,
    b: 0n,
    c: 0n,
    d: 0n,
    tag: 0n,
    ...o,
  });
  const call = async (ep: ScifEndpoint, r: RmaRequest): Promise<RmaReply> => {
    await sendAll(ep, encodeRmaRequest(r));
    return decodeRmaReply(await recvExact(ep, RMA_REPLY_SIZE));
  };
  return { f, tracer, agent, connect, req, call };
}

describe('RMA agent (port 2003)', () => {
  it('answers every request in order with its tag; unknown ops get -EINVAL; on a node without RMA the RMA ops get -ENOSYS, window ops -ENXIO', async () => {
    const r = rig();
    const ep = await r.connect();
    const reqs = [
      r.req(0, { tag: 1n }),
      r.req(99, { tag: 2n }),
      r.req(RMA_OP.REGISTER, { a: 4096n, tag: 3n }),
      r.req(RMA_OP.FILL, { a: 0n, b: 8n, c: 1n, tag: 4n }),
      r.req(RMA_OP.CRC, { b: 16n, tag: 5n }),
      r.req(RMA_OP.PEEK, { tag: 6n }),
      r.req(RMA_OP.WRITETO, { tag: 7n }),
      r.req(RMA_OP.READFROM, { tag: 8n }),
      r.req(RMA_OP.FENCE_MARK, { tag: 9n }),
      r.req(RMA_OP.FENCE_WAIT, { tag: 10n }),
      r.req(RMA_OP.FENCE_SIGNAL, { tag: 11n }),
      r.req(RMA_OP.UNREGISTER, { tag: 0xfedcba9876543210n }),
      r.req(0xffffffff, { tag: 13n }),
    ];
    // All sent at once: the replies still come one per request, in order.
    await sendAll(ep, Buffer.concat(reqs.map(encodeRmaRequest)));
    const raw = await recvExact(ep, RMA_REPLY_SIZE * reqs.length);
    const replies = reqs.map((_, i) => decodeRmaReply(raw.subarray(i * RMA_REPLY_SIZE)));
    expect(replies.map((x) => x.tag)).toEqual(reqs.map((x) => x.tag));
    expect(replies.map((x) => x.status)).toEqual([
      -ERRNO.EINVAL,
      -ERRNO.EINVAL,
      -ERRNO.ENOSYS,
      -ERRNO.ENXIO,
      -ERRNO.ENXIO,
      -ERRNO.ENXIO,
      -ERRNO.ENOSYS,
      -ERRNO.ENOSYS,
      -ERRNO.ENOSYS,
      -ERRNO.ENOSYS,
      -ERRNO.ENOSYS,
      -ERRNO.ENOSYS,
      -ERRNO.EINVAL,
    ]);
    expect(Buffer.from(raw.subarray(0, 8)).toString('hex')).toBe('eaffffffffffffff'); // -22 as a little-endian s64
    expect(r.tracer.events).toContainEqual(expect.objectContaining({ kind: 'service', rma: 'REGISTER', status: -38 }));
    r.agent.stop();
  });

  it('DIAL to the card\'s own echo port returns the CRC32 of the pattern it echoed', async () => {
    const r = rig();
    const echo = new EchoService();
    echo.start(r.f.api(1));
    const ep = await r.connect();
    for (const n of [8, 0, 100_001]) {
      const rep = await r.call(ep, r.req(RMA_OP.DIAL, { a: 2000n, b: BigInt(n), c: 1n, d: 1n, tag: 42n }));
      expect(rep).toEqual({ status: 0, value: BigInt(crc32(pattern(1, n))), tag: 42n });
    }
    expect((await r.call(ep, r.req(RMA_OP.DIAL, { a: 2000n, b: 8n, c: 1n, d: 1n }))).value).toBe(0xab3b8c88n);
    await r.f.settle();
    expect(r.f.openEndpoints(1)).toBe(2 /* listeners */ + 1 /* agent */);
    echo.stop();
    r.agent.stop();
  });

  it('DIAL to the host: the host accepts, receives pattern(seed, n) and closes; value 0 for nothing back', async () => {
    const r = rig();
    const lep = r.f.api(0).open();
    lep.bind(5000);
    lep.listen(1);
    const ep = await r.connect();
    const host = (async () => {
      const { ep: h, peer } = await lep.accept({ block: true });
      expect(peer.node).toBe(1);
      const got = await recvExact(h, 50_000);
      await h.close();
      return got;
    })();
    const rep = await r.call(ep, r.req(RMA_OP.DIAL, { a: 5000n, b: 50_000n, c: 7n, d: 0n, tag: 3n }));
    expect(Buffer.from(await host).equals(Buffer.from(pattern(7, 50_000)))).toBe(true);
    expect(rep).toEqual({ status: 0, value: 0n, tag: 3n });
    r.agent.stop();
  });

  it('DIAL card to card: card 1 dials card 2\'s echo', async () => {
    const r = rig([0, 1, 2]);
    const echo2 = new EchoService();
    echo2.start(r.f.api(2));
    const ep = await r.connect();
    const rep = await r.call(ep, r.req(RMA_OP.DIAL, { a: 2000n, b: 12345n, c: 99n, d: 2n }));
    expect(rep.status).toBe(0);
    expect(rep.value).toBe(BigInt(crc32(pattern(99, 12345))));
    r.agent.stop();
    echo2.stop();
  });

  it('DIAL failures are errnos: refused, no such node, bad port; the agent carries on', async () => {
    const r = rig();
    const ep = await r.connect();
    expect((await r.call(ep, r.req(RMA_OP.DIAL, { a: 2000n, b: 8n, d: 1n }))).status).toBe(-ERRNO.ECONNREFUSED);
    expect((await r.call(ep, r.req(RMA_OP.DIAL, { a: 2000n, b: 8n, d: 9n }))).status).toBe(-ERRNO.ENODEV);
    expect((await r.call(ep, r.req(RMA_OP.DIAL, { a: 0x10000n, b: 8n }))).status).toBe(-ERRNO.EINVAL);
    expect((await r.call(ep, r.req(RMA_OP.DIAL, { a: 1n, b: 1n << 63n }))).status).toBe(-ERRNO.EINVAL);
    // A peer that closes before taking everything: the send error is the status.
    const lep = r.f.api(0).open();
    lep.bind(5001);
    lep.listen(1);
    void lep.accept({ block: true }).then(async ({ ep: h }) => {
      await recvExact(h, 100);
      await h.close();
    });
    const rep = await r.call(ep, r.req(RMA_OP.DIAL, { a: 5001n, b: 1_000_000n, d: 0n }));
    expect(rep.status).toBe(-ERRNO.ECONNRESET);
    expect((await r.call(ep, r.req(77))).status).toBe(-ERRNO.EINVAL);
    await r.f.settle();
    expect(r.f.openEndpoints(1)).toBe(2);
    r.agent.stop();
  });

  it('a partial request at disconnect ends that agent and frees its endpoint', async () => {
    const r = rig();
    const a = await r.connect();
    const b = await r.connect();
    await sendAll(a, encodeRmaRequest(r.req(1)).subarray(0, 30));
    await a.close();
    await r.f.settle();
    expect(r.agent.endpoints).toBe(2);
    expect(r.tracer.events).toContainEqual(expect.objectContaining({ error: 'partial request at disconnect', bytes: 30 }));
    expect((await r.call(b, r.req(5, { tag: 8n }))).tag).toBe(8n);
    r.agent.stop();
    await r.f.settle();
    expect(r.f.openEndpoints(1)).toBe(0);
  });

  it('stop() during a DIAL closes the dialled endpoint too', async () => {
    const r = rig();
    const lep = r.f.api(0).open();
    lep.bind(5002);
    lep.listen(1);
    const accepted = lep.accept({ block: true });
    const ep = await r.connect();
    await sendAll(ep, encodeRmaRequest(r.req(RMA_OP.DIAL, { a: 5002n, b: 1_000_000n, d: 0n })));
    await accepted;
    await r.f.settle();
    expect(r.f.openEndpoints(1)).toBe(3);
    r.agent.stop();
    await r.f.settle();
    expect(r.f.openEndpoints(1)).toBe(0);
  });

  it('garbage requests each get an answer with a negative errno; the agent stays up', async () => {
    const r = rig();
    const ep = await r.connect();
    const n = 200;
    const junk = Buffer.from(pattern(0x5eed, 48 * n));
    for (let i = 0; i < n; i++) junk.writeBigUInt64LE(BigInt(i), i * 48 + 40); // tags
    await sendAll(ep, junk);
    const raw = await recvExact(ep, RMA_REPLY_SIZE * n);
    for (let i = 0; i < n; i++) {
      const rep = decodeRmaReply(raw.subarray(i * RMA_REPLY_SIZE));
      expect(rep.tag).toBe(BigInt(i));
      expect(rep.status).toBeLessThan(0);
    }
    expect((await r.call(ep, r.req(RMA_OP.PEEK, { tag: 5n }))).status).toBe(-ERRNO.ENXIO);
    r.agent.stop();
  });
});
