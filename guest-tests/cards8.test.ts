/**
 * Eight cards in one guest, as the largest MIC hosts carried: mic0..mic7
 * served in this process on one PCIe fabric, the MIC guest kernel under TCG.
 * The host's scif_p2p_setup() gives every pair of cards a queue pair (28 of
 * them). QEMU offers each card every card's BAR0 as a DMA region besides
 * guest RAM, more than libvfio-user's table of 16 holds (native/dma.cc
 * ServeFdlessDma()): before that, guest RAM offered late was refused and
 * no card of eight came online.
 *
 *   mic-cards 8             all online, 9 nodes Running, P2P enabled
 *   dial-peer 1->8, 8->7, 4->5; peer-rma on card 8; card 8's RMA agent
 *   mic-card-reset 5 8      mic5 (node 6) reset alone, the other seven online
 *   dial-peer 6->1, peer-rma on card 6 after it was paired again
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC guest kernel").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GuestResult } from './guest.ts';
import { findResult } from './ktap.ts';
import { expectPassed, expectRanToEnd, explain, micSuiteKernel, micSuiteReady, type MicGuest } from './mic-guest.ts';
import { CARDS8, CARDS8_CMD as CMD, runSuite } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

describe.skipIf(!ready)('eight cards: every pair over SCIF P2P with the Linux host stack', () => {
  let guest: MicGuest;
  let run: GuestResult;
  beforeAll(async () => {
    guest = await runSuite(CARDS8, { kernel: kernel! });
    run = guest.run;
  }, CARDS8.timeoutMs + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, CARDS8.commands));

  it('all eight cards came online and SCIF sees nine nodes', () => {
    const names = ['total-nodes-9', 'p2p-enabled'];
    for (let k = 0; k < 8; k++) names.push(`online-mic${k}`, `node-${k + 1}-running`, `scif-peer-dev${k + 1}`);
    for (const name of names) expectPassed(run, CMD.boot, name);
  });

  it('card to card DIAL between far pairs: 1 to 8, 8 to 7, 4 to 5', () => {
    for (const cmd of [CMD.dial18, CMD.dial87, CMD.dial45]) expectPassed(run, cmd, 'dial-peer');
  });
  it('RMA from card 8 to card 1 and back (peer-rma), and card 8\'s RMA agent', () => {
    expectPassed(run, CMD.peerRma8, 'source');
    for (const name of ['aligned', 'card-writeto', 'card-readfrom']) expectPassed(run, CMD.rma8, name);
  });
  it('mic5 resets alone while the other seven stay online, then is paired again', () => {
    for (const name of ['reset-mic5', 'others-stay-online', 'node-6-gone', 'online-again-mic5', 'node-6-back', 'others-still-online']) expectPassed(run, CMD.reset6, name);
    expectPassed(run, CMD.dialAfter, 'dial-peer');
    expectPassed(run, CMD.peerRmaAfter, 'source');
  });

  it('the guest passed with no failed test', () => {
    const r = findResult(run.ktap, CMD.boot);
    expect(run.rc, `${explain(r)}\n${run.lines.slice(-60).join('\n')}`).toBe(0);
  });
});
