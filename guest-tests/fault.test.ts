/**
 * Fault injection against the real host drivers: one MIC guest, the card
 * online, then each fault kind in turn (guest-tests/mic-fault.sh). The
 * guest asks for a fault with a console line "vphi-ctl: fault SPEC"; this
 * harness arms it on the card through the control socket's handler, as
 * `vphi ctl fault SPEC` would. Each command checks the drivers' reaction and
 * that the card serves on afterwards; here each fault must also have fired.
 *
 * Env: MIC_GUEST_KERNEL (else ~/.cache/vphi/bzImage; none: "SKIP: no MIC
 * guest kernel"), VPHI_FAULT_CONSOLE (write the guest console there).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { X100Card } from '../device/x100/card.ts';
import type { CardGuest } from './card-guest.ts';
import type { GuestResult } from './guest.ts';
import { expectPassed, expectRanToEnd, micSuiteKernel, micSuiteReady } from './mic-guest.ts';
import { ARMED_FAULTS, FAULT, FAULT_CMD as CMD, runSuite, type ArmedFault } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

/** The subtests of each mic-fault command, in its order. */
const CHECKS: Record<Exclude<keyof typeof CMD, 'boot'>, string[]> = {
  doorbell: ['online-before', 'echo-second', 'echo-first'],
  irq: ['online-before', 'echo-second', 'echo-first'],
  slow: ['online-before', 'rma-slow', 'rma-lifted', 'no-driver-errors'],
  error: ['online-before', 'copy-fails', 'driver-reports', 'recover-reset', 'recover-ready', 'recover-online', 'rma-after-reset', 'echo-after-reset'],
  crash: ['online-before', 'host-sees-crash', 'shutdown-status', 'post-code-crash', 'node-alive-timeout', 'recover-reset', 'recover-ready', 'recover-online', 'echo-after-reset'],
};

describe.skipIf(!ready)('fault injection against the Linux MIC host drivers (mic-fault)', () => {
  let guest: CardGuest;
  let run: GuestResult;
  let card: X100Card;
  let armed: ArmedFault[];

  beforeAll(async () => {
    guest = await runSuite(FAULT, { kernel: kernel!, consoleFile: process.env.VPHI_FAULT_CONSOLE });
    run = guest.run;
    card = guest.card;
    armed = ARMED_FAULTS.get(card) ?? [];
  }, FAULT.timeoutMs + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, Object.values(CMD)));

  it('the card came online (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'state-online']) expectPassed(run, CMD.boot, name);
  });

  it('every fault the guest asked for was armed, and fired', () => {
    expect(armed.map((a) => [a.spec, a.reply.ok]), JSON.stringify(armed)).toEqual(armed.map((a) => [a.spec, true]));
    expect(armed.length).toBe(2 + 8 + 4 + 1);
    const faults = card.faults.list();
    // Each SCIF endpoint takes one host channel (scif_reserve_dma_chan(), round robin): a fault on the others need not fire.
    for (const f of faults) {
      if (f.spec.startsWith('dma-')) continue;
      expect(f.fired, JSON.stringify(f)).toBeGreaterThan(0);
    }
    expect(faults.filter((f) => f.spec.startsWith('dma-error') && f.fired > 0).length, JSON.stringify(faults)).toBeGreaterThan(0);
    expect(faults.filter((f) => f.spec.startsWith('dma-slow') && f.fired > 0).length, JSON.stringify(faults)).toBeGreaterThan(0);
  });

  for (const [key, checks] of Object.entries(CHECKS)) {
    describe(CMD[key as keyof typeof CHECKS], () => {
      for (const name of checks) it(name, () => expectPassed(run, CMD[key as keyof typeof CHECKS], name));
    });
  }
});
