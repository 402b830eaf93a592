import { describe, expect, it } from 'vitest';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TraceWriter } from './writer.ts';

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

  it.sequential('writes to an fd it does not own (not positioned for a pipe) and leaves it open', () => {
    const file = join(dir, 'c.trace');
    const fd = openSync(file, 'w');
    const w = new TraceWriter(fd);
    w.line('dma', { op: 'map' });
    w.close();
    expect(lines(file)).toEqual([{ us: expect.any(Number), kind: 'dma', op: 'map' }]);
    rmSync(dir, { recursive: true, force: true });
  });
});
