/**
 * `vphi serve --fault` and `vphi ctl`: the real CLI and the native addon,
 * no guest. The card's faults are armed at start and at run time, and
 * the status shows them.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../paths.ts';
import { nativeAvailable } from '../binding/native.ts';

const VPHI = join(REPO_ROOT, 'bin/vphi');
const vphi = (...args: string[]) => spawnSync(VPHI, args, { encoding: 'utf8' });

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vphi-ctl-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function waitFor(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('vphi serve --fault and vphi ctl', () => {
  it('refuses a bad --fault and a bad ctl call with one line', { timeout: 60_000 }, () => {
    for (const args of [
      ['serve', '--socket-path', join(dir, 'x.sock'), '--fault', 'dma-error'],
      ['serve', '--socket-path', join(dir, 'x.sock'), '--fault', 'frob:x=1'],
      ['ctl', 'status'],
      ['ctl', '--socket-path', join(dir, 'x.sock'), 'frob'],
      ['ctl', '--socket-path', join(dir, 'x.sock'), 'fault'],
    ]) {
      const r = vphi(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    const none = vphi('ctl', '--socket-path', join(dir, 'none.sock'), 'status');
    expect(none.status).toBe(1);
    expect(none.stderr.trim()).toMatch(/^vphi: control socket .*none\.sock\.ctl: no such socket/);
  });

  it.runIf(nativeAvailable())('arms faults at start and at run time, and shows them in the status', { timeout: 60_000 }, async () => {
    const sock = join(dir, 'card.sock');
    let stderr = '';
    const serve: ChildProcess = spawn(VPHI, ['serve', '--socket-path', sock, '--services', 'none', '--fault', 'dma-error:chan=1,after=2', '--fault', 'card-crash:after=3600'], { stdio: ['ignore', 'ignore', 'pipe'] });
    serve.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      await waitFor(() => /control socket/.test(stderr));
      expect(statSync(`${sock}.ctl`).mode & 0o777).toBe(0o600);
      // Each armed fault is logged at warn, with tracing off.
      expect(stderr).toMatch(/fault 1 armed: dma-error:chan=1,after=2,bit=src/);
      const add = vphi('ctl', '--socket-path', sock, 'fault', 'drop-irq:vector=3,count=2');
      expect(add.stderr).toBe('');
      expect(add.stdout).toBe('fault 3 armed: drop-irq:vector=3,count=2\n');
      const bad = vphi('ctl', '--socket-path', sock, 'fault', 'drop-irq:vector=99');
      expect(bad.status).toBe(1);
      expect(bad.stderr.trim()).toBe('vphi: ctl fault: fault drop-irq: vector=99: want an integer from 0 to 15');
      const st = vphi('ctl', '--socket-path', `${sock}.ctl`, 'status');
      expect(st.status).toBe(0);
      const status = JSON.parse(st.stdout);
      expect(status.faults).toEqual([
        { id: 1, spec: 'dma-error:chan=1,after=2,bit=src', state: 'armed', fired: 0, remaining: 2 },
        { id: 2, spec: 'card-crash:after=3600', state: 'armed', fired: 0 },
        { id: 3, spec: 'drop-irq:vector=3,count=2', state: 'armed', fired: 0, remaining: 2 },
      ]);
      expect(status.boot).toEqual({ state: 'ready', postcode: 'FF', crashed: false });
      expect(status.dma).toHaveLength(8);
      expect(status.scif.state).toBe('off');
      // The server's memory, V8's heap apart (what the kill soak prints).
      expect(status.process.heapUsedKiB).toBeGreaterThan(0);
      expect(status.process.heapTotalKiB).toBeGreaterThanOrEqual(status.process.heapUsedKiB);
      expect(status.process.rssKiB).toBeGreaterThan(status.process.heapUsedKiB);
      expect(vphi('ctl', '--socket-path', sock, 'clear').stdout).toBe('3 fault(s) disarmed\n');
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
    expect(existsSync(`${sock}.ctl`), 'the control socket goes with the card').toBe(false);
  });

  it.runIf(nativeAvailable())('serve --cards 2: two cards, each on its own socket with its own control socket', { timeout: 60_000 }, async () => {
    const sock = join(dir, 'cards.sock');
    let stderr = '';
    const serve: ChildProcess = spawn(VPHI, ['serve', '--socket-path', sock, '--cards', '2', '--services', 'none'], { stdio: ['ignore', 'ignore', 'pipe'] });
    serve.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    try {
      await waitFor(() => (stderr.match(/control socket/g) ?? []).length === 2);
      expect(stderr).toContain(`serving mic0, an Intel Xeon Phi x100 (8086:225c) on ${sock}, control socket ${sock}.ctl`);
      expect(stderr).toContain(`serving mic1, an Intel Xeon Phi x100 (8086:225c) on ${sock}.1, control socket ${sock}.1.ctl`);
      for (const p of [sock, `${sock}.1`]) {
        const st = vphi('ctl', '--socket-path', p, 'status');
        expect(st.status, st.stderr).toBe(0);
        expect(JSON.parse(st.stdout).boot.state).toBe('ready');
      }
    } finally {
      serve.kill('SIGTERM');
      await new Promise((r) => serve.once('exit', r));
    }
    for (const p of [sock, `${sock}.1`, `${sock}.ctl`, `${sock}.1.ctl`]) expect(existsSync(p), p).toBe(false);
  });
});
