/**
 * What the card's control socket (src/ctl/server.ts) answers:
 *
 *   {"cmd":"fault","spec":"KIND[:k=v,...]"}  arm a fault (device/x100/faults/spec.ts)
 *   {"cmd":"clear"}                          disarm every fault not yet fired
 *   {"cmd":"status"}                         the card: boot, SCIF, COSM, DMA channels, interrupts, faults;
 *                                            and the serving process's memory (process.memoryUsage(), KiB)
 */
import type { X100Card } from '../../device/x100/card.ts';
import { sourceName } from '../../device/x100/interrupts/controller.ts';
import { DMA_CHANNELS } from '../../device/x100/dma/regs.ts';
import { FaultSpecError, parseFaultSpec } from '../../device/x100/faults/spec.ts';
import type { CtlHandler, CtlReply } from '../ctl/server.ts';

const hex = (v: number | bigint): string => `0x${v.toString(16)}`;

/** The post code as its two characters (bits 7:0 first). */
function postcodeText(v: number): string {
  return String.fromCharCode(v & 0xff, (v >> 8) & 0xff).replace(/[^\x20-\x7e]/g, '?');
}

/** MSI-X vectors by interrupt source, from MXAR0-15 (mic_x100_program_msi_to_src_map()). */
function vectorsBySource(card: X100Card): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (let v = 0; v < 16; v++) {
    const map = card.bar4.get(`MXAR${v}`);
    for (let k = 0; k < 32; k++) if ((map >>> k) & 1) (out[sourceName(k)] ??= []).push(v);
  }
  return out;
}

export function cardStatus(card: X100Card): Record<string, unknown> {
  const vectors = vectorsBySource(card);
  const scif = card.scif;
  return {
    boot: { state: card.bootstrap.state, postcode: postcodeText(card.bar4.get('POSTCODE')), crashed: card.crashed },
    scif: {
      state: scif.state,
      node: scif.nodeId,
      // The card's doorbell (h2c_scif_db) and the host's (c2h_scif_db), with the vectors the host's doorbell interrupts on.
      h2cDb: scif.db,
      c2hDb: scif.hostDb,
      c2hVectors: scif.hostDb >= 0 ? (vectors[sourceName(scif.hostDb)] ?? []) : [],
      // Card-to-card queue pairs (SCIF_NODE_ADD): the peer, its state, our doorbell for it and its.
      p2p: scif.p2p.list().map((l) => ({ node: l.node, state: l.state, db: l.db, rdb: l.rdb })),
      rx: Object.fromEntries(scif.counts.rx),
      tx: Object.fromEntries(scif.counts.tx),
    },
    cosm: { state: card.cosm.state, heartbeats: card.cosm.heartbeats },
    dma: Array.from({ length: DMA_CHANNELS }, (_, ch) => {
      const c = card.dma.channel(ch);
      return { ch, owner: c.hostOwned ? 'host' : 'card', enabled: c.enabled, head: c.head, tail: c.tail, size: c.size, dcherr: hex(c.error) };
    }),
    irq: { mode: card.env.irq.mode(), vectors },
    faults: card.faults.list(),
  };
}

/** The serving process's memory in KiB (one process serves every card): V8's heap apart from the rest. */
export function processMemory(): Record<string, number> {
  const m = process.memoryUsage();
  const kib = (b: number) => Math.round(b / 1024);
  return { rssKiB: kib(m.rss), heapUsedKiB: kib(m.heapUsed), heapTotalKiB: kib(m.heapTotal), externalKiB: kib(m.external), arrayBuffersKiB: kib(m.arrayBuffers) };
}

export function cardCtlHandler(card: X100Card): CtlHandler {
  return (req): CtlReply => {
    switch (req.cmd) {
      case 'fault': {
        if (typeof req.spec !== 'string') return { ok: false, error: 'fault needs "spec": "KIND[:key=value,...]"' };
        try {
          return { ok: true, fault: card.faults.arm(parseFaultSpec(req.spec)) };
        } catch (e) {
          if (e instanceof FaultSpecError) return { ok: false, error: e.message };
          throw e;
        }
      }
      case 'clear':
        return { ok: true, cleared: card.faults.clear() };
      case 'status':
        return { ok: true, status: cardStatus(card), process: processMemory() };
      default:
        return { ok: false, error: `unknown command "${req.cmd}" (commands: fault, clear, status)` };
    }
  };
}
