import { describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { parseTrace, type TraceEvent } from './format.ts';
import { TID, toPerfetto, type ChromeEvent, type ChromeTrace } from './perfetto.ts';

/** A guest run from a MIC kernel (SCIF, RMA, DMA, interrupts); checked when it is there. */
const REAL_TRACE = '/tmp/repro/c.trace';

const mmio = (us: number, op: 'r' | 'w', block: string, reg: string, off: number, val: number, fields?: Record<string, number>): TraceEvent => ({ us, kind: 'mmio', bar: 4, op, off, size: 4, val, block, reg, ...(fields ? { fields } : {}), ...(op === 'w' ? { now: val } : {}) });
const scif = (us: number, dir: 'tx' | 'rx', op: string, payload: Record<string, string>): TraceEvent => ({ us, kind: 'scif', dir, op, uop: 0, src: '1:2003', dst: '0:1089', payload });

const SYNTHETIC: TraceEvent[] = [
  { us: 10, kind: 'card', action: 'ready' },
  mmio(100, 'w', 'dma1', 'DHPR1', 0x1a044, 2, { HEAD: 2 }),
  { us: 110, kind: 'dma', op: 'copy', ch: 1, idx: 0, type: 'MEMCPY', src: '0x1000', dst: '0x2000', len: 4096 },
  { us: 120, kind: 'dma', op: 'write', ch: 1, idx: 1, type: 'STATUS', dst: '0x3000', len: 8, val: '0x0', intr: true },
  { us: 121, kind: 'irq', mode: 'msix', vector: 1, action: 'raise', src: 'DMA1' },
  { us: 122, kind: 'irq', mode: 'msix', vector: 1, action: 'deliver', src: 'DMA1' },
  mmio(130, 'r', 'dma1', 'DSTAT1', 0x1a060, 2, { COUNT: 2 }),
  { us: 131, kind: 'mmio', bar: 4, op: 'r', off: 0xab00, size: 4, val: 0, block: null, reg: null, unknown: true },
  // card-side channel: no DHPR in the trace, a zero-length slice
  { us: 140, kind: 'dma', op: 'copy', ch: 4, idx: 0, type: 'MEMCPY', src: '0x1', dst: '0x2', len: 64 },
  { us: 150, kind: 'irq', mode: 'intx', vector: 0, action: 'level', level: true },
  scif(200, 'tx', 'SCIF_CNCT_REQ', { ep: '0xa', qp_offset: '0x1000' }),
  scif(210, 'rx', 'SCIF_CNCT_GNT', { ep: '0xa', qp_offset: '0x2000', remote_ep: '0xb' }),
  scif(215, 'tx', 'SCIF_CNCT_GNTACK', { ep: '0xb', qp_offset: '0x1000' }),
  scif(300, 'tx', 'SCIF_REGISTER', { ep: '0xb', remote_window: '0x0', window: '0xw1' }),
  scif(301, 'tx', 'SCIF_REGISTER', { ep: '0xb', remote_window: '0x0', window: '0xw2' }),
  scif(305, 'rx', 'SCIF_REGISTER_ACK', { ep: '0xb', remote_window: '0x0', window: '0xw2' }),
  scif(306, 'rx', 'SCIF_REGISTER_NACK', { ep: '0xb', remote_window: '0x0', window: '0xw1' }),
  scif(400, 'tx', 'SCIF_ALLOC_REQ', { nr_pages: '0x1', allocmsg: '0xm' }),
  scif(401, 'tx', 'SCIF_ALLOC_REQ', { nr_pages: '0x2', allocmsg: '0xm' }),
  scif(410, 'rx', 'SCIF_ALLOC_GNT', { remote_window: '0x1', phys_addr: '0x0', allocmsg: '0xm' }),
  scif(411, 'rx', 'SCIF_ALLOC_GNT', { remote_window: '0x2', phys_addr: '0x0', allocmsg: '0xm' }),
  // a reply in the request's own direction answers nothing
  scif(500, 'rx', 'SCIF_ALLOC_REQ', { nr_pages: '0x1', allocmsg: '0xn' }),
  scif(501, 'rx', 'SCIF_ALLOC_GNT', { remote_window: '0x3', phys_addr: '0x0', allocmsg: '0xn' }),
  // each names the peer's endpoint: the connection 0xa~0xb from the CNCT_GNT
  scif(600, 'tx', 'SCIF_CLIENT_SENT', { ep: '0xa' }),
  scif(610, 'rx', 'SCIF_CLIENT_RCVD', { ep: '0xb' }),
  scif(620, 'tx', 'SCIF_MARK', { ep: '0xa', fence: '0xf' }),
  scif(621, 'rx', 'SCIF_MARK_ACK', { ep: '0xb', fence: '0xf', mark: '0x1' }),
  { us: 622, kind: 'scif', rma: true, action: 'fence-mark', ep: 6, by: 'card', mark: 1 },
  // two accesses in one µs
  mmio(700, 'w', 'spad', 'SPAD0', 0x1ab20, 1),
  mmio(700, 'r', 'spad', 'SPAD0', 0x1ab20, 1),
  { kind: 'conn', attached: true },
];

const isDesc = (e: TraceEvent) => e.kind === 'dma' && typeof e.ch === 'number' && typeof e.idx === 'number' && ['read', 'copy', 'write'].includes(String(e.op));

/** The checks both traces get: tracks, slices and instants against the events, flows, time. */
function check(events: TraceEvent[], t: ChromeTrace): void {
  const out = (JSON.parse(JSON.stringify(t)) as ChromeTrace).traceEvents;
  const names = new Map(out.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => [e.tid, String(e.args!.name)]));
  const on = (tid: number) => out.filter((e) => e.tid === tid && (e.ph === 'X' || e.ph === 'i'));

  // DMA: one slice per descriptor on its channel's track, ending at the descriptor's event.
  const channels = [...new Set(events.filter(isDesc).map((e) => e.ch as number))];
  expect(channels.length).toBeGreaterThan(0);
  for (const ch of channels) {
    expect(names.get(TID.dma(ch))).toBe(`DMA channel ${ch}`);
    const descs = events.filter((e) => isDesc(e) && e.ch === ch);
    const slices = on(TID.dma(ch)).filter((e) => e.ph === 'X');
    expect(slices.length, `channel ${ch}`).toBe(descs.length);
    descs.forEach((d, i) => {
      expect(slices[i].ts! + slices[i].dur!).toBeCloseTo(d.us!, 3);
      expect(slices[i].dur!).toBeGreaterThanOrEqual(0);
      expect(slices[i].args!.idx).toBe(d.idx);
    });
  }

  // irq: every event an instant on its vector's track, at its µs.
  const irqs = events.filter((e) => e.kind === 'irq');
  expect(irqs.length).toBeGreaterThan(0);
  const irqTid = (e: TraceEvent) => (e.mode === 'msix' ? TID.msix(e.vector as number) : TID.intx);
  for (const tid of new Set(irqs.map(irqTid))) {
    const mine = irqs.filter((e) => irqTid(e) === tid);
    const inst = on(tid);
    expect(inst.every((e) => e.ph === 'i' && e.s === 't')).toBe(true);
    expect(inst.map((e) => [e.ts, e.args!.action])).toEqual(mine.map((e) => [e.us, e.action]));
    expect(names.get(tid)).toMatch(/^(MSI-X vector \d+|INTx)$/);
  }

  // MMIO: a slice per access, named and tagged by register, near its µs.
  const accesses = events.filter((e) => e.kind === 'mmio');
  const ms = on(TID.mmio);
  expect(names.get(TID.mmio)).toBe('MMIO');
  expect(ms.length).toBe(accesses.length);
  accesses.forEach((a, i) => {
    expect(ms[i].ph).toBe('X');
    expect(ms[i].args!.reg).toBe(a.reg);
    expect(ms[i].name).toBe(a.reg ? `${a.op === 'w' ? 'W' : 'R'} ${String(a.reg)}` : `R <undeclared 0x${(a.off as number).toString(16)}>`);
    expect(ms[i].ts! - a.us!).toBeGreaterThanOrEqual(0);
    expect(ms[i].ts! - a.us!).toBeLessThan(0.1);
  });

  // Per track: time runs forward; the point slices never overlap.
  for (const tid of names.keys()) {
    const list = on(tid);
    for (let i = 1; i < list.length; i++) expect(list[i].ts!, `${names.get(tid)} #${i}`).toBeGreaterThanOrEqual(list[i - 1].ts!);
    if (tid === TID.mmio || tid === TID.scif) {
      for (let i = 1; i < list.length; i++) if (list[i - 1].ph === 'X') expect(list[i - 1].ts! + list[i - 1].dur!).toBeLessThanOrEqual(list[i].ts! + 1e-6);
    }
  }

  // Flows: each id one 's' and one 'f', forward in time, each inside a SCIF message slice.
  const scifSlices = on(TID.scif).filter((e) => e.ph === 'X');
  const inside = (f: ChromeEvent) => scifSlices.find((x) => f.ts! >= x.ts! && f.ts! <= x.ts! + x.dur!);
  const flows = new Map<number, ChromeEvent[]>();
  for (const e of out.filter((e) => e.ph === 's' || e.ph === 'f')) {
    if (!flows.has(e.id!)) flows.set(e.id!, []);
    flows.get(e.id!)!.push(e);
  }
  expect(flows.size).toBe(t.otherData.flows);
  for (const [id, [s, f, ...more]] of flows) {
    expect(more, `flow ${id}`).toEqual([]);
    expect([s.ph, f.ph, f.bp]).toEqual(['s', 'f', 'e']);
    expect(f.ts!).toBeGreaterThan(s.ts!);
    const [req, reply] = [inside(s)!, inside(f)!];
    expect(s.name).toBe(`${req.name} → ${reply.name}`);
    expect(reply.args!.dir).not.toBe(req.args!.dir);
  }
}

const flowNames = (t: ChromeTrace) => t.traceEvents.filter((e) => e.ph === 's').map((e) => e.name);

describe('the trace as a Perfetto timeline', () => {
  it('puts a synthetic trace on its tracks, with SCIF request → reply flows', () => {
    const t = toPerfetto(SYNTHETIC);
    check(SYNTHETIC, t);
    expect(t.otherData).toEqual({ events: SYNTHETIC.length - 1, untimed: 1, flows: 8, unpairedReplies: 1 });
    expect(flowNames(t)).toEqual([
      'SCIF_CNCT_REQ → SCIF_CNCT_GNT',
      'SCIF_CNCT_GNT → SCIF_CNCT_GNTACK',
      'SCIF_REGISTER → SCIF_REGISTER_ACK',
      'SCIF_REGISTER → SCIF_REGISTER_NACK',
      'SCIF_ALLOC_REQ → SCIF_ALLOC_GNT',
      'SCIF_ALLOC_REQ → SCIF_ALLOC_GNT',
      'SCIF_CLIENT_SENT → SCIF_CLIENT_RCVD',
      'SCIF_MARK → SCIF_MARK_ACK',
    ]);
    const at = (ts: number, ph: string) => t.traceEvents.find((e) => e.ph === ph && Math.floor(e.ts!) === ts)!;
    const pair = (req: number, reply: number) => expect(t.traceEvents.filter((e) => e.ph === 's' && Math.floor(e.ts!) === req)[0].id).toBe(at(reply, 'f').id);
    pair(200, 210);
    pair(210, 215);
    pair(301, 305); // by window, not by order
    pair(300, 306);
    pair(400, 410); // the earliest open request first
    pair(401, 411);
    pair(600, 610);
    pair(620, 621);
    expect(t.traceEvents.some((e) => e.ph === 'f' && Math.floor(e.ts!) === 501)).toBe(false);
  });

  it('starts a descriptor at the DHPR write that passed it or at the end of the one before', () => {
    const ch1 = toPerfetto(SYNTHETIC).traceEvents.filter((e) => e.tid === TID.dma(1) && e.ph === 'X');
    expect(ch1.map((e) => [e.name, e.ts, e.dur])).toEqual([['MEMCPY', 100, 10], ['STATUS', 110, 10]]);
    const ch4 = toPerfetto(SYNTHETIC).traceEvents.filter((e) => e.tid === TID.dma(4) && e.ph === 'X');
    expect(ch4.map((e) => [e.ts, e.dur])).toEqual([[140, 0]]);
  });

  it('spreads accesses of one µs 1 ns apart and ends each slice before the next', () => {
    const spad = toPerfetto(SYNTHETIC).traceEvents.filter((e) => e.tid === TID.mmio && e.name.endsWith('SPAD0'));
    expect(spad.map((e) => [e.name, e.ts, e.dur])).toEqual([['W SPAD0', 700, 0.001], ['R SPAD0', 700.001, 1]]);
  });

  it('converts a MIC guest run', { timeout: 60_000 }, () => {
    if (!existsSync(REAL_TRACE)) return;
    const { events } = parseTrace(readFileSync(REAL_TRACE, 'utf8'));
    const t = toPerfetto(events);
    check(events, t);
    // Every connection and every window exchange on the node QP pairs up.
    const count = (op: string) => events.filter((e) => e.kind === 'scif' && e.op === op).length;
    const flows = (name: string) => flowNames(t).filter((n) => n === name).length;
    expect(flows('SCIF_CNCT_REQ → SCIF_CNCT_GNT')).toBe(count('SCIF_CNCT_REQ'));
    expect(flows('SCIF_CNCT_GNT → SCIF_CNCT_GNTACK')).toBe(count('SCIF_CNCT_GNTACK'));
    expect(flows('SCIF_REGISTER → SCIF_REGISTER_ACK') + flows('SCIF_REGISTER → SCIF_REGISTER_NACK')).toBe(count('SCIF_REGISTER'));
    expect(flows('SCIF_ALLOC_REQ → SCIF_ALLOC_GNT') + flows('SCIF_ALLOC_REQ → SCIF_ALLOC_REJ')).toBe(count('SCIF_ALLOC_REQ'));
    expect(flows('SCIF_DISCNCT → SCIF_DISCNT_ACK')).toBe(count('SCIF_DISCNT_ACK'));
  });
});
