/**
 * Port 2003: the RMA agent. One agent per connection; it reads 48-byte
 * requests and answers each with a 24-byte reply, in order. Its windows
 * are fresh GDDR registered on the connection's endpoint with the
 * card-side scif_register(); FILL / CRC / PEEK reach them with the card
 * CPU and answer -ENXIO outside them, as scif_query_window() does
 * (scif_rma_list.c). On a node whose API has no RMA (a test fabric) the
 * RMA ops answer -ENOSYS.
 */
import { ERRNO, ScifError, type CardBuffer, type ScifApi, type ScifEndpoint } from '../scif/api.ts';
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

/** One agent window: its registered offset and its card memory. */
interface AgentWindow {
  offset: bigint;
  buf: CardBuffer;
}

/** A CPU access length: EINVAL for 0 (scif_query_window()) or more than a JS buffer. */
function cpuLen(v: bigint): number {
  if (!v || v > 1n << 31n) throw new ScifError('EINVAL', `length ${v}`);
  return Number(v);
}

/**
 * The parts of [off, off + len) in the agent's windows, which may span
 * adjacent windows (SCIF_WINDOW_PARTIAL); ENXIO where none has the bytes.
 */
function locate(windows: AgentWindow[], off: bigint, len: number): { win: AgentWindow; at: number; len: number }[] {
  const out: { win: AgentWindow; at: number; len: number }[] = [];
  let o = off;
  let left = len;
  while (left > 0) {
    const win = windows.find((w) => o >= w.offset && o < w.offset + BigInt(w.buf.len));
    if (!win) throw new ScifError('ENXIO', `offset 0x${o.toString(16)} is in no window`);
    const at = Number(o - win.offset);
    const n = Math.min(left, win.buf.len - at);
    out.push({ win, at, len: n });
    o += BigInt(n);
    left -= n;
  }
  return out;
}

export class RmaAgentService extends PortService {
  readonly name = 'rma';
  readonly port = RMA_PORT;

  protected async serve(ep: ScifEndpoint, _peer: unknown, ctx: ServeContext): Promise<void> {
    const windows: AgentWindow[] = [];
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
        r = await this.handle(req, ctx, ep, windows);
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

  private async handle(req: RmaRequest, ctx: ServeContext, ep: ScifEndpoint, windows: AgentWindow[]): Promise<{ status: number; value?: bigint }> {
    const s64 = (v: bigint) => BigInt.asIntN(64, v);
    const int = (v: bigint) => Number(BigInt.asIntN(32, v));
    switch (req.op) {
      case RMA_OP.DIAL:
        return this.dial(req, ctx);
      case RMA_OP.FILL: {
        const len = cpuLen(req.b);
        const pat = new PatternStream(Number(BigInt.asUintN(32, req.c)));
        for (const part of locate(windows, s64(req.a), len)) part.win.buf.write(part.at, pat.next(part.len));
        return { status: 0 };
      }
      case RMA_OP.CRC: {
        let crc = 0;
        for (const part of locate(windows, s64(req.a), cpuLen(req.b))) crc = crc32(part.win.buf.read(part.at, part.len), crc);
        return { status: 0, value: BigInt(crc) };
      }
      case RMA_OP.PEEK: {
        const parts = locate(windows, s64(req.a), 8);
        const b = Buffer.concat(parts.map((p) => p.win.buf.read(p.at, p.len)));
        return { status: 0, value: b.readBigUInt64LE() };
      }
      case RMA_OP.REGISTER:
        return this.register(req, ctx.api, ep, windows);
      case RMA_OP.UNREGISTER:
        if (!ep.unregister) return { status: -ERRNO.ENOSYS };
        await ep.unregister(s64(req.a), s64(req.b));
        return { status: 0 };
      case RMA_OP.WRITETO:
      case RMA_OP.READFROM: {
        const fn = req.op === RMA_OP.WRITETO ? ep.writeto : ep.readfrom;
        if (!fn) return { status: -ERRNO.ENOSYS };
        if (req.b > BigInt(Number.MAX_SAFE_INTEGER)) return { status: -ERRNO.EINVAL };
        await fn.call(ep, s64(req.a), Number(req.b), s64(req.c), req.flags);
        return { status: 0 };
      }
      case RMA_OP.FENCE_MARK:
        if (!ep.fenceMark) return { status: -ERRNO.ENOSYS };
        return { status: 0, value: BigInt.asUintN(64, BigInt(await ep.fenceMark(req.flags))) };
      case RMA_OP.FENCE_WAIT:
        if (!ep.fenceWait) return { status: -ERRNO.ENOSYS };
        await ep.fenceWait(int(req.a));
        return { status: 0 };
      case RMA_OP.FENCE_SIGNAL:
        if (!ep.fenceSignal) return { status: -ERRNO.ENOSYS };
        await ep.fenceSignal(s64(req.a), req.b, s64(req.c), req.d, req.flags);
        return { status: 0 };
      default:
        return { status: -ERRNO.EINVAL };
    }
  }

  /** REGISTER(a = len, b = offset, c = prot, flags): fresh zeroed GDDR, freed once the card may reuse it. */
  private async register(req: RmaRequest, api: ScifApi, ep: ScifEndpoint, windows: AgentWindow[]): Promise<{ status: number; value?: bigint }> {
    if (!ep.register || !api.allocBuffer) return { status: -ERRNO.ENOSYS };
    const len = req.a;
    // scif_register(): len must be a non-zero multiple of the page size (before any memory is taken).
    if (!len || len % 4096n || len > BigInt.asUintN(64, BigInt(Number.MAX_SAFE_INTEGER))) return { status: len > 1n << 40n ? -ERRNO.ENOMEM : -ERRNO.EINVAL };
    const buf = api.allocBuffer(Number(len));
    const win: AgentWindow = { offset: 0n, buf };
    let freed = false;
    const onFree = () => {
      freed = true;
      const i = windows.indexOf(win);
      if (i >= 0) windows.splice(i, 1);
      buf.free();
    };
    try {
      win.offset = await ep.register({ addr: buf.addr, len: Number(len) }, BigInt.asIntN(64, req.b), Number(BigInt.asUintN(32, req.c)) | 0, req.flags, onFree);
    } catch (e) {
      if (!freed) buf.free();
      throw e;
    }
    windows.push(win);
    windows.sort((x, y) => (x.offset < y.offset ? -1 : 1));
    return { status: 0, value: BigInt.asUintN(64, win.offset) };
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
