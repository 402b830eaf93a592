import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CtlServer } from './server.ts';
import { CtlError, ctlRequest } from './client.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'vphi-ctl-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Write raw text, collect `n` answer lines. */
function raw(path: string, text: string, n: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(text));
    s.on('data', (c: string) => {
      buf += c;
      const lines = buf.split('\n').filter(Boolean);
      if (lines.length >= n) {
        s.end();
        resolve(lines.map((l) => JSON.parse(l)));
      }
    });
    s.on('error', reject);
  });
}

describe('the control socket', () => {
  it('answers JSON lines in order, mode 0600, and goes away on close', async () => {
    const path = join(dir, 'a.ctl');
    let n = 0;
    const ctl = await CtlServer.listen(path, async (req) => {
      // A slow first answer must not overtake: answers keep request order.
      if (req.cmd === 'slow') await new Promise((r) => setTimeout(r, 50));
      return { ok: true, n: ++n, cmd: req.cmd };
    });
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await ctlRequest(path, { cmd: 'status' })).toEqual({ ok: true, n: 1, cmd: 'status' });
    expect(await raw(path, '{"cmd":"slow"}\n{"cmd":"fast"}\n', 2)).toEqual([
      { ok: true, n: 2, cmd: 'slow' },
      { ok: true, n: 3, cmd: 'fast' },
    ]);
    ctl.close();
    expect(existsSync(path)).toBe(false);
  });

  it('answers a malformed line with an error and keeps the connection', async () => {
    const path = join(dir, 'b.ctl');
    const ctl = await CtlServer.listen(path, (req) => {
      if (req.cmd === 'boom') throw new Error('handler failed');
      return { ok: true };
    });
    expect(await raw(path, 'not json\n[1]\n{"cmd":3}\n{"cmd":"boom"}\n{"cmd":"x"}\n', 5)).toEqual([
      { ok: false, error: 'not a JSON line' },
      { ok: false, error: 'a request is {"cmd": NAME, ...}' },
      { ok: false, error: 'a request is {"cmd": NAME, ...}' },
      { ok: false, error: 'handler failed' },
      { ok: true },
    ]);
    ctl.close();
  });

  it('replaces a stale socket, refuses to replace a plain file', async () => {
    const path = join(dir, 'c.ctl');
    const first = await CtlServer.listen(path, () => ({ ok: true }));
    // Left behind by a killed process: the socket file stays, nobody listens.
    (first as unknown as { server: { close(): void } }).server.close();
    const second = await CtlServer.listen(path, () => ({ ok: true, second: true }));
    expect(await ctlRequest(path, { cmd: 'x' })).toEqual({ ok: true, second: true });
    second.close();
    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    await expect(CtlServer.listen(file, () => ({ ok: true }))).rejects.toThrow(/not a socket/);
  });

  it('the client names a missing socket in one line', async () => {
    await expect(ctlRequest(join(dir, 'none.ctl'), { cmd: 'status' })).rejects.toThrow(CtlError);
    await expect(ctlRequest(join(dir, 'none.ctl'), { cmd: 'status' })).rejects.toThrow(/no such socket/);
  });
});
