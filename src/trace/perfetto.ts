/**
 * A trace as a timeline (`vphi trace FILE --perfetto OUT.json`): Chrome
 * trace-event JSON, as ui.perfetto.dev and chrome://tracing open it.
 *
 * Tracks (one tid each, in process 1):
 * - MMIO: every BAR access, a slice named by direction and register (W DHPR1).
 * - config space: every cfg access, named by register.
 * - SCIF node QP: every scifmsg as a slice named by opcode, and a flow
 *   from each request to its reply (REPLIES); the node's RMA actions as instants.
 * - DMA channel N: each descriptor the engine ran, a slice from the moment
 *   it became the channel's next work (the DHPR write that passed it, or the
 *   previous descriptor's end, whichever is later) to its completion event.
 * - MSI-X vector N, INTx: every irq event (raise, deliver, pending …) as an instant.
 * - card: everything else (card, conn, reset, dma map/unmap, cosm, service …) as instants.
 *
 * Timestamps are µs since the trace started, as in the trace. Accesses and
 * messages are points in time; their slices last 1 µs or up to the next
 * event on the track, whichever is shorter, so slices never overlap. Events
 * that share a µs on such a track are spread 1 ns apart, in trace order.
 */
import type { TraceEvent } from './format.ts';

export interface ChromeEvent {
  name: string;
  ph: 'X' | 'i' | 's' | 'f' | 'M';
  pid: number;
  tid: number;
  /** µs */
  ts?: number;
  /** µs, for 'X' */
  dur?: number;
  cat?: string;
  /** Flow id, for 's' and 'f'. */
  id?: number;
  /** 'e': the flow ends on the enclosing slice. */
  bp?: 'e';
  /** Instant scope: 't', the thread (track). */
  s?: 't';
  args?: Record<string, unknown>;
}

export interface ChromeTrace {
  traceEvents: ChromeEvent[];
  displayTimeUnit: 'ms';
  otherData: {
    /** Trace events converted. */
    events: number;
    /** Events without a numeric `us`, left out. */
    untimed: number;
    /** Request → reply flows. */
    flows: number;
    /** SCIF replies with no open request to pair with. */
    unpairedReplies: number;
  };
}

export const PID = 1;

/** The track ids: fixed, so a test or a second trace finds the same track at the same tid. */
export const TID = {
  mmio: 1,
  cfg: 2,
  scif: 3,
  card: 4,
  dma: (ch: number) => 10 + ch,
  intx: 99,
  msix: (vector: number) => 100 + vector,
} as const;

/** The pseudo slot "the connection of payload.ep": both endpoints, from the CNCT_GNT that joined them. */
const CONNECTION = '(connection)';

/**
 * Which replies answer which request, and the payload slot both carry
 * (scif_nodeqp.h names; slots as in device/x100/scif/msg.ts PAYLOAD): the
 * receiver of a request echoes the slot in its reply (scif_cnctreq_resp(),
 * scif_recv_reg(), scif_alloc_req(), scif_recv_mark() …). An empty slot:
 * one exchange per node (scif_node_add_ack()).
 */
const REPLIES: readonly { req: readonly string[]; reply: readonly string[]; reqSlot: string; replySlot: string }[] = [
  { req: ['SCIF_CNCT_REQ'], reply: ['SCIF_CNCT_GNT', 'SCIF_CNCT_REJ'], reqSlot: 'ep', replySlot: 'ep' },
  // scif_cnctgnt(): the GNTACK names the granting endpoint, the GNT's remote_ep.
  { req: ['SCIF_CNCT_GNT'], reply: ['SCIF_CNCT_GNTACK', 'SCIF_CNCT_GNTNACK'], reqSlot: 'remote_ep', replySlot: 'ep' },
  { req: ['SCIF_DISCNCT'], reply: ['SCIF_DISCNT_ACK'], reqSlot: 'ep', replySlot: 'ep' },
  { req: ['SCIF_ALLOC_REQ'], reply: ['SCIF_ALLOC_GNT', 'SCIF_ALLOC_REJ'], reqSlot: 'allocmsg', replySlot: 'allocmsg' },
  { req: ['SCIF_REGISTER'], reply: ['SCIF_REGISTER_ACK', 'SCIF_REGISTER_NACK'], reqSlot: 'window', replySlot: 'window' },
  { req: ['SCIF_UNREGISTER'], reply: ['SCIF_UNREGISTER_ACK', 'SCIF_UNREGISTER_NACK'], reqSlot: 'window', replySlot: 'window' },
  { req: ['SCIF_MARK'], reply: ['SCIF_MARK_ACK', 'SCIF_MARK_NACK'], reqSlot: 'fence', replySlot: 'fence' },
  { req: ['SCIF_WAIT'], reply: ['SCIF_WAIT_ACK', 'SCIF_WAIT_NACK'], reqSlot: 'fence', replySlot: 'fence' },
  { req: ['SCIF_SIG_LOCAL', 'SCIF_SIG_REMOTE'], reply: ['SCIF_SIG_ACK', 'SCIF_SIG_NACK'], reqSlot: 'fence', replySlot: 'fence' },
  { req: ['SCIF_NODE_ADD'], reply: ['SCIF_NODE_ADD_ACK', 'SCIF_NODE_ADD_NACK'], reqSlot: '', replySlot: '' },
  { req: ['SCIF_NODE_REMOVE'], reply: ['SCIF_NODE_REMOVE_ACK'], reqSlot: 'node', replySlot: 'node' },
  { req: ['SCIF_EXIT'], reply: ['SCIF_EXIT_ACK'], reqSlot: '', replySlot: '' },
  // scif_get_node_info_resp(): the same opcode back, the same completion.
  { req: ['SCIF_GET_NODE_INFO'], reply: ['SCIF_GET_NODE_INFO'], reqSlot: 'completion', replySlot: 'completion' },
  // _scif_send() announces data, _scif_recv() answers once it has read it; each names
  // its peer's endpoint, so both are keyed by the connection (CONNECTION).
  { req: ['SCIF_CLIENT_SENT'], reply: ['SCIF_CLIENT_RCVD'], reqSlot: CONNECTION, replySlot: CONNECTION },
];

const DESC_OPS = new Set(['read', 'copy', 'write']);
/** The point tracks: slices get their length from the gap to the next event. */
const AUTO = -1;

interface Item {
  tid: number;
  /** ns */
  ts: number;
  /** ns; AUTO for a point access or message; absent for an instant. */
  dur?: number;
  name: string;
  cat: string;
  args: Record<string, unknown>;
}

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function rest(e: TraceEvent, skip: readonly string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(e)) if (k !== 'us' && k !== 'kind' && !skip.includes(k) && v !== undefined) out[k] = v;
  return out;
}

const hex = (v: unknown): unknown => (typeof v === 'number' ? `0x${(v >>> 0).toString(16)}` : v);

/** The DHPR writes of one channel not yet used up: descriptors [from, to) of the ring, passed at `ns`. */
interface HeadWrite {
  ns: number;
  from: number;
  to: number;
}

function inRing(idx: number, w: HeadWrite): boolean {
  if (w.from === w.to) return false;
  return w.from < w.to ? idx >= w.from && idx < w.to : idx >= w.from || idx < w.to;
}

/** Convert parsed trace events (trace order) to Chrome trace-event JSON. */
export function toPerfetto(events: readonly TraceEvent[]): ChromeTrace {
  const items: Item[] = [];
  const tracks = new Map<number, { name: string; sort: number }>();
  const track = (tid: number, name: string): number => {
    if (!tracks.has(tid)) tracks.set(tid, { name, sort: tid });
    return tid;
  };
  let untimed = 0;

  // DMA: per channel, the unconsumed DHPR writes, the last head and the last descriptor's end.
  const heads = new Map<number, HeadWrite[]>();
  const lastHead = new Map<number, number>();
  const lastEnd = new Map<number, number>();

  // SCIF: the message items, for the flows.
  const messages: { item: Item; op: string; dir: string; payload: Record<string, unknown> }[] = [];

  for (const e of events) {
    const us = num(e.us);
    if (us === undefined) {
      untimed++;
      continue;
    }
    const ns = Math.round(us * 1000);
    switch (e.kind) {
      case 'mmio': {
        const name = e.unknown || e.reg == null ? `<undeclared ${hex(e.off)}>` : String(e.reg);
        items.push({ tid: track(TID.mmio, 'MMIO'), ts: ns, dur: AUTO, name: `${e.op === 'w' ? 'W' : 'R'} ${name}`, cat: 'mmio', args: { ...rest(e, []), off: hex(e.off), val: hex(e.val), ...(e.now !== undefined ? { now: hex(e.now) } : {}), ...(e.word !== undefined ? { word: hex(e.word) } : {}) } });
        // dma_chan DHPR: the driver passes descriptors [old head, new head) to the engine.
        const ch = /^dma(\d+)$/.exec(String(e.block));
        if (ch && e.op === 'w' && String(e.reg).startsWith('DHPR')) {
          const n = Number(ch[1]);
          const fields = e.fields as Record<string, unknown> | undefined;
          const to = num(fields?.HEAD) ?? num(e.now) ?? num(e.val);
          if (to !== undefined) {
            const from = lastHead.get(n) ?? 0;
            if (!heads.has(n)) heads.set(n, []);
            heads.get(n)!.push({ ns, from, to });
            lastHead.set(n, to);
          }
        }
        break;
      }
      case 'cfg':
        items.push({ tid: track(TID.cfg, 'config space'), ts: ns, dur: AUTO, name: `${e.op === 'w' ? 'W' : 'R'} ${String(e.reg)}`, cat: 'cfg', args: { ...rest(e, []), off: hex(e.off), val: hex(e.val) } });
        break;
      case 'irq': {
        const vector = num(e.vector) ?? 0;
        const tid = e.mode === 'msix' ? track(TID.msix(vector), `MSI-X vector ${vector}`) : track(TID.intx, 'INTx');
        items.push({ tid, ts: ns, name: `${String(e.action)}${e.src ? ` ${String(e.src)}` : ''}`, cat: 'irq', args: rest(e, []) });
        break;
      }
      case 'scif': {
        const op = str(e.op);
        if (op !== undefined && (e.dir === 'tx' || e.dir === 'rx')) {
          const item: Item = { tid: track(TID.scif, 'SCIF node QP'), ts: ns, dur: AUTO, name: op, cat: 'scif', args: rest(e, []) };
          items.push(item);
          const payload = e.payload && typeof e.payload === 'object' ? (e.payload as Record<string, unknown>) : {};
          messages.push({ item, op, dir: e.dir, payload });
        } else {
          items.push({ tid: track(TID.scif, 'SCIF node QP'), ts: ns, name: `${e.rma ? 'rma ' : ''}${String(e.action ?? e.op ?? 'scif')}`, cat: 'scif', args: rest(e, []) });
        }
        break;
      }
      case 'dma': {
        const ch = num(e.ch);
        const idx = num(e.idx);
        if (ch !== undefined && idx !== undefined && DESC_OPS.has(String(e.op))) {
          // dma_chan: the engine runs descriptors in ring order, one at a time.
          const q = heads.get(ch) ?? [];
          while (q.length && !inRing(idx, q[0])) q.shift();
          const submitted = q.length ? q[0].ns : undefined;
          const start = Math.min(ns, Math.max(lastEnd.get(ch) ?? -Infinity, submitted ?? ns));
          lastEnd.set(ch, ns);
          items.push({ tid: track(TID.dma(ch), `DMA channel ${ch}`), ts: start, dur: ns - start, name: String(e.type ?? e.op), cat: 'dma', args: { ...rest(e, ['ch']), ...(submitted !== undefined ? { submitted_us: submitted / 1000 } : {}) } });
        } else if (ch !== undefined) {
          items.push({ tid: track(TID.dma(ch), `DMA channel ${ch}`), ts: ns, name: String(e.op), cat: 'dma', args: rest(e, ['ch']) });
        } else {
          items.push({ tid: track(TID.card, 'card'), ts: ns, name: `dma ${String(e.op)}`, cat: 'dma', args: rest(e, []) });
        }
        break;
      }
      case 'reset':
        // A reset puts every DMA channel's ring back (DHPR/DTPR 0).
        heads.clear();
        lastHead.clear();
        items.push({ tid: track(TID.card, 'card'), ts: ns, name: 'reset', cat: 'reset', args: rest(e, []) });
        break;
      default: {
        const ch = num(e.ch);
        const tid = ch !== undefined && /dma|completion/.test(String(e.kind)) ? track(TID.dma(ch), `DMA channel ${ch}`) : track(TID.card, 'card');
        const what = e.action ?? e.op ?? e.state ?? e.msg;
        items.push({ tid, ts: ns, name: `${String(e.kind)}${what !== undefined && typeof what !== 'object' ? ` ${String(what)}` : ''}`, cat: String(e.kind), args: rest(e, []) });
      }
    }
  }

  // Per track in time order (stable: trace order within a µs), then the point slices' lengths.
  const byTrack = new Map<number, Item[]>();
  for (const it of items) {
    if (!byTrack.has(it.tid)) byTrack.set(it.tid, []);
    byTrack.get(it.tid)!.push(it);
  }
  for (const list of byTrack.values()) {
    list.sort((a, b) => a.ts - b.ts);
    const point = list.some((it) => it.dur === AUTO);
    if (!point) continue;
    for (let i = 1; i < list.length; i++) if (list[i].ts <= list[i - 1].ts) list[i].ts = list[i - 1].ts + 1;
    for (let i = 0; i < list.length; i++) {
      if (list[i].dur !== AUTO) continue;
      const next = i + 1 < list.length ? list[i + 1].ts : Infinity;
      list[i].dur = Math.min(1000, next - list[i].ts);
    }
  }

  const out: ChromeEvent[] = [{ name: 'process_name', ph: 'M', pid: PID, tid: 0, args: { name: 'vphi x100' } }];
  for (const [tid, t] of [...tracks].sort((a, b) => a[0] - b[0])) {
    out.push({ name: 'thread_name', ph: 'M', pid: PID, tid, args: { name: t.name } });
    out.push({ name: 'thread_sort_index', ph: 'M', pid: PID, tid, args: { sort_index: t.sort } });
  }
  for (const tid of [...byTrack.keys()].sort((a, b) => a - b)) {
    for (const it of byTrack.get(tid)!) {
      const base = { name: it.name, pid: PID, tid, ts: it.ts / 1000, cat: it.cat, args: it.args };
      out.push(it.dur === undefined ? { ...base, ph: 'i', s: 't' } : { ...base, ph: 'X', dur: it.dur / 1000 });
    }
  }

  const { flows, unpaired } = pairMessages(messages);
  let id = 0;
  for (const [req, reply] of flows) {
    id++;
    // Inside each slice, so the flow binds to it whatever the order of equal timestamps.
    const mid = (it: Item) => (it.ts + (it.dur ?? 0) / 2) / 1000;
    const name = `${req.name} → ${reply.name}`;
    out.push({ name, ph: 's', pid: PID, tid: TID.scif, ts: mid(req), cat: 'scif', id });
    out.push({ name, ph: 'f', bp: 'e', pid: PID, tid: TID.scif, ts: mid(reply), cat: 'scif', id });
  }

  return { traceEvents: out, displayTimeUnit: 'ms', otherData: { events: events.length - untimed, untimed, flows: id, unpairedReplies: unpaired } };
}

/**
 * Pair each reply with the earliest open request of its kind, in the other
 * direction, on the same handle (the slot both carry). A message may be
 * both (CNCT_GNT answers CNCT_REQ and asks for CNCT_GNTACK).
 */
function pairMessages(messages: readonly { item: Item; op: string; dir: string; payload: Record<string, unknown> }[]): { flows: [Item, Item][]; unpaired: number } {
  const open = new Map<string, Item[]>();
  const flows: [Item, Item][] = [];
  let unpaired = 0;
  // scif_cnctgnt(): the two endpoints of a connection, each by its own address.
  const peer = new Map<string, string>();
  const handle = (slot: string, p: Record<string, unknown>): string | undefined => {
    if (slot === '') return '';
    if (slot === CONNECTION) {
      const ep = str(p.ep);
      return ep === undefined ? undefined : [ep, peer.get(ep) ?? '?'].sort().join('~');
    }
    const v = p[slot];
    return v === undefined ? undefined : String(v);
  };
  for (const m of messages) {
    if (m.op === 'SCIF_CNCT_GNT') {
      const a = str(m.payload.ep);
      const b = str(m.payload.remote_ep);
      if (a !== undefined && b !== undefined) {
        peer.set(a, b);
        peer.set(b, a);
      }
    }
    const other = m.dir === 'tx' ? 'rx' : 'tx';
    let answered = false;
    REPLIES.forEach((r, g) => {
      if (!r.reply.includes(m.op)) return;
      const h = handle(r.replySlot, m.payload);
      const q = h === undefined ? undefined : open.get(`${g}|${other}|${h}`);
      if (q?.length) {
        flows.push([q.shift()!, m.item]);
        answered = true;
      } else if (!r.req.includes(m.op)) {
        unpaired++;
      }
    });
    REPLIES.forEach((r, g) => {
      if (!r.req.includes(m.op) || (answered && r.reply.includes(m.op))) return;
      const h = handle(r.reqSlot, m.payload);
      if (h === undefined) return;
      const key = `${g}|${m.dir}|${h}`;
      if (!open.has(key)) open.set(key, []);
      open.get(key)!.push(m.item);
    });
  }
  return { flows, unpaired };
}
