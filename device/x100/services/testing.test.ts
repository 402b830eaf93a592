import { describe, expect, it } from 'vitest';
import { POLLHUP, POLLIN, POLLOUT, ScifError, type ScifEndpoint } from '../scif/api.ts';
import { FakeScifFabric, SCIF_ENDPT_QP_SIZE } from './testing.ts';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (e) {
    return e instanceof ScifError ? e.code : String(e);
  }
}

async function pair(f: FakeScifFabric, port = 3000): Promise<{ card: ScifEndpoint; host: ScifEndpoint; lep: ScifEndpoint }> {
  const lep = f.api(1).open();
  lep.bind(port);
  lep.listen(4);
  const host = f.api(0).open();
  const c = host.connect({ node: 1, port });
  const { ep: card, peer } = await lep.accept({ block: true });
  expect(await c).toEqual({ node: 0, port: peer.port });
  expect(card.peer).toEqual(peer);
  expect(host.peer).toEqual({ node: 1, port });
  return { card, host, lep };
}

describe('FakeScifFabric (test double of the card-side SCIF API)', () => {
  it('refuses a connect nobody listens to, and the endpoint may connect again', async () => {
    const f = new FakeScifFabric();
    const ep = f.api(0).open();
    expect(await code(ep.connect({ node: 1, port: 201 }))).toBe('ECONNREFUSED');
    expect(await code(ep.connect({ node: 7, port: 201 }))).toBe('ENODEV');
    const lep = f.api(1).open();
    lep.bind(201);
    lep.listen(1);
    const c = ep.connect({ node: 1, port: 201 });
    const a = await lep.accept({ block: true });
    expect((await c).node).toBe(0);
    expect(a.peer.node).toBe(0);
  });

  it('connect completes only at accept; accept without block gives EAGAIN; closing the listener refuses', async () => {
    const f = new FakeScifFabric();
    const lep = f.api(1).open();
    lep.bind(2000);
    lep.listen(2);
    expect(await code(lep.accept())).toBe('EAGAIN');
    let done = false;
    const c = f.api(0).open().connect({ node: 1, port: 2000 });
    void c.then(() => (done = true), () => (done = true));
    await f.settle();
    expect(done).toBe(false);
    expect(await lep.poll(POLLIN, 0)).toBe(POLLIN);
    const waiting = lep.accept({ block: true });
    await waiting;
    await c;
    const pendingAccept = lep.accept({ block: true });
    const c2 = f.api(0).open().connect({ node: 1, port: 2000 });
    await f.settle();
    void pendingAccept.catch(() => undefined);
    await lep.close();
    // The waiting accept took c2 before the close; a fresh connect is refused.
    expect(await code(c2)).toBe('ok');
    expect(await code(f.api(0).open().connect({ node: 1, port: 2000 }))).toBe('ECONNREFUSED');
  });

  it('bind: EINVAL for a port in use or a bound endpoint; port 0 takes a free one', () => {
    const f = new FakeScifFabric();
    const a = f.api(1).open();
    a.bind(2000);
    expect(() => f.api(1).open().bind(2000)).toThrow(/EINVAL/);
    expect(() => a.bind(2001)).toThrow(/EINVAL/);
    expect(f.api(1).open().bind(0)).toBeGreaterThanOrEqual(1024);
    expect(() => f.api(1).open().listen(1)).toThrow(/EINVAL/);
  });

  it('is a byte stream through a bounded ring: a blocking sender waits for the reader', async () => {
    const f = new FakeScifFabric();
    const { card, host } = await pair(f);
    const big = new Uint8Array(10000).map((_, i) => i * 7);
    expect(await host.send(big)).toBe(SCIF_ENDPT_QP_SIZE - 1); // non-blocking: what fits
    expect(await host.send(big)).toBe(0);
    expect(await host.poll(POLLOUT, 0)).toBe(0);
    let sent = -1;
    const s = host.send(big.subarray(4095), { block: true }).then((n) => (sent = n));
    await f.settle();
    expect(sent).toBe(-1);
    const got = await card.recv(10000, { block: true });
    await s;
    expect(sent).toBe(10000 - 4095);
    expect(Buffer.from(got).equals(Buffer.from(big))).toBe(true);
    expect(await card.recv(10, { block: false })).toHaveLength(0);
  });

  it('close: the peer reads what is left, then ECONNRESET, and polls POLLHUP', async () => {
    const f = new FakeScifFabric();
    const { card, host } = await pair(f);
    await card.send(new Uint8Array([1, 2, 3]), { block: true });
    const blocked = host.recv(100, { block: true });
    await card.close();
    expect([...(await blocked)]).toEqual([1, 2, 3]);
    expect(await code(host.recv(1, { block: true }))).toBe('ECONNRESET');
    expect(await code(host.send(new Uint8Array(1)))).toBe('ECONNRESET');
    expect((await host.poll(POLLIN)) & POLLHUP).toBe(POLLHUP);
    expect(await code(card.recv(1))).toBe('EBADF');
  });

  it('a blocked recv gets ECONNRESET when the peer closes with nothing left', async () => {
    const f = new FakeScifFabric();
    const { card, host } = await pair(f);
    const r = host.recv(24, { block: true });
    await f.settle();
    await card.close();
    expect(await code(r)).toBe('ECONNRESET');
    expect(await code(f.api(0).open().send(new Uint8Array(1)))).toBe('ENOTCONN');
  });

  it('poll waits for data, and times out through the injected timer', async () => {
    const timers: { ms: number; fn: () => void }[] = [];
    const f = new FakeScifFabric({ after: (ms, fn) => (timers.push({ ms, fn }), () => undefined) });
    const { card, host } = await pair(f);
    const p = card.poll(POLLIN, 500);
    expect(timers.map((t) => t.ms)).toEqual([500]);
    timers[0].fn();
    expect(await p).toBe(0);
    const q = card.poll(POLLIN);
    await host.send(new Uint8Array([9]));
    expect(await q).toBe(POLLIN);
  });

  it('removeNode disconnects every connection with the node; connects then get ENODEV', async () => {
    const f = new FakeScifFabric();
    const { card, host, lep } = await pair(f);
    f.removeNode(1);
    expect(await code(host.recv(1, { block: true }))).toBe('ECONNRESET');
    expect(await code(card.recv(1, { block: true }))).toBe('ECONNRESET');
    expect(await code(f.api(0).open().connect({ node: 1, port: 3000 }))).toBe('ENODEV');
    expect(f.api(0).nodeIds()).toEqual([0]);
    await Promise.all([card.close(), host.close(), lep.close()]);
    expect(f.pending).toBe(0);
  });
});
