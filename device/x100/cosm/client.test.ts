import { describe, expect, it } from 'vitest';
import { memoryTracer } from '../../../src/trace/tracer.ts';
import type { ScifEndpoint } from '../scif/api.ts';
import { FakeClock, FakeScifFabric } from '../services/testing.ts';
import { COSM_HEARTBEAT_SEND_MSEC, COSM_SCIF_MAX_RETRIES, COSM_SCIF_RETRY_MSEC, CosmClient } from './client.ts';
import { COSM_MSG_ID, COSM_MSG_SIZE, MIC_STATUS, SCIF_COSM_LISTEN_PORT, decodeCosmMsg, encodeCosmMsg } from './msg.ts';

/** The host side: cosm_scif_server.c's listener on port 201. */
function rig() {
  const clock = new FakeClock();
  const fabric = new FakeScifFabric({ after: clock.after });
  const tracer = memoryTracer();
  const halts: number[] = [];
  const client = new CosmClient({
    after: clock.after,
    now: () => 1_000_000 + clock.now,
    tracer,
    halt: (s) => halts.push(s),
  });
  const settle = () => fabric.settle(5);
  const advance = (ms: number) => clock.advance(ms, settle);
  const listen = () => {
    const lep = fabric.api(0).open();
    lep.bind(SCIF_COSM_LISTEN_PORT);
    lep.listen(16);
    return lep;
  };
  /** cosm_set_online(): accept, then SYNC_TIME. */
  const accept = async (lep: ScifEndpoint, tv_sec = 1_000_005n, tv_nsec = 250_000_000n) => {
    const { ep, peer } = await lep.accept({ block: true });
    expect(peer.node).toBe(1);
    await ep.send(encodeCosmMsg({ id: BigInt(COSM_MSG_ID.COSM_MSG_SYNC_TIME), tv_sec, tv_nsec }), { block: true });
    return ep;
  };
  /** Whole messages the card has sent so far. */
  const drain = async (ep: ScifEndpoint) => {
    const b = Buffer.from(await ep.recv(64 * COSM_MSG_SIZE));
    expect(b.length % COSM_MSG_SIZE).toBe(0);
    const out = [];
    for (let o = 0; o < b.length; o += COSM_MSG_SIZE) out.push(decodeCosmMsg(b.subarray(o, o + COSM_MSG_SIZE)));
    return out;
  };
  return { clock, fabric, tracer, halts, client, settle, advance, listen, accept, drain };
}

const HB = BigInt(COSM_MSG_ID.COSM_MSG_HEARTBEAT);

describe('CosmClient (cosm_scif_client.c)', () => {
  it('connects to host port 201, records SYNC_TIME and answers it with a heartbeat', async () => {
    const r = rig();
    const lep = r.listen();
    r.client.start(r.fabric.api(1));
    const host = await r.accept(lep);
    await r.settle();
    expect(r.client.state).toBe('online');
    expect(r.client.syncTime).toEqual({ tv_sec: 1_000_005, tv_nsec: 250_000_000, receivedAt: 1_000_000, skewMs: 999_005_250 });
    const msgs = await r.drain(host);
    expect(msgs.map((m) => m.id)).toEqual([HB]);
    const kinds = r.tracer.events.filter((e) => e.kind === 'cosm');
    expect(kinds).toContainEqual(expect.objectContaining({ dir: 'rx', msg: 'COSM_MSG_SYNC_TIME', tv_sec: 1_000_005 }));
    expect(kinds).toContainEqual(expect.objectContaining({ dir: 'tx', msg: 'COSM_MSG_HEARTBEAT' }));
    expect(kinds).toContainEqual(expect.objectContaining({ state: 'online' }));
    r.client.stop();
  });

  it('sends a heartbeat every COSM_HEARTBEAT_SEND_SEC, restarting the interval after each host message', async () => {
    const r = rig();
    const lep = r.listen();
    r.client.start(r.fabric.api(1));
    const host = await r.accept(lep);
    await r.settle();
    expect((await r.drain(host)).length).toBe(1); // the answer to SYNC_TIME at t=0
    expect(COSM_HEARTBEAT_SEND_MSEC).toBe(30_000);
    await r.advance(29_999);
    expect(await r.drain(host)).toEqual([]);
    await r.advance(1);
    expect((await r.drain(host)).map((m) => m.id)).toEqual([HB]);
    await r.advance(30_000);
    expect((await r.drain(host)).length).toBe(1);
    // A host message at t=70 s: an immediate heartbeat, and the next one 30 s later.
    await r.advance(10_000);
    await host.send(encodeCosmMsg({ id: 1n, tv_sec: 2n, tv_nsec: 0n }), { block: true });
    await r.settle();
    expect((await r.drain(host)).length).toBe(1);
    expect(r.client.syncTime?.tv_sec).toBe(2);
    await r.advance(29_999);
    expect(await r.drain(host)).toEqual([]);
    await r.advance(1);
    expect((await r.drain(host)).length).toBe(1);
    // Several messages queued together are one batch: one heartbeat.
    await host.send(Buffer.concat([encodeCosmMsg({ id: 1n, tv_sec: 3n }), encodeCosmMsg({ id: 1n, tv_sec: 4n })]), {
      block: true,
    });
    await r.settle();
    expect((await r.drain(host)).length).toBe(1);
    expect(r.client.syncTime?.tv_sec).toBe(4);
    // An unknown id is traced and still answered.
    await host.send(encodeCosmMsg({ id: 77n }), { block: true });
    await r.settle();
    expect((await r.drain(host)).length).toBe(1);
    expect(r.tracer.events).toContainEqual(expect.objectContaining({ kind: 'cosm', error: 'unknown id', id: 77 }));
    r.client.stop();
    expect(r.clock.live).toBe(0);
  });

  it('answers COSM_MSG_SHUTDOWN with SHUTDOWN_STATUS MIC_POWER_OFF, then halts', async () => {
    const r = rig();
    const lep = r.listen();
    r.client.start(r.fabric.api(1));
    const host = await r.accept(lep);
    await r.settle();
    await r.drain(host);
    await host.send(encodeCosmMsg({ id: BigInt(COSM_MSG_ID.COSM_MSG_SHUTDOWN) }), { block: true });
    await r.settle();
    const msgs = await r.drain(host);
    // cosm_scif_client() sends its heartbeat after the batch; the reboot notifier then sends the status.
    expect(msgs.map((m) => m.id)).toEqual([HB, BigInt(COSM_MSG_ID.COSM_MSG_SHUTDOWN_STATUS)]);
    expect(msgs[1].shutdown_status).toBe(BigInt(MIC_STATUS.MIC_POWER_OFF));
    expect(r.halts).toEqual([MIC_STATUS.MIC_POWER_OFF]);
    expect(r.client.state).toBe('shutdown');
    expect(r.clock.live).toBe(0); // no more heartbeats
    await r.advance(60_000);
    expect(await r.drain(host)).toEqual([]);
    r.client.stop();
    expect(r.fabric.openEndpoints(1)).toBe(0);
  });

  it('retries the connect once a second, as many times as the real client, then gives up', async () => {
    const r = rig();
    r.client.start(r.fabric.api(1));
    await r.settle();
    expect(r.client.state).toBe('connecting');
    await r.advance(COSM_SCIF_RETRY_MSEC * 3);
    const refused = () => r.tracer.events.filter((e) => e.error === 'scif_connect').length;
    expect(refused()).toBe(4);
    // The host starts listening at t=3.5 s: the attempt at t=4 s gets through.
    await r.advance(500);
    const lep = r.listen();
    await r.advance(500);
    const host = await r.accept(lep);
    await r.settle();
    expect(r.client.state).toBe('online');
    expect((await r.drain(host)).length).toBe(1);
    r.client.stop();

    const g = rig();
    g.client.start(g.fabric.api(1));
    await g.settle();
    await g.advance(COSM_SCIF_RETRY_MSEC * (COSM_SCIF_MAX_RETRIES + 5));
    expect(g.tracer.events.filter((e) => e.error === 'scif_connect').length).toBe(COSM_SCIF_MAX_RETRIES);
    expect(g.client.state).toBe('failed');
    expect(g.clock.live).toBe(0);
    expect(g.fabric.openEndpoints(1)).toBe(0);
  });

  it('stops cleanly when the host goes away, without halting', async () => {
    const r = rig();
    const lep = r.listen();
    r.client.start(r.fabric.api(1));
    const host = await r.accept(lep);
    await r.settle();
    await host.close();
    await r.settle();
    expect(r.client.state).toBe('disconnected');
    expect(r.halts).toEqual([]);
    expect(r.clock.live).toBe(0);
    expect(r.fabric.openEndpoints(1)).toBe(0);
    expect(r.fabric.pending).toBe(0);
  });

  it('start/stop 20 times (and reconnects each time) leaks no timer, endpoint or waiter', async () => {
    const r = rig();
    const lep = r.listen();
    const api = r.fabric.api(1);
    for (let i = 0; i < 20; i++) {
      r.client.start(api);
      if (i % 2 === 0) {
        const host = await r.accept(lep, BigInt(i));
        await r.settle();
        expect(r.client.syncTime?.tv_sec).toBe(i);
        await r.advance(COSM_HEARTBEAT_SEND_MSEC);
        expect((await r.drain(host)).length).toBe(2);
        r.client.stop();
        await r.settle();
        expect(await host.poll(0x001, 0)).toBe(0x010); // POLLHUP, nothing left to read
        await host.close();
      } else {
        r.client.stop(); // stopped while connecting
      }
      await r.settle();
      expect(r.clock.live).toBe(0);
      expect(r.fabric.openEndpoints(1)).toBe(0);
    }
    // Starting twice in a row stops the first run.
    r.client.start(api);
    r.client.start(api);
    await r.settle();
    r.client.stop();
    await r.settle();
    expect(r.fabric.openEndpoints(1)).toBe(0);
    await lep.close();
    await r.settle();
    expect(r.fabric.pending).toBe(0);
    expect(r.clock.live).toBe(0);
  });

  it('a message split across sends is one message; a partial one at disconnect is traced', async () => {
    const r = rig();
    const lep = r.listen();
    r.client.start(r.fabric.api(1));
    const { ep: host } = await lep.accept({ block: true });
    const m = encodeCosmMsg({ id: 1n, tv_sec: 9n, tv_nsec: 1n });
    await host.send(m.subarray(0, 5), { block: true });
    await r.settle();
    expect(r.client.syncTime).toBeNull();
    await host.send(m.subarray(5), { block: true });
    await r.settle();
    expect(r.client.syncTime?.tv_sec).toBe(9);
    await host.send(m.subarray(0, 10), { block: true });
    await r.settle();
    await host.close();
    await r.settle();
    expect(r.client.state).toBe('disconnected');
    expect(r.tracer.events).toContainEqual(expect.objectContaining({ error: 'partial cosm_msg at disconnect', bytes: 10 }));
    expect(r.clock.live).toBe(0);
  });
});
