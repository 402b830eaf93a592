import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTrace, parseTrace, type TraceEvent } from './format.ts';
import { createTracer, memoryTracer, TraceRegister } from './tracer.ts';
import { TraceWriter } from './writer.ts';
import { RegisterFile } from '../regs/file.ts';
import { bit, block, field, reg, regArray } from '../regs/define.ts';

/** A small block shaped like the x100 scratchpads (mic_x100_read_spad(): SBOX 0xAB20 + 4·n). */
const SPAD_BLOCK = block('spad', 0x1ab20, 'scratchpads', [
  regArray('SPAD', 2, 0x00, 4, 'RW', 0, 'scratchpad'),
  reg('SPAD2', 0x08, 'RW', 0x04000001, 'download info', [
    bit('READY', 0, 'ready for a download'),
    field('APIC_ID', 1, 9, 'bootstrap APIC id'),
    field('DOWNLOAD_ADDR', 12, 20, 'download address >> 12'),
  ]),
]);

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function writeTrace(): string {
  const dir = mkdtempSync(join(tmpdir(), 'vphi-trace-'));
  dirs.push(dir);
  const file = join(dir, 't.jsonl');
  const t = createTracer(file);
  const f = new RegisterFile('bar4', 4, 0x20000, [SPAD_BLOCK], t);
  f.write(0x1ab20, 4, 0xc0de0000);
  f.read(0x1ab28, 4);
  f.read(0x1f000, 4);
  t.cfg({ op: 'w', off: 4, size: 2, val: 6, reg: 'COMMAND' });
  t.irq({ mode: 'msix', vector: 4, action: 'deliver', src: 'DB0' });
  t.dma({ op: 'map', iova: '0x0', len: 4096 });
  t.close();
  return file;
}

describe('trace files', () => {
  it('are one JSON object per line with a microsecond timestamp, a register with fields declared before its first access', () => {
    const lines = readFileSync(writeTrace(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(7);
    expect(lines[0]).toMatchObject({ kind: 'mmio', bar: 4, op: 'w', reg: 'SPAD0', block: 'spad', val: 0xc0de0000 });
    expect(typeof lines[0].us).toBe('number');
    expect(lines[1]).toEqual({ us: expect.any(Number), kind: 'regdef', bar: 4, block: 'spad', reg: 'SPAD2', abs: 0x1ab28, fields: [['READY', 0, 1], ['APIC_ID', 1, 9], ['DOWNLOAD_ADDR', 12, 20]] });
    // raw in the file, decoded when read
    expect(lines[2]).toEqual({ us: expect.any(Number), kind: 'mmio', bar: 4, op: 'r', off: 0x1ab28, size: 4, val: 0x04000001, block: 'spad', reg: 'SPAD2' });
    expect(parseTrace(readFileSync(writeTrace(), 'utf8')).events[1].fields).toEqual({ READY: 1, APIC_ID: 0, DOWNLOAD_ADDR: 0x4000 });
  });

  it('read back as the events an in-memory tracer keeps, fields included (byte, halfword, read-only, self-clearing, unknown)', () => {
    const REGS = block('regs', 0x100, 'test', [
      reg('CTRL', 0x0, 'RW', 0x55, 'control', [field('MODE', 0, 4, 'mode'), field('MID', 8, 8, 'middle'), bit('GO', 31, 'start')], { selfClear: 'GO' }),
      reg('STAT', 0x4, 'W1C', 0xff, 'status', [bit('DONE', 0, 'done'), field('CODE', 16, 16, 'code')]),
      reg('ID', 0x8, 'RO', 0x8086225c, 'identity', [field('DEV', 16, 16, 'device')]),
      reg('PLAIN', 0xc, 'RW', 0, 'no fields'),
    ]);
    const drive = (f: RegisterFile) => {
      f.write(0x100, 4, 0x80000a03);
      f.write(0x101, 1, 0x7f);
      f.read(0x101, 1);
      f.read(0x102, 2);
      f.write(0x106, 2, 0xbeef);
      f.write(0x104, 4, 1);
      f.read(0x104, 4);
      f.write(0x108, 4, 0);
      f.read(0x10a, 2);
      f.write(0x10c, 4, 0xffffffff);
      f.read(0x10c, 4);
      f.write(0x800, 4, 0x1234);
      f.read(0x802, 2);
    };
    const mem = memoryTracer();
    drive(new RegisterFile('bar4', 4, 0x1000, [REGS], mem));
    const dir = mkdtempSync(join(tmpdir(), 'vphi-trace-'));
    dirs.push(dir);
    const file = join(dir, 'm.jsonl');
    const t = createTracer(file, { warn: () => {} });
    drive(new RegisterFile('bar4', 4, 0x1000, [REGS], t));
    t.close();
    const text = readFileSync(file, 'utf8');
    expect(text.match(/"kind":"regdef"/g)).toHaveLength(3); // CTRL, STAT, ID: once each
    const strip = ({ us: _us, word: _word, ...e }: TraceEvent) => e;
    expect(parseTrace(text).events.map(strip)).toEqual(mem.events.map((e) => JSON.parse(JSON.stringify(e)) as TraceEvent));
  });

  it('write numbers as JSON does, up to 2^53 and beyond', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vphi-trace-'));
    dirs.push(dir);
    const file = join(dir, 'n.jsonl');
    const w = new TraceWriter(file);
    const r = new TraceRegister(12, 'b', reg('R', 0, 'RW', 0, ''), 0);
    const nums = [0, 9, 10, 99, 100, 12345, 99999, 100000, 2 ** 31 - 1, 2 ** 31, 0xffffffff, 2 ** 32, 1e10, 123456789012345, 2 ** 53 - 1, 2 ** 53, 1.5, -1, NaN];
    for (const n of nums) w.access(r, 'w', n, 4, n, n, n);
    w.close();
    const got = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(got.map((e) => [e.off, e.val, e.now])).toEqual(nums.map((n) => Array(3).fill(Number.isNaN(n) ? null : n)));
    expect(got[0]).toEqual({ us: expect.any(Number), kind: 'mmio', bar: 12, op: 'w', off: 0, size: 4, val: 0, block: 'b', reg: 'R', now: 0 });
  });

  it('pretty-print with names, and filter by register, block and kind', () => {
    const text = readFileSync(writeTrace(), 'utf8');
    const all = formatTrace(text).lines;
    expect(all).toHaveLength(6);
    expect(all[0]).toMatch(/mmio W bar4 0x1ab20 spad\.SPAD0 +<- 0xc0de0000/);
    expect(all[1]).toMatch(/spad\.SPAD2 .*-> 0x04000001 \{READY DOWNLOAD_ADDR=0x4000\}/);
    expect(all[2]).toMatch(/<unknown>/);
    expect(all[3]).toMatch(/cfg  W 0x004 COMMAND +<- 0x0006/);
    expect(all[4]).toMatch(/irq  msix vector 4 deliver \(DB0\)/);
    expect(formatTrace(text, { regs: ['SPAD2'] }).lines).toHaveLength(1);
    expect(formatTrace(text, { regs: ['SPAD*'] }).lines).toHaveLength(2);
    expect(formatTrace(text, { blocks: ['spad'] }).lines).toHaveLength(2);
    expect(formatTrace(text, { kinds: ['irq', 'dma'] }).lines).toHaveLength(2);
  });

  it('count malformed lines instead of failing', () => {
    expect(formatTrace('{"kind":"mmio"}\nnot json\n').bad).toBe(1);
  });
});
