import { describe, expect, it } from 'vitest';
import { bit, block, field, reg, regArray } from '../regs/define.ts';
import { RegisterFile } from '../regs/file.ts';
import { memoryTracer } from './tracer.ts';
import type { TraceEvent } from './format.ts';
import { coverage, declared, formatCoverage, shareLine, type CoverageReport } from './coverage.ts';

/** Two small blocks shaped like the x100's: scratchpads, and a DMA channel's DCAR/DSTAT. */
const SPAD = block('spad', 0x1ab20, 'scratchpads', [regArray('SPAD', 2, 0x00, 4, 'RW', 0, 'scratchpad')]);
const DMA = block('dma0', 0x1a000, 'DMA channel 0', [
  reg('DCAR0', 0x00, 'RW', 0, 'channel attributes', [bit('IM0', 24, 'interrupt mask'), field('MODE', 0, 4, 'mode')]),
  reg('DSTAT0', 0x04, 'W1C', 0x80000000, 'status', [bit('DONE', 31, 'done'), field('COUNT', 0, 16, 'completions')]),
  reg('DHPR0', 0x08, 'RW', 0, 'head', [field('HEAD', 0, 16, 'head')], { selfClear: 0 }),
  reg('DID0', 0x0c, 'RO', 0x225c, 'id', [field('ID', 0, 16, 'id')]),
]);

function run(drive: (f: RegisterFile) => void): { report: CoverageReport; events: TraceEvent[] } {
  const t = memoryTracer();
  const f = new RegisterFile('bar4', 4, 0x20000, [DMA, SPAD], t);
  drive(f);
  const events = t.events as TraceEvent[];
  return { report: coverage(declared(4, f.listing()), events), events };
}

const regRow = (r: CoverageReport, name: string) => r.blocks.flatMap((b) => b.registers).find((x) => x.name === name)!;
const fieldRow = (r: CoverageReport, reg: string, name: string) => regRow(r, reg).fields.find((x) => x.name === name)!;

describe('register coverage of a trace', () => {
  it('counts the reads and writes of each register', () => {
    const { report } = run((f) => {
      f.read(0x1ab20, 4);
      f.read(0x1ab20, 4);
      f.write(0x1ab20, 4, 7);
    });
    expect(regRow(report, 'SPAD0')).toMatchObject({ reads: 2, writes: 1, abs: 0x1ab20, block: 'spad' });
    expect(regRow(report, 'SPAD1')).toMatchObject({ reads: 0, writes: 0 });
    expect(report.blocks.map((b) => [b.name, b.touched, b.registers.length, b.reads, b.writes])).toEqual([['dma0', 0, 4, 0, 0], ['spad', 1, 2, 2, 1]]);
  });

  it("counts a field's reads as its register's reads, its writes as the writes that change it", () => {
    const { report } = run((f) => {
      f.read(0x1a000, 4); // DCAR0: both fields read
      f.write(0x1a000, 4, 1 << 24); // IM0 0 → 1
      f.write(0x1a000, 4, 1 << 24); // the same again: no field changes
      f.write(0x1a000, 4, (1 << 24) | 2); // MODE 0 → 2
      f.write(0x1a000, 1, 3); // a byte write: MODE 2 → 3, IM0 kept
    });
    expect(regRow(report, 'DCAR0')).toMatchObject({ reads: 1, writes: 4 });
    expect(fieldRow(report, 'DCAR0', 'IM0')).toEqual({ name: 'IM0', reads: 1, writes: 1 });
    expect(fieldRow(report, 'DCAR0', 'MODE')).toEqual({ name: 'MODE', reads: 1, writes: 2 });
  });

  it('counts a W1C bit cleared by writing 1, not a write the card ignores', () => {
    const { report } = run((f) => {
      f.write(0x1a004, 4, 0x80000000); // DSTAT0.DONE (reset 1) cleared
      f.write(0x1a004, 4, 0x80000000); // written 1 where 0 is: counts too
      f.write(0x1a00c, 4, 0x1234); // DID0 is RO
    });
    expect(fieldRow(report, 'DSTAT0', 'DONE').writes).toBe(2);
    expect(fieldRow(report, 'DSTAT0', 'COUNT').writes).toBe(0);
    expect(regRow(report, 'DID0').writes).toBe(1);
    expect(fieldRow(report, 'DID0', 'ID').writes).toBe(0);
  });

  it('compares against the reset value again after a reset, and decodes events without fields', () => {
    const ev = (op: 'r' | 'w', val: number, extra: Record<string, unknown> = {}): TraceEvent => ({ us: 0, kind: 'mmio', bar: 4, op, off: 0x1a008, size: 4, val, block: 'dma0', reg: 'DHPR0', ...(op === 'w' ? { now: val } : {}), ...extra });
    const decls = declared(4, new RegisterFile('bar4', 4, 0x20000, [DMA, SPAD]).listing());
    const r = coverage(decls, [ev('w', 5), ev('w', 5), { us: 1, kind: 'reset', type: 0 }, ev('w', 0), ev('w', 5), ev('r', 9), ev('w', 9, { fields: { HEAD: 9 } })]);
    // 0→5 counts, 5→5 not; after the reset 0→0 not, 0→5 counts; the read shows 9, so writing 9 does not
    expect(regRow(r, 'DHPR0')).toMatchObject({ reads: 1, writes: 5 });
    expect(fieldRow(r, 'DHPR0', 'HEAD')).toEqual({ name: 'HEAD', reads: 1, writes: 2 });
  });

  it('lists the undeclared offsets the guest touched', () => {
    const { report } = run((f) => {
      f.read(0x1ab40, 4);
      f.write(0x1ab40, 4, 1);
      f.write(0x1ab40, 4, 2);
      f.read(0x100, 2);
    });
    expect(report.undeclared).toEqual([
      { bar: 4, off: 0x100, reads: 1, writes: 0 },
      { bar: 4, off: 0x1ab40, reads: 1, writes: 2 },
    ]);
    expect(report.touched).toBe(0);
  });

  it('gives the share of declared registers touched, and renders it all as text', () => {
    const { report } = run((f) => {
      f.read(0x1ab20, 4);
      f.read(0x1ab20, 4);
      f.write(0x1ab20, 4, 1);
      f.read(0x1a004, 4);
      f.write(0x1a008, 4, 3);
      f.read(0x1ab40, 4);
    });
    expect([report.registers, report.touched, report.accesses]).toEqual([6, 3, 6]);
    expect(shareLine(report)).toBe('3 of 6 registers (50.0%) touched');
    const text = formatCoverage(report);
    expect(text).toContain('dma0 (bar4 0x1a000): 2 of 4 registers touched');
    expect(text).toContainEqual(expect.stringMatching(/^ {2}SPAD0 +0x1ab20 {2}R +2 {2}W +1$/));
    expect(text).toContainEqual(expect.stringMatching(/^ {4}DONE +R +1 {2}W +0$/));
    expect(text).toContain('undeclared offsets: 1');
    expect(text).toContainEqual(expect.stringMatching(/^ {2}bar4 +0x1ab40 {2}R +1 {2}W +0$/));
    expect(text.at(-1)).toBe('3 of 6 registers (50.0%) touched, 6 accesses');
    // one column for the counts, whatever the row
    expect(new Set(text.filter((l) => / R +\d/.test(l)).map((l) => l.indexOf(' R ')))).toHaveLength(1);
  });

  it('shows 0% for a trace without accesses', () => {
    expect(shareLine(coverage([], []))).toBe('0 of 0 registers (0.0%) touched');
  });
});
