import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatTrace } from './format.ts';
import { createTracer } from './tracer.ts';
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
  it('are one JSON object per line with a microsecond timestamp', () => {
    const lines = readFileSync(writeTrace(), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(6);
    expect(lines[0]).toMatchObject({ kind: 'mmio', bar: 4, op: 'w', reg: 'SPAD0', block: 'spad', val: 0xc0de0000 });
    expect(typeof lines[0].us).toBe('number');
    expect(lines[1].fields).toEqual({ READY: 1, APIC_ID: 0, DOWNLOAD_ADDR: 0x4000 });
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
