/**
 * The guest suites, defined once: what `vphi test` runs, and what the
 * vitest suites (probe, dma, mic, scif, rma .test.ts) run and then check
 * subtest by subtest. A suite is one guest: its kernel (the Debian one, or
 * a MIC kernel for the suites that need the MIC host drivers), the commands
 * init.sh runs in order (each prints KTAP), timeouts, kernel command line
 * and the card it runs against. A MIC suite also gets the MIC firmware
 * files and mic-* scripts and strict SCIF (card-guest.ts). No vitest here.
 *
 * Env: VPHI_SCIF_CYCLES (20), VPHI_RMA_SOAK_MIB (256).
 */
import type { X100Card } from '../device/x100/card.ts';
import { cardCtlHandler, cardStatus } from '../src/cli/card-ctl.ts';
import type { CtlReply } from '../src/ctl/server.ts';
import type { ServerOptions } from '../src/server.ts';
import type { Tracer } from '../src/trace/tracer.ts';
import { runCardGuest, type CardGuest } from './card-guest.ts';

export interface Suite {
  /** `vphi test --only NAME`. */
  name: string;
  /** One line for `vphi test --list`. */
  summary: string;
  kernel: 'mic' | 'debian';
  /** The guest's commands, in order. */
  commands: readonly string[];
  /** Per command (init.sh's vphi.timeout), seconds; none when absent. */
  commandTimeoutS?: number;
  /** For the whole guest, boot included. */
  timeoutMs: number;
  /** More kernel command line. */
  append?: string;
  /** Guest RAM, MiB (default 512). */
  memoryMiB?: number;
  /** The card: BAR0 size and its services (a cardServices() list); `count` cards (default 1). */
  card: { apertureSize: number; services: string; count?: number };
  /** Every console line, with the card, while the guest runs (the fault suite arms its faults here). */
  onLine?: (line: string, card: X100Card) => void;
}

const APERTURE = 0x2000_0000;

/** Where vphi-probe writes its pattern in the aperture. */
export const PROBE_PATTERN_AT = 0x10_0000;

export const PROBE: Suite = {
  name: 'probe',
  summary: "vphi-probe: the card's PCI identity, BARs and capabilities, SPADs and the aperture (Debian guest)",
  kernel: 'debian',
  commands: [`vphi-probe all --bar0-size ${APERTURE} --bar0-pattern-offset ${PROBE_PATTERN_AT}`],
  timeoutMs: 150_000,
  card: { apertureSize: APERTURE, services: 'all' },
};

/** vphi-dma's groups: a command each, then `vphi-dma all` (every group in one process). */
export const DMA_GROUPS = ['copy', 'wrap', 'status', 'errors'] as const;

export const DMA: Suite = {
  name: 'dma',
  summary: 'vphi-dma: the DMA engine driven through BAR4 as mic_x100_dma does (Debian guest)',
  kernel: 'debian',
  commands: [...DMA_GROUPS.map((g) => `vphi-dma ${g}`), 'vphi-dma all'],
  timeoutMs: 100_000,
  card: { apertureSize: APERTURE, services: 'none' },
};

/** mic-cycle's boot/reset rounds. */
export const MIC_CYCLES = 10;

export const MIC_CMD = {
  probe: 'mic-probe',
  boot: 'mic-boot',
  debugfs: 'mic-debugfs',
  reset: 'mic-reset',
  cycle: `mic-cycle ${MIC_CYCLES}`,
} as const;

export const MIC: Suite = {
  name: 'mic',
  summary: `the MIC host driver probes, boots and resets the card, debugfs, ${MIC_CYCLES} more boot/reset rounds`,
  kernel: 'mic',
  commands: Object.values(MIC_CMD),
  commandTimeoutS: 120,
  timeoutMs: 150_000,
  card: { apertureSize: APERTURE, services: 'none' },
};

export const MIC_INTX_CMD = { intx: 'mic-intx', boot: MIC_CMD.boot, reset: MIC_CMD.reset } as const;

export const MIC_INTX: Suite = {
  name: 'mic-intx',
  summary: 'the MIC host driver on the INTx fallback (pci=nomsi): probe, boot, reset',
  kernel: 'mic',
  commands: Object.values(MIC_INTX_CMD),
  commandTimeoutS: 120,
  timeoutMs: 120_000,
  append: 'pci=nomsi',
  card: { apertureSize: APERTURE, services: 'none' },
};

/** vphi-scif cycle's rounds of each kind. */
export const SCIF_CYCLES = Math.max(1, Number(process.env.VPHI_SCIF_CYCLES ?? 20));

export const SCIF_CMD = {
  boot: 'mic-scif-boot',
  loop: 'mic-scif-loop all',
  loopBench: 'mic-scif-loop bench',
  card: 'vphi-scif all --node 1',
  cardBench: 'vphi-scif bench --node 1',
  shutdown: `vphi-scif cycle --how shutdown --cycles ${SCIF_CYCLES}`,
  reset: `vphi-scif cycle --how reset --cycles ${SCIF_CYCLES}`,
} as const;

export const SCIF: Suite = {
  name: 'scif',
  summary: `SCIF through /dev/scif (vphi-scif): the host loopback and the card's services, ${SCIF_CYCLES} shutdown and reset cycles`,
  kernel: 'mic',
  commands: Object.values(SCIF_CMD),
  // A cycle takes a few seconds, 10 at most.
  commandTimeoutS: 60 + SCIF_CYCLES * 10,
  timeoutMs: (120 + 2 * SCIF_CYCLES * 10) * 1000,
  card: { apertureSize: APERTURE, services: 'all' },
};

/** The card soak of vphi-scif-rma all, MiB. */
export const RMA_SOAK_MIB = Math.max(1, Number(process.env.VPHI_RMA_SOAK_MIB ?? 256));

export const RMA_CMD = {
  boot: 'mic-scif-boot',
  loop: 'mic-scif-rma-loop all',
  loopBench: 'mic-scif-rma-loop bench --bench-max 4194304 --bench-total 4194304',
  card: `vphi-scif-rma all --node 1 --soak-bytes ${RMA_SOAK_MIB * 1024 * 1024}`,
  cardBench: 'vphi-scif-rma bench --node 1',
} as const;

export const RMA: Suite = {
  name: 'rma',
  summary: `SCIF RMA through /dev/scif (vphi-scif-rma): the host loopback and the card's agent, a ${RMA_SOAK_MIB} MiB soak`,
  kernel: 'mic',
  commands: Object.values(RMA_CMD),
  commandTimeoutS: 900,
  timeoutMs: 2400_000,
  card: { apertureSize: APERTURE, services: 'all' },
};

export const FAULT_CMD = {
  boot: 'mic-scif-boot',
  doorbell: 'mic-fault drop-doorbell',
  irq: 'mic-fault drop-irq',
  slow: 'mic-fault dma-slow',
  error: 'mic-fault dma-error',
  crash: 'mic-fault card-crash',
} as const;

/** A fault the fault suite's guest asked for, and the control socket's answer. */
export interface ArmedFault {
  spec: string;
  reply: CtlReply;
}

/** The faults armed on each card by FAULT's onLine, in order. */
export const ARMED_FAULTS = new WeakMap<X100Card, ArmedFault[]>();

/** {h2c_db} and {c2h_vector}: the card's SCIF doorbell and the vector the host's SCIF doorbell interrupts on. */
function expandFault(spec: string, card: X100Card): string {
  const scif = cardStatus(card).scif as { h2cDb: number; c2hVectors: number[] };
  return spec.replace('{h2c_db}', String(scif.h2cDb)).replace('{c2h_vector}', String(scif.c2hVectors[0] ?? -1));
}

/**
 * mic-fault asks for a fault with a console line "vphi-ctl: fault SPEC";
 * arm it through the card's control socket handler, as `vphi ctl fault SPEC` would.
 */
export function armFaultLine(line: string, card: X100Card): void {
  const m = /vphi-ctl: fault (\S+)/.exec(line);
  if (!m || /^\s*#/.test(line)) return;
  const spec = expandFault(m[1], card);
  const armed = ARMED_FAULTS.get(card) ?? [];
  ARMED_FAULTS.set(card, armed);
  armed.push({ spec, reply: cardCtlHandler(card)({ cmd: 'fault', spec }) as CtlReply });
}

export const FAULT: Suite = {
  name: 'fault',
  summary: "fault injection (mic-fault): lost doorbells and MSI-X messages, a slow and a failing DMA channel, a card crash, and the drivers' reactions",
  kernel: 'mic',
  commands: Object.values(FAULT_CMD),
  // A card crash waits out the host's 40 s COSM watchdog and the 30 s SCIF_EXIT_ACK wait of the reset.
  commandTimeoutS: 300,
  timeoutMs: 900_000,
  card: { apertureSize: APERTURE, services: 'all' },
  onLine: armFaultLine,
};

export const CARDS_CMD = {
  boot: 'mic-cards 2',
  dial12: 'vphi-scif dial-peer --node 1 --peer 2',
  dial21: 'vphi-scif dial-peer --node 2 --peer 1 --seed 2',
  peerRma12: 'vphi-scif source --node 1 --source-port 2010 --rounds 6 --max-size 1048576',
  peerRma21: 'vphi-scif source --node 2 --source-port 2010 --rounds 6 --max-size 1048576 --seed 2',
  node2: 'vphi-scif echo sink nodeids --node 2 --nodes 3',
  rma2: 'vphi-scif-rma aligned card-writeto card-readfrom --node 2',
  reset2: 'mic-card-reset 1',
  dialAfter: 'vphi-scif dial-peer --node 1 --peer 2 --seed 3',
  peerRmaAfter: 'vphi-scif source --node 2 --source-port 2010 --rounds 3 --max-size 262144 --seed 3',
} as const;

export const CARDS: Suite = {
  name: 'cards',
  summary: 'two cards in one guest: both online, SCIF P2P (card-to-card DIAL to the echo service, card-to-card RMA through peer-rma), services on node 2, card 2 reset alone and paired again',
  kernel: 'mic',
  commands: Object.values(CARDS_CMD),
  commandTimeoutS: 300,
  timeoutMs: 900_000,
  memoryMiB: 768,
  card: { apertureSize: APERTURE, services: 'all,peer-rma', count: 2 },
};

/** Eight cards, as the largest MIC hosts carried: every pair has its P2P queue pair. */
export const CARDS8_CMD = {
  boot: 'mic-cards 8',
  dial18: 'vphi-scif dial-peer --node 1 --peer 8',
  dial87: 'vphi-scif dial-peer --node 8 --peer 7 --seed 2',
  dial45: 'vphi-scif dial-peer --node 4 --peer 5 --seed 4',
  peerRma8: 'vphi-scif source --node 8 --source-port 2010 --rounds 3 --max-size 262144 --seed 5',
  rma8: 'vphi-scif-rma aligned card-writeto card-readfrom --node 8',
  reset6: 'mic-card-reset 5 8',
  dialAfter: 'vphi-scif dial-peer --node 6 --peer 1 --seed 3',
  peerRmaAfter: 'vphi-scif source --node 6 --source-port 2010 --rounds 2 --max-size 65536 --seed 6',
} as const;

export const CARDS8: Suite = {
  name: 'cards8',
  summary: 'eight cards in one guest: all online, 9 SCIF nodes, card-to-card DIAL and RMA between far pairs, card 6 reset alone while seven stay online',
  kernel: 'mic',
  commands: Object.values(CARDS8_CMD),
  commandTimeoutS: 300,
  timeoutMs: 900_000,
  memoryMiB: 1024,
  card: { apertureSize: APERTURE, services: 'all,peer-rma', count: 8 },
};

/** Every suite, in the order `vphi test` runs them. */
export const SUITES: readonly Suite[] = [PROBE, DMA, MIC, MIC_INTX, SCIF, RMA, FAULT, CARDS, CARDS8];

export interface RunSuiteOptions {
  /** The MIC guest kernel; a MIC suite needs it, a Debian suite ignores it. */
  kernel?: string;
  /** The card's events (closed with the card), or a trace file. */
  tracer?: Tracer;
  trace?: string;
  log?: ServerOptions['log'];
  consoleFile?: string;
  onLine?: (line: string, card: X100Card) => void;
}

/** Serve the suite's card and run its guest. */
export function runSuite(s: Suite, o: RunSuiteOptions = {}): Promise<CardGuest> {
  if (s.kernel === 'mic' && !o.kernel) return Promise.reject(new Error(`${s.name}: no MIC guest kernel`));
  return runCardGuest({
    name: `vphi-${s.name}`,
    kernel: s.kernel === 'mic' ? o.kernel : undefined,
    mic: s.kernel === 'mic',
    tests: [...s.commands],
    commandTimeoutS: s.commandTimeoutS,
    timeoutMs: s.timeoutMs,
    append: s.append,
    memoryMiB: s.memoryMiB,
    card: { ...s.card, tracer: o.tracer, trace: o.trace, log: o.log },
    consoleFile: o.consoleFile,
    onLine: (l, card) => {
      s.onLine?.(l, card);
      o.onLine?.(l, card);
    },
  });
}
