import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { NO_TRACE, rateLimited, untraced, warn, warnLog, type WarnFn } from './tracer.ts';

/** A pino logger whose lines land in `lines`. */
function captureLog(): { logger: pino.Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: pino({ base: undefined }, stream), lines };
}

describe('warnings', () => {
  it('are rate-limited per kind, and the next window says how many were suppressed', () => {
    let now = 0;
    const got: [string, string, Record<string, unknown> | undefined][] = [];
    const w: WarnFn = rateLimited((k, m, d) => got.push([k, m, d]), { perWindow: 3, windowMs: 1000, now: () => now });
    for (let i = 0; i < 10; i++) w('dma-error', `e${i}`, { i });
    w('mmio-undeclared', 'u0');
    expect(got.map(([k, m]) => `${k}:${m.split(' ')[0]}`)).toEqual(['dma-error:e0', 'dma-error:e1', 'dma-error:e2', 'mmio-undeclared:u0']);
    expect(got[2][1]).toMatch(/counted, not shown/);
    now = 999;
    w('dma-error', 'late');
    expect(got).toHaveLength(4);
    now = 1000;
    w('dma-error', 'next', { i: 99 });
    expect(got[4]).toEqual(['dma-error', 'next', { i: 99, suppressed: 8 }]);
    w('dma-error', 'again');
    expect(got[5][2]).toBeUndefined();
  });

  it('go through pino at warn level even when tracing is off', () => {
    const { logger, lines } = captureLog();
    const t = untraced(warnLog(logger));
    expect(t.enabled).toBe(false);
    warn(t, 'internal', 'something broke', { where: 'here' });
    expect(lines).toEqual([expect.objectContaining({ level: 40, kind: 'internal', msg: 'something broke', where: 'here' })]);
  });

  it('have a default sink for tracers that bring none, and NO_TRACE has one', () => {
    expect(NO_TRACE.enabled).toBe(false);
    expect(typeof NO_TRACE.warn).toBe('function');
  });
});
