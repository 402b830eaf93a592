import { describe, expect, it } from 'vitest';
import { LinuxScifHost, type HostEndpoint } from './testing.ts';
import { SCIF } from './msg.ts';
import { POLLHUP, POLLIN, POLLOUT, ScifError, type ScifEndpoint } from './api.ts';

async function up() {
  const h = new LinuxScifHost();
  await h.bringUp();
  expect(h.alive).toBe(true);
  return h;
}

/** Host connect to card port `port`, settled. */
async function hostConnect(h: LinuxScifHost, port: number): Promise<HostEndpoint> {
  const ep = h.connectStart(port);
  await h.settle();
  const r = h.connectFinish(ep);
  await h.settle();
  if (r !== 'connected') throw new Error(r);
  return ep;
}

/** Collect what the card sends until `n` bytes arrived on the host. */
async function hostRecvAll(h: LinuxScifHost, ep: HostEndpoint, n: number): Promise<Uint8Array> {
  const out: number[] = [];
  for (let i = 0; i < 1000 && out.length < n; i++) {
    out.push(...h.recv(ep, n - out.length));
    await h.settle();
  }
  return Uint8Array.from(out);
}

const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

describe('host connects to a card listener', () => {
  it('accepts, and bytes flow both ways with CLIENT_SENT / CLIENT_RCVD', async () => {
    const h = await up();
    const api = h.card.scif.api;
    const l = api.open();
    expect(l.bind(2000)).toBe(2000);
    l.listen(4);
    const acc = l.accept();
    const hep = await hostConnect(h, 2000);
    const { ep, peer } = await acc;
    expect(peer).toEqual({ node: 0, port: hep.port });
    expect(ep.peer).toEqual({ node: 0, port: hep.port });
    // GNT carried p0 = the host's endpoint pointer, exactly.
    expect(h.received(SCIF.CNCT_GNT)[0].payload[0]).toBe(hep.handle);

    expect(h.send(hep, bytes(100))).toBe(100);
    await h.settle();
    const got = await ep.recv(100, { block: true });
    expect(Array.from(got)).toEqual(Array.from(bytes(100)));
    await h.settle();
    expect(h.received(SCIF.CLIENT_RCVD).every((m) => m.payload[0] === hep.handle)).toBe(true);

    expect(await ep.send(bytes(300, 7), { block: true })).toBe(300);
    await h.settle();
    expect(Array.from(await hostRecvAll(h, hep, 300))).toEqual(Array.from(bytes(300, 7)));
  });

  it('rejects an unbound port so the host connect gets ECONNREFUSED', async () => {
    const h = await up();
    const hep = h.connectStart(4242);
    await h.settle();
    expect(h.connectFinish(hep)).toBe('ECONNREFUSED');
    expect(h.received(SCIF.CNCT_REJ)[0].payload[0]).toBe(hep.handle);
  });

  it('rejects beyond the backlog', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(2001);
    l.listen(1);
    const a = h.connectStart(2001);
    const b = h.connectStart(2001);
    await h.settle();
    expect(h.connectFinish(b)).toBe('ECONNREFUSED');
    expect(h.connectFinish(a)).toBe('pending');
    const acc = l.accept();
    await h.settle();
    expect(h.connectFinish(a)).toBe('connected');
    await h.settle();
    await acc;
  });

  it('a GNTNACK frees the granted endpoint; a blocking accept then takes the next request', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(2004);
    l.listen(4);
    const acc = l.accept();
    const bad = h.connectStart(2004);
    await h.settle();
    expect(bad.state).toBe('MAPPING');
    // scif_conn_func() could not map the card qp: GNTNACK with p0 = the card's endpoint.
    h.nodeqpSend({ src: { node: 0, port: bad.port }, dst: { node: 1, port: 2004 }, uop: SCIF.CNCT_GNTNACK, payload: [bad.remoteEp, 0n, 0n, 0n] });
    await h.settle();
    const good = await hostConnect(h, 2004);
    const { peer } = await acc;
    expect(peer.port).toBe(good.port);
    expect(h.card.scif.endpoints.count).toBe(2);
  });

  it('streams more than a ring: a blocking card send waits for CLIENT_RCVD', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(2002);
    l.listen(1);
    const acc = l.accept();
    const hep = await hostConnect(h, 2002);
    const { ep } = await acc;
    const data = bytes(20_000, 3);
    let done = false;
    const p = ep.send(data, { block: true }).then((n) => { done = true; return n; });
    await h.settle();
    expect(done).toBe(false);
    const got = await hostRecvAll(h, hep, data.length);
    expect(await p).toBe(20_000);
    expect(Buffer.from(got).equals(Buffer.from(data))).toBe(true);
  });

  it('non-blocking send puts in what fits (4095 bytes of a 4 KiB ring), then 0 until the host reads', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(2005);
    l.listen(1);
    const acc = l.accept();
    const hep = await hostConnect(h, 2005);
    const { ep } = await acc;
    expect(await ep.send(bytes(10_000))).toBe(4095);
    expect(await ep.send(bytes(10))).toBe(0);
    await h.settle();
    expect((await hostRecvAll(h, hep, 4095)).length).toBe(4095);
    expect(await ep.send(bytes(10))).toBe(10);
  });

  it('non-blocking recv returns what is there; poll reports POLLIN / POLLOUT / POLLHUP', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(2003);
    l.listen(1);
    expect(await l.poll(POLLIN, 0)).toBe(0);
    const hep = h.connectStart(2003);
    await h.settle();
    expect(await l.poll(POLLIN, 0)).toBe(POLLIN);
    const acc = l.accept();
    await h.settle();
    h.connectFinish(hep);
    await h.settle();
    const { ep } = await acc;
    expect((await ep.recv(10)).length).toBe(0);
    expect(await ep.poll(POLLIN | POLLOUT, 0)).toBe(POLLOUT);
    const waiting = ep.poll(POLLIN);
    h.send(hep, bytes(5));
    await h.settle();
    expect(await waiting).toBe(POLLIN);
    expect((await ep.recv(10)).length).toBe(5);
    h.close(hep);
    await h.settle();
    expect(await ep.poll(POLLIN, 0)).toBe(POLLHUP);
  });
});

describe('card connects to a host listener', () => {
  it('connects (CNCT_REQ → GNT → GNTACK) and exchanges bytes', async () => {
    const h = await up();
    const lep = h.listen(201);
    const ep = h.card.scif.api.open();
    const conn = ep.connect({ node: 0, port: 201 });
    await h.settle();
    const req = lep.conreqs[0];
    expect(req.src.node).toBe(1);
    expect(req.dst.port).toBe(201);
    const cep = h.acceptStart(lep)!;
    await h.settle();
    const self = await conn;
    expect(self.node).toBe(1);
    expect(self.port).toBeGreaterThan(1088);
    expect(cep.state).toBe('CONNECTED');
    expect(h.received(SCIF.CNCT_GNTACK)[0].payload[0]).toBe(cep.handle);
    expect(await ep.send(bytes(24), { block: true })).toBe(24);
    await h.settle();
    expect(Array.from(await hostRecvAll(h, cep, 24))).toEqual(Array.from(bytes(24)));
    h.send(cep, bytes(24, 9));
    await h.settle();
    expect(Array.from(await ep.recv(24, { block: true }))).toEqual(Array.from(bytes(24, 9)));
  });

  it('gets ECONNREFUSED from a host port nobody listens on', async () => {
    const h = await up();
    const ep = h.card.scif.api.open();
    const conn = ep.connect({ node: 0, port: 999 }).catch((e: unknown) => e);
    await h.settle();
    expect(await conn).toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('gives up after SCIF_NODE_ALIVE_TIMEOUT (30 s) without an answer: ECONNREFUSED, like scif_conn_func()', async () => {
    const h = await up();
    h.paused = true;
    const ep = h.card.scif.api.open();
    const conn = ep.connect({ node: 0, port: 201 }).catch((e: unknown) => e);
    await h.advance(29_000, 1000);
    let settled = false;
    void conn.then(() => { settled = true; });
    await h.settle();
    expect(settled).toBe(false);
    await h.advance(1000, 1000);
    expect(await conn).toMatchObject({ code: 'ECONNREFUSED' });
    // The card's endpoint qp went back to the allocator.
    expect(h.card.scif.alloc.allocations()).toBe(2);
  });

  it('gets ENODEV before the node is up, and for nodes other than 0', async () => {
    const h = new LinuxScifHost({ lateProbe: true });
    h.boot();
    await h.settle();
    await expect(h.card.scif.api.open().connect({ node: 0, port: 201 })).rejects.toMatchObject({ code: 'ENODEV' });
    expect(h.card.scif.api.nodeIds()).toEqual([1]);
    h.scifProbe();
    await h.advance(1000);
    expect(h.card.scif.api.nodeIds()).toEqual([0, 1]);
    await expect(h.card.scif.api.open().connect({ node: 2, port: 201 })).rejects.toMatchObject({ code: 'ENODEV' });
  });
});

describe('disconnect', () => {
  async function pair() {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(3000);
    l.listen(8);
    const acc = l.accept();
    const hep = await hostConnect(h, 3000);
    const { ep } = await acc;
    return { h, l, hep, ep };
  }

  it('host closes: DISCNT_ACK echo, card recv drains then ECONNRESET', async () => {
    const { h, hep, ep } = await pair();
    h.send(hep, bytes(8));
    h.close(hep);
    await h.settle();
    expect(hep.discon).toBe(true);
    expect(h.received(SCIF.DISCNT_ACK)[0].payload).toEqual([hep.handle, h.tx.find((m) => m.uop === SCIF.DISCNCT)!.payload[1], 0n, 0n]);
    expect((await ep.recv(8, { block: true })).length).toBe(8);
    await expect(ep.recv(8, { block: true })).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(ep.send(bytes(1))).rejects.toMatchObject({ code: 'ECONNRESET' });
    await ep.close();
  });

  it('card closes: DISCNCT with both handles, host endpoint DISCONNECTED, close resolves on DISCNT_ACK', async () => {
    const { h, hep, ep } = await pair();
    const closing = ep.close();
    await h.settle();
    await closing;
    const d = h.received(SCIF.DISCNCT)[0];
    expect(d.payload[1]).toBe(hep.handle);
    expect(hep.state).toBe('DISCONNECTED');
    expect(h.card.scif.endpoints.count).toBe(1); // only the listener
  });

  it('a blocked card recv wakes with ECONNRESET when the host exits', async () => {
    const { h, ep } = await pair();
    const r = ep.recv(10, { block: true });
    h.remove();
    await h.settle();
    await expect(r).rejects.toMatchObject({ code: 'ECONNRESET' });
  });

  it('card reset with connections open: card endpoints fail at once, the host double sees disconnect, nothing throws', async () => {
    const { h, hep, ep, l } = await pair();
    const r = ep.recv(10, { block: true });
    const a = l.accept();
    h.card.reset('test');
    await expect(r).rejects.toBeInstanceOf(ScifError);
    await expect(a).rejects.toMatchObject({ code: 'ENODEV' });
    await expect(ep.send(bytes(4))).rejects.toMatchObject({ code: 'ECONNRESET' });
    // The host later stops the card: SCIF_EXIT goes unanswered (30 s), then the peer is removed.
    h.remove();
    await h.advance(31_000, 1000);
    h.finishRemove();
    expect(hep.state).toBe('DISCONNECTED');
    await ep.close();
  });
});

describe('many connections', () => {
  it('serves 32 host connections to one listener at once, each with its own bytes', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(4000);
    l.listen(64);
    const echo = async (ep: ScifEndpoint) => {
      const b = await ep.recv(64, { block: true });
      await ep.send(b.map((x) => x ^ 0xff), { block: true });
    };
    const served: Promise<void>[] = [];
    const accepting = (async () => {
      for (let i = 0; i < 32; i++) {
        const { ep } = await l.accept();
        served.push(echo(ep));
      }
    })();
    const heps = Array.from({ length: 32 }, () => h.connectStart(4000));
    // Accept is serial (each waits for its GNTACK), so the host finishes one connect per grant.
    const results = heps.map(() => 'pending');
    for (let round = 0; round < 100 && results.includes('pending'); round++) {
      await h.settle();
      heps.forEach((e, i) => { if (results[i] === 'pending') results[i] = h.connectFinish(e); });
    }
    expect(results.every((r) => r === 'connected')).toBe(true);
    await h.settle();
    await accepting;
    heps.forEach((e, i) => h.send(e, bytes(64, i)));
    await h.settle();
    await Promise.all(served);
    for (let i = 0; i < 32; i++) {
      const got = await hostRecvAll(h, heps[i], 64);
      expect(Array.from(got)).toEqual(Array.from(bytes(64, i).map((x) => x ^ 0xff)));
    }
    // Each connection's GNT named its own host endpoint.
    expect(new Set(h.received(SCIF.CNCT_GNT).map((m) => m.payload[0])).size).toBe(32);
  });
});

describe('ports', () => {
  it('binds like scif_bind(): auto ports from 1089, EINVAL for a taken port, EISCONN once listening', async () => {
    const h = await up();
    const api = h.card.scif.api;
    const a = api.open(), b = api.open(), c = api.open();
    expect(a.bind(0)).toBe(1089);
    expect(b.bind(0)).toBe(1090);
    expect(() => c.bind(1089)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => a.bind(5)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    a.listen(1);
    expect(() => a.listen(1)).toThrow(expect.objectContaining({ code: 'EISCONN' }));
    await a.close();
    expect(c.bind(1089)).toBe(1089);
  });
});
