import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineSplitter, startQemu } from './run.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const opts = { kernel: '/nonexistent/vmlinuz', memoryMiB: 64 };

let dir: string;
const saved = process.env.VPHI_QEMU;

/** A fake qemu-system-x86_64: a shell script. */
function fake(name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vphi-run-test-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  if (saved === undefined) delete process.env.VPHI_QEMU;
  else process.env.VPHI_QEMU = saved;
});

describe('LineSplitter', () => {
  it('splits across chunks, strips \\r and flushes a final partial line', () => {
    const got: string[] = [];
    const s = new LineSplitter((l) => got.push(l));
    s.push('ab');
    s.push('c\r\nde');
    s.push('f\n\r\n');
    s.push('tail');
    expect(got).toEqual(['abc', 'def', '']);
    s.end();
    expect(got).toEqual(['abc', 'def', '', 'tail']);
  });
});

describe('startQemu', () => {
  it('passes the QEMU arguments and collects serial lines', async () => {
    process.env.VPHI_QEMU = fake('args', 'for a in "$@"; do printf "%s\\r\\n" "$a"; done; printf "partial"; echo oops >&2');
    const seen: string[] = [];
    const q = startQemu(opts, { onLine: (l) => seen.push(l) });
    const exit = await q.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    expect(q.lines).toContain('-accel');
    expect(q.lines).toContain('tcg');
    expect(q.lines).toContain('/nonexistent/vmlinuz');
    expect(q.lines.every((l) => !l.includes('\r'))).toBe(true);
    expect(q.lines.at(-1)).toBe('partial');
    expect(seen).toEqual(q.lines);
    expect(q.stderr).toEqual(['oops']);
  });

  it('waitFor finds past and future lines', async () => {
    process.env.VPHI_QEMU = fake('slow', 'echo first; read x; echo "DONE rc=7"; read y');
    const q = startQemu(opts);
    expect((await q.waitFor(/^first$/, 10_000))[0]).toBe('first');
    const pending = q.waitFor(/^DONE rc=(\d+)/, 10_000);
    q.proc.stdin!.write('go\n');
    expect((await pending)[1]).toBe('7');
    // already seen: resolves from the kept lines
    expect((await q.waitFor(/first/, 1))[0]).toBe('first');
    q.kill();
    const exit = await q.exited;
    expect(exit.signal).toBe('SIGKILL');
  });

  it('waitFor rejects when QEMU exits first', async () => {
    process.env.VPHI_QEMU = fake('dies', 'echo "qemu: cannot connect" >&2; exit 1');
    const q = startQemu(opts);
    await expect(q.waitFor(/never/, 10_000)).rejects.toThrow(/QEMU exited \(code 1\)[\s\S]*cannot connect/);
    await expect(q.waitFor(/never/, 10_000)).rejects.toThrow(/QEMU exited/);
    expect((await q.exited).code).toBe(1);
  });

  it('waitFor rejects at its own timeout', async () => {
    process.env.VPHI_QEMU = fake('quiet', 'echo hello; exec sleep 100');
    const q = startQemu(opts);
    await expect(q.waitFor(/never/, 50)).rejects.toThrow(/no line matched/);
    q.kill();
    await q.exited;
  });

  it('kills QEMU at the timeout', async () => {
    process.env.VPHI_QEMU = fake('hang', 'echo booting; exec sleep 100');
    const q = startQemu(opts, { timeoutMs: 100 });
    const exit = await q.exited;
    expect(exit.signal).toBe('SIGKILL');
    expect(q.timedOut).toBe(true);
    expect(q.lines).toEqual(['booting']);
  });

  it('reports a binary that cannot be spawned', async () => {
    process.env.VPHI_QEMU = join(dir, 'does-not-exist');
    const q = startQemu(opts);
    expect(await q.exited).toEqual({ code: null, signal: null });
    expect(q.stderr.join('\n')).toMatch(/ENOENT/);
    await expect(q.waitFor(/x/, 10)).rejects.toThrow(/failed to start/);
  });

  it('does not leave QEMU running when Node exits', () => {
    const pidFile = join(dir, 'pid');
    const bin = fake('orphan', `echo $$ > ${pidFile}; echo up; exec sleep 100`);
    const script = join(dir, 'parent.mts');
    writeFileSync(
      script,
      `import { startQemu } from ${JSON.stringify(resolve(HERE, 'run.ts'))};\n` +
        `const q = startQemu({ kernel: 'k', memoryMiB: 64 });\n` +
        `await q.waitFor(/^up$/, 10000);\n` +
        `process.exit(0);\n`,
    );
    const r = spawnSync(process.execPath, ['--import', 'tsx', script], {
      env: { ...process.env, VPHI_QEMU: bin },
      cwd: resolve(HERE, '../..'),
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(pid).toBeGreaterThan(0);
    // SIGKILLed before the parent exited: gone, or at most a zombie awaiting its reaper.
    const stat = `/proc/${pid}/stat`;
    const alive = () => {
      try {
        return !/^\d+ \([^)]*\) Z/.test(readFileSync(stat, 'utf8'));
      } catch {
        return false;
      }
    };
    // The signal is delivered asynchronously: give it a moment.
    for (let i = 0; i < 100 && alive(); i++) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    expect(alive()).toBe(false);
  });
});
