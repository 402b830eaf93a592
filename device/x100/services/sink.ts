/**
 * Port 2001: repeatedly an 8-byte length N, then N bytes; the reply is the
 * 4-byte CRC32 of those bytes. The bytes are checked as they stream, so N
 * may be anything.
 */
import type { ScifEndpoint } from '../scif/api.ts';
import { PortService, type ServeContext } from './listener.ts';
import { crc32 } from '../../../src/pattern.ts';
import { recvExact, sendAll } from './stream.ts';

export const SINK_PORT = 2001;
const CHUNK = 0x10000;

export class SinkService extends PortService {
  readonly name = 'sink';
  readonly port = SINK_PORT;

  protected async serve(ep: ScifEndpoint, _peer: unknown, ctx: ServeContext): Promise<void> {
    for (;;) {
      const hdr = await recvExact(ep, 8);
      if (hdr.length < 8) {
        if (hdr.length) ctx.trace({ error: 'partial length at disconnect', bytes: hdr.length });
        return;
      }
      let left = Buffer.from(hdr.buffer, hdr.byteOffset, 8).readBigUInt64LE(0);
      let crc = 0;
      while (left > 0n) {
        const want = left > BigInt(CHUNK) ? CHUNK : Number(left);
        const d = await recvExact(ep, want);
        crc = crc32(d, crc);
        left -= BigInt(d.length);
        if (d.length < want) {
          ctx.trace({ error: 'peer went mid-message', missing: left.toString() });
          return;
        }
      }
      const reply = Buffer.alloc(4);
      reply.writeUInt32LE(crc);
      await sendAll(ep, reply);
    }
  }
}
