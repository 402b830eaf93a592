/**
 * End to end with the real host driver: the x100 card served in this
 * process, the MIC guest kernel (Linux 5.8.1 with mic_host, mic_x100_dma,
 * mic_cosm and scif built in) under TCG, and the guest scripts
 * guest-tests/mic-*.sh driving /sys/class/mic/mic0 as mpssd would:
 *
 *   mic-probe     probe left mic0 `ready`, x100, C0; debugfs at probe
 *   mic-boot      bootmode/firmware/ramdisk/cmdline, `boot` -> `online`,
 *                 "DMA channels # 4", no channel set-up error
 *   mic-debugfs   what the driver programmed: post code, SMPT, MXAR, DMA registers
 *   mic-reset     `reset` -> `ready`, every channel drained (no "TO chan")
 *   mic-cycle 10  ten more boot/reset rounds
 *
 * Every KTAP subtest is asserted by name. The host side then checks what
 * the card saw: the firmware files (src/guest/firmware.ts) in the
 * aperture where the driver must put them, one boot interrupt per boot,
 * one SPAD2 <- 0 / RGCR reset per reset, and the drain's FENCE status
 * descriptor executed on each of channels 0-3 before every reset.
 *
 * Skipped, with one line saying so, when there is no MIC guest kernel
 * (scripts/build-guest-kernel, or MIC_GUEST_KERNEL); skipped quietly
 * without the native addon or QEMU (run scripts/setup). Set
 * VPHI_MIC_TRACE=FILE to also write the full trace.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTracer, type Tracer } from '../src/trace/tracer.ts';
import { defaultBootAddr, type X100Card } from '../device/x100/card.ts';
import type { BootRecord } from '../device/x100/boot/bootstrap.ts';
import { MIC_MAGIC } from '../device/x100/boot/device-page.ts';
import { RAMDISK_SIZE, UOS_SIZE } from '../src/guest/firmware.ts';
import type { CardGuest } from './card-guest.ts';
import type { GuestResult } from './guest.ts';
import { findResult, summarize } from './ktap.ts';
import { checkDownload } from './download.ts';
import { explain, micSuiteKernel, micSuiteReady } from './mic-guest.ts';
import { MIC, MIC_CMD, MIC_CYCLES as CYCLES, MIC_INTX, MIC_INTX_CMD, runSuite } from './suites.ts';

const kernel = micSuiteKernel();
const ready = micSuiteReady(kernel);

const APERTURE = MIC.card.apertureSize;
/** mic-lib.sh MIC_CMDLINE: the driver appends it to " mem=512M". */
const CARD_CMDLINE = 'vphi.card=mic0';

/** The subtests of each guest command, in order. */
const TESTS: Record<string, string[]> = {
  [MIC_CMD.probe]: [
    'sysfs-mic0',
    'one-card',
    'state-ready',
    'family-x100',
    'stepping-C0',
    'shutdown-status-nop',
    'debugfs-files',
    'post-code-ready',
    'smpt-identity',
    'msix-9-vectors-unrouted',
    'no-dma-device-yet',
  ],
  [MIC_CMD.boot]: [
    'bootmode-linux',
    'firmware-set',
    'ramdisk-set',
    'cmdline-set',
    'boot-write',
    'state-booting-or-online',
    'dma-channels-4',
    'no-dma-chan-setup-error',
    'no-driver-errors',
    'state-online',
  ],
  [MIC_CMD.debugfs]: [
    'online',
    'post-code-os',
    'smpt-entries',
    'mxar-dma-vectors-0-3',
    'mxar-scif-doorbell-vector-4',
    'dma-reg-file',
    'dcr-channels-0-3-enabled',
    'drar-ring-in-system-memory',
    'dcherr-0-unmasked',
    'channels-idle',
  ],
  [MIC_CMD.reset]: [
    'online-before',
    'reset-write',
    'state-ready',
    'no-drain-timeout',
    'no-driver-errors',
    'shutdown-status-nop',
    'post-code-ready',
    'dma-device-gone',
    'reset-from-ready-refused',
  ],
  [MIC_CMD.cycle]: [
    'ready-before',
    ...Array.from({ length: CYCLES }, (_, i) => [`boot-${i + 1}`, `reset-${i + 1}`]).flat(),
    'dma-channels-4-every-boot',
    'no-driver-errors',
  ],
};
const COMMANDS = MIC.commands;
const BOOTS = 1 + CYCLES;
const RESETS = 1 + CYCLES;

type Ev = Record<string, unknown>;

/** How many of the last BAR4 accesses a failure report shows. */
const RECENT_MMIO = 40;

/**
 * Keeps what the host-side checks need, in order: card and DMA-engine
 * events, DMA descriptor effects, and the MMIO accesses to the boot/reset
 * registers; plus the last BAR4 accesses (for a hang report). Optionally
 * forwards everything to a full trace file.
 */
function micTracer(file?: string): Tracer & { events: Ev[]; recent: string[] } {
  const events: Ev[] = [];
  const recent: string[] = [];
  const full = file ? createTracer(file) : null;
  const keepReg = (r: string | null) => r === 'RGCR' || r === 'SPAD2' || r === 'SPAD5' || r === 'APICICR7_LO' || r === 'APICICR7_HI';
  return {
    enabled: true,
    events,
    recent,
    mmio: (e) => {
      full?.mmio(e);
      if (keepReg(e.reg)) events.push({ kind: 'mmio', ...e });
      recent.push(`${e.op} ${e.reg ?? `bar${e.bar}+0x${e.off.toString(16)}`} 0x${e.val.toString(16)}`);
      if (recent.length > RECENT_MMIO) recent.shift();
    },
    cfg: (e) => full?.cfg(e),
    irq: (e) => full?.irq(e),
    dma: (e) => {
      full?.dma(e);
      if (e.op === 'write' || e.op === 'copy' || e.op === 'error') events.push({ kind: 'dma', ...e });
    },
    event: (kind, data) => {
      full?.event(kind, data);
      if (kind === 'card' || kind === 'doorbell' || kind === 'dma-engine') events.push({ kind, ...data });
    },
    close: () => full?.close(),
  };
}

interface Snapshot {
  boots: number;
  resets: number;
  lastBoot: BootRecord | null;
  spad2: number;
  spad5: number;
  /** checkDownload() against the aperture at that moment. */
  download: string[];
}

describe.skipIf(!ready)('the MIC host driver (Linux 5.8.1) boots and resets the card', () => {
  let guest: CardGuest;
  let tracer: ReturnType<typeof micTracer>;
  let run: GuestResult;
  /** After the first boot (mic-boot done), and when the guest finished. */
  const snaps: Record<'firstBoot' | 'done', Snapshot | undefined> = { firstBoot: undefined, done: undefined };
  const bootAddr = defaultBootAddr(APERTURE);

  beforeAll(async () => {
    tracer = micTracer(process.env.VPHI_MIC_TRACE || undefined);
    let seen: X100Card | undefined;
    const snap = (card: X100Card): Snapshot => {
      const spad2 = card.bar4.get('SPAD2');
      const spad5 = card.bar4.get('SPAD5');
      return {
        boots: card.bootstrap.boots,
        resets: card.bootstrap.resets,
        lastBoot: card.bootstrap.lastBoot,
        spad2,
        spad5,
        download: checkDownload(card.aperture, { bootAddr: (spad2 & 0xfffff000) >>> 0, spad5, cmdline: CARD_CMDLINE }),
      };
    };
    try {
      guest = await runSuite(MIC, {
        kernel: kernel!,
        tracer,
        onLine: (l, c) => {
          seen = c;
          // Taken while the guest still runs: the detach at power-off resets the registers.
          if (/^(not )?ok \d+ mic-boot\b/.test(l)) snaps.firstBoot = snap(c);
          if (/VPHI-GUEST-DONE/.test(l)) snaps.done = snap(c);
        },
      });
      run = guest.run;
    } catch (e) {
      // A hang in the host driver path: what the guest printed last (in the message), and the card accesses before it.
      const b = seen?.bootstrap;
      throw new Error(
        `${(e as Error).message}\n` +
          `--- last ${RECENT_MMIO} BAR4 accesses ---\n${tracer.recent.join('\n')}\n` +
          `--- card: bootstrap ${b?.state}, ${b?.boots} boots, ${b?.resets} resets ` +
          `(VPHI_MIC_TRACE=FILE writes the full trace)`,
      );
    }
  }, MIC.timeoutMs + 20_000);

  afterAll(() => guest?.close());

  it('the guest ran every MIC test to the end', () => {
    const why = run.lines.slice(-80).join('\n');
    expect(run.ktap.errors, why).toEqual([]);
    expect(run.ktap.results.map((r) => r.name), why).toEqual(COMMANDS);
    for (const cmd of COMMANDS) {
      const doc = findResult(run.ktap, cmd)?.subtests;
      expect(doc, `${cmd}: no KTAP output\n${why}`).toBeDefined();
      expect(doc!.errors, cmd).toEqual([]);
      expect(doc!.results.map((r) => r.name), cmd).toEqual(TESTS[cmd]);
    }
  });

  for (const cmd of COMMANDS) {
    it(`${cmd}: every check passed`, () => {
      const failed: string[] = [];
      for (const name of TESTS[cmd]) {
        const r = findResult(run.ktap, cmd, name);
        if (!r?.ok || r.skipped) failed.push(`${name}:\n${explain(r)}`);
      }
      const doc = findResult(run.ktap, cmd);
      expect(failed.join('\n\n'), explain(doc)).toBe('');
      expect(doc?.ok, explain(doc)).toBe(true);
      expect(summarize(doc!.subtests!)).toMatchObject({ total: TESTS[cmd].length, failed: 0, skipped: 0, ok: true });
    });
  }

  it('the guest passed with no failed test', () => {
    expect(run.rc, run.lines.slice(-40).join('\n')).toBe(0);
  });

  it('the firmware arrived where the card looks for it (host side)', () => {
    for (const when of ['firstBoot', 'done'] as const) {
      const s = snaps[when];
      expect(s, `no snapshot at ${when}`).toBeDefined();
      expect((s!.spad2 & 0xfffff000) >>> 0, when).toBe(bootAddr);
      expect(s!.spad5, when).toBe(UOS_SIZE);
      expect(s!.download, when).toEqual([]);
      // What the card itself read at the boot interrupt.
      expect(s!.lastBoot, when).not.toBeNull();
      expect(s!.lastBoot!.error, when).toBeNull();
      expect(s!.lastBoot!.download, when).toEqual({
        bootAddr,
        imageSize: UOS_SIZE,
        cmdline: ` mem=${APERTURE >>> 20}M ${CARD_CMDLINE}`,
        ramdiskAddr: 2 * bootAddr,
        ramdiskSize: RAMDISK_SIZE,
      });
      expect(s!.lastBoot!.bootParam).toMatchObject({ magic: MIC_MAGIC, nodeId: 1, h2cConfigDb: -1, scifCardDmaAddr: 0n });
    }
    expect(snaps.firstBoot).toMatchObject({ boots: 1, resets: 0 });
    expect(snaps.done).toMatchObject({ boots: BOOTS, resets: RESETS });
  });

  it('each boot came with one boot interrupt, and the card OS read the device page', () => {
    const ev = tracer.events;
    const boots = ev.filter((e) => e.kind === 'card' && e.action === 'boot');
    expect(boots.length).toBe(BOOTS);
    boots.forEach((b, k) => {
      expect(b, `boot ${k + 1}`).toMatchObject({ error: null, nodeId: 1, bootAddr, imageSize: UOS_SIZE, ramdiskAddr: 2 * bootAddr, ramdiskSize: RAMDISK_SIZE });
      // Host SCIF takes a new doorbell at every boot (mic_next_db(): next_avail_src++ % 4).
      expect(b.c2hScifDb, `boot ${k + 1}`).toBe(k % 4);
      expect(String(b.scifHostDmaAddr), `boot ${k + 1}`).toMatch(/^0x80[0-9a-f]{8}$/);
    });
    // mic_x100_send_firmware_intr(): APICICR7 high <- APIC id, then low <- 0x20E5, right before each boot.
    const sends = ev.filter((e) => e.kind === 'mmio' && e.op === 'w' && e.reg === 'APICICR7_LO');
    expect(sends.map((e) => e.val)).toEqual(Array(BOOTS).fill(0x20e5));
    for (const s of sends) {
      const i = ev.indexOf(s);
      expect(ev[i - 1], 'APICICR7_HI before APICICR7_LO').toMatchObject({ kind: 'mmio', op: 'w', reg: 'APICICR7_HI', val: 0 });
      // The write rings doorbell 7, the boot ROM's (mic_x100_send_firmware_intr()), and the card boots on it.
      const next = ev.slice(i + 1).filter((e) => e.kind === 'card' || e.kind === 'doorbell');
      expect(next[0], 'APICICR7 rang doorbell 7').toMatchObject({ kind: 'doorbell', db: 7, apicicrLow: 0x20e5 });
      expect(next.find((e) => e.kind === 'card'), 'the card booted on it').toMatchObject({ action: 'boot' });
    }
  });

  it('each reset: SPAD2 cleared, RGCR bit 0 set, the card ready again; the channels were drained first', () => {
    const ev = tracer.events;
    const starts = ev.flatMap((e, i) => (e.kind === 'card' && e.action === 'reset-start' ? [i] : []));
    expect(starts.length).toBe(RESETS);
    const bootIdx = ev.flatMap((e, i) => (e.kind === 'card' && e.action === 'boot' ? [i] : []));
    starts.forEach((at, k) => {
      const what = `reset ${k + 1}`;
      // mic_x100_reset_fw_ready() then mic_x100_hw_reset(): SPAD2 <- 0, RGCR read (bit 0 clear), RGCR <- |1.
      const mmio = ev.slice(0, at).filter((e) => e.kind === 'mmio');
      const [spad2, rgcrR, rgcrW] = mmio.slice(-3);
      expect(spad2, what).toMatchObject({ op: 'w', reg: 'SPAD2', val: 0 });
      expect(rgcrR, what).toMatchObject({ op: 'r', reg: 'RGCR', val: 0 });
      expect(rgcrW, what).toMatchObject({ op: 'w', reg: 'RGCR' });
      expect(Number(rgcrW.val) & 1, what).toBe(1);
      // The engine was reset with the card and the bootstrap came back.
      const after = ev.slice(at + 1);
      expect(after.find((e) => e.kind === 'dma-engine'), what).toMatchObject({ action: 'reset' });
      expect(after.find((e) => e.kind === 'card'), what).toMatchObject({ action: 'ready' });
      // Between this boot and this reset: mic_dma_drain_chan()'s FENCE status descriptor, once per channel 0-3.
      const since = bootIdx.filter((b) => b < at).pop();
      expect(since, `${what}: no boot before it`).toBeDefined();
      const dma = ev.slice(since! + 1, at).filter((e) => e.kind === 'dma');
      expect(dma.filter((e) => e.op !== 'write'), `${what}: DMA other than status writes`).toEqual([]);
      expect(dma.map((e) => e.ch).sort(), `${what}: status descriptors per channel`).toEqual([0, 1, 2, 3]);
      for (const d of dma) {
        expect(d, what).toMatchObject({ type: 'STATUS', val: '0x0', len: 8 });
        expect(d.intr, what).toBeUndefined();
        expect(BigInt(String(d.dst)) >= 0x80_0000_0000n, `${what}: status_dest ${d.dst} in the SMPT window`).toBe(true);
      }
    });
    expect(guest.card.dma.stats.errors).toBe(0);
  });
});

describe.skipIf(!ready)('the MIC host driver on INTx (pci=nomsi)', () => {
  let guest: CardGuest;
  let run: GuestResult;
  const INTX_TESTS: Record<string, string[]> = {
    [MIC_INTX_CMD.intx]: ['state-ready', 'intx-handler', 'no-msi-vectors'],
    [MIC_INTX_CMD.boot]: TESTS[MIC_CMD.boot],
    [MIC_INTX_CMD.reset]: TESTS[MIC_CMD.reset],
  };

  beforeAll(async () => {
    guest = await runSuite(MIC_INTX, { kernel: kernel! });
    run = guest.run;
  }, MIC_INTX.timeoutMs + 20_000);

  afterAll(() => guest?.close());

  it('probes, boots and resets the card with the INTx fallback', () => {
    const why = run.lines.slice(-60).join('\n');
    for (const [cmd, names] of Object.entries(INTX_TESTS)) {
      for (const name of names) {
        const r = findResult(run.ktap, cmd, name);
        expect(r?.ok, `${cmd} ${name}: ${r?.diagnostics.join('\n') ?? 'missing'}\n${why}`).toBe(true);
      }
    }
    expect(guest.card.bootstrap.boots).toBe(1);
    expect(guest.card.bootstrap.resets).toBe(1);
  });
});
