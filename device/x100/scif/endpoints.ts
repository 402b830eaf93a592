/**
 * The card's SCIF endpoints (drivers/misc/mic/scif/scif_api.c, scif_epd.c):
 * bind/listen/accept/connect/send/recv/poll/close with the Linux state
 * machine (scif_epd.h), and the node-QP handlers of the connection
 * messages (scif_cnctreq() ... scif_clientrcvd()). Each connection has a
 * card endpoint qp + 4 KiB ring in GDDR (CPA) and maps the host's endpoint
 * qp + ring through the SMPT window (MSA).
 */
import type { CardAddressSpace } from '../memory.ts';
import { CardMemoryError } from './alloc.ts';
import { POLLERR, POLLHUP, POLLIN, POLLOUT, ScifError, type CardBuffer, type CardRange, type ErrnoName, type ScifApi, type ScifEndpoint, type ScifPortId } from './api.ts';
import { SCIF, type ScifMsg, cloneMsg, newMsg, opName } from './msg.ts';
import type { ScifNode } from './node.ts';
import { SCIF_MGMT_NODE, SCIF_NODE_ACCEPT_TIMEOUT_MS, SCIF_NODE_ALIVE_TIMEOUT_MS } from './consts.ts';
import { PortTable } from './ports.ts';
import { QP, SCIFEP_MAGIC, SCIF_ENDPT_QP_SIZE, SCIF_QP_RESERVE } from './qp.ts';
import { ScifRb, isPowerOfTwo } from './rb.ts';
import { readU32, writeU32 } from './mem.ts';
import { type After, WaitQueue } from './waitq.ts';
import type { RmaCore } from './rma/core.ts';
import { fill, writeBytes } from './mem.ts';

/** enum scif_epd_state (scif_epd.h) */
export type EpState = 'UNBOUND' | 'BOUND' | 'LISTENING' | 'CONNECTED' | 'CONNECTING' | 'MAPPING' | 'CLOSING' | 'CLLISTEN' | 'DISCONNECTED' | 'ZOMBIE';

/** Card endpoint handles: any value the host stores and sends back (never dereferenced). */
const HANDLE_BASE = 0xca4d_0000_0000_0000n;
const MAX_PEER_RING = 1 << 24;

const hex = (v: bigint) => `0x${v.toString(16)}`;

interface EpQp {
  session: number;
  cardQp: bigint;
  ring: bigint;
  /** Host → card: the ring in card memory. */
  inbound: ScifRb;
  /** Card → host: the host's ring, once mapped. */
  outbound: ScifRb | null;
  hostQp: bigint;
  /** Added to cardQp in what the peer is told (its view of our memory). */
  base: bigint;
}

class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn);
    this.tail = r.then(() => undefined, () => undefined);
    return r;
  }
}

export class CardEndpoint implements ScifEndpoint {
  state: EpState = 'UNBOUND';
  port: ScifPortId = { node: 0, port: 0 };
  peer: ScifPortId | null = null;
  remoteEp = 0n;
  backlog = 0;
  readonly conreqs: ScifMsg[] = [];
  qp: EpQp | null = null;
  gntPld = 0n;
  /** DISCNT_ACK arrived for our DISCNCT. */
  discon = false;
  /** The node was reset under this endpoint: its queue pair is gone. */
  dead = false;
  readonly wq: WaitQueue;
  private readonly sendLock = new Mutex();
  private readonly recvLock = new Mutex();

  constructor(
    private readonly eps: Endpoints,
    readonly id: number,
    readonly handle: bigint,
    after: After,
  ) {
    this.wq = new WaitQueue(after);
  }

  private fail(code: ErrnoName, why: string): never {
    throw new ScifError(code, `ep ${this.id}: ${why}`);
  }

  bind(pn: number): number {
    if (this.state === 'BOUND') this.fail('EINVAL', 'already bound');
    if (this.state !== 'UNBOUND') this.fail('EISCONN', `bind in state ${this.state}`);
    if (pn) {
      if (!this.eps.ports.reserve(pn)) this.fail('EINVAL', `port ${pn} is taken or invalid`);
    } else {
      pn = this.eps.ports.getNew();
      if (pn < 0) this.fail('ENOSPC', 'no free port');
    }
    this.state = 'BOUND';
    this.port = { node: this.eps.node.nodeId, port: pn };
    return pn;
  }

  listen(backlog: number): void {
    switch (this.state) {
      case 'BOUND': break;
      case 'LISTENING': case 'CONNECTED': case 'CONNECTING': case 'MAPPING':
        this.fail('EISCONN', `listen in state ${this.state}`);
      default:
        this.fail('EINVAL', `listen in state ${this.state}`);
    }
    this.state = 'LISTENING';
    this.backlog = backlog;
    this.conreqs.length = 0;
  }

  /** scif_accept() */
  async accept(opts: { block?: boolean } = {}): Promise<{ ep: ScifEndpoint; peer: ScifPortId }> {
    const block = opts.block ?? true;
    if (this.state !== 'LISTENING') this.fail('EINVAL', `accept in state ${this.state}`);
    if (!this.conreqs.length && !block) this.fail('EAGAIN', 'no connection request');
    for (;;) {
      await this.wq.wait(() => this.conreqs.length > 0 || this.state !== 'LISTENING' || this.dead);
      if (this.dead) this.fail('ENODEV', 'node gone');
      if (this.state !== 'LISTENING') this.fail('EINTR', 'listener closed');
      const req = this.conreqs.shift()!;
      const r = await this.eps.acceptOne(this, req).catch((e: unknown) => {
        if (e instanceof ScifError) throw e;
        this.eps.node.trace({ action: 'error', ep: this.id, error: `accept: ${(e as Error).message}` });
        return null;
      });
      if (r) return r;
      // The request failed or was NACKed: SCIF_ACCEPT_SYNC waits for the next one.
      if (!block) this.fail('EAGAIN', 'connection request failed');
    }
  }

  connect(dst: ScifPortId): Promise<ScifPortId> {
    return this.eps.connect(this, dst).catch((e: unknown) => {
      if (e instanceof ScifError) throw e;
      this.eps.node.trace({ action: 'error', ep: this.id, error: `connect: ${(e as Error).message}` });
      throw new ScifError('ECONNREFUSED', `ep ${this.id}: ${(e as Error).message}`);
    });
  }

  /** scif_send() → _scif_send() */
  send(data: Uint8Array, opts: { block?: boolean } = {}): Promise<number> {
    if (!data.byteLength) return Promise.resolve(0);
    if (this.state === 'UNBOUND' || this.state === 'BOUND' || this.state === 'LISTENING') {
      return Promise.reject(new ScifError('ENOTCONN', `ep ${this.id}: send in state ${this.state}`));
    }
    const go = () => this.eps.send(this, data, opts.block ?? false);
    return opts.block ? this.sendLock.run(go) : go();
  }

  /** scif_recv() → _scif_recv() */
  recv(len: number, opts: { block?: boolean } = {}): Promise<Uint8Array> {
    if (len < 0) return Promise.reject(new ScifError('EINVAL', 'negative length'));
    if (!len) return Promise.resolve(new Uint8Array(0));
    const go = () => this.eps.recv(this, len, opts.block ?? false);
    return opts.block ? this.recvLock.run(go) : go();
  }

  /** __scif_pollfd() */
  pollMask(): number {
    if (this.dead) return POLLHUP;
    if (this.state === 'LISTENING') return this.conreqs.length ? POLLIN : 0;
    if ((this.state === 'CONNECTED' || this.state === 'DISCONNECTED') && this.qp) {
      let mask = 0;
      try {
        if (this.qp.inbound.count(1)) mask |= POLLIN;
        if (this.qp.outbound && this.qp.outbound.space()) mask |= POLLOUT;
      } catch {
        return POLLERR;
      }
      if (this.state === 'DISCONNECTED') mask |= POLLHUP;
      return mask;
    }
    return POLLERR;
  }

  async poll(events: number, timeoutMs?: number): Promise<number> {
    const ready = () => this.pollMask() & (events | POLLERR | POLLHUP);
    if (ready() || timeoutMs === 0) return ready();
    await this.wq.wait(() => ready() !== 0, timeoutMs);
    return ready();
  }

  close(): Promise<void> {
    return this.eps.close(this);
  }

  register(buf: CardRange, offset: bigint, prot: number, flags = 0, onFree?: () => void): Promise<bigint> {
    return this.rma((r) => r.self.register(this, buf, offset, prot, flags, onFree));
  }

  unregister(offset: bigint, len: bigint): Promise<void> {
    return this.rma((r) => r.self.unregister(this, offset, len));
  }

  readfrom(loffset: bigint, len: number, roffset: bigint, flags = 0): Promise<void> {
    return this.rma((r) => r.copies.copy(this, 'readfrom', loffset, len, roffset, flags));
  }

  writeto(loffset: bigint, len: number, roffset: bigint, flags = 0): Promise<void> {
    return this.rma((r) => r.copies.copy(this, 'writeto', loffset, len, roffset, flags));
  }

  fenceMark(flags: number): Promise<number> {
    return this.rma((r) => r.fences.mark(this, flags));
  }

  fenceWait(mark: number): Promise<void> {
    return this.rma((r) => r.fences.wait(this, mark));
  }

  fenceSignal(loff: bigint, lval: bigint, roff: bigint, rval: bigint, flags: number): Promise<void> {
    return this.rma((r) => r.fences.signal(this, loff, lval, roff, rval, flags));
  }

  private async rma<T>(fn: (r: RmaCore) => Promise<T>): Promise<T> {
    return fn(this.eps.node.rma);
  }
}

/** What the RMA layer does when an endpoint closes (scif_unregister_all_windows()) and when it is freed. */
export interface RmaHooks {
  closing(ep: CardEndpoint): Promise<void>;
  freed(ep: CardEndpoint): void;
}

export class Endpoints {
  readonly ports = new PortTable();
  rmaHooks: RmaHooks | null = null;
  private readonly byHandle = new Map<bigint, CardEndpoint>();
  private nextId = 1;
  private session = 0;
  readonly api: ScifApi;

  constructor(
    readonly node: ScifNode,
    private readonly mem: CardAddressSpace,
    private readonly after: After,
    private readonly trace: (e: Record<string, unknown>) => void,
  ) {
    const eps = this;
    this.api = {
      get self() {
        return eps.node.nodeId;
      },
      nodeIds: () => eps.node.nodeIds(),
      open: () => eps.open(),
      allocBuffer: (len) => eps.allocBuffer(len),
    };
  }

  /** Card memory for a card program's windows: free GDDR below the SCIF region, else the SCIF region. */
  allocBuffer(len: number): CardBuffer {
    if (!(len > 0)) throw new ScifError('EINVAL', `buffer length ${len}`);
    let a = this.node.buffers;
    let addr: bigint;
    try {
      addr = a.alloc(len);
    } catch (e) {
      if (!(e instanceof CardMemoryError)) throw e;
      a = this.node.alloc;
      try {
        addr = a.alloc(len);
      } catch (e2) {
        if (e2 instanceof CardMemoryError) throw new ScifError('ENOMEM', e2.message);
        throw e2;
      }
    }
    const gen = a.generation;
    const size = Math.ceil(len / 0x1000) * 0x1000;
    const mem = this.mem;
    const check = (off: number, n: number) => {
      if (off < 0 || n < 0 || off + n > size) throw new ScifError('EFAULT', `buffer access ${off}+${n} outside ${size} bytes`);
    };
    fill(mem, addr, size);
    return {
      addr,
      len: size,
      read: (off, n) => (check(off, n), mem.read(addr + BigInt(off), n)),
      write: (off, data) => (check(off, data.byteLength), writeBytes(mem, addr + BigInt(off), data)),
      free: () => a.releaseFrom(gen, addr),
    };
  }

  open(): CardEndpoint {
    const id = this.nextId++;
    const ep = new CardEndpoint(this, id, HANDLE_BASE + BigInt(id), this.after);
    this.byHandle.set(ep.handle, ep);
    return ep;
  }

  /** How many endpoints exist (tests). */
  get count(): number {
    return this.byHandle.size;
  }

  list(): CardEndpoint[] {
    return [...this.byHandle.values()];
  }

  /** The card endpoint a message's handle names (the RMA layer resolves p0 with it). */
  find(handle: bigint): CardEndpoint | undefined {
    return this.byHandle.get(handle);
  }

  wakeAll(): void {
    for (const ep of this.byHandle.values()) ep.wq.wake();
  }

  /**
   * Node 0 went away. `reset`: the card itself was reset, so every queue
   * pair is gone and nothing may touch it (scif_invalidate_ep() plus the
   * memory itself vanishing). Otherwise (SCIF_EXIT), endpoints become
   * DISCONNECTED and may still drain their own rings.
   */
  nodeGone(reset: boolean): void {
    for (const ep of this.byHandle.values()) {
      if (reset) {
        ep.dead = true;
        ep.qp = null;
      }
      this.disconnect(ep);
    }
    if (reset) {
      this.session++;
      this.byHandle.clear();
      this.ports.clear();
    }
  }

  /**
   * P2P peer `node` went away (scif_cleanup_scifdev() → scif_invalidate_ep()):
   * its connections become DISCONNECTED; nothing more is written to it.
   */
  peerGone(node: number): void {
    for (const ep of this.byHandle.values()) if (ep.peer?.node === node) this.disconnect(ep);
  }

  /** The peer is gone under `ep` (scif_invalidate_ep()): a live connection becomes DISCONNECTED, nothing more goes out. */
  private disconnect(ep: CardEndpoint): void {
    if (ep.state === 'CONNECTED' || ep.state === 'MAPPING' || ep.state === 'CONNECTING' || ep.state === 'CLOSING') ep.state = 'DISCONNECTED';
    if (ep.qp) ep.qp.outbound = null;
    ep.wq.wake();
  }

  // ---- queue pairs ----

  /**
   * A zeroed card endpoint qp with SCIFEP_MAGIC and a 4 KiB inbound ring
   * (scif_setup_qp_connect()); local_buf carries the base address a P2P
   * peer reaches us at (scif_map_single()).
   */
  private allocQp(peerNode: number): EpQp {
    const a = this.node.alloc;
    const cardQp = a.alloc(SCIF_QP_RESERVE);
    let ring: bigint;
    try {
      ring = a.alloc(SCIF_ENDPT_QP_SIZE);
    } catch (e) {
      a.release(cardQp);
      throw e;
    }
    this.mem.writeU64(cardQp + BigInt(QP.magic), SCIFEP_MAGIC);
    writeU32(this.mem, cardQp + BigInt(QP['inbound_q.size']), SCIF_ENDPT_QP_SIZE);
    const base = this.node.baseFor(peerNode);
    this.mem.writeU64(cardQp + BigInt(QP.local_buf), ring + base);
    const inbound = new ScifRb(this.mem, ring, SCIF_ENDPT_QP_SIZE, null, cardQp + BigInt(QP.local_write), { read: 0, write: 0 });
    return { session: this.session, cardQp, ring, inbound, outbound: null, hostQp: 0n, base };
  }

  private freeQp(ep: CardEndpoint): void {
    const qp = ep.qp;
    ep.qp = null;
    if (!qp || qp.session !== this.session) return;
    try {
      this.node.alloc.release(qp.cardQp);
      this.node.alloc.release(qp.ring);
    } catch {
      // already released by a node restart
    }
  }

  /** Read a host endpoint qp: magic, ring address and size; an errno name if unusable. */
  private peekHostQp(hostQp: bigint): { ring: bigint; size: number } | ErrnoName {
    try {
      if (this.mem.readU64(hostQp + BigInt(QP.magic)) !== SCIFEP_MAGIC) return 'EIO';
      const ring = this.mem.readU64(hostQp + BigInt(QP.local_buf));
      const size = readU32(this.mem, hostQp + BigInt(QP['inbound_q.size']));
      if (!isPowerOfTwo(size) || size > MAX_PEER_RING) return 'EIO';
      this.mem.segments(ring, size, true);
      return { ring, size };
    } catch {
      return 'EIO';
    }
  }

  // ---- host connects to a card port (scif_cnctreq() + scif_accept()) ----

  private onCnctReq(m: ScifMsg): void {
    const lep = this.list().find((ep) => ep.state === 'LISTENING' && ep.port.port === m.dst.port);
    let why: string | null = null;
    if (!lep) why = `no listener on port ${m.dst.port}`;
    else if (lep.backlog <= lep.conreqs.length) why = `backlog ${lep.backlog} full`;
    else if (typeof this.peekHostQp(m.payload[1]) === 'string') why = `host qp ${hex(m.payload[1])} unusable`;
    if (why || !lep) {
      this.trace({ action: 'reject', port: m.dst.port, reason: why });
      this.reject(m);
      return;
    }
    lep.conreqs.push(cloneMsg(m));
    lep.wq.wake();
  }

  /** SCIF_CNCT_REJ echoing the request: p0 = connector ep, p1 = its qp (the host reads p0). */
  private reject(req: ScifMsg): void {
    const r = cloneMsg(req);
    r.uop = SCIF.CNCT_REJ;
    r.dst = { ...req.src };
    r.src = { node: this.node.nodeId, port: req.dst.port };
    this.node.sendMsg(r);
  }

  /** One connection request taken off `lep`: the connected endpoint, or null (rejected / NACKed). */
  async acceptOne(lep: CardEndpoint, req: ScifMsg): Promise<{ ep: ScifEndpoint; peer: ScifPortId } | null> {
    const peer = { node: req.src.node, port: req.src.port };
    const cep = this.open();
    cep.state = 'CONNECTING';
    cep.remoteEp = req.payload[0];
    const host = this.peekHostQp(req.payload[1]);
    if (typeof host === 'string' || !this.node.alive(peer.node)) {
      this.trace({ action: 'reject', port: lep.port.port, reason: 'host endpoint qp unusable at accept' });
      this.reject(req);
      this.drop(cep);
      return null;
    }
    let qp: EpQp;
    try {
      qp = this.allocQp(peer.node);
    } catch (e) {
      if (!(e instanceof CardMemoryError)) throw e;
      this.trace({ action: 'reject', port: lep.port.port, reason: e.message });
      this.reject(req);
      this.drop(cep);
      return null;
    }
    // scif_setup_qp_accept(): the host's offsets restart at 0.
    const hostQp = req.payload[1];
    writeU32(this.mem, hostQp + BigInt(QP.local_write), 0);
    qp.outbound = new ScifRb(this.mem, host.ring, host.size, qp.cardQp + BigInt(QP.local_read), hostQp + BigInt(QP.local_write), { read: 0, write: 0 });
    writeU32(this.mem, hostQp + BigInt(QP.local_read), 0);
    qp.inbound.readPtr = hostQp + BigInt(QP.local_read);
    qp.hostQp = hostQp;
    cep.qp = qp;
    cep.port = { node: this.node.nodeId, port: lep.port.port };
    cep.peer = peer;
    const gnt = newMsg(SCIF.CNCT_GNT, { src: cep.port, dst: peer, payload: [cep.remoteEp, qp.cardQp + qp.base, cep.handle, 0n] });
    if (!this.node.sendMsg(gnt)) {
      this.drop(cep);
      return null;
    }
    // Wait for GNTACK / GNTNACK in 3 s slices while the node is alive.
    for (;;) {
      const done = await cep.wq.wait(() => cep.state !== 'CONNECTING' || !this.node.alive(peer.node), SCIF_NODE_ACCEPT_TIMEOUT_MS);
      if (done || !this.node.alive(peer.node)) break;
    }
    if ((cep.state as EpState) === 'CONNECTED') {
      this.ports.get(cep.port.port);
      return { ep: cep, peer };
    }
    this.drop(cep);
    if (!this.node.alive(peer.node)) throw new ScifError('ENODEV', `node ${peer.node} went away during accept`);
    return null;
  }

  /** Free an endpoint that never became visible to its user. */
  private drop(ep: CardEndpoint): void {
    this.freeQp(ep);
    ep.state = 'ZOMBIE';
    this.byHandle.delete(ep.handle);
    this.rmaHooks?.freed(ep);
  }

  private onGntAck(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (!ep || ep.state !== 'CONNECTING') {
      this.trace({ action: 'ignored', op: 'SCIF_CNCT_GNTACK', ep: hex(m.payload[0]), note: ep ? `in state ${ep.state}` : 'unknown endpoint' });
      return;
    }
    ep.state = 'CONNECTED';
    ep.wq.wake();
  }

  private onGntNack(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (!ep || ep.state !== 'CONNECTING') {
      this.trace({ action: 'ignored', op: 'SCIF_CNCT_GNTNACK', ep: hex(m.payload[0]), note: ep ? `in state ${ep.state}` : 'unknown endpoint' });
      return;
    }
    ep.state = 'CLOSING';
    ep.wq.wake();
  }

  // ---- card connects to a host port (scif_conn_func()) ----

  async connect(ep: CardEndpoint, dst: ScifPortId): Promise<ScifPortId> {
    if (dst.node === this.node.nodeId || !this.node.alive(dst.node)) throw new ScifError('ENODEV', `node ${dst.node} is not reachable`);
    switch (ep.state) {
      case 'ZOMBIE': case 'CLOSING': case 'DISCONNECTED':
        throw new ScifError('EINVAL', `connect in state ${ep.state}`);
      case 'LISTENING': case 'CLLISTEN':
        throw new ScifError('EOPNOTSUPP', 'connect on a listening endpoint');
      case 'CONNECTING': case 'MAPPING': case 'CONNECTED':
        throw new ScifError('EISCONN', `connect in state ${ep.state}`);
      case 'UNBOUND': {
        const pn = this.ports.getNew();
        if (pn < 0) throw new ScifError('ENOSPC', 'no free port');
        ep.port = { node: this.node.nodeId, port: pn };
        ep.state = 'BOUND';
        break;
      }
      case 'BOUND':
        break;
    }
    let qp: EpQp;
    try {
      qp = this.allocQp(dst.node);
    } catch (e) {
      if (e instanceof CardMemoryError) throw new ScifError('ENOMEM', e.message);
      throw e;
    }
    ep.qp = qp;
    ep.state = 'CONNECTING';
    const req = newMsg(SCIF.CNCT_REQ, { src: { ...ep.port }, dst: { ...dst }, payload: [ep.handle, qp.cardQp + qp.base, 0n, 0n] });
    if (!this.node.sendMsg(req)) {
      this.freeQp(ep);
      ep.state = 'BOUND';
      throw new ScifError('ENODEV', `node ${dst.node} went away`);
    }
    const answered = await ep.wq.wait(() => ep.state !== 'CONNECTING' || !this.node.alive(dst.node) || ep.dead, SCIF_NODE_ALIVE_TIMEOUT_MS);
    if (ep.dead) throw new ScifError('ECONNRESET', 'node reset during connect');
    if (!answered && ep.state === 'CONNECTING') ep.state = 'BOUND';
    if (!this.node.alive(dst.node)) {
      this.freeQp(ep);
      if ((ep.state as EpState) !== 'CLOSING') ep.state = 'BOUND';
      throw new ScifError('ENODEV', `node ${dst.node} went away during connect`);
    }
    if ((ep.state as EpState) === 'MAPPING') {
      // scif_setup_qp_connect_response() on the host's endpoint qp.
      const hostQp = ep.gntPld;
      const host = this.peekHostQp(hostQp);
      if (typeof host === 'string') {
        this.node.sendMsg(newMsg(SCIF.CNCT_GNTNACK, { src: { ...ep.port }, dst: { ...dst }, payload: [ep.remoteEp, qp.cardQp + qp.base, 0n, 0n] }));
        this.freeQp(ep);
        ep.state = 'BOUND';
        throw new ScifError('ENODEV', `host endpoint qp ${hex(hostQp)} unusable`);
      }
      writeU32(this.mem, qp.cardQp + BigInt(QP.local_read), 0);
      qp.outbound = new ScifRb(this.mem, host.ring, host.size, qp.cardQp + BigInt(QP.local_read), hostQp + BigInt(QP.local_write));
      writeU32(this.mem, hostQp + BigInt(QP.local_read), qp.inbound.currentReadOffset);
      qp.inbound.readPtr = hostQp + BigInt(QP.local_read);
      qp.hostQp = hostQp;
      this.node.sendMsg(newMsg(SCIF.CNCT_GNTACK, { src: { ...ep.port }, dst: { ...dst }, payload: [ep.remoteEp, qp.cardQp + qp.base, 0n, 0n] }));
      ep.state = 'CONNECTED';
      return { ...ep.port };
    }
    this.freeQp(ep);
    if (ep.state === 'BOUND') throw new ScifError('ECONNREFUSED', `port ${dst.node}:${dst.port} refused`);
    throw new ScifError('ECONNRESET', `connect ended in state ${ep.state}`);
  }

  /** scif_cnctgnt(); a grant nobody waits for is NACKed so the host's accept does not wait forever. */
  private onGnt(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (!ep || ep.state !== 'CONNECTING') {
      this.trace({ action: 'nack', op: 'SCIF_CNCT_GNT', ep: hex(m.payload[0]), note: ep ? `in state ${ep.state}` : 'unknown endpoint' });
      this.node.sendMsg(newMsg(SCIF.CNCT_GNTNACK, { src: { node: this.node.nodeId, port: m.dst.port }, dst: { ...m.src }, payload: [m.payload[2], 0n, 0n, 0n] }));
      return;
    }
    ep.peer = { node: m.src.node, port: m.src.port };
    ep.gntPld = m.payload[1];
    ep.remoteEp = m.payload[2];
    ep.state = 'MAPPING';
    ep.wq.wake();
  }

  private onRej(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (ep && ep.state === 'CONNECTING') {
      ep.state = 'BOUND';
      ep.wq.wake();
    } else {
      this.trace({ action: 'ignored', op: 'SCIF_CNCT_REJ', ep: hex(m.payload[0]) });
    }
  }

  // ---- disconnect ----

  /** scif_discnct(): always answered with DISCNT_ACK, matched or not. */
  private onDiscnct(m: ScifMsg): void {
    const ep = this.find(m.payload[1]);
    if (ep && ep.state === 'CONNECTED' && ep.remoteEp === m.payload[0]) {
      ep.state = 'DISCONNECTED';
      if (ep.qp) ep.qp.outbound = null;
      ep.wq.wake();
    }
    const r = cloneMsg(m);
    r.uop = SCIF.DISCNT_ACK;
    this.node.sendMsg(r);
  }

  private onDiscntAck(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (!ep) {
      this.trace({ action: 'ignored', op: 'SCIF_DISCNT_ACK', ep: hex(m.payload[0]) });
      return;
    }
    ep.discon = true;
    ep.state = 'DISCONNECTED';
    ep.wq.wake();
  }

  /** scif_close() */
  async close(ep: CardEndpoint): Promise<void> {
    const old = ep.state;
    if (old === 'ZOMBIE') return;
    // scif_unregister_all_windows() runs while the endpoint is still connected.
    if (old === 'CONNECTED' || old === 'DISCONNECTED') await this.rmaHooks?.closing(ep);
    if (ep.state === 'ZOMBIE') return;
    const was = ep.state;
    ep.state = 'CLOSING';
    ep.wq.wake();
    if ((was === 'CONNECTED' || was === 'MAPPING') && ep.peer && this.node.alive(ep.peer.node) && !ep.dead) {
      // scif_disconnect_ep(): DISCNCT, then ≤ 30 s for DISCNT_ACK.
      ep.discon = false;
      const sent = this.node.sendMsg(newMsg(SCIF.DISCNCT, { src: { ...ep.port }, dst: { ...ep.peer }, payload: [ep.handle, ep.remoteEp, 0n, 0n] }));
      const peer = ep.peer.node;
      if (sent) await ep.wq.wait(() => ep.discon || !this.node.alive(peer) || ep.dead, SCIF_NODE_ALIVE_TIMEOUT_MS);
    } else if (old === 'LISTENING') {
      // Reject every queued request; a waiting accept wakes with EINTR.
      for (const req of ep.conreqs.splice(0)) this.reject(req);
    }
    if (old !== 'UNBOUND' && !ep.dead) this.ports.put(ep.port.port);
    this.freeQp(ep);
    ep.state = 'ZOMBIE';
    this.byHandle.delete(ep.handle);
    this.rmaHooks?.freed(ep);
    ep.wq.wake();
  }

  // ---- data (_scif_send() / _scif_recv()) ----

  private notConnected(ep: CardEndpoint): ScifError {
    return ep.state === 'DISCONNECTED' || ep.dead
      ? new ScifError('ECONNRESET', `ep ${ep.id}: peer gone`)
      : new ScifError('ENOTCONN', `ep ${ep.id}: not connected (${ep.state})`);
  }

  /** Memory that vanished under a connection (guest RAM unmapped) ends it: ECONNRESET, not a crash. */
  private async guarded<T>(ep: CardEndpoint, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      if (e instanceof ScifError) throw e;
      this.trace({ action: 'error', ep: ep.id, error: `connection memory unreachable: ${(e as Error).message}` });
      ep.state = 'DISCONNECTED';
      if (ep.qp) ep.qp.outbound = null;
      ep.wq.wake();
      throw new ScifError('ECONNRESET', `ep ${ep.id}: ${(e as Error).message}`);
    }
  }

  send(ep: CardEndpoint, data: Uint8Array, block: boolean): Promise<number> {
    return this.guarded(ep, () => this.sendLoop(ep, data, block));
  }

  recv(ep: CardEndpoint, len: number, block: boolean): Promise<Uint8Array> {
    return this.guarded(ep, () => this.recvLoop(ep, len, block));
  }

  private async sendLoop(ep: CardEndpoint, data: Uint8Array, block: boolean): Promise<number> {
    let sent = 0;
    const len = data.byteLength;
    while (sent !== len && ep.state === 'CONNECTED' && !ep.dead) {
      const rb = ep.qp?.outbound;
      if (!rb) break;
      const space = rb.space();
      if (space) {
        const n = Math.min(len - sent, space);
        if (!rb.write(data.subarray(sent, sent + n))) break;
        rb.commit();
        if (!this.node.sendMsg(newMsg(SCIF.CLIENT_SENT, { src: { ...ep.port }, dst: { ...ep.peer! }, payload: [ep.remoteEp, 0n, 0n, 0n] }))) break;
        sent += n;
        continue;
      }
      if (!block) break;
      const want = Math.min(len - sent, SCIF_ENDPT_QP_SIZE - 1);
      await ep.wq.wait(() => ep.state !== 'CONNECTED' || ep.dead || !ep.qp?.outbound || ep.qp.outbound.space() >= want);
    }
    if (sent) return sent;
    if (ep.state !== 'CONNECTED' || ep.dead) throw this.notConnected(ep);
    return 0;
  }

  private async recvLoop(ep: CardEndpoint, len: number, block: boolean): Promise<Uint8Array> {
    const out = new Uint8Array(len);
    let got = 0;
    while (got < len && (ep.state === 'CONNECTED' || ep.state === 'DISCONNECTED') && !ep.dead && ep.qp) {
      const rb = ep.qp.inbound;
      const avail = rb.count(len - got);
      if (avail) {
        const n = Math.min(len - got, avail);
        out.set(rb.getNext(n)!, got);
        got += n;
        if (ep.state === 'CONNECTED') {
          // Only while connected: the peer's qp may be gone otherwise.
          rb.updateReadPtr();
          this.node.sendMsg(newMsg(SCIF.CLIENT_RCVD, { src: { ...ep.port }, dst: { ...ep.peer! }, payload: [ep.remoteEp, 0n, 0n, 0n] }));
        }
        continue;
      }
      if (ep.state === 'DISCONNECTED' || !block) break;
      const want = Math.min(len - got, SCIF_ENDPT_QP_SIZE - 1);
      await ep.wq.wait(() => ep.state !== 'CONNECTED' || ep.dead || !ep.qp || ep.qp.inbound.count(want) >= want);
    }
    if (got) return out.subarray(0, got);
    if (ep.state !== 'CONNECTED' || ep.dead) throw this.notConnected(ep);
    return out.subarray(0, 0);
  }

  private onClientSent(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (ep && ep.state === 'CONNECTED') ep.wq.wake();
  }

  private onClientRcvd(m: ScifMsg): void {
    const ep = this.find(m.payload[0]);
    if (ep && ep.state === 'CONNECTED') ep.wq.wake();
  }

  handler(uop: number): ((m: ScifMsg) => void) | undefined {
    switch (uop) {
      case SCIF.CNCT_REQ: return (m) => this.onCnctReq(m);
      case SCIF.CNCT_GNT: return (m) => this.onGnt(m);
      case SCIF.CNCT_GNTACK: return (m) => this.onGntAck(m);
      case SCIF.CNCT_GNTNACK: return (m) => this.onGntNack(m);
      case SCIF.CNCT_REJ: return (m) => this.onRej(m);
      case SCIF.DISCNCT: return (m) => this.onDiscnct(m);
      case SCIF.DISCNT_ACK: return (m) => this.onDiscntAck(m);
      case SCIF.CLIENT_SENT: return (m) => this.onClientSent(m);
      case SCIF.CLIENT_RCVD: return (m) => this.onClientRcvd(m);
      default:
        // The RMA opcodes are taken over by rma/core.ts through ScifNode.handle().
        return (m) => this.trace({ action: 'ignored', op: opName(m.uop), note: 'nothing of the card refers to it' });
    }
  }
}

