/**
 * Card-to-card node queue pairs (the card half of SCIF P2P,
 * scif_nodeqp.c). With two or more cards online the host's
 * scif_p2p_setup() → scif_node_connect() sends each pair of cards a
 * SCIF_NODE_ADD; each card builds a qp for the other in its own GDDR
 * (scif_node_add()) and answers SCIF_NODE_ADD_ACK to the host, which
 * forwards it to the other card (scif_node_add_ack(), host branch). On
 * the forwarded ACK a card maps the peer's qp through its SMPT and the
 * peer's BAR0 address, marks the peer's qp SCIF_QP_ONLINE, registers the
 * peer (scif_peer_register_device()) and polls both qp_states
 * (scif_poll_qp_state()). From then on messages to that node go straight
 * into the peer's ring, and the peer's doorbell is rung through its BAR4
 * (mic_send_p2p_intr()).
 *
 * Every address this card gives the peer carries `baseAddr` (NODE_ADD p0:
 * this card's aperture as the peer sees it), as scif_map_single() adds
 * scifdev->base_addr for a P2P peer.
 */
import { readU32, writeU32 } from './mem.ts';
import { QP, SCIFEP_MAGIC, SCIF_NODE_QP_SIZE, SCIF_QP_OFFLINE, SCIF_QP_ONLINE, SCIF_QP_RESERVE } from './qp.ts';
import { ScifRb, isPowerOfTwo } from './rb.ts';
import { SCIF, SCIFMSG_SIZE, type ScifMsg, cloneMsg, decodeMsg, describeMsg, encodeMsg, opName } from './msg.ts';
import { SCIF_MGMT_NODE } from './consts.ts';
import { DOORBELL_BLOCK, RDMASR_BLOCK } from '../interrupts/regs.ts';
import type { ScifNode } from './node.ts';

/** scif_poll_qp_state(): 100 tries, 100 ms apart. */
const SCIF_NODE_QP_RETRY = 100;
const SCIF_NODE_QP_TIMEOUT_MS = 100;
/** MIC_X100_NUM_SBOX_IRQ: doorbells 0-7 are APICICR writes, 8-15 RDMASR writes. */
const MIC_X100_NUM_SBOX_IRQ = 8;
/** APICICRn_LO SEND (bit 13), what mic_x100_send_sbox_intr() ORs in. */
const APICICR_SEND = 1 << 13;
const SEND_RETRY_MS = 1;
const SEND_RETRIES = 3000;
const MAX_PEER_RING = 1 << 24;

const hex = (v: bigint | number) => `0x${v.toString(16)}`;

/**
 * adding   NODE_ADD answered with our qp; waiting for the peer's ACK
 * online   the peer's qp is mapped and the peer registered
 */
export type LinkState = 'adding' | 'online';

export class P2pLink {
  state: LinkState = 'adding';
  /** Our qp and ring for this peer, in our GDDR (card physical). */
  qp = 0n;
  ring = 0n;
  /** Our doorbell for this peer (next_db()). */
  db = -1;
  /** The peer's doorbell (NODE_ADD_ACK p2). */
  rdb = -1;
  /** The peer's qp, as we reach it (NODE_ADD_ACK p0). */
  remoteQp = 0n;
  inbound: ScifRb;
  outbound: ScifRb | null = null;
  pending: ScifMsg[] = [];
  retries = 0;
  retryArmed = false;
  serviceQueued = false;
  ringQueued = false;
  polls = 0;
  closed = false;
  unsubscribe: (() => void) | null = null;
  readonly timers = new Set<() => void>();

  constructor(
    /** The peer's node id. */
    readonly node: number,
    /** Our aperture as the peer sees it (NODE_ADD p0): added to every address we give the peer. */
    readonly baseAddr: bigint,
    /** The peer's BAR4 as we reach it (NODE_ADD p1). */
    readonly mmio: bigint,
    /** The peer's aperture as we reach it, and its length (NODE_ADD p2, p3). */
    readonly aper: bigint,
    readonly aperLen: bigint,
    inbound: ScifRb,
  ) {
    this.inbound = inbound;
  }
}

export class P2pLinks {
  private readonly links = new Map<number, P2pLink>();

  constructor(private readonly n: ScifNode) {}

  get(node: number): P2pLink | undefined {
    return this.links.get(node);
  }

  /** Peers registered (scif_peer_register_device() ran). */
  online(): number[] {
    return [...this.links.values()].filter((l) => l.state === 'online').map((l) => l.node);
  }

  list(): P2pLink[] {
    return [...this.links.values()];
  }

  // ---- scif_node_add() ----

  onNodeAdd(m: ScifMsg): void {
    const peer = m.src.node;
    const n = this.n;
    if (peer === SCIF_MGMT_NODE || peer === n.nodeId || peer > 0xfff) {
      n.trace({ action: 'error', op: 'SCIF_NODE_ADD', error: `src.node ${peer} is no other card` });
      this.nack(m);
      return;
    }
    // A card that was reset comes back with a new NODE_ADD: forget the old link.
    if (this.links.has(peer)) this.remove(peer, 'a new SCIF_NODE_ADD');
    let qp: bigint, ring: bigint;
    try {
      qp = n.alloc.alloc(SCIF_QP_RESERVE);
      try {
        ring = n.alloc.alloc(SCIF_NODE_QP_SIZE);
      } catch (e) {
        n.alloc.release(qp);
        throw e;
      }
    } catch (e) {
      n.trace({ action: 'error', op: 'SCIF_NODE_ADD', error: `no memory for the qp: ${(e as Error).message}` });
      this.nack(m);
      return;
    }
    const mem = n.mem;
    const base = m.payload[0];
    mem.writeU64(qp + BigInt(QP.magic), SCIFEP_MAGIC);
    writeU32(mem, qp + BigInt(QP['inbound_q.size']), SCIF_NODE_QP_SIZE);
    // scif_setup_qp_connect(): local_buf and the qp address through scif_map_single(), + base_addr.
    mem.writeU64(qp + BigInt(QP.local_buf), ring + base);
    writeU32(mem, qp + BigInt(QP.qp_state), SCIF_QP_OFFLINE);
    const link = new P2pLink(peer, base, m.payload[1], m.payload[2], m.payload[3], new ScifRb(mem, ring, SCIF_NODE_QP_SIZE, null, qp + BigInt(QP.local_write)));
    link.qp = qp;
    link.ring = ring;
    link.db = n.nextDb();
    link.unsubscribe = n.doorbells.subscribe(link.db, () => this.queueService(link));
    this.links.set(peer, link);
    n.trace({ action: 'p2p', state: 'adding', peer, qp: hex(qp), ring: hex(ring), db: link.db, base_addr: hex(base), mmio: hex(link.mmio), aper: hex(link.aper), aper_len: hex(link.aperLen) });
    const r = cloneMsg(m);
    r.uop = SCIF.NODE_ADD_ACK;
    r.dst = { node: peer, port: m.src.port };
    r.src = { node: n.nodeId, port: m.dst.port };
    r.payload[0] = qp + base;
    r.payload[2] = BigInt(link.db);
    n.sendHost(r);
  }

  /** scif_node_add() error path: SCIF_NODE_ADD_NACK to the host, which forwards it. */
  private nack(m: ScifMsg): void {
    const r = cloneMsg(m);
    r.uop = SCIF.NODE_ADD_NACK;
    r.dst = { node: m.src.node, port: m.src.port };
    r.src = { node: this.n.nodeId, port: m.dst.port };
    this.n.sendHost(r);
  }

  // ---- scif_node_add_ack(), card branch ----

  onNodeAddAck(m: ScifMsg): void {
    const n = this.n;
    const link = this.links.get(m.src.node);
    if (!link || link.state !== 'adding') {
      n.trace({ action: 'error', op: 'SCIF_NODE_ADD_ACK', error: link ? `peer ${m.src.node} already online` : `no SCIF_NODE_ADD came for node ${m.src.node}` });
      return;
    }
    const err = this.connect(link, m.payload[0]);
    if (err) {
      n.trace({ action: 'error', op: 'SCIF_NODE_ADD_ACK', peer: link.node, error: err });
      this.remove(link.node, err); // scif_cleanup_scifdev()
      return;
    }
    link.rdb = Number(m.payload[2] & 0xffn);
    link.state = 'online';
    n.trace({ action: 'p2p', state: 'online', peer: link.node, remote_qp: hex(link.remoteQp), rdb: link.rdb, maxid: m.payload[1].toString() });
    n.peersChanged();
    this.pollQpState(link);
  }

  onNodeAddNack(m: ScifMsg): void {
    this.n.trace({ action: 'p2p', state: 'nack', peer: m.src.node });
    if (this.links.get(m.src.node)?.state === 'adding') this.remove(m.src.node, 'SCIF_NODE_ADD_NACK');
  }

  /** scif_setup_qp_connect_response() on the peer's qp; an error string if unusable. */
  private connect(link: P2pLink, remoteQp: bigint): string | null {
    const m = this.n.mem;
    try {
      const magic = m.readU64(remoteQp + BigInt(QP.magic));
      if (magic !== SCIFEP_MAGIC) return `peer qp ${hex(remoteQp)}: SCIFEP_MAGIC mismatch ${hex(magic)}`;
      const rbuf = m.readU64(remoteQp + BigInt(QP.local_buf));
      const size = readU32(m, remoteQp + BigInt(QP['inbound_q.size']));
      if (!isPowerOfTwo(size) || size < SCIFMSG_SIZE * 2 || size > MAX_PEER_RING) return `peer ring size ${size} unusable`;
      m.segments(rbuf, size, true);
      writeU32(m, link.qp + BigInt(QP.local_read), 0);
      link.outbound = new ScifRb(m, rbuf, size, link.qp + BigInt(QP.local_read), remoteQp + BigInt(QP.local_write));
      writeU32(m, remoteQp + BigInt(QP.local_read), link.inbound.currentReadOffset);
      link.inbound.readPtr = remoteQp + BigInt(QP.local_read);
      link.remoteQp = remoteQp;
      // qp->remote_qp->qp_state = SCIF_QP_ONLINE
      writeU32(m, remoteQp + BigInt(QP.qp_state), SCIF_QP_ONLINE);
      return null;
    } catch (e) {
      return (e as Error).message;
    }
  }

  /** scif_poll_qp_state(): both qp_states ONLINE within 10 s, else the peer goes offline. */
  private pollQpState(link: P2pLink): void {
    if (link.closed) return;
    const m = this.n.mem;
    let mine = 0, theirs = 0;
    try {
      mine = readU32(m, link.qp + BigInt(QP.qp_state));
      theirs = readU32(m, link.remoteQp + BigInt(QP.qp_state));
    } catch (e) {
      this.n.trace({ action: 'p2p', peer: link.node, error: `qp_state unreadable: ${(e as Error).message}` });
    }
    if (mine === SCIF_QP_ONLINE && theirs === SCIF_QP_ONLINE) return;
    if (link.polls++ === SCIF_NODE_QP_RETRY) {
      this.n.trace({ action: 'p2p', peer: link.node, error: `QP check timeout with state ${hex(mine)}` });
      try {
        writeU32(m, link.remoteQp + BigInt(QP.qp_state), SCIF_QP_OFFLINE);
      } catch {
        // the peer is gone
      }
      this.remove(link.node, 'qp_state never came online');
      return;
    }
    this.timer(link, SCIF_NODE_QP_TIMEOUT_MS, () => this.pollQpState(link));
  }

  // ---- send (_scif_nodeqp_send() on a P2P scif_dev) ----

  send(link: P2pLink, msg: ScifMsg): boolean {
    if (msg.uop > SCIF.EXIT_ACK && link.state !== 'online') {
      this.n.trace({ dir: 'tx', peer: link.node, ...describeMsg(msg), error: `ENODEV: node ${link.node} is not a live peer` });
      return false;
    }
    if (!link.outbound) {
      this.n.trace({ dir: 'tx', peer: link.node, ...describeMsg(msg), error: `ENODEV: no queue pair to node ${link.node}` });
      return false;
    }
    link.pending.push(cloneMsg(msg));
    this.flush(link);
    return true;
  }

  private flush(link: P2pLink): void {
    const rb = link.outbound;
    if (!rb || link.closed) return;
    while (link.pending.length) {
      const msg = link.pending[0];
      let ok: boolean;
      try {
        ok = rb.write(encodeMsg(msg));
        if (ok) rb.commit();
      } catch (e) {
        this.n.trace({ dir: 'tx', peer: link.node, ...describeMsg(msg), error: `peer ring unreachable: ${(e as Error).message}` });
        link.pending.shift();
        continue;
      }
      if (!ok) {
        if (link.retryArmed) return;
        if (link.retries++ >= SEND_RETRIES) {
          for (const x of link.pending) this.n.trace({ dir: 'tx', peer: link.node, ...describeMsg(x), error: `ENODEV: node ${link.node} ring full for 3 s` });
          link.pending = [];
          link.retries = 0;
          return;
        }
        link.retryArmed = true;
        this.timer(link, SEND_RETRY_MS, () => {
          link.retryArmed = false;
          this.flush(link);
        });
        return;
      }
      link.pending.shift();
      link.retries = 0;
      this.n.countTx(msg.uop);
      this.n.trace({ dir: 'tx', peer: link.node, ...describeMsg(msg) });
      this.ringPeer(link);
    }
  }

  /** mic_send_p2p_intr(): the peer's APICICRn (SEND) or RDMASRn, through its BAR4; once per pass. */
  private ringPeer(link: P2pLink): void {
    if (link.ringQueued) return;
    link.ringQueued = true;
    this.n.later(() => {
      link.ringQueued = false;
      if (link.closed) return;
      const db = link.rdb;
      try {
        if (db >= 0 && db < MIC_X100_NUM_SBOX_IRQ) {
          const at = link.mmio + BigInt(DOORBELL_BLOCK.base + 8 * db);
          const v = this.n.mem.mmio32(at, 0, false);
          this.n.mem.mmio32(at, v | APICICR_SEND, true);
        } else if (db >= MIC_X100_NUM_SBOX_IRQ && db < 16) {
          this.n.mem.mmio32(link.mmio + BigInt(RDMASR_BLOCK.base + 4 * (db - MIC_X100_NUM_SBOX_IRQ)), 0, true);
        } else {
          this.n.trace({ action: 'p2p', peer: link.node, error: `peer doorbell ${db} is not 0-15` });
        }
      } catch (e) {
        this.n.trace({ action: 'p2p', peer: link.node, error: `cannot ring the peer's doorbell ${db}: ${(e as Error).message}` });
      }
    });
  }

  // ---- receive (scif_nodeqp_intrhandler() on the P2P doorbell) ----

  private queueService(link: P2pLink): void {
    if (link.serviceQueued) return;
    link.serviceQueued = true;
    this.n.later(() => {
      link.serviceQueued = false;
      this.service(link);
    });
  }

  private service(link: P2pLink): void {
    while (!link.closed) {
      let raw: Uint8Array | null;
      try {
        raw = link.inbound.getNext(SCIFMSG_SIZE);
      } catch (e) {
        this.n.trace({ action: 'service', peer: link.node, error: (e as Error).message });
        return;
      }
      if (!raw) return;
      const msg = decodeMsg(raw);
      if (msg.src.node !== link.node) this.n.trace({ action: 'warning', peer: link.node, op: opName(msg.uop), error: `src.node ${msg.src.node} on node ${link.node}'s queue pair` });
      this.n.deliver(msg, link.node);
      if (link.closed || msg.uop === SCIF.EXIT_ACK) return;
      try {
        link.inbound.updateReadPtr();
      } catch (e) {
        this.n.trace({ action: 'service', peer: link.node, error: `cannot publish the read offset: ${(e as Error).message}` });
        return;
      }
    }
  }

  // ---- teardown (scif_cleanup_scifdev() of a P2P peer) ----

  /** The peer goes: no more ring writes or doorbells, its endpoints disconnect, our qp memory is freed. */
  remove(node: number, reason: string): boolean {
    const link = this.links.get(node);
    if (!link) return false;
    this.links.delete(node);
    link.closed = true;
    for (const cancel of link.timers) cancel();
    link.timers.clear();
    link.unsubscribe?.();
    link.unsubscribe = null;
    link.outbound = null;
    link.pending = [];
    try {
      this.n.alloc.release(link.qp);
      this.n.alloc.release(link.ring);
    } catch {
      // released by a node restart
    }
    this.n.trace({ action: 'p2p', state: 'removed', peer: node, reason });
    this.n.peerGone(node);
    return true;
  }

  /** Every peer goes (card reset, SCIF_EXIT): nothing is written to them any more. */
  clear(reason: string): void {
    for (const node of [...this.links.keys()]) this.remove(node, reason);
  }

  private timer(link: P2pLink, ms: number, fn: () => void): void {
    const cancel = this.n.afterMs(ms, () => {
      link.timers.delete(cancel);
      if (!link.closed) fn();
    });
    link.timers.add(cancel);
  }
}
