/**
 * The card's control socket: a UNIX socket beside the vfio-user one
 * (PATH.ctl, mode 0600), one JSON object per line each way. A request is
 * `{"cmd": NAME, ...}`; the answer is `{"ok": true, ...}` or
 * `{"ok": false, "error": "one line"}`. A malformed line is answered with
 * an error and the connection stays open.
 */
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';

export type CtlRequest = { cmd: string } & Record<string, unknown>;
export type CtlReply = ({ ok: true } | { ok: false; error: string }) & Record<string, unknown>;
export type CtlHandler = (req: CtlRequest) => CtlReply | Promise<CtlReply>;

/** A request line longer than this is refused (and the connection closed). */
export const CTL_MAX_LINE = 64 * 1024;

export class CtlServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  private constructor(
    readonly path: string,
    handler: CtlHandler,
  ) {
    this.server = createServer((s) => this.serve(s, handler));
  }

  /** Listen on `path` (a stale socket there is replaced; any other file is an error). */
  static async listen(path: string, handler: CtlHandler): Promise<CtlServer> {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new Error(`control socket ${path}: a file that is not a socket is in the way`);
      unlinkSync(path);
    }
    const c = new CtlServer(path, handler);
    await new Promise<void>((resolve, reject) => {
      c.server.once('error', reject);
      c.server.listen(path, () => {
        c.server.off('error', reject);
        resolve();
      });
    });
    chmodSync(path, 0o600);
    c.server.unref();
    return c;
  }

  private serve(s: Socket, handler: CtlHandler): void {
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => s.destroy());
    s.setEncoding('utf8');
    let buf = '';
    let chain = Promise.resolve();
    s.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > CTL_MAX_LINE && !buf.includes('\n')) {
        s.end(JSON.stringify({ ok: false, error: `request line over ${CTL_MAX_LINE} bytes` }) + '\n');
        buf = '';
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        // Answers go out in request order.
        chain = chain.then(async () => {
          const reply = await answer(line, handler);
          if (!s.destroyed) s.write(JSON.stringify(reply) + '\n');
        });
      }
    });
  }

  close(): void {
    for (const s of this.sockets) s.destroy();
    this.server.close();
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

async function answer(line: string, handler: CtlHandler): Promise<CtlReply> {
  let req: unknown;
  try {
    req = JSON.parse(line);
  } catch {
    return { ok: false, error: 'not a JSON line' };
  }
  if (typeof req !== 'object' || req === null || typeof (req as CtlRequest).cmd !== 'string') return { ok: false, error: 'a request is {"cmd": NAME, ...}' };
  try {
    return await handler(req as CtlRequest);
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}
