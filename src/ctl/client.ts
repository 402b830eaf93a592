/** The control socket's client (server.ts): one request, one answer. */
import { connect } from 'node:net';
import type { CtlReply, CtlRequest } from './server.ts';

export class CtlError extends Error {}

/** Send `req` to the control socket at `path` and resolve with its answer. */
export function ctlRequest(path: string, req: CtlRequest, timeoutMs = 10_000): Promise<CtlReply> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new CtlError(`control socket ${path}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.on('connect', () => s.write(JSON.stringify(req) + '\n'));
    s.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      s.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as CtlReply);
      } catch {
        reject(new CtlError(`control socket ${path}: the answer is not JSON`));
      }
    });
    s.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = e.code === 'ENOENT' ? 'no such socket (is vphi serve running with this --socket-path?)' : e.code === 'ECONNREFUSED' ? 'nobody listens (a stale socket?)' : (e.code ?? e.message);
      reject(new CtlError(`control socket ${path}: ${why}`));
    });
  });
}
