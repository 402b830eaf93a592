/**
 * The card's COSM client on the real card model, against the Linux host
 * double: what cosm_scif_server.c sees (online on accept, SYNC_TIME,
 * heartbeats, SHUTDOWN → SHUTDOWN_STATUS → the card leaves SCIF).
 */
import { describe, expect, it } from 'vitest';
import { LinuxScifHost, type HostEndpoint } from '../scif/testing.ts';
import { SCIF } from '../scif/msg.ts';
import { COSM_MSG_ID, COSM_MSG_SIZE, MIC_STATUS, SCIF_COSM_LISTEN_PORT, decodeCosmMsg, encodeCosmMsg } from './msg.ts';

async function cosmUp() {
  const h = new LinuxScifHost({ cosm: true });
  // cosm_scif_init(): the host listens on port 201 before any card boots.
  const lep = h.listen(SCIF_COSM_LISTEN_PORT);
  await h.bringUp();
  await h.settle();
  expect(lep.conreqs.length, 'the card connected to port 201').toBe(1);
  const ep = h.acceptStart(lep)!;
  await h.settle();
  expect(ep.state).toBe('CONNECTED');
  return { h, ep };
}

/** Every whole cosm_msg the host has received so far on `ep`. */
async function hostMsgs(h: LinuxScifHost, ep: HostEndpoint): Promise<ReturnType<typeof decodeCosmMsg>[]> {
  await h.settle();
  const out: ReturnType<typeof decodeCosmMsg>[] = [];
  for (;;) {
    let b: Uint8Array;
    try {
      b = h.recv(ep, COSM_MSG_SIZE);
    } catch (e) {
      // _scif_recv(): what is left in the ring is read first, then the disconnect shows.
      if ((e as Error).message === 'ECONNRESET') break;
      throw e;
    }
    if (b.length === 0) break;
    expect(b.length).toBe(COSM_MSG_SIZE);
    out.push(decodeCosmMsg(b));
    await h.settle();
  }
  return out;
}

describe('COSM client on the card', () => {
  it('connects to host port 201 at bring-up and takes SYNC_TIME', async () => {
    const { h, ep } = await cosmUp();
    h.send(ep, encodeCosmMsg({ id: BigInt(COSM_MSG_ID.COSM_MSG_SYNC_TIME), tv_sec: 1_800_000_000n, tv_nsec: 5n }));
    await h.settle();
    expect(h.card.cosm.state).toBe('online');
    expect(h.card.cosm.syncTime).toMatchObject({ tv_sec: 1_800_000_000, tv_nsec: 5 });
    // cosm_scif_client(): a heartbeat after each batch of host messages.
    expect((await hostMsgs(h, ep)).map((m) => Number(m.id))).toEqual([COSM_MSG_ID.COSM_MSG_HEARTBEAT]);
  });

  it('sends a heartbeat every 30 s, well inside the host watchdog (COSM_HEARTBEAT_TIMEOUT_SEC)', async () => {
    const { h, ep } = await cosmUp();
    await hostMsgs(h, ep);
    await h.advance(90_000, 1000);
    const beats = (await hostMsgs(h, ep)).filter((m) => Number(m.id) === COSM_MSG_ID.COSM_MSG_HEARTBEAT);
    expect(beats.length).toBe(3);
  });

  it('answers COSM_MSG_SHUTDOWN with SHUTDOWN_STATUS = MIC_POWER_OFF, then leaves SCIF with SCIF_EXIT', async () => {
    const { h, ep } = await cosmUp();
    await hostMsgs(h, ep);
    h.send(ep, encodeCosmMsg({ id: BigInt(COSM_MSG_ID.COSM_MSG_SHUTDOWN) }));
    await h.settle();
    const msgs = await hostMsgs(h, ep);
    // cosm_scif_client(): the heartbeat after the batch, then the reboot notifier's status.
    expect(msgs.map((m) => Number(m.id))).toEqual([COSM_MSG_ID.COSM_MSG_HEARTBEAT, COSM_MSG_ID.COSM_MSG_SHUTDOWN_STATUS]);
    expect(Number(msgs[1].shutdown_status)).toBe(MIC_STATUS.MIC_POWER_OFF);
    await h.advance(1000);
    expect(h.received(SCIF.EXIT).length, 'card-initiated SCIF_EXIT').toBe(1);
    expect(h.alive).toBe(false);
    expect(h.card.scif.state).toBe('exited');
  });
});
