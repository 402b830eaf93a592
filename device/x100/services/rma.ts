/**
 * Port 2003: the RMA agent. One agent per connection; it reads 48-byte
 * requests and answers each with a 24-byte reply, in order.
 *
 * The card-side ScifApi has no scif_register() / scif_readfrom() /
 * scif_writeto() / scif_fence_*() yet, so REGISTER, UNREGISTER, WRITETO,
 * READFROM and the fences answer -ENOSYS, and the agent owns no window:
 * FILL, CRC and PEEK find none and answer -ENXIO, as scif_query_window()
 * does for an offset outside every window (scif_rma_list.c). DIAL works.
 */
import { ERRNO, type ScifEndpoint } from '../scif/api.ts';
import { PortService, type ServeContext } from './listener.ts';
import { PatternStream, crc32 } from '../../../src/pattern.ts';
import {
  RMA_OP,
  RMA_PORT,
  RMA_REPLY_SIZE,
  RMA_REQ_SIZE,
  decodeRmaRequest,
  encodeRmaReply,
  rmaOpName,
  type RmaReply,
  type RmaRequest,
} from './rma-wire.ts';
import { isPeerGone, negErrno, recvExact, sendAll } from './stream.ts';

const DIAL_CHUNK = 0x4000;

export class RmaAgentService extends PortService {
  readonly name = 'rma';
  readonly port = RMA_PORT;

  protected async serve(ep: ScifEndpoint, _peer: unknown, ctx: ServeContext): Promise<void> {
    for (;;) {
      const raw = await recvExact(ep, RMA_REQ_SIZE);
      if (raw.length < RMA_REQ_SIZE) {
        // A partial request at disconnect ends the agent.
        if (raw.length) ctx.trace({ error: 'partial request at disconnect', bytes: raw.length });
        return;
      }
      const req = decodeRmaRequest(raw);
      let r: { status: number; value?: bigint };
      try {
        r = await this.handle(req, ctx);
      } catch (e) {
        if (ctx.stopped()) return;
        ctx.trace({ error: 'request', err: e instanceof Error ? e.message : String(e) });
        r = { status: negErrno(e) };
      }
      const reply: RmaReply = { status: r.status, value: r.value ?? 0n, tag: req.tag };
      if (this.tracer.enabled)
        ctx.trace({
          rma: rmaOpName(req.op) ?? req.op,
          flags: req.flags,
          a: req.a.toString(),
          b: req.b.toString(),
          c: req.c.toString(),
          d: req.d.toString(),
          tag: req.tag.toString(),
          status: reply.status,
          value: reply.value.toString(),
        });
      const out = encodeRmaReply(reply);
      if (out.length !== RMA_REPLY_SIZE) throw new Error('reply size');
      await sendAll(ep, out);
    }
  }

  private async handle(req: RmaRequest, ctx: ServeContext): Promise<{ status: number; value?: bigint }> {
    switch (req.op) {
      case RMA_OP.DIAL:
        return this.dial(req, ctx);
      case RMA_OP.FILL:
      case RMA_OP.CRC:
      case RMA_OP.PEEK:
        return { status: -ERRNO.ENXIO };
      case RMA_OP.REGISTER:
      case RMA_OP.UNREGISTER:
      case RMA_OP.WRITETO:
      case RMA_OP.READFROM:
      case RMA_OP.FENCE_MARK:
      case RMA_OP.FENCE_WAIT:
      case RMA_OP.FENCE_SIGNAL:
        return { status: -ERRNO.ENOSYS };
      default:
        return { status: -ERRNO.EINVAL };
    }
  }

  /**
   * DIAL(a = port, b = len, c = seed, d = node): connect, send pattern(seed,
   * len) while taking back whatever the peer sends (up to len bytes or its
   * disconnect), close; value = CRC32 of what came back.
   */
  private async dial(req: RmaRequest, ctx: ServeContext): Promise<{ status: number; value?: bigint }> {
    if (req.a > 0xffffn || req.d > 0xffffn || req.b > BigInt(Number.MAX_SAFE_INTEGER)) return { status: -ERRNO.EINVAL };
    const dst = { node: Number(req.d), port: Number(req.a) };
    const len = Number(req.b);
    const ep = ctx.open();
    try {
      try {
        await ep.connect(dst);
      } catch (e) {
        return { status: negErrno(e) };
      }
      let sendStatus = 0;
      const sender = (async () => {
        const pat = new PatternStream(Number(BigInt.asUintN(32, req.c)));
        for (let left = len; left > 0 && !ctx.stopped(); ) {
          const d = pat.next(Math.min(left, DIAL_CHUNK));
          try {
            await sendAll(ep, d);
          } catch (e) {
            sendStatus = negErrno(e);
            return;
          }
          left -= d.length;
        }
      })();
      const receiver = (async () => {
        let crc = 0;
        for (let got = 0; got < len && !ctx.stopped(); ) {
          let d: Uint8Array;
          try {
            d = await ep.recv(Math.min(len - got, DIAL_CHUNK), { block: true });
          } catch (e) {
            if (isPeerGone(e)) break;
            throw e;
          }
          if (d.length === 0) break;
          crc = crc32(d, crc);
          got += d.length;
        }
        return crc;
      })();
      const [, crc] = await Promise.all([sender, receiver]);
      return { status: sendStatus, value: BigInt(crc) };
    } finally {
      await ctx.release(ep);
    }
  }
}
