/**
 * Port 2002: repeatedly an 8-byte length N and a 4-byte seed; the reply is
 * pattern(seed, N) followed by its 4-byte CRC32, streamed as the peer reads.
 */
import type { ScifEndpoint } from '../scif/api.ts';
import { PortService, type ServeContext } from './listener.ts';
import { PatternStream, crc32 } from '../../../src/pattern.ts';
import { recvExact, sendAll } from './stream.ts';

export const SOURCE_PORT = 2002;
const CHUNK = 0x4000;

export class SourceService extends PortService {
  readonly name = 'source';
  readonly port = SOURCE_PORT;

  protected async serve(ep: ScifEndpoint, _peer: unknown, ctx: ServeContext): Promise<void> {
    for (;;) {
      const req = await recvExact(ep, 12);
      if (req.length < 12) {
        if (req.length) ctx.trace({ error: 'partial request at disconnect', bytes: req.length });
        return;
      }
      const b = Buffer.from(req.buffer, req.byteOffset, 12);
      let left = b.readBigUInt64LE(0);
      const pat = new PatternStream(b.readUInt32LE(8));
      let crc = 0;
      while (left > 0n) {
        const d = pat.next(left > BigInt(CHUNK) ? CHUNK : Number(left));
        crc = crc32(d, crc);
        await sendAll(ep, d);
        left -= BigInt(d.length);
      }
      const tail = Buffer.alloc(4);
      tail.writeUInt32LE(crc);
      await sendAll(ep, tail);
    }
  }
}
