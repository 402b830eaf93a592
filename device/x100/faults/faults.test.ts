/**
 * Fault injection: the spec grammar, and each fault kind against the
 * blocks it acts on, driven as Linux drives them (LinuxDmaChannel,
 * LinuxScifHost): what the host sees, and that the card serves on after.
 */
import { describe, expect, it } from 'vitest';
import { memoryTracer, type Tracer } from '../../../src/trace/tracer.ts';
import { FakeClock } from '../../../src/testing/fake-clock.ts';
import { patternFill } from '../../../src/pattern.ts';
import { CardFaults } from './faults.ts';
import { FaultSpecError, formatFaultSpec, parseFaultSpec } from './spec.ts';
import { DCHERR, DCHERRMSK, DCHERR_DESC_TYPE, DCHERR_DST_ADDR, DCHERR_RING_FETCH, DCHERR_SRC_ADDR, DSTAT, DSTAT_QUIESCE, dmaReg } from '../dma/regs.ts';
import { DMA_PREP_INTERRUPT, LinuxDmaChannel, makeDmaRig } from '../dma/testing.ts';
import { LinuxScifHost } from '../scif/testing.ts';
import { SCIF } from '../scif/msg.ts';
import { COSM_MSG_ID, COSM_MSG_SIZE, SCIF_COSM_LISTEN_PORT, decodeCosmMsg } from '../cosm/msg.ts';
import { ECHO_PORT } from '../services/echo.ts';
import { cardServices } from '../services/index.ts';
import { POSTCODE_CRASH, POSTCODE_READY } from '../boot/regs.ts';

const MiB = 1 << 20;
const events = (t: Tracer) => (t as unknown as { events: Record<string, unknown>[] }).events;
const faultEvents = (t: Tracer) => events(t).filter((e) => e.kind === 'fault');

describe('fault specs', () => {
  it('parse every kind with its defaults, and print back canonically', () => {
    expect(parseFaultSpec('dma-error:chan=2')).toEqual({ kind: 'dma-error', chan: 2, after: 0, bit: 'src' });
    expect(parseFaultSpec('dma-error:chan=1,after=3,bit=ring')).toEqual({ kind: 'dma-error', chan: 1, after: 3, bit: 'ring' });
    expect(parseFaultSpec('drop-doorbell:db=0')).toEqual({ kind: 'drop-doorbell', db: 0, count: 1 });
    expect(parseFaultSpec('drop-irq:vector=15,count=4')).toEqual({ kind: 'drop-irq', vector: 15, count: 4 });
    expect(parseFaultSpec('card-crash')).toEqual({ kind: 'card-crash', after: 0 });
    expect(parseFaultSpec('card-crash:after=2.5')).toEqual({ kind: 'card-crash', after: 2.5 });
    expect(parseFaultSpec('dma-slow:chan=0,mbps=10')).toEqual({ kind: 'dma-slow', chan: 0, mbps: 10 });
    expect(formatFaultSpec(parseFaultSpec('dma-error:bit=dst,chan=3'))).toBe('dma-error:chan=3,after=0,bit=dst');
    expect(formatFaultSpec(parseFaultSpec('card-crash'))).toBe('card-crash:after=0');
  });

  it('refuse mistakes with one line that names them', () => {
    const bad: [string, RegExp][] = [
      ['dma-err:chan=1', /unknown kind "dma-err" \(kinds: dma-error, drop-doorbell, drop-irq, card-crash, dma-slow\)/],
      ['dma-error', /chan=\.\.\. is required/],
      ['dma-error:chan=8', /chan=8: want an integer from 0 to 7/],
      ['dma-error:chan=1,bit=len', /bit=len: want one of src, dst, type, ring/],
      ['dma-error:chan=1,chan=2', /chan given twice/],
      ['drop-irq:vector=16', /vector=16: want an integer from 0 to 15/],
      ['drop-doorbell:db=1,count=0', /count=0: want an integer from 1/],
      ['drop-doorbell:db', /db needs a value/],
      ['card-crash:after=-1', /after=-1: want a number from 0/],
      ['card-crash:when=1', /unknown key "when" \(keys: after\)/],
      ['dma-slow:chan=0', /mbps=\.\.\. is required/],
      ['dma-slow:chan=0,mbps=fast', /mbps=fast: want a number/],
    ];
    for (const [spec, re] of bad) {
      expect(() => parseFaultSpec(spec), spec).toThrow(FaultSpecError);
      expect(() => parseFaultSpec(spec), spec).toThrow(re);
    }
  });
});

function dmaRig() {
  const tracer = memoryTracer();
  const clock = new FakeClock();
  const faults = new CardFaults({ tracer, after: clock.after, crash: () => {} });
  const rig = makeDmaRig({ ramSize: 16 * MiB, tracer, faults });
  const ch = (n: number) => {
    const c = new LinuxDmaChannel(rig, n, n * 2 * MiB, 8 * MiB + 64 * n);
    expect(c.setup()).toBe(true);
    return c;
  };
  return { rig, faults, ch, tracer };
}

describe('dma-error', () => {
  it('fails the (after+1)-th descriptor from now with the DCHERR bit asked for, as a real error looks', () => {
    for (const [bit, mask] of [['src', DCHERR_SRC_ADDR], ['dst', DCHERR_DST_ADDR], ['type', DCHERR_DESC_TYPE], ['ring', DCHERR_RING_FETCH]] as const) {
      const { rig, faults, ch, tracer } = dmaRig();
      const c = ch(1);
      c.memcpy(0x1000n, rig.hostAddr(9 * MiB), 64); // one descriptor, before the fault is armed
      c.issuePending();
      rig.drain();
      faults.arm(parseFaultSpec(`dma-error:chan=1,after=2,bit=${bit}`));
      rig.ram.fill(0x5a, 9 * MiB, 9 * MiB + 4096);
      for (const off of [0x2000n, 0x3000n, 0x4000n, 0x5000n]) c.memcpy(off, rig.hostAddr(9 * MiB), 64);
      c.issuePending();
      rig.drain();
      // Descriptors 1 and 2 ran; 3 failed and stopped the channel there.
      expect([0x2000, 0x3000, 0x4000, 0x5000].map((o) => rig.aperture[o])).toEqual([0x5a, 0x5a, 0, 0]);
      expect(rig.r(dmaReg(1, DCHERR)), bit).toBe(mask);
      expect(rig.r(dmaReg(1, DSTAT))).toBe(DSTAT_QUIESCE | 3);
      expect(rig.raised).toEqual([30]); // the SBOX error source
      const err = events(tracer).find((e) => e.kind === 'dma' && e.op === 'error');
      expect(err).toMatchObject({ ch: 1, idx: 3, err: mask });
      expect(faultEvents(tracer).map((e) => e.action)).toEqual(['armed', 'fired']);
      // Software clears DCHERR (W1C): the descriptor is retried and the rest runs; the fault was one-shot.
      rig.w(dmaReg(1, DCHERR), mask);
      rig.drain();
      expect(rig.r(dmaReg(1, DCHERR))).toBe(0);
      expect(c.count()).toBe(5);
      expect([0x4000, 0x5000].map((o) => rig.aperture[o])).toEqual([0x5a, 0x5a]);
      expect(faults.list()).toEqual([{ id: 1, spec: `dma-error:chan=1,after=2,bit=${bit}`, state: 'done', fired: 1, remaining: 0 }]);
    }
  });

  it('leaves other channels alone, and is masked like a real error by DCHERRMSK', () => {
    const { rig, faults, ch } = dmaRig();
    const c0 = ch(0);
    const c1 = ch(1);
    faults.arm(parseFaultSpec('dma-error:chan=1'));
    rig.w(dmaReg(1, DCHERRMSK), DCHERR_SRC_ADDR);
    c0.memcpy(0x1000n, rig.hostAddr(9 * MiB), 64, DMA_PREP_INTERRUPT);
    c1.memcpy(0x2000n, rig.hostAddr(9 * MiB), 64);
    c0.issuePending();
    c1.issuePending();
    rig.drain();
    expect(rig.r(dmaReg(0, DCHERR))).toBe(0);
    expect(c0.count()).toBe(3);
    expect(rig.r(dmaReg(1, DCHERR))).toBe(DCHERR_SRC_ADDR);
    expect(rig.raised).toEqual([8]); // channel 0's completion; the masked error raises nothing
  });
});

describe('dma-slow', () => {
  it('throttles one channel to the rate given, on the injected clock; mbps=0 lifts it', () => {
    const { rig, faults, ch } = dmaRig();
    const c = ch(0);
    const fast = ch(1);
    faults.arm(parseFaultSpec('dma-slow:chan=0,mbps=1')); // 1 MB/s: 512 KiB ≈ 524 ms
    patternFill(rig.ram.subarray(9 * MiB, 11 * MiB), 3);
    c.memcpy(0n, rig.hostAddr(9 * MiB), 2 * MiB, DMA_PREP_INTERRUPT); // 4 descriptors of 512 KiB + 2 status
    fast.memcpy(BigInt(2 * MiB), rig.hostAddr(9 * MiB), 2 * MiB, DMA_PREP_INTERRUPT);
    c.issuePending();
    fast.issuePending();
    rig.drain();
    expect(fast.count(), 'the other channel runs at full speed').toBe(6);
    expect(c.count(), 'one 512 KiB descriptor, then a pause').toBe(1);
    rig.clock.advance(500);
    rig.drain();
    expect(c.count()).toBe(1);
    rig.clock.advance(30);
    rig.drain();
    expect(c.count()).toBe(2);
    for (let i = 0; i < 3; i++) {
      rig.clock.advance(525);
      rig.drain();
    }
    expect(c.count()).toBe(6);
    expect(rig.aperture.subarray(0, 2 * MiB).equals(Buffer.from(rig.ram.subarray(9 * MiB, 11 * MiB)))).toBe(true);
    faults.arm(parseFaultSpec('dma-slow:chan=0,mbps=0'));
    c.memcpy(0n, rig.hostAddr(9 * MiB), 2 * MiB);
    c.issuePending();
    rig.drain();
    expect(c.count()).toBe(10);
    expect(faults.list().map((f) => f.state)).toEqual(['lifted', 'done']);
  });

  it('does not let a DSTAT poll run a paused channel', () => {
    const { rig, faults, ch } = dmaRig();
    const c = ch(0);
    faults.arm(parseFaultSpec('dma-slow:chan=0,mbps=1'));
    c.memcpy(0n, rig.hostAddr(9 * MiB), MiB);
    c.issuePending();
    expect(() => c.syncWait(c.txs[0], 1000)).toThrow(/did not complete/);
    expect(c.count()).toBe(1);
  });
});

/** A card with COSM and the card services up against the Linux host double. */
async function serving() {
  const h = new LinuxScifHost({ cosm: true, services: cardServices('echo') });
  const cosm = h.listen(SCIF_COSM_LISTEN_PORT);
  await h.bringUp();
  await h.settle();
  const ep = h.acceptStart(cosm)!;
  await h.settle();
  expect(h.card.cosm.state).toBe('online');
  return { h, cosmEp: ep };
}

/** Connect to the card's echo service and echo `text`; returns what came back. */
async function echo(h: LinuxScifHost, text: string): Promise<string> {
  const ep = h.connectStart(ECHO_PORT);
  await h.settle();
  expect(h.connectFinish(ep)).toBe('connected');
  h.send(ep, Buffer.from(text));
  await h.settle();
  const back = Buffer.from(h.recv(ep, text.length)).toString();
  h.close(ep);
  await h.settle();
  return back;
}

describe('drop-doorbell', () => {
  it('loses the next K rings of the card doorbell: the message waits in the ring until the next ring', async () => {
    const { h } = await serving();
    const tracer = h.env.tracer;
    h.card.faults.arm(parseFaultSpec(`drop-doorbell:db=${h.rdb},count=1`));
    const ep = h.connectStart(ECHO_PORT);
    await h.advance(1000);
    // The card never saw SCIF_CNCT_REQ: no grant, nothing the host could tell from a slow card.
    expect(h.connectFinish(ep)).toBe('pending');
    expect(h.received(SCIF.CNCT_GNT)).toHaveLength(0);
    expect(events(tracer).filter((e) => e.kind === 'doorbell' && e.lost)).toHaveLength(1);
    // The next message (and its doorbell) gets both read, in order: the first connect completes late.
    const ep2 = h.connectStart(ECHO_PORT);
    await h.settle();
    expect(h.received(SCIF.CNCT_GNT).length).toBe(1);
    expect(h.connectFinish(ep)).toBe('connected');
    await h.settle();
    expect(h.connectFinish(ep2)).toBe('connected');
    h.close(ep);
    h.close(ep2);
    await h.settle();
    expect(await echo(h, 'still serving')).toBe('still serving');
    expect(h.card.faults.list()[0]).toMatchObject({ state: 'done', fired: 1, remaining: 0 });
  });
});

describe('drop-irq', () => {
  it('loses the next K MSI-X messages on a vector; SICR0 is acknowledged as if sent', async () => {
    const { h } = await serving();
    h.card.faults.arm(parseFaultSpec(`drop-irq:vector=${h.vector},count=1`));
    const fired = h.env.fired.length;
    const ep = h.connectStart(ECHO_PORT);
    await h.advance(1000);
    // The card granted, but the host's interrupt never came: it does not read its ring.
    expect(h.env.fired.length).toBe(fired);
    expect(h.connectFinish(ep)).toBe('pending');
    expect(h.card.faults.list()[0]).toMatchObject({ state: 'done', fired: 1 });
    // The next interrupt makes the host read everything that waits: here the COSM heartbeat, ≤ 30 s later.
    await h.advance(31_000, 1000);
    expect(h.connectFinish(ep)).toBe('connected');
    h.close(ep);
    await h.settle();
    expect(await echo(h, 'after a lost MSI-X')).toBe('after a lost MSI-X');
  });
});

describe('card-crash', () => {
  /** COSM messages the host has on its endpoint. */
  function cosmMsgs(h: LinuxScifHost, ep: ReturnType<LinuxScifHost['open']>): number[] {
    const ids: number[] = [];
    for (;;) {
      let b: Uint8Array;
      try {
        b = h.recv(ep, COSM_MSG_SIZE);
      } catch {
        break;
      }
      if (b.length < COSM_MSG_SIZE) break;
      ids.push(Number(decodeCosmMsg(b).id));
    }
    return ids;
  }

  it('stops the card OS after the delay: no heartbeat, no SCIF answer, post code CR; a reset brings it back', async () => {
    const { h, cosmEp } = await serving();
    h.card.faults.arm(parseFaultSpec('card-crash:after=5'));
    await h.advance(4000);
    expect(h.card.crashed).toBe(false);
    await h.advance(2000);
    expect(h.card.crashed).toBe(true);
    expect(h.card.scif.state).toBe('crashed');
    expect(h.card.bar4.get('POSTCODE')).toBe(POSTCODE_CRASH);
    cosmMsgs(h, cosmEp); // what the card sent before it stopped
    const rx = h.rx.length;
    // 40 s: the host's COSM watchdog would now declare the card crashed (cosm_scif_work()).
    await h.advance(45_000, 1000);
    expect(cosmMsgs(h, cosmEp)).toEqual([]);
    const ep = h.connectStart(ECHO_PORT);
    await h.advance(2000);
    expect(h.connectFinish(ep)).toBe('pending');
    expect(h.rx.length, 'the crashed card sends nothing, not even a DISCNCT').toBe(rx);
    expect(h.alive, 'and nothing told the host').toBe(true);
    // The host gives up on the node (scif_disconnect_node() times out), resets and boots the card again.
    h.remove();
    await h.settle();
    h.finishRemove();
    h.resetCard();
    await h.advance(200);
    expect(h.card.crashed).toBe(false);
    expect(h.card.scif.state).toBe('off');
    expect(h.card.bar4.get('POSTCODE')).toBe(POSTCODE_READY);
    h.restart();
    const cosm = [...h.endpoints.values()].find((e) => e.state === 'LISTENING' && e.port === SCIF_COSM_LISTEN_PORT)!;
    await h.bringUp();
    await h.settle();
    h.acceptStart(cosm);
    await h.settle();
    expect(h.card.cosm.state).toBe('online');
    expect(await echo(h, 'back online')).toBe('back online');
    expect(faultEvents(h.env.tracer).map((e) => e.action)).toEqual(['armed', 'fired']);
    expect(events(h.env.tracer).find((e) => e.kind === 'card' && e.action === 'crash')).toBeTruthy();
  });

  it('is traced and warned even with tracing off', () => {
    const warned: string[] = [];
    const clock = new FakeClock();
    const tracer: Tracer = { ...memoryTracer(), enabled: false, warn: (kind, msg) => warned.push(`${kind}: ${msg}`) };
    const crashes: string[] = [];
    const f = new CardFaults({ tracer, after: clock.after, crash: (why) => crashes.push(why) });
    f.arm(parseFaultSpec('card-crash:after=1'));
    clock.advance(1000);
    expect(crashes).toEqual(['injected fault 1 (card-crash:after=1)']);
    expect(warned).toEqual(['fault: fault 1 armed: card-crash:after=1', 'fault: fault 1 (card-crash:after=1): the card OS stops']);
  });

  it('clear() disarms what has not fired', () => {
    const clock = new FakeClock();
    const crashes: string[] = [];
    const f = new CardFaults({ tracer: memoryTracer(), after: clock.after, crash: (why) => crashes.push(why) });
    f.arm(parseFaultSpec('card-crash:after=1'));
    f.arm(parseFaultSpec('drop-irq:vector=0'));
    expect(f.clear()).toBe(2);
    clock.advance(2000);
    expect(crashes).toEqual([]);
    expect(f.dropMsix(0)).toBe(false);
    expect(f.list().map((r) => r.state)).toEqual(['lifted', 'lifted']);
  });
});
