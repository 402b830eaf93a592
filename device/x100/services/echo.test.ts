import { describe, expect, it } from 'vitest';
import { memoryTracer } from '../../../src/trace/tracer.ts';
import type { ScifEndpoint } from '../scif/api.ts';
import { ECHO_CHUNK, ECHO_PORT, EchoService } from './echo.ts';
import { pattern } from '../../../src/pattern.ts';
import { recvExact, sendAll } from './stream.ts';
import { FakeScifFabric } from './testing.ts';

async function dial(f: FakeScifFabric, port = ECHO_PORT): Promise<ScifEndpoint> {
  const ep = f.api(0).open();
  await ep.connect({ node: 1, port });
  return ep;
}

describe('echo service (port 2000)', () => {
  it('serves interleaving clients concurrently, byte for byte', async () => {
    const f = new FakeScifFabric();
    const echo = new EchoService();
    echo.start(f.api(1));
    const clients = await Promise.all([dial(f), dial(f), dial(f)]);
    await Promise.all(
      clients.map(async (ep, k) => {
        const data = pattern(k + 1, 64 * 1024 + 3);
        for (let o = 0; o < data.length; o += 2000) {
          const part = data.subarray(o, o + 2000);
          await sendAll(ep, part);
          const back = await recvExact(ep, part.length);
          expect(Buffer.from(back).equals(Buffer.from(part))).toBe(true);
        }
      }),
    );
    expect(echo.endpoints).toBe(4);
    await Promise.all(clients.map((c) => c.close()));
    await f.settle();
    expect(echo.endpoints).toBe(1);
    expect(f.openEndpoints(1)).toBe(1);
    echo.stop();
    await f.settle();
    expect(f.openEndpoints(1)).toBe(0);
    expect(f.pending).toBe(0);
  });

  it('a full-duplex client streams a megabyte through without deadlock', async () => {
    const f = new FakeScifFabric();
    const echo = new EchoService();
    echo.start(f.api(1));
    const ep = await dial(f);
    const data = pattern(9, 1 << 20);
    const [, back] = await Promise.all([sendAll(ep, data), recvExact(ep, data.length)]);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    echo.stop();
  });

  it('holds at most one chunk: a client that never reads fills both rings, then gets it all', async () => {
    const f = new FakeScifFabric();
    const echo = new EchoService();
    echo.start(f.api(1));
    const ep = await dial(f);
    const data = pattern(5, 64 * 1024);
    let accepted = 0;
    for (let i = 0; i < 50; i++) {
      accepted += await ep.send(data.subarray(accepted));
      await f.settle(2);
    }
    expect(accepted).toBeLessThanOrEqual(2 * f.ringSize + ECHO_CHUNK);
    expect(accepted).toBeGreaterThan(2 * f.ringSize);
    const [, back] = await Promise.all([sendAll(ep, data.subarray(accepted)), recvExact(ep, data.length)]);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
    echo.stop();
  });

  it('a peer that disconnects with data in flight ends only its own connection', async () => {
    const f = new FakeScifFabric();
    const tracer = memoryTracer();
    const echo = new EchoService({ tracer });
    echo.start(f.api(1));
    const a = await dial(f);
    const b = await dial(f);
    await a.send(pattern(1, 8000));
    await a.close();
    await f.settle();
    await sendAll(b, pattern(2, 100));
    expect(Buffer.from(await recvExact(b, 100)).equals(Buffer.from(pattern(2, 100)))).toBe(true);
    expect(echo.endpoints).toBe(2);
    expect(tracer.events.filter((e) => e.error)).toEqual([]);
    echo.stop();
    await f.settle();
    expect(await b.recv(1, { block: true }).catch((e: Error) => e.message)).toBe('ECONNRESET');
  });

  it('a taken port is traced, not thrown', () => {
    const f = new FakeScifFabric();
    const tracer = memoryTracer();
    f.api(1).open().bind(ECHO_PORT);
    const echo = new EchoService({ tracer });
    expect(() => echo.start(f.api(1))).not.toThrow();
    expect(tracer.events).toContainEqual(expect.objectContaining({ kind: 'service', service: 'echo', error: 'listen' }));
    expect(echo.endpoints).toBe(0);
  });

  it('restarts cleanly: start/stop 20 times with a live connection each time', async () => {
    const f = new FakeScifFabric();
    const echo = new EchoService();
    for (let i = 0; i < 20; i++) {
      echo.start(f.api(1));
      const ep = await dial(f);
      await sendAll(ep, pattern(i, 10));
      expect(Buffer.from(await recvExact(ep, 10)).equals(Buffer.from(pattern(i, 10)))).toBe(true);
      echo.stop();
      await f.settle();
      expect(f.openEndpoints(1)).toBe(0);
      await ep.close();
    }
    expect(f.pending).toBe(0);
  });
});
