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
import { cardCtlHandler, cardStatus } from '../src/cli/card-ctl.ts';
import type { CtlReply } from '../src/ctl/server.ts';
import type { GuestResult } from './guest.ts';
import { expectPassed, expectRanToEnd, micSuiteKernel, micSuiteReady, runMicGuest, type MicGuest } from './mic-guest.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

const CMD = {
  boot: 'mic-scif-boot',
  doorbell: 'mic-fault drop-doorbell',
  irq: 'mic-fault drop-irq',
  slow: 'mic-fault dma-slow',
  error: 'mic-fault dma-error',
  crash: 'mic-fault card-crash',
} as const;

/** The subtests of each mic-fault command, in its order. */
const CHECKS: Record<Exclude<keyof typeof CMD, 'boot'>, string[]> = {
  doorbell: ['online-before', 'echo-second', 'echo-first'],
  irq: ['online-before', 'echo-second', 'echo-first'],
  slow: ['online-before', 'rma-slow', 'rma-lifted', 'no-driver-errors'],
  error: ['online-before', 'copy-fails', 'driver-reports', 'recover-reset', 'recover-ready', 'recover-online', 'rma-after-reset', 'echo-after-reset'],
  crash: ['online-before', 'host-sees-crash', 'shutdown-status', 'post-code-crash', 'node-alive-timeout', 'recover-reset', 'recover-ready', 'recover-online', 'echo-after-reset'],
};

/** A card crash waits out the host's 40 s COSM watchdog and the 30 s SCIF_EXIT_ACK wait of the reset. */
const COMMAND_TIMEOUT_S = 300;
const GUEST_TIMEOUT_MS = 900_000;

/** {h2c_db} and {c2h_vector}: the card's SCIF doorbell and the vector the host's SCIF doorbell interrupts on. */
function expand(spec: string, card: X100Card): string {
  const scif = cardStatus(card).scif as { h2cDb: number; c2hVectors: number[] };
  return spec.replace('{h2c_db}', String(scif.h2cDb)).replace('{c2h_vector}', String(scif.c2hVectors[0] ?? -1));
}

describe.skipIf(!ready)('fault injection against the Linux MIC host drivers (mic-fault)', () => {
  let guest: MicGuest;
  let run: GuestResult;
  let card: X100Card | undefined;
  const armed: { spec: string; reply: CtlReply }[] = [];

  beforeAll(async () => {
    guest = await runMicGuest({
      kernel: kernel!,
      name: 'vphi-fault-test',
      tests: Object.values(CMD),
      commandTimeoutS: COMMAND_TIMEOUT_S,
      timeoutMs: GUEST_TIMEOUT_MS,
      consoleFile: process.env.VPHI_FAULT_CONSOLE,
      onLine: (line, c) => {
        const m = /vphi-ctl: fault (\S+)/.exec(line);
        if (!m || /^\s*#/.test(line)) return;
        card = c;
        const spec = expand(m[1], c);
        armed.push({ spec, reply: cardCtlHandler(c)({ cmd: 'fault', spec }) as CtlReply });
      },
    });
    run = guest.run;
  }, GUEST_TIMEOUT_MS + 30_000);

  afterAll(() => guest?.close());

  it('the guest ran every command to the end', () => expectRanToEnd(run, Object.values(CMD)));

  it('the card came online (mic-scif-boot)', () => {
    for (const name of ['ready-before', 'boot-write', 'state-online']) expectPassed(run, CMD.boot, name);
  });

  it('every fault the guest asked for was armed, and fired', () => {
    expect(armed.map((a) => [a.spec, a.reply.ok]), JSON.stringify(armed)).toEqual(armed.map((a) => [a.spec, true]));
    expect(armed.length).toBe(2 + 8 + 4 + 1);
    const faults = card!.faults.list();
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
