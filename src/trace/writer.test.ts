import { describe, expect, it } from 'vitest';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { reg } from '../regs/define.ts';
import { TraceRegister } from './tracer.ts';
import { TraceWriter } from './writer.ts';

const HERE = dirname(fileURLToPath(import.meta.url));

const lines = (file: string) =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);

describe('the trace writer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vphi-writer-'));
  it.sequential('writes one JSON line per event, "us" then "kind" first, every line in order, even when closed with writes in flight', async () => {
    const file = join(dir, 'a.trace');
    const w = new TraceWriter(file);
    const N = 50_000; // ~5 MiB: many 64 KiB chunks written asynchronously
    for (let i = 0; i < N; i++) w.line('mmio', { i, reg: 'SPAD0', pad: 'x'.repeat(i % 97) });
    w.line('card', {});
    w.close(); // at once: most chunks are still unconfirmed
    await new Promise((r) => setTimeout(r, 50));
    const got = lines(file);
    expect(got).toHaveLength(N + 1);
    expect(got.every((e, i) => i === N || e.i === i)).toBe(true);
    expect(Object.keys(got[0]).slice(0, 2)).toEqual(['us', 'kind']);
    expect(got[N]).toEqual({ us: got[N].us, kind: 'card' });
    const us = got.map((e) => e.us as number);
    expect(us.every((u, i) => i === 0 || u >= us[i - 1])).toBe(true);
  });

  it.sequential('loses nothing at process exit (the exit handler closes it) and writes after close are dropped', async () => {
    const file = join(dir, 'b.trace');
    const before = new Set(process.listeners('exit'));
    const w = new TraceWriter(file);
    const onExit = process.listeners('exit').filter((l) => !before.has(l));
    expect(onExit).toHaveLength(1);
    for (let i = 0; i < 1000; i++) w.line('irq', { i });
    onExit[0](0); // what a process exit runs
    w.line('irq', { i: 'late' });
    await new Promise((r) => setTimeout(r, 20));
    expect(lines(file).map((e) => e.i)).toEqual([...Array(1000).keys()]);
  });

  it.sequential('writes register accesses as bytes between other lines, in order, across chunks, even when closed with writes in flight', async () => {
    const file = join(dir, 'd.trace');
    const w = new TraceWriter(file);
    const spad = new TraceRegister(4, 'spad', reg('SPAD0', 0, 'RW', 0, ''), 0x1ab20);
    const N = 40_000; // ~4 MiB
    for (let i = 0; i < N; i++) {
      w.access(spad, i & 1 ? 'w' : 'r', 0x1ab20, 4, i, i, i);
      if (i % 1000 === 0) w.line('irq', { i, src: 'DB0 ∆' }); // not ASCII
    }
    w.close();
    await new Promise((r) => setTimeout(r, 50));
    const got = lines(file);
    expect(got).toHaveLength(N + N / 1000);
    const acc = got.filter((e) => e.kind === 'mmio');
    expect(acc.every((e, i) => e.val === i && e.op === (i & 1 ? 'w' : 'r') && (i & 1 ? e.now === i : !('now' in e)))).toBe(true);
    expect(got.filter((e) => e.kind === 'irq').map((e) => e.i)).toEqual(Array.from({ length: N / 1000 }, (_, k) => k * 1000));
    expect(got[0]).toEqual({ us: got[0].us, kind: 'mmio', bar: 4, op: 'r', off: 0x1ab20, size: 4, val: 0, block: 'spad', reg: 'SPAD0' });
    const us = got.map((e) => e.us as number);
    expect(us.every((u, i) => i === 0 || u >= us[i - 1])).toBe(true);
  });

  it.sequential('times a later piece of one guest access (later) as the line before it, without reading the clock', async () => {
    const file = join(dir, 'f.trace');
    const w = new TraceWriter(file);
    const spad = (i: number) => new TraceRegister(4, 'spad', reg(`SPAD${i}`, 0, 'RW', 0, ''), 0x1ab20 + 4 * i);
    w.access(spad(0), 'r', 0x1ab20, 4, 1, 1, 0, false);
    await new Promise((r) => setTimeout(r, 5));
    w.access(spad(1), 'r', 0x1ab24, 4, 2, 2, 0, true);
    await new Promise((r) => setTimeout(r, 5));
    w.access(spad(0), 'r', 0x1ab20, 4, 3, 3, 0, false);
    w.close();
    const us = lines(file).map((e) => e.us as number);
    expect(us[1]).toBe(us[0]);
    expect(us[2]).toBeGreaterThan(us[1]);
  });

  it.sequential('loses nothing when the process dies of an uncaught exception', () => {
    const file = join(dir, 'e.trace');
    const src = [
      `import { TraceWriter } from ${JSON.stringify(join(HERE, 'writer.ts'))};`,
      `import { TraceRegister } from ${JSON.stringify(join(HERE, 'tracer.ts'))};`,
      `const w = new TraceWriter(${JSON.stringify(file)});`,
      `const r = new TraceRegister(4, 'spad', { name: 'SPAD0', access: 'RW', fields: [] }, 0x1ab20);`,
      'for (let i = 0; i < 30000; i++) w.access(r, "r", 0x1ab20, 4, i, i, 0);',
      'setImmediate(() => { throw new Error("device bug"); });',
    ].join('\n');
    const p = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', src], { encoding: 'utf8' });
    expect(p.status).not.toBe(0);
    expect(p.stderr).toMatch(/device bug/);
    expect(lines(file).map((e) => e.val)).toEqual([...Array(30000).keys()]);
  });

  it.sequential('writes to an fd it does not own (not positioned for a pipe) and leaves it open', () => {
    const file = join(dir, 'c.trace');
    const fd = openSync(file, 'w');
    const w = new TraceWriter(fd);
    w.line('dma', { op: 'map' });
    w.access(new TraceRegister(4, null, null, -1), 'r', 0x1f000, 2, 0, 0, 0);
    w.close();
    expect(lines(file)).toEqual([
      { us: expect.any(Number), kind: 'dma', op: 'map' },
      { us: expect.any(Number), kind: 'mmio', bar: 4, op: 'r', off: 0x1f000, size: 2, val: 0, block: null, reg: null, unknown: true },
    ]);
    rmSync(dir, { recursive: true, force: true });
  });
});
