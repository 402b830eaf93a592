import { describe, expect, it } from 'vitest';
import { LinuxP2pHost, aperBase } from './p2p-testing.ts';
import { SCIF } from './msg.ts';
import { QP, SCIF_QP_ONLINE } from './qp.ts';
import { readU32 } from './mem.ts';
import { cardServices } from '../services/index.ts';
import { PEER_RMA_PORT, peerRmaRoundTrip } from '../services/peer-rma.ts';
import { crc32, pattern } from '../../../src/pattern.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';

async function twoCards(): Promise<LinuxP2pHost> {
  const f = new LinuxP2pHost(2, { apertureSize: 16 << 20 }, () => cardServices('echo,rma'));
  await f.bringUp();
  return f;
}

describe('SCIF P2P between two cards (scif_node_add(), scif_node_add_ack())', () => {
  it('NODE_ADD builds a queue pair each way: both peers online, both qp_states SCIF_QP_ONLINE', async () => {
    const f = await twoCards();
    const c1 = f.card(1).card.scif, c2 = f.card(2).card.scif;
    expect(c1.state).toBe('online');
    expect(c2.state).toBe('online');
    const l12 = c1.p2p.get(2)!, l21 = c2.p2p.get(1)!;
    expect(l12.state).toBe('online');
    expect(l21.state).toBe('online');
    // Each card's ACK names its qp as the other card reaches it: the qp's CPA + its own aperture's MSA.
    const acks1 = f.card(1).received(SCIF.NODE_ADD_ACK);
    expect(acks1).toHaveLength(1);
    expect(acks1[0].dst.node).toBe(2);
    expect(acks1[0].payload[0]).toBe(l12.qp + SYSTEM_WINDOW_BASE + aperBase(1));
    expect(l21.remoteQp).toBe(acks1[0].payload[0]);
    expect(readU32(c1.mem, l12.qp + BigInt(QP.qp_state))).toBe(SCIF_QP_ONLINE);
    expect(readU32(c2.mem, l21.qp + BigInt(QP.qp_state))).toBe(SCIF_QP_ONLINE);
    // The peer's doorbell is rung through its BAR4, a different card doorbell than the host's.
    expect(l12.db).not.toBe(c1.db);
    expect(c1.api.nodeIds()).toEqual([0, 1, 2]);
    expect(c2.api.nodeIds()).toEqual([0, 1, 2]);
  });

  it('card 1 connects to card 2\'s echo service: bytes go ring to ring through the peer apertures', async () => {
    const f = await twoCards();
    const api = f.card(1).card.scif.api;
    const ep = api.open();
    await f.run(ep.connect({ node: 2, port: 2000 }));
    const data = pattern(7, 3000);
    const got: Uint8Array[] = [];
    let n = 0;
    await f.run((async () => {
      while (n < data.length) {
        n += await ep.send(data.subarray(n, Math.min(n + 1000, data.length)), { block: true });
        got.push(await ep.recv(1000, { block: false }));
      }
      let have = got.reduce((a, b) => a + b.length, 0);
      while (have < data.length) {
        const b = await ep.recv(data.length - have, { block: true });
        got.push(b);
        have += b.length;
      }
    })());
    expect(Buffer.concat(got).equals(data)).toBe(true);
    // None of it went through the host: no CNCT_REQ or CLIENT_SENT reached node 0.
    expect(f.card(1).received(SCIF.CNCT_REQ)).toHaveLength(0);
    expect(f.card(1).received(SCIF.CLIENT_SENT)).toHaveLength(0);
    expect(f.card(2).card.scif.counts.rx.get('SCIF_CNCT_REQ')).toBe(1);
    await f.run(ep.close());
  });

  it('RMA between cards: card 1 writes card 2\'s window with its DMA engine, card 2\'s agent writes it back', async () => {
    const f = await twoCards();
    const s1 = f.card(1).card.scif;
    const free1 = s1.alloc.bytesFree(), free2 = f.card(2).card.scif.alloc.bytesFree();
    for (const len of [1, 4096, 100_000, 1 << 20]) {
      const back = await f.run(peerRmaRoundTrip(s1.api, () => s1.api.open(), 2, len, len));
      expect(Buffer.from(back).equals(pattern(len, len)), `len ${len}`).toBe(true);
    }
    await f.settle();
    expect(s1.alloc.bytesFree()).toBe(free1);
    expect(f.card(2).card.scif.alloc.bytesFree()).toBe(free2);
  });

  it('NODE_REMOVE of card 2: card 1 drops the queue pair and its connections, stays online, acks', async () => {
    const f = await twoCards();
    const s1 = f.card(1).card.scif;
    const free = s1.alloc.bytesFree();
    const ep = s1.api.open();
    await f.run(ep.connect({ node: 2, port: 2000 }));
    f.removeNode(2);
    await f.settle();
    expect(s1.p2p.get(2)).toBeUndefined();
    expect(s1.state).toBe('online');
    expect(f.removeAcks.get(2)).toBe(1);
    await expect(f.run(ep.recv(1, { block: true }))).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(f.run(s1.api.open().connect({ node: 2, port: 2000 }))).rejects.toMatchObject({ code: 'ENODEV' });
    expect(s1.api.nodeIds()).toEqual([0, 1]);
    await f.run(ep.close());
    expect(s1.alloc.bytesFree()).toBeGreaterThan(free);
  });

  it('a card reset and a new NODE_ADD: the peers find each other again', async () => {
    const f = await twoCards();
    f.removeNode(2);
    await f.settle();
    const h2 = f.card(2);
    h2.remove();
    await f.settle();
    h2.finishRemove();
    h2.resetCard();
    await f.advance(200);
    h2.restart();
    h2.boot();
    await f.advance(1500);
    expect(h2.alive).toBe(true);
    expect(h2.card.scif.p2p.list()).toEqual([]);
    f.p2pSetup();
    await f.settle();
    expect(f.card(1).card.scif.p2p.get(2)?.state).toBe('online');
    expect(h2.card.scif.p2p.get(1)?.state).toBe('online');
    const back = await f.run(peerRmaRoundTrip(f.card(1).card.scif.api, () => f.card(1).card.scif.api.open(), 2, 5000, 3));
    expect(Buffer.from(back).equals(pattern(3, 5000))).toBe(true);
  });

  it('a NODE_ADD naming node 0 or the card itself is NACKed; a NODE_ADD_ACK nobody asked for is traced', async () => {
    const f = await twoCards();
    const h1 = f.card(1);
    h1.nodeqpSend({ src: { node: 1, port: 0 }, dst: { node: 1, port: 0 }, uop: SCIF.NODE_ADD, payload: [0n, 0n, 0n, 0n] });
    h1.nodeqpSend({ src: { node: 7, port: 0 }, dst: { node: 1, port: 0 }, uop: SCIF.NODE_ADD_ACK, payload: [0n, 0n, 0n, 0n] });
    await f.settle();
    expect(h1.card.scif.p2p.get(2)?.state).toBe('online');
    expect(h1.env.tracer.events.some((e) => e.kind === 'scif' && String(e.error).includes('no SCIF_NODE_ADD came for node 7'))).toBe(true);
  });

  it('the peer-rma service (2010): the host asks card 1, gets back pattern(seed, N) that went card 1 → card 2 → card 1', async () => {
    const f = new LinuxP2pHost(2, { apertureSize: 16 << 20 }, () => cardServices('echo,rma,peer-rma'));
    await f.bringUp();
    const h1 = f.card(1);
    const hep = h1.connectStart(PEER_RMA_PORT);
    await f.settle();
    expect(h1.connectFinish(hep)).toBe('connected');
    const n = 10_000, seed = 77;
    const req = Buffer.alloc(12);
    req.writeBigUInt64LE(BigInt(n), 0);
    req.writeUInt32LE(seed, 8);
    expect(h1.send(hep, req)).toBe(12);
    const got: number[] = [];
    for (let i = 0; i < 2000 && got.length < n + 4; i++) {
      await f.advance(10, 10);
      got.push(...h1.recv(hep, n + 4 - got.length));
    }
    const back = Buffer.from(got);
    expect(back.subarray(0, n).equals(pattern(seed, n))).toBe(true);
    expect(back.readUInt32LE(n)).toBe(crc32(pattern(seed, n)));
    // Card 1's DMA engine wrote card 2's aperture: the engine traced a copy into the system window.
    expect(f.card(2).card.scif.counts.rx.get('SCIF_REGISTER')).toBeGreaterThan(0);
  });

  it('a reply goes back on the queue pair its request came in on, whatever its dst says (scif_nodeqp_send(scifdev, msg))', async () => {
    const f = await twoCards();
    const h1 = f.card(1);
    h1.tolerant = true;
    // scif_send_alloc_request() leaves msg.src and msg.dst unset: here dst names card 2.
    h1.nodeqpSend({ src: { node: 0x33, port: 7 }, dst: { node: 2, port: 9 }, uop: SCIF.ALLOC_REQ, payload: [0n, 1n, 0xabcn, 0n] });
    await f.settle();
    expect(h1.received(SCIF.ALLOC_GNT).map((m) => m.payload[2])).toEqual([0xabcn]);
    expect(f.card(2).card.scif.counts.rx.get('SCIF_ALLOC_GNT')).toBeUndefined();
  });
});
