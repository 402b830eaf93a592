/**
 * Reconnect and reset against a `vphi serve` process (serve-guest.ts),
 * with the MIC guest kernel under TCG:
 *
 *   system_reset    QMP `system_reset` with the card online: QEMU resets
 *                   the vfio-user device, the card is `ready` again (vphi
 *                   ctl status) before the rebooted guest's mic_probe(),
 *                   and that guest boots it online and passes an RMA check
 *   kill-online     QEMU SIGKILLed with the card online: the server stays
 *                   up and resets the card (ready, SCIF off, DMA channels
 *                   idle), its fds and memfds back to where they were, and
 *                   a new QEMU boots it online and passes an RMA check
 *
 * `npm run soak -- --reset` runs the same; `--kill N` kills guests in the
 * middle of an RMA soak. Skipped, with one line saying so, without a MIC
 * guest kernel; quietly without the native addon or QEMU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningQemu } from '../src/qemu/run.ts';
import { micSuiteKernel, micSuiteReady } from './mic-guest.ts';
import { killWhileOnline, resetViaMonitor, startServe, type Check, type ProcStats, type ServeProc } from './serve-guest.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

const failed = (checks: Check[]) => checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);

describe.skipIf(!ready)('reset and reconnect with the MIC guest against vphi serve', () => {
  let s: ServeProc;
  let base: ProcStats;
  let q: RunningQemu | undefined;

  beforeAll(async () => {
    s = await startServe('vphi-reset-test');
    base = s.stats();
  }, 90_000);

  afterAll(async () => {
    q?.kill();
    await q?.exited;
    await s?.close();
  });

  it('system_reset with the card online: ready again, and the rebooted guest boots it online', async () => {
    const r = await resetViaMonitor(s, kernel!);
    q = r.q;
    expect(failed(r.checks)).toEqual([]);
    expect(r.checks.map((c) => c.name)).toEqual(['first-boot-online', 'online-before-reset', 'ready-after-reset', 'second-boot-online', 'online-after-reboot']);
  }, 170_000);

  it('QEMU killed with the card online: the card resets cleanly and the next QEMU boots it online', async () => {
    const k = await killWhileOnline(s, kernel!, q);
    q = undefined;
    expect(failed(k.checks)).toEqual([]);
    expect(k.checks.map((c) => c.name)).toEqual(['online-before-kill', 'reset-after-kill', 'server-alive', 'next-guest-online']);
    // Nothing of the guests stayed open in the server.
    const now = s.stats();
    expect(now.memfds).toBe(base.memfds);
    expect(now.fds).toBeLessThanOrEqual(base.fds + 1); // a control socket connection may still be closing
    expect(s.alive()).toBe(true);
  }, 170_000);
});
