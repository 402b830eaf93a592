/**
 * The card's SCIF node: the card half of drivers/misc/mic/scif (node 1 as
 * the host sees it). Bring-up mirrors the card branch of scif_probe() and
 * scif_qp_setup_handler(): build the card node QP and its 64 KiB ring in
 * GDDR, poll the device page for the host's QP, map it, publish
 * h2c_scif_db then scif_card_dma_addr, send SCIF_INIT, and go online on the
 * host's SCIF_INIT. Afterwards it services the card ring on every
 * h2c_scif_db doorbell (scif_nodeqp_intrhandler()) and dispatches each
 * message as scif_intr_func[] does. Every request the host waits on is
 * answered, also when it is malformed or arrives in the wrong state.
 */
import type { CardAddressSpace } from '../memory.ts';
import type { Doorbells } from '../interrupts/doorbells.ts';
import { DOORBELL_COUNT } from '../interrupts/doorbells.ts';
import type { Tracer } from '../../../src/trace/tracer.ts';
import type { BootRecord } from '../boot/bootstrap.ts';
import { BOOTPARAM } from '../boot/device-page.ts';
import { CardAllocator } from './alloc.ts';
import { QP, SCIFEP_MAGIC, SCIF_NODE_QP_SIZE, SCIF_QP_RESERVE } from './qp.ts';
import { ScifRb, isPowerOfTwo } from './rb.ts';
import { SCIF, SCIFMSG_SIZE, SCIF_MAX_MSG, type ScifMsg, cloneMsg, decodeMsg, describeMsg, encodeMsg, newMsg, opName } from './msg.ts';
import { readU32, storeU64Untorn, writeU32, writeU8 } from './mem.ts';
import type { After } from './waitq.ts';
import { WaitQueue } from './waitq.ts';
import { Endpoints } from './endpoints.ts';
import { RmaCore } from './rma/core.ts';
import { P2pLinks } from './p2p.ts';
import type { ScifApi } from './api.ts';
import { QP_POLL_MS, SCIF_MGMT_NODE, SCIF_NODE_ALIVE_TIMEOUT_MS } from './consts.ts';

/** _scif_nodeqp_send(): 1 ms retries for 3 s while the ring is full. */
const SEND_RETRY_MS = 1;
const SEND_RETRIES = 3000;
/** The largest peer ring the card accepts to map (the host's is SCIF_NODE_QP_SIZE). */
const MAX_PEER_RING = 1 << 24;

/**
 * off        no card OS, or the node was stopped (card reset, PCI reset)
 * waiting    card QP built; polling the device page for scif_host_dma_addr
 * published  host QP mapped, card QP published, SCIF_INIT sent
 * online     the host's SCIF_INIT arrived: node 0 is a live peer
 * exiting    card-initiated exit: SCIF_EXIT sent, waiting for SCIF_EXIT_ACK
 * exited     left SCIF (either side's SCIF_EXIT); nothing more is written
 * failed     the host QP is unusable (bad magic, unmappable); traced
 */
export type NodeState = 'off' | 'waiting' | 'published' | 'online' | 'exiting' | 'exited' | 'failed' | 'crashed';

export interface ScifNodeOptions {
  mem: CardAddressSpace;
  doorbells: Doorbells;
  /** Ring host doorbell `db` (c2h_scif_db): the card's SDBICn DBREQ. */
  raiseHostDoorbell(db: number): void;
  after: After;
  schedule(fn: () => void): void;
  tracer: Tracer;
  /** GDDR region the node allocates its structures from. */
  region: { base: number; size: number };
  /** Where card programs' buffers end (default: the SCIF region's base); the card DMA driver's GDDR sits above. */
  buffersEnd?: number;
}

export type MsgHandler = (msg: ScifMsg) => void;

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/**
 * mic_next_card_db() (card/mic_device.c): the doorbell with the lowest
 * usage count, lowest index first; here the usage count is the number of
 * card blocks subscribed to it (the boot ROM holds 7, VOP's config
 * doorbell would hold 0 on a card that runs VOP).
 */
export function nextCardDb(doorbells: Doorbells): number {
  let index = 0;
  for (let i = 0; i < DOORBELL_COUNT; i++) if (doorbells.subscribers(i) < doorbells.subscribers(index)) index = i;
  return index;
}

export class ScifNode {
  state: NodeState = 'off';
  nodeId = 0;
  readonly alloc: CardAllocator;
  /**
   * GDDR for card programs' buffers (what scif_register() of a card
   * program pins): between the end of the host's download and
   * `buffersEnd`; rebuilt at every start.
   */
  buffers: CardAllocator;
  readonly endpoints: Endpoints;
  /** SCIF RMA: registered windows, copies, fences (rma/core.ts). */
  readonly rma: RmaCore;
  /** Woken on every state change. */
  readonly stateq: WaitQueue;
  /** Card-to-card queue pairs (SCIF_NODE_ADD, several cards). */
  readonly p2p: P2pLinks;
  /** The card's h2c_scif_db, once picked. */
  db = -1;
  /** The host's c2h_scif_db. */
  hostDb = -1;
  cardQp = 0n;
  hostQp = 0n;
  devicePage = 0n;
  /** Messages received and sent, by opcode name (tests and `vphi` self-checks). */
  readonly counts = { rx: new Map<string, number>(), tx: new Map<string, number>() };

  private ring = 0n;
  private inbound: ScifRb | null = null;
  private outbound: ScifRb | null = null;
  private unsubscribe: (() => void) | null = null;
  private timers = new Set<() => void>();
  private pending: ScifMsg[] = [];
  private sendRetries = 0;
  private retryArmed = false;
  private serviceQueued = false;
  /** A host doorbell is queued (ringHost()). */
  private ringQueued = false;
  /** Bumped by stop(): a doorbell queued before a reset is not rung after it. */
  private stops = 0;
  /** Bumped on every stop/start: work scheduled for an older session is dropped. */
  private session = 0;
  private readonly handlers = new Map<number, MsgHandler>();
  private readonly listeners = new Set<(state: NodeState, reason: string) => void>();

  constructor(private readonly o: ScifNodeOptions) {
    this.alloc = new CardAllocator(o.mem, o.region.base, o.region.size);
    this.buffers = new CardAllocator(o.mem, o.region.base, 0);
    this.stateq = new WaitQueue(o.after);
    this.endpoints = new Endpoints(this, o.mem, o.after, (e) => this.trace(e));
    this.rma = new RmaCore(this, o.after);
    this.p2p = new P2pLinks(this);
  }

  /** `fn` after the current work (the next event-loop turn). */
  later(fn: () => void): void {
    this.o.schedule(fn);
  }

  /** `fn` after `ms`; returns a cancel function. */
  afterMs(ms: number, fn: () => void): () => void {
    return this.o.after(ms, fn);
  }

  get doorbells(): Doorbells {
    return this.o.doorbells;
  }

  /** next_db(): the least used card doorbell. */
  nextDb(): number {
    return nextCardDb(this.o.doorbells);
  }

  /** Is `node` a live peer: the host, this node, or a registered P2P card? */
  alive(node: number): boolean {
    if (node === SCIF_MGMT_NODE) return this.peerAlive;
    if (node === this.nodeId) return this.state === 'online';
    return this.peerAlive && this.p2p.get(node)?.state === 'online';
  }

  /** The nodes this node can reach (scif_get_node_ids() on the card): host, self, P2P peers. */
  nodeIds(): number[] {
    if (!this.peerAlive) return [this.nodeId];
    return [SCIF_MGMT_NODE, this.nodeId, ...this.p2p.online()].sort((a, b) => a - b);
  }

  /** What this card adds to the addresses it gives `node` (scifdev->base_addr; 0 for the host). */
  baseFor(node: number): bigint {
    return node === SCIF_MGMT_NODE ? 0n : (this.p2p.get(node)?.baseAddr ?? 0n);
  }

  /** A P2P peer registered: waiters re-check. */
  peersChanged(): void {
    this.stateq.wake();
    this.endpoints.wakeAll();
  }

  /** A P2P peer went away (scif_cleanup_scifdev()): its endpoints disconnect. */
  peerGone(node: number): void {
    this.endpoints.peerGone(node);
    this.stateq.wake();
  }

  get mem(): CardAddressSpace {
    return this.o.mem;
  }

  /** The card-side SCIF API on this node. */
  get api(): ScifApi {
    return this.endpoints.api;
  }

  /** Messages waiting for room in the host ring. */
  get queued(): number {
    return this.pending.length;
  }

  /** Is node 0 a registered peer (scif_peer_register_device() ran, no exit under way)? */
  get peerAlive(): boolean {
    return this.state === 'online';
  }

  /** `fn(state, reason)` on every state change; returns an unsubscribe function. */
  onState(fn: (state: NodeState, reason: string) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Take over an opcode (the RMA layer claims ALLOC_REQ, REGISTER, MARK, ...). */
  handle(uop: number, fn: MsgHandler): void {
    this.handlers.set(uop, fn);
  }

  // ---- bring-up (scif_probe() / scif_qp_setup_handler(), card branch) ----

  /** The card OS started (Bootstrap.onBooted). */
  start(rec: BootRecord): void {
    this.stop('restart');
    if (rec.error || !rec.bootParam) {
      this.trace({ action: 'no-node', error: rec.error ?? 'no device page' });
      return;
    }
    this.nodeId = rec.bootParam.nodeId;
    this.devicePage = rec.devicePageAddr;
    const d = rec.download;
    const downloadEnd = Math.max(d.bootAddr + d.imageSize + 2048, d.ramdiskSize ? d.ramdiskAddr + d.ramdiskSize : 0);
    if (downloadEnd > this.o.region.base) {
      this.trace({ action: 'warning', error: `the download reaches 0x${downloadEnd.toString(16)}, into the SCIF region at 0x${this.o.region.base.toString(16)}` });
    }
    const bufEnd = this.o.buffersEnd ?? this.o.region.base;
    const bufBase = Math.min(bufEnd, Math.ceil(downloadEnd / 0x1000) * 0x1000);
    this.buffers = new CardAllocator(this.o.mem, bufBase, bufEnd - bufBase);
    this.bringUp();
  }

  private bringUp(): void {
    const session = ++this.session;
    // scif_setup_qp(): a zeroed qp with SCIFEP_MAGIC and a 64 KiB inbound ring.
    this.alloc.releaseAll();
    this.cardQp = this.alloc.alloc(SCIF_QP_RESERVE);
    this.ring = this.alloc.alloc(SCIF_NODE_QP_SIZE);
    const m = this.o.mem;
    m.writeU64(this.cardQp + BigInt(QP.magic), SCIFEP_MAGIC);
    writeU32(m, this.cardQp + BigInt(QP['inbound_q.size']), SCIF_NODE_QP_SIZE);
    m.writeU64(this.cardQp + BigInt(QP.local_buf), this.ring);
    // The read pointer stays NULL until the host's qp is known.
    this.inbound = new ScifRb(m, this.ring, SCIF_NODE_QP_SIZE, null, this.cardQp + BigInt(QP.local_write));
    this.outbound = null;
    this.pending = [];
    // next_db() + request_irq()
    this.db = nextCardDb(this.o.doorbells);
    this.unsubscribe = this.o.doorbells.subscribe(this.db, () => this.doorbell(session));
    this.setState('waiting', `card qp ${hex(this.cardQp)}, ring ${hex(this.ring)}, h2c_scif_db ${this.db}`);
    this.pollHost(session);
  }

  private timer(ms: number, fn: () => void): void {
    const cancel = this.o.after(ms, () => {
      this.timers.delete(cancel);
      fn();
    });
    this.timers.add(cancel);
  }

  /** scif_qp_setup_handler(): try now, then every second until scif_host_dma_addr != 0. */
  private pollHost(session: number): void {
    if (session !== this.session || this.state !== 'waiting') return;
    let hostQp: bigint;
    let hostDb: number;
    try {
      hostQp = this.o.mem.readU64(this.devicePage + BigInt(BOOTPARAM.scif_host_dma_addr));
      hostDb = this.o.mem.view(this.devicePage + BigInt(BOOTPARAM.c2h_scif_db), 1, false)[0];
    } catch (e) {
      this.trace({ action: 'poll', error: `device page unreadable: ${(e as Error).message}` });
      this.timer(QP_POLL_MS, () => this.pollHost(session));
      return;
    }
    if (hostQp === 0n) {
      this.timer(QP_POLL_MS, () => this.pollHost(session));
      return;
    }
    const err = this.connectHost(hostQp, hostDb);
    if (err) {
      this.trace({ action: 'host-qp', error: err, hostQp: hex(hostQp) });
      this.setState('failed', err);
      return;
    }
    // Publish h2c_scif_db FIRST, then scif_card_dma_addr in one untorn store: the
    // host uses a non-zero address at once, with the doorbell read in the same poll.
    writeU8(this.o.mem, this.devicePage + BigInt(BOOTPARAM.h2c_scif_db), this.db);
    storeU64Untorn(this.o.mem, this.devicePage + BigInt(BOOTPARAM.scif_card_dma_addr), this.cardQp);
    this.setState('published', `host qp ${hex(hostQp)}, c2h_scif_db ${hostDb}`);
    // scif_qp_response(): tell the peer where our queue is.
    this.sendMsg(newMsg(SCIF.INIT, { src: { node: this.nodeId, port: 0 }, dst: { node: SCIF_MGMT_NODE, port: 0 } }));
    // The host may have written before we looked.
    this.queueService(session);
  }

  /** scif_setup_qp_connect_response() on the host's node qp; an error string if unusable. */
  private connectHost(hostQp: bigint, hostDb: number): string | null {
    const m = this.o.mem;
    try {
      const magic = m.readU64(hostQp + BigInt(QP.magic));
      if (magic !== SCIFEP_MAGIC) return `SCIFEP_MAGIC mismatch: ${hex(magic)}`;
      const hostRing = m.readU64(hostQp + BigInt(QP.local_buf));
      const size = readU32(m, hostQp + BigInt(QP['inbound_q.size']));
      if (!isPowerOfTwo(size) || size < SCIFMSG_SIZE * 2 || size > MAX_PEER_RING) return `host ring size ${size} unusable`;
      if (hostDb < 0 || hostDb > 31) return `c2h_scif_db ${hostDb} unusable`;
      m.segments(hostRing, size, true); // the ring must be mapped
      writeU32(m, this.cardQp + BigInt(QP.local_read), 0);
      this.outbound = new ScifRb(m, hostRing, size, this.cardQp + BigInt(QP.local_read), hostQp + BigInt(QP.local_write));
      // remote_qp->local_read = inbound_q.current_read_offset, then the inbound read pointer is the host's.
      writeU32(m, hostQp + BigInt(QP.local_read), this.inbound!.currentReadOffset);
      this.inbound!.readPtr = hostQp + BigInt(QP.local_read);
      this.hostQp = hostQp;
      this.hostDb = hostDb;
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  }

  // ---- teardown ----

  /**
   * Card reset (RGCR), PCI reset, or the card OS going away: the node is
   * gone at once. No more ring writes or doorbells; endpoints fail with
   * ECONNRESET; timers are cancelled.
   */
  stop(reason: string): void {
    this.silence(reason);
    this.stops++;
    this.inbound = null;
    this.retryArmed = false;
    this.endpoints.nodeGone(true);
    this.alloc.releaseAll();
    this.buffers.releaseAll();
    if (this.state !== 'off') this.setState('off', reason);
  }

  /**
   * The card OS crashed (an injected card-crash): the node says nothing
   * more. No ring writes, no doorbells, no read-offset updates; messages
   * the host queues stay in its ring. Only a card or PCI reset (stop())
   * brings the node back to `off`.
   */
  crash(reason: string): void {
    if (this.state === 'off' || this.state === 'crashed') return;
    this.silence(reason);
    this.stops++;
    this.inbound = null;
    this.retryArmed = false;
    this.setState('crashed', reason);
  }

  /**
   * Card-initiated exit (scif_remove(), card branch), for a COSM shutdown:
   * h2c_scif_db = 0xFF and scif_card_dma_addr = 0 in the device page, the
   * host peer goes away (endpoints to node 0 disconnect), SCIF_EXIT, then
   * wait ≤ 30 s for SCIF_EXIT_ACK. Resolves when the node has left.
   */
  async exit(): Promise<void> {
    if (this.state !== 'online' && this.state !== 'published') {
      if (this.state === 'waiting') this.stop('exit before the host was found');
      return;
    }
    try {
      writeU8(this.o.mem, this.devicePage + BigInt(BOOTPARAM.h2c_scif_db), 0xff);
      storeU64Untorn(this.o.mem, this.devicePage + BigInt(BOOTPARAM.scif_card_dma_addr), 0n);
    } catch (e) {
      this.trace({ action: 'exit', error: `device page unwritable: ${(e as Error).message}` });
    }
    // scif_stop() → scif_handle_remove_node(0): the peer is unregistered before anything is closed.
    this.setState('exiting', 'card-initiated exit');
    this.endpoints.nodeGone(false);
    this.sendMsg(newMsg(SCIF.EXIT, { src: { node: this.nodeId, port: 0 }, dst: { node: SCIF_MGMT_NODE, port: 0 } }));
    const acked = await this.stateq.wait(() => this.state !== 'exiting', SCIF_NODE_ALIVE_TIMEOUT_MS);
    if ((this.state as NodeState) === 'exiting') this.leave(acked ? 'exit' : 'no SCIF_EXIT_ACK within 30 s');
  }

  /** Left SCIF: stop servicing and writing; the card memory stays until reset. */
  private leave(reason: string): void {
    this.silence(reason);
    this.setState('exited', reason);
  }

  /** Every way out (stop, crash, leave): no P2P peers, timers, doorbells or host ring writes any more. */
  private silence(reason: string): void {
    this.p2p.clear(reason);
    this.session++;
    for (const cancel of this.timers) cancel();
    this.timers.clear();
    this.unsubscribe?.();
    this.unsubscribe = null;
    this.outbound = null;
    this.pending = [];
  }

  // ---- node QP send (_scif_nodeqp_send()) ----

  /**
   * Queue `msg` for the host ring. scif_nodeqp_send() refuses opcodes above
   * SCIF_EXIT_ACK unless the peer is registered and no exit is under way:
   * false then (-ENODEV).
   */
  sendMsg(msg: ScifMsg): boolean {
    // A reply (made from the request, so it carries `via`) goes back on the
    // queue pair the request came in on, as scif_nodeqp_send(scifdev, msg)
    // does: the host leaves fields unset in some requests (msg.src and
    // msg.dst of scif_send_alloc_request(), msg.dst of
    // scif_send_scif_unregister()), so they cannot be trusted for routing.
    const d = msg.via ?? msg.dst.node;
    if (d !== SCIF_MGMT_NODE && d !== this.nodeId) {
      // scif_nodeqp_send(&scif_dev[dst]): a P2P peer's own queue pair.
      const link = this.p2p.get(d);
      if (!link || !this.peerAlive) {
        this.trace({ dir: 'tx', ...describeMsg(msg), error: `ENODEV: node ${d} is not a peer` });
        return false;
      }
      return this.p2p.send(link, msg);
    }
    return this.sendHost(msg);
  }

  /** Queue `msg` on node 0's queue pair, whatever its destination (the P2P set-up messages go through the host). */
  sendHost(msg: ScifMsg): boolean {
    if (msg.uop > SCIF.EXIT_ACK && !this.peerAlive) {
      this.trace({ dir: 'tx', ...describeMsg(msg), error: 'ENODEV: node 0 is not a live peer' });
      return false;
    }
    if (!this.outbound) {
      this.trace({ dir: 'tx', ...describeMsg(msg), error: 'ENODEV: no host queue pair' });
      return false;
    }
    this.pending.push(cloneMsg(msg));
    this.flush();
    return true;
  }

  private flush(): void {
    const rb = this.outbound;
    if (!rb) return;
    while (this.pending.length) {
      const msg = this.pending[0];
      let ok: boolean;
      try {
        ok = rb.write(encodeMsg(msg));
        if (ok) rb.commit();
      } catch (e) {
        this.trace({ dir: 'tx', ...describeMsg(msg), error: `host ring unreachable: ${(e as Error).message}` });
        this.pending.shift();
        continue;
      }
      if (!ok) {
        this.armRetry();
        return;
      }
      this.pending.shift();
      this.sendRetries = 0;
      this.countTx(msg.uop);
      this.trace({ dir: 'tx', ...describeMsg(msg) });
      this.ringHost();
    }
  }

  /**
   * scif_send_msg_intr() rings once per message; the host drains its whole
   * ring on each doorbell (scif_nodeqp_intrhandler()), so the messages of
   * one pass (a CLIENT_RCVD and the reply's CLIENT_SENT, say) share one
   * doorbell, rung after the current work: each host interrupt costs the
   * guest several trapped MMIO accesses.
   */
  private ringHost(): void {
    if (this.ringQueued) return;
    this.ringQueued = true;
    const db = this.hostDb;
    const gen = this.stops;
    this.o.schedule(() => {
      this.ringQueued = false;
      if (gen === this.stops) this.o.raiseHostDoorbell(db);
    });
  }

  private armRetry(): void {
    if (this.retryArmed) return;
    if (this.sendRetries++ >= SEND_RETRIES) {
      for (const msg of this.pending) this.trace({ dir: 'tx', ...describeMsg(msg), error: 'ENODEV: host ring full for 3 s' });
      this.pending = [];
      this.sendRetries = 0;
      return;
    }
    this.retryArmed = true;
    const session = this.session;
    this.timer(SEND_RETRY_MS, () => {
      this.retryArmed = false;
      if (session === this.session) this.flush();
    });
  }

  // ---- node QP receive (scif_nodeqp_intrhandler()) ----

  private doorbell(session: number): void {
    this.queueService(session);
  }

  /** Service the ring after the doorbell write has been answered (intr_bh on "SCIF INTR 0"). */
  private queueService(session: number): void {
    if (this.serviceQueued) return;
    this.serviceQueued = true;
    this.o.schedule(() => {
      this.serviceQueued = false;
      if (session === this.session) this.service();
    });
  }

  /** Read 44-byte records until fewer are there; publish the read offset after each, except after EXIT_ACK. */
  service(): void {
    const session = this.session;
    for (;;) {
      const rb = this.inbound;
      if (!rb || session !== this.session) return;
      let raw: Uint8Array | null;
      try {
        raw = rb.getNext(SCIFMSG_SIZE);
      } catch (e) {
        this.trace({ action: 'service', error: (e as Error).message });
        return;
      }
      if (!raw) return;
      const msg = decodeMsg(raw);
      this.deliver(msg);
      if (msg.uop === SCIF.EXIT_ACK) return;
      if (session !== this.session || this.inbound !== rb) return;
      try {
        rb.updateReadPtr();
      } catch (e) {
        this.trace({ action: 'service', error: `cannot publish the read offset: ${(e as Error).message}` });
        return;
      }
    }
  }

  /** scif_nodeqp_msg_handler(), for a message from any queue pair (`from`: the node whose queue pair it came in on). */
  deliver(msg: ScifMsg, from: number = SCIF_MGMT_NODE): void {
    msg.via = from;
    this.dispatch(msg);
  }

  private dispatch(msg: ScifMsg): void {
    this.count('rx', msg.uop);
    this.trace({ dir: 'rx', ...describeMsg(msg) });
    try {
      if (msg.uop === 0 || msg.uop > SCIF_MAX_MSG) {
        this.trace({ action: 'error', op: opName(msg.uop), error: 'Unknown message' });
        return;
      }
      const h = this.handlers.get(msg.uop) ?? this.builtin(msg.uop);
      if (h) h(msg);
      else this.trace({ action: 'error', op: opName(msg.uop), error: 'no handler' });
    } catch (e) {
      this.trace({ action: 'error', op: opName(msg.uop), error: `handler failed: ${(e as Error).message}` });
    }
  }

  private builtin(uop: number): MsgHandler | undefined {
    switch (uop) {
      case SCIF.INIT: return (m) => this.onInit(m);
      case SCIF.EXIT: return () => this.onExit();
      case SCIF.EXIT_ACK: return () => this.onExitAck();
      case SCIF.NODE_ADD: return (m) => this.onNodeAdd(m);
      case SCIF.NODE_ADD_ACK: return (m) => this.p2p.onNodeAddAck(m);
      case SCIF.NODE_ADD_NACK: return (m) => this.p2p.onNodeAddNack(m);
      case SCIF.GET_NODE_INFO:
        // The card never asks (scif_get_node_info()), so nothing waits on a reply.
        return (m) => this.trace({ action: 'ignored', op: opName(m.uop), note: 'the card never asked' });
      case SCIF.NODE_REMOVE: return (m) => this.onNodeRemove(m);
      case SCIF.NODE_REMOVE_ACK: return () => undefined;
      default: return this.endpoints.handler(uop);
    }
  }

  /** scif_init(): the host mapped our qp; node 0 is a live peer. */
  private onInit(_m: ScifMsg): void {
    if (this.state !== 'published') {
      this.trace({ action: 'ignored', op: 'SCIF_INIT', note: `in state ${this.state}` });
      return;
    }
    this.setState('online', 'host SCIF_INIT');
  }

  /** scif_exit(), card branch: scif_stop() drops node 0, then SCIF_EXIT_ACK; then nothing more is written. */
  private onExit(): void {
    if (this.state === 'exiting') {
      // Both sides exiting at once: ack theirs, ours is over too.
      this.sendMsg(newMsg(SCIF.EXIT_ACK, { src: { node: this.nodeId, port: 0 }, dst: { node: SCIF_MGMT_NODE, port: 0 } }));
      this.leave('host SCIF_EXIT during card exit');
      return;
    }
    this.setState('exiting', 'host SCIF_EXIT');
    this.endpoints.nodeGone(false);
    this.sendMsg(newMsg(SCIF.EXIT_ACK, { src: { node: this.nodeId, port: 0 }, dst: { node: SCIF_MGMT_NODE, port: 0 } }));
    this.leave('host SCIF_EXIT');
  }

  private onExitAck(): void {
    if (this.state === 'exiting') this.leave('SCIF_EXIT_ACK');
    else this.trace({ action: 'ignored', op: 'SCIF_EXIT_ACK', note: `in state ${this.state}` });
  }

  /** scif_node_add(): a queue pair for the other card (p2p.ts); only from the host while it is a live peer. */
  private onNodeAdd(m: ScifMsg): void {
    if (!this.peerAlive) {
      this.trace({ action: 'ignored', op: 'SCIF_NODE_ADD', note: `in state ${this.state}` });
      return;
    }
    this.p2p.onNodeAdd(m);
  }

  /** scif_node_remove() → scif_handle_remove_node() → scif_send_acks(): NODE_REMOVE_ACK with p0 = the node. */
  private onNodeRemove(m: ScifMsg): void {
    const node = Number(m.payload[0] & 0xffffn);
    if (node === SCIF_MGMT_NODE) this.endpoints.nodeGone(false);
    else this.p2p.remove(node, 'SCIF_NODE_REMOVE');
    const r = newMsg(SCIF.NODE_REMOVE_ACK, { src: { node: this.nodeId, port: 0 }, dst: { node: SCIF_MGMT_NODE, port: 0 }, payload: [m.payload[0], 0n, 0n, 0n] });
    // Answered even once node 0 is no longer a peer: bypass the peer check as scif_send_acks() does for opcodes it must send.
    if (!this.peerAlive && this.outbound) {
      this.pending.push(r);
      this.flush();
    } else {
      this.sendMsg(r);
    }
  }

  // ---- bookkeeping ----

  private setState(state: NodeState, reason: string): void {
    if (this.state === state) return;
    this.state = state;
    this.trace({ action: 'state', state, reason, node: this.nodeId });
    this.stateq.wake();
    this.endpoints.wakeAll();
    for (const fn of [...this.listeners]) {
      try {
        fn(state, reason);
      } catch (e) {
        this.trace({ action: 'state-listener', error: (e as Error).message });
      }
    }
  }

  countTx(uop: number): void {
    this.count('tx', uop);
  }

  private count(dir: 'rx' | 'tx', uop: number): void {
    const k = opName(uop);
    this.counts[dir].set(k, (this.counts[dir].get(k) ?? 0) + 1);
  }

  trace(data: Record<string, unknown>): void {
    if (this.o.tracer.enabled) this.o.tracer.event('scif', data);
  }
}
