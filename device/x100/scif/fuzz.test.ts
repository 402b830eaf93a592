import { describe, expect, it } from 'vitest';
import { LinuxScifHost, RAM_IOVA, RAM_SIZE } from './testing.ts';
import { SCIF, type ScifMsg, encodeMsg, newMsg } from './msg.ts';

async function up() {
  const h = new LinuxScifHost();
  await h.bringUp();
  return h;
}

const msg = (uop: number, payload: bigint[] = [], dstPort = 0): ScifMsg =>
  newMsg(uop, { src: { node: 0, port: 77 }, dst: { node: 1, port: dstPort }, payload: [payload[0] ?? 0n, payload[1] ?? 0n, payload[2] ?? 0n, payload[3] ?? 0n] });

/** The node still serves a fresh connection both ways. */
async function stillWorks(h: LinuxScifHost, port: number) {
  const l = h.card.scif.api.open();
  l.bind(port);
  l.listen(1);
  const acc = l.accept();
  const hep = h.connectStart(port);
  await h.settle();
  expect(h.connectFinish(hep)).toBe('connected');
  await h.settle();
  const { ep } = await acc;
  h.send(hep, Uint8Array.of(1, 2, 3));
  await h.settle();
  expect(Array.from(await ep.recv(3, { block: true }))).toEqual([1, 2, 3]);
}

describe('bad input from the host', () => {
  it('traces unknown opcodes and keeps going', async () => {
    const h = await up();
    for (const uop of [0, 40, 0x7fffffff]) h.nodeqpSendRaw(encodeMsg(msg(uop)));
    await h.settle();
    const errs = h.env.tracer.events.filter((e) => e.kind === 'scif' && e.error === 'Unknown message');
    expect(errs).toHaveLength(3);
    await stillWorks(h, 5000);
  });

  it('rejects a CNCT_REQ whose endpoint qp address is unmappable or has no SCIFEP_MAGIC', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(5001);
    l.listen(4);
    const hep = h.open();
    h.nodeqpSend(msg(SCIF.CNCT_REQ, [hep.handle, 0x1_0000_0000n], 5001)); // neither GDDR nor the system window
    h.nodeqpSend(msg(SCIF.CNCT_REQ, [hep.handle, h.msa(h.kzalloc(4096))], 5001)); // zeroed: no magic
    h.nodeqpSend(msg(SCIF.CNCT_REQ, [hep.handle, 0x80_7fff_0000n], 5001)); // window, but no guest RAM there
    await h.settle();
    expect(h.received(SCIF.CNCT_REJ).map((m) => m.payload[0])).toEqual([hep.handle, hep.handle, hep.handle]);
    expect(await l.poll(1, 0)).toBe(0);
    await stillWorks(h, 5002);
  });

  it('answers messages in the wrong state so the host never waits', async () => {
    const h = await up();
    const hep = h.open();
    // A grant for no card endpoint: GNTNACK to the host's accepting endpoint (p2).
    h.nodeqpSend(msg(SCIF.CNCT_GNT, [0x1234n, 0x5678n, hep.handle]));
    // DISCNCT of nothing: DISCNT_ACK echo all the same (scif_discnct()).
    h.nodeqpSend(msg(SCIF.DISCNCT, [hep.handle, 0x999n]));
    // GNTACK / REJ / CLIENT_SENT for no endpoint: nothing waits, traced.
    h.nodeqpSend(msg(SCIF.CNCT_GNTACK, [0x42n]));
    h.nodeqpSend(msg(SCIF.CNCT_REJ, [0x42n]));
    h.nodeqpSend(msg(SCIF.CLIENT_SENT, [0x42n]));
    await h.settle();
    expect(h.received(SCIF.CNCT_GNTNACK).map((m) => m.payload[0])).toEqual([hep.handle]);
    expect(h.received(SCIF.DISCNT_ACK).map((m) => m.payload[0])).toEqual([hep.handle]);
    await stillWorks(h, 5003);
  });

  it('answers bad RMA and fence requests with their NACKs (p0 = the host endpoint), never leaving the host waiting', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(5004);
    l.listen(1);
    const acc = l.accept();
    const hep = h.connectStart(5004);
    await h.settle();
    h.connectFinish(hep);
    await h.settle();
    await acc;
    const cardEp = hep.remoteEp;
    const free = h.card.scif.alloc.bytesFree();
    // The host only records the answers (h.rx).
    h.rmaHandler = () => true;
    // nr_pages 0, negative (an int on the host), and more than the card has: ALLOC_REJ with p2 echoed.
    h.nodeqpSend(msg(SCIF.ALLOC_REQ, [0n, 0n, 0xa1100n]));
    h.nodeqpSend(msg(SCIF.ALLOC_REQ, [0n, 0xffff_ffff_ffff_fff0n, 0xa1101n]));
    h.nodeqpSend(msg(SCIF.ALLOC_REQ, [0n, 1n << 20n, 0xa1102n]));
    // REGISTER of a window the card never granted.
    h.nodeqpSend(msg(SCIF.REGISTER, [cardEp, 0x1n, 0xf00dn]));
    // Signals at offsets in no window.
    h.nodeqpSend(msg(SCIF.SIG_LOCAL, [cardEp, 0n, 1n, 0xfe1cen]));
    h.nodeqpSend(msg(SCIF.SIG_REMOTE, [cardEp, 0n, 1n, 0xfe1cen]));
    // A mark and a wait on an idle endpoint are served at once.
    h.nodeqpSend(msg(SCIF.MARK, [cardEp, 0xfe1cen]));
    h.nodeqpSend(msg(SCIF.WAIT, [cardEp, 0xfe1cen, 0xffff_ffff_8000_0000n]));
    // UNREGISTER and FREE_VIRT of windows that never were: ACK / nothing.
    h.nodeqpSend(msg(SCIF.UNREGISTER, [0x77n, 0xbeefn]));
    h.nodeqpSend(msg(SCIF.FREE_VIRT, [cardEp, 0x77n, 0xbeefn, 19n]));
    await h.settle();
    expect(h.received(SCIF.ALLOC_REJ).map((m) => m.payload[2])).toEqual([0xa1100n, 0xa1101n, 0xa1102n]);
    expect(h.received(SCIF.REGISTER_NACK)[0].payload[2]).toBe(0xf00dn);
    expect(h.received(SCIF.SIG_NACK).map((m) => [m.payload[0], m.payload[3]])).toEqual([[hep.handle, 0xfe1cen], [hep.handle, 0xfe1cen]]);
    expect(h.received(SCIF.MARK_ACK)[0].payload.slice(0, 2)).toEqual([hep.handle, 0xfe1cen]);
    expect(h.received(SCIF.WAIT_ACK)[0].payload.slice(0, 2)).toEqual([hep.handle, 0xfe1cen]);
    expect(h.received(SCIF.UNREGISTER_ACK)[0].payload[1]).toBe(0xbeefn);
    expect(h.card.scif.alloc.bytesFree()).toBe(free);
  });

  it('queues replies while the host ring is full and delivers every one (no drops)', async () => {
    const h = await up();
    h.paused = true;
    let sent = 0;
    // 1600 NODE_ADDs naming node 0 as the peer, each answered by a NACK: more than the 64 KiB host ring holds (1489).
    while (sent < 1600) {
      while (sent < 1600 && h.nodeqpSendRaw(encodeMsg(newMsg(SCIF.NODE_ADD, { src: { node: 0, port: 0 }, dst: { node: 1, port: 0 } })))) sent++;
      await h.settle();
    }
    expect(h.card.scif.queued).toBeGreaterThan(100);
    h.paused = false;
    for (let i = 0; i < 20 && h.received(SCIF.NODE_ADD_NACK).length < 1600; i++) {
      await h.settle();
      await h.advance(1, 1);
    }
    expect(h.received(SCIF.NODE_ADD_NACK)).toHaveLength(1600);
  });

  it('guest RAM unmapped under open connections: ECONNRESET on the card, no exception', async () => {
    const h = await up();
    const l = h.card.scif.api.open();
    l.bind(5005);
    l.listen(1);
    const acc = l.accept();
    const hep = h.connectStart(5005);
    await h.settle();
    h.connectFinish(hep);
    await h.settle();
    const { ep } = await acc;
    h.env.host.unmap(RAM_IOVA, RAM_SIZE);
    await expect(ep.send(Uint8Array.of(1), { block: true })).rejects.toMatchObject({ code: 'ECONNRESET' });
    // The node's own messages to the vanished host ring are traced, not thrown.
    h.nodeqpSendRaw(encodeMsg(msg(SCIF.NODE_ADD)));
    await h.settle();
    expect(h.env.tracer.events.some((e) => e.kind === 'scif' && String(e.error).includes('host ring unreachable'))).toBe(true);
  });

  it('survives random and malformed records in its ring, then still works', async () => {
    const h = await up();
    h.tolerant = true;
    let seed = 12345;
    const rnd = () => {
      seed ^= seed << 13; seed >>>= 0;
      seed ^= seed >>> 17;
      seed ^= seed << 5; seed >>>= 0;
      return seed;
    };
    const r64 = () => (BigInt(rnd()) << 32n) | BigInt(rnd());
    for (let round = 0; round < 60; round++) {
      for (let i = 0; i < 20; i++) {
        const raw = new Uint8Array(44);
        for (let j = 0; j < 44; j++) raw[j] = rnd() & 0xff;
        const view = new DataView(raw.buffer);
        // Mostly plausible opcodes with random payloads, sometimes anything; never SCIF_EXIT (that ends the node by design).
        let uop = rnd() % 3 ? 1 + (rnd() % 39) : rnd();
        if (uop === SCIF.EXIT) uop = SCIF.CNCT_REQ;
        view.setUint32(8, uop, true);
        if (rnd() % 2) view.setBigUint64(20, rnd() % 2 ? h.msa(rnd() % (8 << 20)) : r64(), true);
        if (uop === SCIF.NODE_REMOVE) view.setBigUint64(12, 2n, true);
        h.nodeqpSendRaw(raw);
      }
      await h.settle();
      h.env.advance(100);
    }
    await h.settle();
    expect(h.card.scif.state).toBe('online');
    await stillWorks(h, 6000);
  });
});
