/**
 * Two cards in one guest, with the real host stack: two x100 cards served
 * in this process on one PCIe fabric (PciFabric: a bus address in the
 * other card's BAR0 or BAR4 reaches that card), the MIC guest kernel under
 * TCG. In order:
 *
 *   mic-cards 2            boot mic0 and mic1, both online; SCIF sees 3 nodes
 *   vphi-scif dial-peer    card 1's agent DIALs card 2's echo (and back):
 *                          a card-to-card connection over the P2P queue pair
 *   vphi-scif source       the peer-rma service (2010) of card 1 (and of
 *     --source-port 2010   card 2): card-to-card scif_writeto and the peer
 *                          agent's WRITETO back, the bytes then sent to the host
 *   vphi-scif echo sink nodeids --node 2, vphi-scif-rma ... --node 2:
 *                          card 2's services and RMA agent on node 2
 *   mic-card-reset 1       mic1 reset alone (the host's NODE_REMOVE to card 1),
 *                          mic0 stays online; mic1 boots and is paired again
 *   dial-peer, source      card to card once more
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC
 * guest kernel"), VPHI_SCIF_ONLINE_TIMEOUT (seconds, 30).
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GuestResult } from './guest.ts';
import { findResult } from './ktap.ts';
import { expectPassed, expectRanToEnd, explain, micSuiteKernel, micSuiteReady, type MicGuest } from './mic-guest.ts';
import { CARDS, CARDS_CMD as CMD, runSuite } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);
/** The kernel's config beside it (build-guest-kernel writes bzImage.config), if there is one. */
const kconfig = kernel && existsSync(`${kernel}.config`) ? readFileSync(`${kernel}.config`, 'utf8') : null;

describe.skipIf(!ready)('two cards: SCIF P2P with the Linux host stack', () => {
  let guest: MicGuest;
  let run: GuestResult;
  beforeAll(async () => {
    // scif_p2p_setsg() oopses on a kernel without it (guest-tests/mic.config): say so rather than boot.
    if (kconfig && !/^CONFIG_SPARSEMEM_VMEMMAP=y$/m.test(kconfig)) {
      throw new Error(`${kernel}: CONFIG_SPARSEMEM_VMEMMAP is not set, and SCIF P2P needs it; rebuild the kernel with scripts/build-guest-kernel (guest-tests/mic.config has it)`);
    }
    guest = await runSuite(CARDS, { kernel: kernel! });
    run = guest.run;
  }, CARDS.timeoutMs + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, CARDS.commands));

  it('both cards came online and SCIF sees three nodes', () => {
    for (const name of ['online-mic0', 'online-mic1', 'total-nodes-3', 'node-1-running', 'node-2-running', 'scif-peer-dev2', 'p2p-enabled']) {
      expectPassed(run, CMD.boot, name);
    }
  });

  it('card 1 dials card 2\'s echo service and gets every byte back (card to card)', () => expectPassed(run, CMD.dial12, 'dial-peer'));
  it('card 2 dials card 1\'s echo service', () => expectPassed(run, CMD.dial21, 'dial-peer'));
  it('RMA from card 1 to card 2 and back (peer-rma on card 1)', () => expectPassed(run, CMD.peerRma12, 'source'));
  it('RMA from card 2 to card 1 and back (peer-rma on card 2)', () => expectPassed(run, CMD.peerRma21, 'source'));
  it('card services answer on node 2', () => {
    for (const name of ['echo', 'sink', 'nodeids']) expectPassed(run, CMD.node2, name);
  });
  it('the RMA agent of card 2', () => {
    for (const name of ['aligned', 'card-writeto', 'card-readfrom']) expectPassed(run, CMD.rma2, name);
  });

  it('mic1 resets alone: node 2 goes (NODE_REMOVE), mic0 stays online, mic1 comes back', () => {
    for (const name of ['reset-mic1', 'others-stay-online', 'node-2-gone', 'online-again-mic1', 'node-2-back', 'others-still-online']) expectPassed(run, CMD.reset2, name);
  });
  it('after the reset the cards are paired again: DIAL and RMA card to card', () => {
    expectPassed(run, CMD.dialAfter, 'dial-peer');
    expectPassed(run, CMD.peerRmaAfter, 'source');
  });

  it('the guest passed with no failed test', () => {
    const r = findResult(run.ktap, CMD.boot);
    expect(run.rc, `${explain(r)}\n${run.lines.slice(-60).join('\n')}`).toBe(0);
  });
});
