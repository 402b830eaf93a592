/**
 * Byte-stream helpers over a ScifEndpoint: whole reads and writes with
 * SCIF_RECV_BLOCK / SCIF_SEND_BLOCK, and the errors that mean "the peer
 * has gone" (ECONNRESET once disconnected, ENOTCONN after our own close).
 */
import { ERRNO, ScifError, type ScifEndpoint } from '../scif/api.ts';

export function isPeerGone(e: unknown): boolean {
  return e instanceof ScifError && (e.code === 'ECONNRESET' || e.code === 'ENOTCONN');
}

/** The negative errno a card-side SCIF call failed with (EINVAL for anything that is not a ScifError). */
export function negErrno(e: unknown): number {
  return e instanceof ScifError ? -e.errno : -ERRNO.EINVAL;
}

/** `n` bytes, or fewer if the peer went first (then no more will come). */
export async function recvExact(ep: ScifEndpoint, n: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let got = 0;
  while (got < n) {
    let d: Uint8Array;
    try {
      d = await ep.recv(n - got, { block: true });
    } catch (e) {
      if (isPeerGone(e)) break;
      throw e;
    }
    if (d.length === 0) break;
    parts.push(d);
    got += d.length;
  }
  return parts.length === 1 ? parts[0] : Buffer.concat(parts, got);
}

/** Every byte of `data`, or a ScifError (ECONNRESET when the peer went mid-way). */
export async function sendAll(ep: ScifEndpoint, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = await ep.send(data.subarray(off), { block: true });
    if (n <= 0) throw new ScifError('ECONNRESET', 'send made no progress');
    off += n;
  }
}
