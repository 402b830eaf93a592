/**
 * Card-to-card RMA, driven from the host: `--services all,peer-rma` adds
 * port 2010 (not in `all`; the card-services contract's ports stay as
 * they are). Its wire format is the source service's: an 8-byte length N
 * and a 4-byte seed; the reply is N bytes and their CRC32. The bytes are
 * not generated here: this card connects to the RMA agent (2003) of
 * another card as a client, exactly as a host program would, and
 *   1. REGISTERs N bytes of the peer's GDDR and registers N of its own,
 *   2. fills its own with pattern(seed, N) and scif_writeto()s it to the
 *      peer (this card's DMA engine writes the peer's aperture),
 *   3. asks the peer for the CRC of what arrived (a mismatch ends the
 *      request with the first bytes flipped),
 *   4. has the peer's agent WRITETO the same bytes back into a second
 *      window of ours (the peer's DMA engine writes our aperture),
 *   5. and sends those bytes to the host.
 * So the host receives pattern(seed, N) only if both directions of
 * card-to-card RMA moved every byte. The peer is the lowest-numbered other
 * card online (SCIF_GET_NODEIDS on the card).
 */
import type { CardBuffer, ScifApi, ScifEndpoint } from '../scif/api.ts';
import { ScifError } from '../scif/api.ts';
import { SCIF_PROT_READ, SCIF_PROT_WRITE } from '../scif/rma/window.ts';
import { SCIF_MGMT_NODE } from '../scif/consts.ts';
import { PortService, type ServeContext } from './listener.ts';
import { RMA_OP, RMA_PORT, RMA_REPLY_SIZE, decodeRmaReply, encodeRmaRequest } from './rma-wire.ts';
import { recvExact, sendAll } from './stream.ts';
import { crc32, pattern } from '../../../src/pattern.ts';

export const PEER_RMA_PORT = 2010;
/** Largest request: three windows of this size live at once (two here, one on the peer). */
export const PEER_RMA_MAX = 8 << 20;
const PAGE = 4096;
const PROT_RW = SCIF_PROT_READ | SCIF_PROT_WRITE;

/** A client of a peer's RMA agent (card-services.md, port 2003). */
class AgentClient {
  private tag = 1n;
  constructor(private readonly ep: ScifEndpoint) {}

  async call(op: number, a = 0n, b = 0n, c = 0n, d = 0n, flags = 0): Promise<bigint> {
    const tag = this.tag++;
    await sendAll(this.ep, encodeRmaRequest({ op, flags, a, b, c, d, tag }));
    const raw = await recvExact(this.ep, RMA_REPLY_SIZE);
    if (raw.length < RMA_REPLY_SIZE) throw new ScifError('ECONNRESET', 'the peer agent went away');
    const r = decodeRmaReply(raw);
    if (r.tag !== tag) throw new ScifError('EIO', `peer agent reply tag ${r.tag}, expected ${tag}`);
    if (r.status) throw new ScifError('EIO', `peer agent op ${op} returned ${r.status}`);
    return r.value;
  }
}

/** The lowest-numbered other card this node can reach, or -1. */
export function peerCard(api: ScifApi): number {
  return api.nodeIds().find((n) => n !== SCIF_MGMT_NODE && n !== api.self) ?? -1;
}

/** Steps 1-4 above against `peer`: the bytes that came back. */
export async function peerRmaRoundTrip(api: ScifApi, open: () => ScifEndpoint, peer: number, len: number, seed: number): Promise<Uint8Array> {
  if (!(len > 0 && len <= PEER_RMA_MAX)) throw new ScifError('EINVAL', `length ${len}`);
  const size = Math.ceil(len / PAGE) * PAGE;
  if (!api.allocBuffer) throw new ScifError('ENOSYS', 'no card memory for RMA on this node');
  const ep = open();
  const alloc = (n: number): CardBuffer => api.allocBuffer!(n);
  const out = alloc(size);
  let back: CardBuffer | null = null;
  try {
    await ep.connect({ node: peer, port: RMA_PORT });
    if (!ep.register || !ep.writeto) throw new ScifError('ENOSYS', 'no RMA on this node');
    back = alloc(size);
    const agent = new AgentClient(ep);
    const roff = await agent.call(RMA_OP.REGISTER, BigInt(size), 0n, BigInt(PROT_RW));
    const loff = await ep.register(out, 0n, PROT_RW);
    const boff = await ep.register(back, 0n, PROT_RW);
    const want = pattern(seed, len);
    out.write(0, want);
    await ep.writeto(loff, len, roff, 0);
    const crc = Number(await agent.call(RMA_OP.CRC, roff, BigInt(len)));
    if (crc !== crc32(want)) {
      const bad = Buffer.from(want);
      bad[0] ^= 0xff;
      return bad;
    }
    await agent.call(RMA_OP.WRITETO, roff, BigInt(len), boff, 0n, 0);
    return back.read(0, len);
  } finally {
    await ep.close().catch(() => undefined);
    out.free();
    back?.free();
  }
}

export class PeerRmaService extends PortService {
  readonly name = 'peer-rma';
  readonly port = PEER_RMA_PORT;

  protected async serve(ep: ScifEndpoint, _peer: unknown, ctx: ServeContext): Promise<void> {
    for (;;) {
      const req = await recvExact(ep, 12);
      if (req.length < 12) return;
      const b = Buffer.from(req.buffer, req.byteOffset, 12);
      const len = Number(b.readBigUInt64LE(0));
      const seed = b.readUInt32LE(8);
      if (!(len > 0 && len <= PEER_RMA_MAX)) {
        ctx.trace({ error: 'peer-rma', len, err: `length must be 1..${PEER_RMA_MAX}` });
        return; // closes the connection: there is no reply of that length to give
      }
      const peer = peerCard(ctx.api);
      let data: Uint8Array;
      try {
        if (peer < 0) throw new ScifError('ENODEV', 'no other card online');
        data = await peerRmaRoundTrip(ctx.api, () => ctx.open(), peer, len, seed);
        ctx.trace({ action: 'peer-rma', peer, len, seed });
      } catch (e) {
        // The host sees a wrong answer (zeros), the trace says why.
        ctx.trace({ error: 'peer-rma', peer, len, err: (e as Error).message });
        data = new Uint8Array(len);
      }
      const tail = Buffer.alloc(4);
      tail.writeUInt32LE(crc32(data));
      await sendAll(ep, data);
      await sendAll(ep, tail);
    }
  }
}
