import { describe, expect, it } from 'vitest';
import { LinuxScifHost } from './testing.ts';
import { SCIF } from './msg.ts';
import { QP, SCIFEP_MAGIC } from './qp.ts';

const scifEvents = (h: LinuxScifHost) => h.env.tracer.events.filter((e) => e.kind === 'scif');

describe('SCIF node bring-up', () => {
  it('comes up in protocol order: both SCIF_INITs, the host sees node 1 alive', async () => {
    const h = new LinuxScifHost();
    h.boot();
    // No clock tick needed: the card publishes at once and its INIT makes the host flush its 1 s poll.
    await h.settle();
    expect(h.alive).toBe(true);
    expect(h.card.scif.state).toBe('online');
    expect(h.received(SCIF.INIT)).toHaveLength(1);
    expect(h.card.scif.counts.rx.get('SCIF_INIT')).toBe(1);
    const dp = h.devicePage();
    // mic_next_card_db(): the boot ROM holds doorbell 7, so the least used is 0.
    expect(dp.h2cScifDb).toBe(0);
    expect(dp.scifCardDmaAddr).toBe(h.card.scif.cardQp);
    // The card qp image in GDDR, as the host maps it through BAR0.
    const ap = h.card.aperture, q = Number(dp.scifCardDmaAddr);
    expect(ap.readBigUInt64LE(q + QP.magic)).toBe(SCIFEP_MAGIC);
    expect(ap.readUInt32LE(q + QP['inbound_q.size'])).toBe(0x10000);
    expect(Number(ap.readBigUInt64LE(q + QP.local_buf))).toBeGreaterThanOrEqual(3 << 20);
    const states = scifEvents(h).filter((e) => e.action === 'state').map((e) => e.state);
    expect(states).toEqual(['waiting', 'published', 'online']);
  });

  it('publishes h2c_scif_db before scif_card_dma_addr, the address in one untorn store', async () => {
    const h = new LinuxScifHost();
    const dpIova = h.dpIova;
    const snaps: { db: number; addr: bigint }[] = [];
    const stores: { iova: bigint; len: number }[] = [];
    // The card reaches guest RAM through HostMemory.tryView() (memory.ts).
    const view = h.env.host.tryView.bind(h.env.host);
    h.env.host.tryView = (iova: bigint, len: number, write = false) => {
      const d = h.devicePage();
      snaps.push({ db: d.h2cScifDb, addr: d.scifCardDmaAddr });
      if (write && iova >= dpIova && iova < dpIova + 24n) stores.push({ iova: iova - dpIova, len });
      return view(iova, len, write);
    };
    await h.bringUp();
    const d = h.devicePage();
    snaps.push({ db: d.h2cScifDb, addr: d.scifCardDmaAddr });
    // h2c_scif_db (1 byte at 6), then scif_card_dma_addr (8 bytes at 16, one view).
    expect(stores).toEqual([{ iova: 6n, len: 1 }, { iova: 16n, len: 8 }]);
    // Every state the host could have polled: address 0, or the whole address with the doorbell already there.
    for (const s of snaps) expect(s.addr === 0n || (s.addr === h.card.scif.cardQp && s.db === 0)).toBe(true);
  });

  it('polls the device page every second while the scif module is not loaded', async () => {
    const h = new LinuxScifHost({ lateProbe: true });
    h.boot();
    await h.settle();
    expect(h.card.scif.state).toBe('waiting');
    await h.advance(3000);
    expect(h.card.scif.state).toBe('waiting');
    h.scifProbe();
    await h.advance(1000);
    expect(h.card.scif.state).toBe('online');
    expect(h.alive).toBe(true);
  });

  it('stays off the host on a bad host qp magic, and traces why', async () => {
    const h = new LinuxScifHost();
    new DataView(h.ram.buffer).setBigUint64(h.nodeQp!.qp.off, 0xbadn, true);
    await h.bringUp();
    expect(h.card.scif.state).toBe('failed');
    expect(h.devicePage().scifCardDmaAddr).toBe(0n);
    expect(scifEvents(h).some((e) => String(e.error).includes('SCIFEP_MAGIC'))).toBe(true);
  });

  it('traces one event per message with the opcode and payloads by name', async () => {
    const h = new LinuxScifHost();
    await h.bringUp();
    const msgs = scifEvents(h).filter((e) => e.dir);
    expect(msgs).toEqual([
      expect.objectContaining({ dir: 'tx', op: 'SCIF_INIT', src: '1:0', dst: '0:0' }),
      expect.objectContaining({ dir: 'rx', op: 'SCIF_INIT', dst: '1:0' }),
    ]);
  });

  it('answers SCIF_EXIT with SCIF_EXIT_ACK and writes nothing more', async () => {
    const h = new LinuxScifHost();
    await h.bringUp();
    h.remove();
    await h.settle();
    expect(h.exitState).toBe('completed');
    expect(h.card.scif.state).toBe('exited');
    const n = h.rx.length;
    h.finishRemove();
    h.resetCard();
    await h.advance(1000);
    expect(h.rx.length).toBe(n);
    expect(h.card.scif.state).toBe('off');
  });

  it('leaves on its own: 0xFF / 0 in the device page, SCIF_EXIT, waits for SCIF_EXIT_ACK', async () => {
    const h = new LinuxScifHost();
    await h.bringUp();
    const done = h.card.scif.exit();
    await h.settle();
    await done;
    expect(h.devicePage()).toMatchObject({ h2cScifDb: 0xff, scifCardDmaAddr: 0n });
    expect(h.received(SCIF.EXIT)).toHaveLength(1);
    expect(h.alive).toBe(false);
    expect(h.card.scif.state).toBe('exited');
  });

  it('answers NODE_ADD with NODE_ADD_ACK (its qp for the peer + base_addr, its doorbell), one naming itself with NACK, and NODE_REMOVE with NODE_REMOVE_ACK', async () => {
    const h = new LinuxScifHost();
    await h.bringUp();
    h.nodeqpSend({ src: { node: 2, port: 0 }, dst: { node: 1, port: 0 }, uop: SCIF.NODE_ADD, payload: [0x1000_0000n, 2n, 3n, 4n] });
    h.nodeqpSend({ src: { node: 1, port: 0 }, dst: { node: 1, port: 0 }, uop: SCIF.NODE_ADD, payload: [1n, 2n, 3n, 4n] });
    h.nodeqpSend({ src: { node: 0, port: 0 }, dst: { node: 1, port: 0 }, uop: SCIF.NODE_REMOVE, payload: [2n, 0n, 0n, 0n] });
    await h.settle();
    const link = h.card.scif.p2p;
    const acks = h.received(SCIF.NODE_ADD_ACK);
    expect(acks).toHaveLength(1);
    expect(acks[0]).toMatchObject({ src: { node: 1, port: 0 }, dst: { node: 2, port: 0 } });
    expect(acks[0].payload[0] - 0x1000_0000n).toBeGreaterThan(0n);
    expect(Number(acks[0].payload[2])).not.toBe(h.card.scif.db);
    expect(h.received(SCIF.NODE_ADD_NACK)).toEqual([expect.objectContaining({ src: { node: 1, port: 0 }, dst: { node: 1, port: 0 } })]);
    // NODE_REMOVE of node 2 took the half-built link away again.
    expect(link.list()).toEqual([]);
    expect(h.received(SCIF.NODE_REMOVE_ACK)).toEqual([expect.objectContaining({ src: { node: 1, port: 0 }, dst: { node: 0, port: 0 }, payload: [2n, 0n, 0n, 0n] })]);
    expect(h.card.scif.state).toBe('online');
  });

  it('goes away at once on a card reset: no more ring writes, timers cancelled', async () => {
    const h = new LinuxScifHost({ lateProbe: true });
    h.boot();
    await h.settle();
    h.resetCard();
    expect(h.card.scif.state).toBe('off');
    h.scifProbe();
    await h.advance(5000);
    expect(h.rx).toHaveLength(0);
    expect(h.devicePage().scifCardDmaAddr).toBe(0n);
    expect(h.card.intc.doorbells.subscribers(0)).toBe(0);
  });

  it('comes back after a reset and a new boot, ten times', async () => {
    const h = new LinuxScifHost();
    for (let i = 0; i < 10; i++) {
      await h.bringUp();
      expect(h.alive).toBe(true);
      h.remove();
      await h.settle();
      h.finishRemove();
      h.resetCard();
      await h.advance(200);
      h.restart();
    }
    expect(h.card.bootstrap.boots).toBe(10);
  });
});
