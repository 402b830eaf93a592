/**
 * A TEST DOUBLE of the card-side SCIF API: an in-process loopback fabric of
 * SCIF nodes (node 0 the host, node 1 the card, more if asked). It is not
 * the card's SCIF node and speaks no SCIF wire protocol; it only keeps the
 * endpoint semantics of drivers/misc/mic/scif/scif_api.c that services
 * depend on:
 *
 * - scif_bind(): EINVAL for a port in use or an already bound endpoint,
 *   EISCONN once listening/connected; port 0 takes a free port.
 * - scif_connect(): ENODEV for a node that is not online, ECONNREFUSED when
 *   nobody listens (or the backlog is full); it completes only when the
 *   listener accepts (scif_accept() sends CNCT_GNT); a refused endpoint
 *   stays BOUND and may connect again.
 * - scif_accept(): EAGAIN without SCIF_ACCEPT_SYNC and nothing pending,
 *   EINTR when the listener is closed while waiting.
 * - a byte stream per direction through a bounded ring of
 *   SCIF_ENDPT_QP_SIZE - 1 usable bytes, so a sender blocks until its peer
 *   reads (_scif_send() / _scif_recv(): blocking calls serialise on
 *   sendlock/recvlock, take any space or data at once and then wait for
 *   min(remaining, ring size)).
 * - scif_close() of one end makes the other DISCONNECTED: it may still read
 *   what is in its ring, then recv gives ECONNRESET, send ECONNRESET, and
 *   poll POLLHUP (__scif_pollfd()).
 *
 * Not modelled: the connect timeout, SCIF_CONNECT_NONBLOCK, RMA, the
 * admin-port capability check, and anything timing-related except poll
 * timeouts (through the injected `after`).
 */
import {
  POLLERR,
  POLLHUP,
  POLLIN,
  POLLOUT,
  ScifError,
  type ErrnoName,
  type RecvOptions,
  type ScifApi,
  type ScifEndpoint,
  type ScifPortId,
  type SendOptions,
} from '../scif/api.ts';

/** scif_epd.h */
export const SCIF_ENDPT_QP_SIZE = 0x1000;
/** First port scif_get_new_port() hands out (SCIF_PORT_RSVD, scif_ports.c). */
const SCIF_PORT_RSVD = 1088;

type EpState =
  | 'UNBOUND'
  | 'BOUND'
  | 'LISTENING'
  | 'CONNECTING'
  | 'CONNECTED'
  | 'DISCONNECTED'
  | 'CLOSED';

/** A byte ring with `cap` usable bytes (a real ring of cap + 1 slots). */
class Ring {
  private buf: Uint8Array;
  private head = 0;
  count = 0;
  constructor(readonly cap: number) {
    this.buf = new Uint8Array(cap);
  }
  get space(): number {
    return this.cap - this.count;
  }
  write(data: Uint8Array): number {
    const n = Math.min(data.length, this.space);
    let tail = (this.head + this.count) % this.cap;
    for (let i = 0; i < n; i++) {
      this.buf[tail] = data[i];
      tail = tail + 1 === this.cap ? 0 : tail + 1;
    }
    this.count += n;
    return n;
  }
  read(max: number): Uint8Array {
    const n = Math.min(max, this.count);
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      out[i] = this.buf[this.head];
      this.head = this.head + 1 === this.cap ? 0 : this.head + 1;
    }
    this.count -= n;
    return out;
  }
}

/** A waiter tries to make progress; 'done' removes it. */
type Step = 'done' | 'progress' | 'idle';

interface ConnReq {
  from: FakeEndpoint;
  settle(err: ErrnoName | null): void;
}

function fail<T>(code: ErrnoName, msg?: string): Promise<T> {
  return Promise.reject(new ScifError(code, msg));
}

class FakeNode {
  online = true;
  readonly ports = new Map<number, FakeEndpoint>();
  readonly endpoints = new Set<FakeEndpoint>();
  private nextPort = SCIF_PORT_RSVD;
  constructor(
    readonly fabric: FakeScifFabric,
    readonly id: number,
  ) {}
  freePort(): number {
    for (let i = 0; i < 65536; i++) {
      const p = this.nextPort;
      this.nextPort = this.nextPort >= 65535 ? SCIF_PORT_RSVD : this.nextPort + 1;
      if (!this.ports.has(p)) return p;
    }
    throw new ScifError('ENOSPC', 'no free port');
  }
}

class FakeEndpoint implements ScifEndpoint {
  state: EpState = 'UNBOUND';
  port = 0;
  peer: ScifPortId | null = null;
  peerEp: FakeEndpoint | null = null;
  inbound: Ring | null = null;
  outbound: Ring | null = null;
  private backlog = 0;
  readonly conreqs: ConnReq[] = [];
  private myReq: ConnReq | null = null;
  private sendLock: Promise<unknown> = Promise.resolve();
  private recvLock: Promise<unknown> = Promise.resolve();

  constructor(
    readonly node: FakeNode,
    readonly id: number,
  ) {}

  private get fabric(): FakeScifFabric {
    return this.node.fabric;
  }

  bind(port: number): number {
    if (this.state === 'CLOSED') throw new ScifError('EBADF');
    if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new ScifError('EINVAL', `port ${port}`);
    if (this.state === 'BOUND') throw new ScifError('EINVAL', 'already bound');
    if (this.state !== 'UNBOUND') throw new ScifError('EISCONN');
    if (port === 0) port = this.node.freePort();
    else if (this.node.ports.has(port)) throw new ScifError('EINVAL', `port ${port} in use`);
    this.node.ports.set(port, this);
    this.port = port;
    this.state = 'BOUND';
    return port;
  }

  listen(backlog: number): void {
    switch (this.state) {
      case 'CLOSED':
        throw new ScifError('EBADF');
      case 'BOUND':
        break;
      case 'LISTENING':
      case 'CONNECTED':
      case 'CONNECTING':
        throw new ScifError('EISCONN');
      default:
        throw new ScifError('EINVAL', `listen in state ${this.state}`);
    }
    if (!Number.isInteger(backlog) || backlog < 0) throw new ScifError('EINVAL', `backlog ${backlog}`);
    this.backlog = backlog;
    this.state = 'LISTENING';
    this.fabric.kick();
  }

  accept(opts: { block?: boolean } = {}): Promise<{ ep: ScifEndpoint; peer: ScifPortId }> {
    if (this.state === 'CLOSED') return fail('EBADF');
    if (this.state !== 'LISTENING') return fail('EINVAL', 'not listening');
    if (!opts.block && this.conreqs.length === 0) return fail('EAGAIN');
    return new Promise((resolve, reject) => {
      this.fabric.wait(() => {
        if (this.state !== 'LISTENING') {
          reject(new ScifError('EINTR', 'listener closed'));
          return 'done';
        }
        const req = this.conreqs.shift();
        if (!req) return 'idle';
        const from = req.from;
        if (from.state !== 'CONNECTING' || !this.node.online || !from.node.online) {
          req.settle('ECONNREFUSED');
          return 'progress';
        }
        const ep = this.fabric.newEndpoint(this.node);
        ep.port = this.port;
        ep.state = 'CONNECTED';
        ep.peer = { node: from.node.id, port: from.port };
        ep.peerEp = from;
        const toCard = new Ring(this.fabric.ringSize);
        const toPeer = new Ring(this.fabric.ringSize);
        ep.inbound = toCard;
        ep.outbound = toPeer;
        from.inbound = toPeer;
        from.outbound = toCard;
        from.peer = { node: this.node.id, port: this.port };
        from.peerEp = ep;
        req.settle(null);
        resolve({ ep, peer: { ...ep.peer } });
        return 'done';
      });
    });
  }

  connect(dst: ScifPortId): Promise<ScifPortId> {
    switch (this.state) {
      case 'CLOSED':
        return fail('EBADF');
      case 'LISTENING':
        // Linux: EOPNOTSUPP, which the API's errno list lacks.
        return fail('EINVAL', 'listening endpoint');
      case 'CONNECTING':
        return fail('EINPROGRESS');
      case 'CONNECTED':
      case 'DISCONNECTED':
        return fail('EISCONN');
      default:
        break;
    }
    const remote = this.fabric.nodes.get(dst.node);
    if (!remote || !remote.online || !this.node.online) return fail('ENODEV', `node ${dst.node}`);
    if (this.state === 'UNBOUND') {
      try {
        this.bind(0);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    this.state = 'CONNECTING';
    const self = { node: this.node.id, port: this.port };
    return new Promise((resolve, reject) => {
      let settled = false;
      const req: ConnReq = {
        from: this,
        settle: (err) => {
          if (settled) return;
          settled = true;
          this.myReq = null;
          if (err) {
            if (this.state === 'CONNECTING') this.state = 'BOUND';
            reject(new ScifError(err, `${dst.node}:${dst.port}`));
          } else {
            this.state = 'CONNECTED';
            resolve(self);
          }
          this.fabric.kick();
        },
      };
      this.myReq = req;
      // CNCT_REQ travels to the remote node; it answers REJ or queues it.
      queueMicrotask(() => {
        if (this.myReq !== req) return;
        const lep = remote.ports.get(dst.port);
        if (!lep || lep.state !== 'LISTENING' || lep.conreqs.length >= lep.backlog) {
          req.settle('ECONNREFUSED');
          return;
        }
        lep.conreqs.push(req);
        this.fabric.kick();
      });
    });
  }

  send(data: Uint8Array, opts: SendOptions = {}): Promise<number> {
    if (this.state === 'CLOSED') return fail('EBADF');
    if (data.length === 0) return Promise.resolve(0);
    const msg = Uint8Array.from(data);
    if (!opts.block) {
      const r = this.sendStep(msg, 0, false);
      return r.err ? fail(r.err) : Promise.resolve(r.sent);
    }
    const p = this.sendLock.then(
      () =>
        new Promise<number>((resolve, reject) => {
          let sent = 0;
          let waited = false;
          this.fabric.wait(() => {
            const r = this.sendStep(msg, sent, waited);
            const moved = r.sent > sent;
            sent = r.sent;
            if (r.err) {
              reject(new ScifError(r.err));
              return 'done';
            }
            if (r.finished) {
              resolve(sent);
              return 'done';
            }
            waited = true;
            return moved ? 'progress' : 'idle';
          });
        }),
    );
    this.sendLock = p.catch(() => undefined);
    return p;
  }

  /** One pass of _scif_send(): write what fits; finished when all sent or the state ends it. */
  private sendStep(
    msg: Uint8Array,
    sent: number,
    waited: boolean,
  ): { sent: number; finished: boolean; err?: ErrnoName } {
    while (sent < msg.length && this.state === 'CONNECTED' && this.outbound) {
      const space = this.outbound.space;
      const want = Math.min(msg.length - sent, this.outbound.cap);
      if (space === 0 || (waited && space < want)) return { sent, finished: false };
      sent += this.outbound.write(msg.subarray(sent));
      waited = false;
      this.fabric.kick();
    }
    if (sent === msg.length || (sent > 0 && this.state !== 'CONNECTED')) return { sent, finished: true };
    if (this.state === 'CONNECTED') return { sent, finished: true }; // non-blocking: nothing fit
    return { sent, finished: true, err: this.state === 'DISCONNECTED' ? 'ECONNRESET' : 'ENOTCONN' };
  }

  recv(len: number, opts: RecvOptions = {}): Promise<Uint8Array> {
    if (this.state === 'CLOSED') return fail('EBADF');
    if (!Number.isInteger(len) || len < 0) return fail('EINVAL', `len ${len}`);
    if (len === 0) return Promise.resolve(new Uint8Array(0));
    if (!opts.block) {
      const r = this.recvStep(len, [], 0, false, false);
      return r.err ? fail(r.err) : Promise.resolve(concat(r.parts, r.got));
    }
    const p = this.recvLock.then(
      () =>
        new Promise<Uint8Array>((resolve, reject) => {
          const parts: Uint8Array[] = [];
          let got = 0;
          let waited = false;
          this.fabric.wait(() => {
            const r = this.recvStep(len, parts, got, waited, true);
            const moved = r.got > got;
            got = r.got;
            if (r.err) {
              reject(new ScifError(r.err));
              return 'done';
            }
            if (r.finished) {
              resolve(concat(parts, got));
              return 'done';
            }
            waited = true;
            return moved ? 'progress' : 'idle';
          });
        }),
    );
    this.recvLock = p.catch(() => undefined);
    return p;
  }

  /** One pass of _scif_recv(). */
  private recvStep(
    len: number,
    parts: Uint8Array[],
    got: number,
    waited: boolean,
    block: boolean,
  ): { got: number; parts: Uint8Array[]; finished: boolean; err?: ErrnoName } {
    while (got < len && (this.state === 'CONNECTED' || this.state === 'DISCONNECTED') && this.inbound) {
      const count = this.inbound.count;
      const want = Math.min(len - got, this.inbound.cap);
      if (count > 0 && (!waited || count >= want || this.state !== 'CONNECTED')) {
        const d = this.inbound.read(len - got);
        parts.push(d);
        got += d.length;
        waited = false;
        if (this.state === 'CONNECTED') this.fabric.kick();
        continue;
      }
      if (this.state === 'DISCONNECTED') break;
      if (!block) break;
      return { got, parts, finished: false };
    }
    if (got > 0) return { got, parts, finished: true };
    if (this.state === 'CONNECTED') return { got, parts, finished: true };
    return { got, parts, finished: true, err: this.state === 'DISCONNECTED' ? 'ECONNRESET' : 'ENOTCONN' };
  }

  /** __scif_pollfd() */
  readyMask(): number {
    switch (this.state) {
      case 'LISTENING':
        return this.conreqs.length ? POLLIN : 0;
      case 'CONNECTED':
      case 'DISCONNECTED': {
        let m = 0;
        if (this.inbound && this.inbound.count) m |= POLLIN;
        if (this.outbound && this.outbound.space) m |= POLLOUT;
        if (this.state === 'DISCONNECTED') m |= POLLHUP;
        return m;
      }
      default:
        return POLLERR;
    }
  }

  poll(events: number, timeoutMs?: number): Promise<number> {
    const mask = () => this.readyMask() & (events | POLLERR | POLLHUP);
    const now = mask();
    if (now || timeoutMs === 0) return Promise.resolve(now);
    return new Promise((resolve) => {
      let over = false;
      const cancel =
        timeoutMs !== undefined && timeoutMs > 0
          ? this.fabric.after(timeoutMs, () => {
              over = true;
              this.fabric.kick();
            })
          : null;
      this.fabric.wait(() => {
        const m = mask();
        if (m || over) {
          cancel?.();
          resolve(m);
          return 'done';
        }
        return 'idle';
      });
    });
  }

  /** The peer went (scif_close, or its node was removed). */
  disconnect(): void {
    if (this.state === 'CONNECTED') this.state = 'DISCONNECTED';
    this.fabric.kick();
  }

  close(): Promise<void> {
    if (this.state === 'CLOSED') return Promise.resolve();
    const was = this.state;
    this.state = 'CLOSED';
    if (this.port && this.node.ports.get(this.port) === this) this.node.ports.delete(this.port);
    this.node.endpoints.delete(this);
    if (was === 'LISTENING') for (const r of this.conreqs.splice(0)) r.settle('ECONNREFUSED');
    if (was === 'CONNECTING' && this.myReq) this.myReq.settle('ECONNREFUSED');
    if (was === 'CONNECTED' && this.peerEp) this.peerEp.disconnect();
    this.fabric.kick();
    return Promise.resolve();
  }
}

function concat(parts: Uint8Array[], n: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface FakeFabricOptions {
  /** Node ids on the fabric, all online (default [0, 1]). */
  nodes?: number[];
  /** Usable bytes per ring direction (default SCIF_ENDPT_QP_SIZE - 1). */
  ringSize?: number;
  /** Timer for poll timeouts (default setTimeout). */
  after?(ms: number, fn: () => void): () => void;
}

export class FakeScifFabric {
  readonly nodes = new Map<number, FakeNode>();
  readonly ringSize: number;
  readonly after: (ms: number, fn: () => void) => () => void;
  private waiters = new Set<() => Step>();
  private kicked = false;
  private nextId = 1;

  constructor(o: FakeFabricOptions = {}) {
    for (const n of o.nodes ?? [0, 1]) this.nodes.set(n, new FakeNode(this, n));
    this.ringSize = o.ringSize ?? SCIF_ENDPT_QP_SIZE - 1;
    this.after =
      o.after ??
      ((ms, fn) => {
        const t = setTimeout(fn, ms);
        return () => clearTimeout(t);
      });
  }

  /** The ScifApi of one node. */
  api(node: number): ScifApi {
    const n = this.nodes.get(node);
    if (!n) throw new Error(`no node ${node} on the fake fabric`);
    return {
      self: node,
      nodeIds: () => [...this.nodes.values()].filter((x) => x.online).map((x) => x.id).sort((a, b) => a - b),
      open: () => {
        if (!n.online) throw new ScifError('ENODEV', `node ${node} is offline`);
        return this.newEndpoint(n);
      },
    };
  }

  /** Take a node away: every connection with it is DISCONNECTED at both ends, listeners refuse. */
  removeNode(node: number): void {
    const n = this.nodes.get(node);
    if (!n) return;
    n.online = false;
    for (const x of this.nodes.values()) {
      for (const ep of x.endpoints) {
        if (ep.state !== 'CONNECTED' || !ep.peerEp) continue;
        if (x === n || ep.peerEp.node === n) ep.disconnect();
      }
    }
    this.kick();
  }

  /** Bring a removed node back (its old endpoints stay as they are). */
  addNode(node: number): void {
    const n = this.nodes.get(node);
    if (n) n.online = true;
    else this.nodes.set(node, new FakeNode(this, node));
  }

  /** Endpoints opened and not closed yet, on one node or all. */
  openEndpoints(node?: number): number {
    let c = 0;
    for (const n of this.nodes.values()) if (node === undefined || n.id === node) c += n.endpoints.size;
    return c;
  }

  /** Blocked calls (send, recv, accept, connect, poll) still waiting. */
  get pending(): number {
    return this.waiters.size;
  }

  /** Let every runnable continuation run (macrotask turns until quiet). */
  async settle(turns = 20): Promise<void> {
    for (let i = 0; i < turns; i++) await new Promise<void>((r) => setImmediate(r));
  }

  newEndpoint(n: FakeNode): FakeEndpoint {
    const ep = new FakeEndpoint(n, this.nextId++);
    n.endpoints.add(ep);
    return ep;
  }

  wait(step: () => Step): void {
    if (step() === 'done') return;
    this.waiters.add(step);
  }

  kick(): void {
    if (this.kicked) return;
    this.kicked = true;
    queueMicrotask(() => {
      this.kicked = false;
      let moved = true;
      while (moved) {
        moved = false;
        for (const w of [...this.waiters]) {
          if (!this.waiters.has(w)) continue;
          const r = w();
          if (r === 'done') this.waiters.delete(w);
          if (r !== 'idle') moved = true;
        }
      }
    });
  }
}

/** A clock for tests: `after` timers fire only when advance() passes them. */
export class FakeClock {
  now = 0;
  private timers: { at: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  readonly after = (ms: number, fn: () => void): (() => void) => {
    const t = { at: this.now + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.push(t);
    return () => {
      const i = this.timers.indexOf(t);
      if (i >= 0) this.timers.splice(i, 1);
    };
  };

  /** Timers armed and neither fired nor cancelled. */
  get live(): number {
    return this.timers.length;
  }

  /** Move time forward by `ms`, firing due timers in order, settling `settle` after each. */
  async advance(ms: number, settle: () => Promise<void> = () => Promise.resolve()): Promise<void> {
    const end = this.now + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
      const t = this.timers[0];
      if (!t || t.at > end) break;
      this.timers.shift();
      this.now = t.at;
      t.fn();
      await settle();
    }
    this.now = end;
    await settle();
  }
}
