/**
 * A test double of the host side of SCIF that follows the Linux host code
 * (drivers/misc/mic/scif, 5.8; the paths used are unchanged since 4.9):
 * scif_probe() with its qp + 64 KiB ring in fake guest RAM and the device
 * page fields, scif_qp_setup_handler() / scif_qp_response(),
 * scif_nodeqp_intrhandler() run from the fake MSI-X vector of c2h_scif_db,
 * and host-side scif_connect / accept / send / recv / close and SCIF_EXIT.
 * Host memory is its own (guest RAM); card memory is BAR0 at offset = CPA
 * (___mic_ioremap()). The ring code here is a separate transcription of
 * scif_rb.c, so the card's ring is not tested against itself.
 */
import { MIC_MAGIC } from '../boot/device-page.ts';
import { makeCard, type FakeEnv } from '../testing.ts';
import type { X100Card, X100Options } from '../card.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { SCIF, SCIFMSG_SIZE, type ScifMsg, cloneMsg, decodeMsg, encodeMsg, newMsg, opName } from './msg.ts';
import { QP, SCIFEP_MAGIC, SCIF_ENDPT_QP_SIZE, SCIF_NODE_QP_SIZE } from './qp.ts';
import { type FabricPort, type PciFabric, peerBus } from '../../../src/pci/fabric.ts';
import { APER_BAR, MMIO_BAR, MMIO_BAR_SIZE } from '../pci/identity.ts';

// BAR4 offsets (host/mic_x100.h)
const SBOX = 0x10000;
const SPAD = (n: number) => SBOX + 0xab20 + 4 * n;
const SMPT = (i: number) => SBOX + 0x3100 + 4 * i;
const SICE0 = SBOX + 0x900c, SIAC0 = SBOX + 0x9014;
const MXAR = (i: number) => SBOX + 0x9044 + 4 * i;
const APICICR_LO = (n: number) => SBOX + 0xa9d0 + 8 * n;
const APICICR_HI = (n: number) => SBOX + 0xa9d4 + 8 * n;
const RDMASR = (n: number) => SBOX + 0xb180 + 4 * n;
const RGCR = 0x14010;

/** A place in memory the host reaches directly: its own RAM, or BAR0. */
interface Loc {
  buf: Uint8Array;
  off: number;
}
const u32 = (l: Loc) => new DataView(l.buf.buffer, l.buf.byteOffset + l.off, 4).getUint32(0, true);
const setU32 = (l: Loc, v: number) => new DataView(l.buf.buffer, l.buf.byteOffset + l.off, 4).setUint32(0, v >>> 0, true);
const at = (l: Loc, d: number): Loc => ({ buf: l.buf, off: l.off + d });

/** scif_rb.c, transcribed for the host's side. */
class LinuxRb {
  currentReadOffset: number;
  currentWriteOffset: number;
  constructor(
    readonly base: Loc,
    readonly size: number,
    public readPtr: Loc | null,
    readonly writePtr: Loc,
  ) {
    this.currentReadOffset = readPtr ? u32(readPtr) : 0;
    this.currentWriteOffset = u32(writePtr);
  }
  space(): number {
    if (this.readPtr) this.currentReadOffset = u32(this.readPtr);
    return (this.currentReadOffset - (this.currentWriteOffset + 1)) & (this.size - 1);
  }
  write(msg: Uint8Array): boolean {
    if (this.space() < msg.byteLength) return false;
    const h = this.currentWriteOffset;
    if (h + msg.byteLength >= this.size) {
      const s1 = this.size - h;
      this.base.buf.set(msg.subarray(0, s1), this.base.off + h);
      this.base.buf.set(msg.subarray(s1), this.base.off);
    } else {
      this.base.buf.set(msg, this.base.off + h);
    }
    this.currentWriteOffset = (h + msg.byteLength) & (this.size - 1);
    return true;
  }
  commit(): void {
    setU32(this.writePtr, this.currentWriteOffset);
  }
  count(size: number): number {
    if (((this.currentWriteOffset - this.currentReadOffset) & (this.size - 1)) < size) this.currentWriteOffset = u32(this.writePtr);
    return (this.currentWriteOffset - this.currentReadOffset) & (this.size - 1);
  }
  getNext(size: number): Uint8Array | null {
    if (this.count(size) < size) return null;
    const h = this.currentReadOffset;
    this.currentReadOffset = (h + size) & (this.size - 1);
    const out = new Uint8Array(size);
    if (h + size >= this.size) {
      const s1 = this.size - h;
      out.set(this.base.buf.subarray(this.base.off + h, this.base.off + this.size));
      out.set(this.base.buf.subarray(this.base.off, this.base.off + size - s1), s1);
    } else {
      out.set(this.base.buf.subarray(this.base.off + h, this.base.off + h + size));
    }
    return out;
  }
  updateReadPtr(): void {
    if (this.readPtr) setU32(this.readPtr, this.currentReadOffset);
  }
}

/** The host's struct scif_qp, kzalloc'ed in guest RAM, and its mapping of the peer's. */
interface HostQp {
  qp: Loc;
  ring: Loc;
  msa: bigint;
  inbound: LinuxRb;
  outbound: LinuxRb | null;
  remoteQp: Loc | null;
}

export type HostEpState = 'UNBOUND' | 'BOUND' | 'LISTENING' | 'CONNECTED' | 'CONNECTING' | 'MAPPING' | 'CLOSING' | 'DISCONNECTED' | 'ZOMBIE';

export class HostEndpoint {
  state: HostEpState = 'UNBOUND';
  port = 0;
  peer = { node: 0, port: 0 };
  remoteEp = 0n;
  backlog = 0;
  conreqs: ScifMsg[] = [];
  qp: HostQp | null = null;
  gntPld = 0n;
  discon = false;
  constructor(
    readonly handle: bigint,
  ) {}
}

export class HostScifError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

/** Guest RAM for the double: one region, reached by the card through the identity SMPT. */
export const RAM_IOVA = 0x1000_0000n;
export const RAM_SIZE = 8 << 20;
/** Host "kernel pointers" for endpoints, as the card must echo them. */
const KPTR = 0xffff_8880_1234_0000n;

export interface LinuxScifHostOptions extends X100Options {
  /** Node id the host gives the card (mic_bootparam_init(): id + 1). */
  nodeId?: number;
  /** Load the scif module only later (scif_probe() after the boot interrupt). */
  lateProbe?: boolean;
  /** Put the card on a PCIe fabric with other cards, its BAR0 and BAR4 at these bus addresses. */
  fabric?: { fabric: PciFabric; aperBase: bigint; mmioBase: bigint };
}

export class LinuxScifHost {
  readonly env: FakeEnv;
  readonly card: X100Card;
  readonly ram: Uint8Array;
  /** Every message the host received, in order. */
  readonly rx: ScifMsg[] = [];
  readonly tx: ScifMsg[] = [];
  /** scif_peer_register_device() ran for node 1 (spdev published). */
  alive = false;
  /** The host's doorbell (mic_next_db()) and its MSI-X vector. */
  readonly db = 0;
  readonly vector = 0;
  /** The card's doorbell, read from the device page. */
  rdb = -1;
  exitState: 'idle' | 'in-progress' | 'completed' = 'idle';
  nodeQp: HostQp | null = null;
  qpPollCancel: (() => void) | null = null;
  /** Bumped by every scif_probe(): the pending qp poll of an earlier probe is stale. */
  readonly dp: Loc;
  readonly dpIova: bigint;
  readonly endpoints = new Map<bigint, HostEndpoint>();
  /** The host's scif_rma.c / scif_fence.c message handlers (rma/testing.ts); true if it took the message. */
  rmaHandler: ((msg: ScifMsg) => boolean) | null = null;
  /** The host's P2P handlers (p2p-testing.ts); true if it took the message. */
  p2pHandler: ((msg: ScifMsg) => boolean) | null = null;
  /** Record replies a real host would oops on (fuzzing) instead of throwing. */
  tolerant = false;
  readonly oddities: string[] = [];
  /** The host's interrupt handler does not run while paused (its ring fills up). */
  paused = false;
  private heap: number;
  private firedSeen = 0;
  private nextEp = 1;
  private nextPort = 1089;

  /** The card's COSM client stays off unless asked for (`cosm: true`). */
  constructor(opts: LinuxScifHostOptions = {}) {
    let self: X100Card | undefined;
    const f = opts.fabric;
    const { env, card, w } = makeCard({ cosm: false, ...opts }, (e) => {
      if (!f) return;
      const aperSize = e.aperture.byteLength;
      const port: FabricPort = {
        barBase: (i) => (i === APER_BAR ? f.aperBase : i === MMIO_BAR ? f.mmioBase : 0n),
        barSize: (i) => (i === APER_BAR ? aperSize : i === MMIO_BAR ? MMIO_BAR_SIZE : 0),
        barMemory: (i) => (i === APER_BAR ? e.aperture : null),
        barAccess: (_i, offset, buf, len, isWrite) => self!.bar4.access(offset, buf, len, isWrite),
      };
      f.fabric.attach(port);
      e.peers = peerBus(f.fabric, port);
    });
    self = card;
    this.env = env;
    this.card = card;
    this.ram = env.mapRam(RAM_IOVA, RAM_SIZE);
    this.heap = 0x10000;
    // mic_smpt_init(): identity map.
    for (let i = 0; i < 32; i++) w(SMPT(i), i << 2);
    // MSI-X: all vectors; mic_x100_enable_interrupts(); SCIF's doorbell on vector 0 (mic_request_threaded_irq()).
    env.enableMsix();
    w(SICE0, card.bar4.read(SICE0, 4) | 0xf | (0xff << 8));
    w(SIAC0, card.bar4.read(SIAC0, 4) | 0xf | (0xff << 8));
    w(MXAR(this.vector), card.bar4.read(MXAR(this.vector), 4) | (1 << this.db));
    // mic_dp_init() + mic_bootparam_init()
    const dpOff = this.kzalloc(4096);
    this.dp = { buf: this.ram, off: dpOff };
    this.dpIova = RAM_IOVA + BigInt(dpOff);
    const dv = this.dv(this.dp, 24);
    dv.setUint32(0, MIC_MAGIC, true);
    dv.setInt8(4, -1);
    dv.setUint8(5, opts.nodeId ?? 1);
    dv.setUint8(6, 0xff);
    dv.setUint8(7, 0xff);
    dv.setBigUint64(8, 0n, true);
    dv.setBigUint64(16, 0n, true);
    if (!opts.lateProbe) this.scifProbe();
  }

  private w(off: number, v: number): void {
    this.card.bar4.write(off, 4, v);
  }

  private r(off: number): number {
    return this.card.bar4.read(off, 4);
  }

  private dv(l: Loc, len: number): DataView {
    return new DataView(l.buf.buffer, l.buf.byteOffset + l.off, len);
  }

  /** kzalloc() in guest RAM, page aligned; returns the offset in `ram`. */
  kzalloc(len: number): number {
    const off = this.heap;
    this.heap += Math.ceil(len / 4096) * 4096;
    if (this.heap > RAM_SIZE) throw new Error('double out of RAM');
    this.ram.fill(0, off, off + len);
    return off;
  }

  /** scif_map_single() through __mic_dma_ops: the card address of a RAM offset. */
  msa(off: number): bigint {
    return SYSTEM_WINDOW_BASE + RAM_IOVA + BigInt(off);
  }

  /** scif_ioremap() → ___mic_ioremap(): BAR0 at offset = CPA; null if outside the aperture. */
  ioremap(cpa: bigint, len: number): Loc | null {
    if (cpa < 0n || cpa + BigInt(len) > BigInt(this.card.aperture.byteLength)) return null;
    return { buf: this.card.aperture, off: Number(cpa) };
  }

  // ---- bring-up: scif_probe(), scif_qp_setup_handler(), scif_qp_response() ----

  /** scif_setup_qp_connect(): a zeroed qp with magic, a local ring, inbound read pointer NULL. */
  private setupQpConnect(ringSize: number): HostQp {
    const qpOff = this.kzalloc(256);
    const ringOff = this.kzalloc(ringSize);
    const qp = { buf: this.ram, off: qpOff };
    this.dv(qp, 8).setBigUint64(0, SCIFEP_MAGIC, true);
    this.dv(at(qp, QP.local_buf), 8).setBigUint64(0, this.msa(ringOff), true);
    const inbound = new LinuxRb({ buf: this.ram, off: ringOff }, ringSize, null, at(qp, QP.local_write));
    this.dv(at(qp, QP['inbound_q.size']), 4).setUint32(0, ringSize, true);
    return { qp, ring: { buf: this.ram, off: ringOff }, msa: this.msa(qpOff), inbound, outbound: null, remoteQp: null };
  }

  /** scif_setup_qp_connect_response(): map the peer qp at `cpa`; an errno name on failure. */
  private connectResponse(hq: HostQp, cpa: bigint): string | null {
    const remote = this.ioremap(cpa, 256);
    if (!remote) return 'ENOMEM';
    if (this.dv(remote, 8).getBigUint64(0, true) !== SCIFEP_MAGIC) return 'ENODEV';
    const buf = this.dv(at(remote, QP.local_buf), 8).getBigUint64(0, true);
    const size = u32(at(remote, QP['inbound_q.size']));
    const rbuf = this.ioremap(buf, size);
    if (!rbuf) return 'EIO';
    setU32(at(hq.qp, QP.local_read), 0);
    hq.remoteQp = remote;
    hq.outbound = new LinuxRb(rbuf, size, at(hq.qp, QP.local_read), at(remote, QP.local_write));
    setU32(at(remote, QP.local_read), hq.inbound.currentReadOffset);
    const inb = hq.inbound;
    hq.inbound = new LinuxRb(inb.base, inb.size, at(remote, QP.local_read), at(hq.qp, QP.local_write));
    return null;
  }

  /** scif_probe(), management-node branch. */
  scifProbe(): void {
    this.nodeQp = this.setupQpConnect(SCIF_NODE_QP_SIZE);
    const dv = this.dv(this.dp, 24);
    dv.setUint8(7, this.db);
    dv.setBigUint64(8, this.nodeQp.msa, true);
    this.scheduleQpPoll();
  }

  private scheduleQpPoll(): void {
    this.qpPollCancel?.();
    this.qpPollCancel = this.env.after(1000, () => {
      this.qpPollCancel = null;
      this.qpSetupHandler();
    });
  }

  /** scif_qp_setup_handler(): poll scif_card_dma_addr; scif_qp_response() once non-zero. */
  qpSetupHandler(): void {
    const dv = this.dv(this.dp, 24);
    const da = dv.getBigUint64(16, true);
    this.rdb = dv.getUint8(6);
    if (!da) {
      this.scheduleQpPoll();
      return;
    }
    const err = this.connectResponse(this.nodeQp!, da);
    if (err) throw new HostScifError(`scif_qp_response err ${err}`);
    this.nodeqpSend(newMsg(SCIF.INIT, { dst: { node: 1, port: 0 } }));
  }

  /** The boot interrupt, as _mic_start() ends (SPAD14/15, then APICICR7 vector 229). */
  boot(): void {
    this.w(SPAD(14), Number(this.msa(this.dp.off) & 0xffffffffn));
    this.w(SPAD(15), Number(this.msa(this.dp.off) >> 32n));
    this.w(APICICR_HI(7), 0);
    this.w(APICICR_LO(7), 0x20e5);
  }

  /** _mic_start() after a reset: mic_bootparam_init() clears h2c_scif_db and scif_card_dma_addr, then scif_probe() again. */
  restart(): void {
    const dv = this.dv(this.dp, 24);
    dv.setUint8(6, 0xff);
    dv.setBigUint64(16, 0n, true);
    this.scifProbe();
  }

  /** cosm_hw_reset() → _mic_reset(): SPAD2 = 0, RGCR bit 0. */
  resetCard(): void {
    this.w(SPAD(2), 0);
    this.w(RGCR, this.r(RGCR) | 1);
  }

  // ---- node QP (_scif_nodeqp_send(), scif_nodeqp_intrhandler()) ----

  nodeqpSend(msg: ScifMsg): boolean {
    if (msg.uop > SCIF.EXIT_ACK && (this.exitState !== 'idle' || !this.alive)) return false;
    const rb = this.nodeQp?.outbound;
    if (!rb) return false;
    if (!rb.write(encodeMsg(msg))) throw new HostScifError('host → card node ring full');
    rb.commit();
    this.tx.push(cloneMsg(msg));
    // ___mic_send_intr(): APICICR for 0-7, RDMASR for 8-15.
    if (this.rdb < 8) this.w(APICICR_LO(this.rdb), this.r(APICICR_LO(this.rdb)) | (1 << 13));
    else this.w(RDMASR(this.rdb - 8), 0);
    return true;
  }

  /** Write any 44 bytes into the card ring and ring the card's doorbell (fuzzing); false if the ring is full. */
  nodeqpSendRaw(raw: Uint8Array): boolean {
    const rb = this.nodeQp?.outbound;
    if (!rb || !rb.write(raw)) return false;
    rb.commit();
    if (this.rdb < 8) this.w(APICICR_LO(this.rdb), this.r(APICICR_LO(this.rdb)) | (1 << 13));
    else this.w(RDMASR(this.rdb - 8), 0);
    return true;
  }

  /** Run the ISR for every new MSI-X message on our vector; returns the number of messages handled. */
  pollIrq(): number {
    if (this.paused) return 0;
    const fired = this.env.msixVectors();
    let n = 0;
    while (this.firedSeen < fired.length) {
      if (fired[this.firedSeen++] === this.vector) n += this.intrHandler();
    }
    return n;
  }

  /** scif_nodeqp_intrhandler() */
  intrHandler(): number {
    const rb = this.nodeQp?.inbound;
    if (!rb) return 0;
    let n = 0;
    for (;;) {
      const raw = rb.getNext(SCIFMSG_SIZE);
      if (!raw) break;
      const msg = decodeMsg(raw);
      n++;
      this.rx.push(cloneMsg(msg));
      try {
        this.handle(msg);
      } catch (e) {
        if (!this.tolerant || !(e instanceof HostScifError)) throw e;
        this.oddities.push(e.message);
      }
      if (msg.uop === SCIF.EXIT_ACK) break;
      // scif_cleanup_qp() may have swapped the ring under us.
      if (this.nodeQp?.inbound === rb) rb.updateReadPtr();
      else break;
    }
    return n;
  }

  private handle(msg: ScifMsg): void {
    if (this.rmaHandler?.(msg)) return;
    if (this.p2pHandler?.(msg)) return;
    switch (msg.uop) {
      case SCIF.INIT:
        // scif_init(): flush qp_dwork, then scif_peer_register_device().
        if (this.qpPollCancel) {
          this.qpPollCancel();
          this.qpPollCancel = null;
          this.qpSetupHandler();
        }
        this.alive = true;
        return;
      case SCIF.EXIT:
        this.onCardExit();
        return;
      case SCIF.EXIT_ACK:
        this.exitState = 'completed';
        return;
      case SCIF.CNCT_REQ: return this.cnctreq(msg);
      case SCIF.CNCT_GNT: {
        const ep = this.endpoints.get(msg.payload[0]);
        if (!ep) throw new HostScifError(`CNCT_GNT for a freed endpoint ${msg.payload[0]}`); // the real host would oops
        if (ep.state === 'CONNECTING') {
          ep.peer = { ...msg.src };
          ep.gntPld = msg.payload[1];
          ep.remoteEp = msg.payload[2];
          ep.state = 'MAPPING';
        }
        return;
      }
      case SCIF.CNCT_GNTACK: {
        const ep = this.mustEp(msg);
        ep.state = 'CONNECTED';
        return;
      }
      case SCIF.CNCT_GNTNACK: this.mustEp(msg).state = 'CLOSING'; return;
      case SCIF.CNCT_REJ: {
        const ep = this.mustEp(msg);
        if (ep.state === 'CONNECTING') ep.state = 'BOUND';
        return;
      }
      case SCIF.DISCNCT: {
        // scif_discnct()
        const ep = this.endpoints.get(msg.payload[1]);
        if (ep && ep.state === 'CONNECTED' && ep.remoteEp === msg.payload[0]) ep.state = 'DISCONNECTED';
        const r = cloneMsg(msg);
        r.uop = SCIF.DISCNT_ACK;
        this.nodeqpSend(r);
        return;
      }
      case SCIF.DISCNT_ACK: {
        const ep = this.mustEp(msg);
        ep.state = 'DISCONNECTED';
        ep.discon = true;
        return;
      }
      case SCIF.CLIENT_SENT:
      case SCIF.CLIENT_RCVD:
        this.mustEp(msg);
        return;
      case SCIF.NODE_ADD_ACK: // forwarded by scif_node_add_ack() to the other card (p2p-testing.ts)
      case SCIF.NODE_ADD_NACK:
      case SCIF.NODE_REMOVE_ACK:
      case SCIF.ALLOC_REJ:
      case SCIF.REGISTER_NACK:
      case SCIF.MARK_NACK:
      case SCIF.WAIT_NACK:
      case SCIF.SIG_NACK:
        return;
      default:
        throw new HostScifError(`host got ${opName(msg.uop)} it never asked for`);
    }
  }

  /** The host casts p0 back to a pointer: an unknown value would crash the guest. */
  private mustEp(msg: ScifMsg): HostEndpoint {
    const ep = this.endpoints.get(msg.payload[0]);
    if (!ep) throw new HostScifError(`${opName(msg.uop)} p0 0x${msg.payload[0].toString(16)} is no host endpoint: the guest would oops`);
    return ep;
  }

  /** scif_exit() on the management node for a card-initiated exit. */
  private onCardExit(): void {
    // scif_disconnect_node(1, false) → NODE_REMOVE to itself → scif_handle_remove_node(1).
    this.alive = false;
    this.invalidateEps();
    // scif_send_acks(): EXIT_ACK (opcode ≤ 3: allowed without the peer).
    this.nodeqpSend(newMsg(SCIF.EXIT_ACK, { src: { node: 0, port: 0 }, dst: { node: 1, port: 0 } }));
    this.cleanupQp();
    this.scheduleQpPoll();
  }

  /** scif_invalidate_ep(): endpoints to node 1 are DISCONNECTED without messages. */
  private invalidateEps(): void {
    for (const ep of this.endpoints.values()) {
      if (ep.state === 'CONNECTED' || ep.state === 'MAPPING' || ep.state === 'CONNECTING') ep.state = 'DISCONNECTED';
      if (ep.qp) ep.qp.outbound = null;
    }
  }

  /** scif_cleanup_qp(): unmap the card qp, offsets back to 0. */
  private cleanupQp(): void {
    const hq = this.nodeQp;
    if (!hq) return;
    hq.remoteQp = null;
    hq.outbound = null;
    setU32(at(hq.qp, QP.local_write), 0);
    hq.inbound = new LinuxRb(hq.ring, SCIF_NODE_QP_SIZE, null, at(hq.qp, QP.local_write));
  }

  /** scif_remove() + scif_disconnect_node(1, true): host-initiated exit (card stop). */
  remove(): void {
    const dv = this.dv(this.dp, 24);
    dv.setUint8(7, 0xff);
    dv.setBigUint64(8, 0n, true);
    this.qpPollCancel?.();
    this.qpPollCancel = null;
    if (this.alive) {
      // scif_send_exit()
      this.exitState = 'in-progress';
      this.nodeqpSend(newMsg(SCIF.EXIT, { src: { node: 0, port: 0 }, dst: { node: 1, port: 0 } }));
    }
  }

  /** After remove(): the peer goes (NODE_REMOVE to itself), endpoints are invalidated, the qp freed. */
  finishRemove(): void {
    this.exitState = 'idle';
    this.alive = false;
    this.invalidateEps();
    this.nodeQp = null;
  }

  // ---- endpoints (scif_api.c, scif_epd.c) ----

  open(): HostEndpoint {
    const ep = new HostEndpoint(KPTR + BigInt(this.nextEp++) * 0x400n);
    this.endpoints.set(ep.handle, ep);
    return ep;
  }

  listen(port: number, backlog = 16): HostEndpoint {
    const ep = this.open();
    ep.port = port;
    ep.state = 'LISTENING';
    ep.backlog = backlog;
    return ep;
  }

  /** scif_cnctreq() */
  private cnctreq(msg: ScifMsg): void {
    const lep = [...this.endpoints.values()].find((e) => e.state === 'LISTENING' && e.port === msg.dst.port);
    if (!lep || lep.backlog <= lep.conreqs.length) {
      const r = cloneMsg(msg);
      r.uop = SCIF.CNCT_REJ;
      this.nodeqpSend(r);
      return;
    }
    lep.conreqs.push(cloneMsg(msg));
  }

  /** __scif_connect() + scif_conn_func(): sends CNCT_REQ; finish with connectFinish() once answered. */
  connectStart(port: number, node = 1): HostEndpoint {
    if (!this.alive) throw new HostScifError('ENODEV');
    const ep = this.open();
    ep.port = this.nextPort++;
    ep.state = 'CONNECTING';
    ep.qp = this.setupQpConnect(SCIF_ENDPT_QP_SIZE);
    const req = newMsg(SCIF.CNCT_REQ, { src: { node: 0, port: ep.port }, dst: { node, port }, payload: [ep.handle, ep.qp.msa, 0n, 0n] });
    this.nodeqpSend(req);
    return ep;
  }

  /** The rest of scif_conn_func() after GNT or REJ. */
  connectFinish(ep: HostEndpoint): 'connected' | 'ECONNREFUSED' | 'pending' | string {
    if (ep.state === 'CONNECTING') return 'pending';
    if (ep.state === 'BOUND') return 'ECONNREFUSED';
    if (ep.state !== 'MAPPING') return ep.state;
    const msg = newMsg(SCIF.CNCT_GNTACK, { src: { node: 0, port: ep.port }, dst: { ...ep.peer }, payload: [ep.remoteEp, ep.qp!.msa, 0n, 0n] });
    const err = this.connectResponse(ep.qp!, ep.gntPld);
    if (err) {
      msg.uop = SCIF.CNCT_GNTNACK;
      this.nodeqpSend(msg);
      ep.state = 'BOUND';
      return err;
    }
    this.nodeqpSend(msg);
    ep.state = 'CONNECTED';
    return 'connected';
  }

  /** scif_accept() up to the grant: maps the card's qp, sends CNCT_GNT (or REJ); CONNECTED on GNTACK. */
  acceptStart(lep: HostEndpoint): HostEndpoint | null {
    const req = lep.conreqs.shift();
    if (!req) return null;
    const cep = this.open();
    cep.state = 'CONNECTING';
    cep.remoteEp = req.payload[0];
    cep.peer = { ...req.src };
    cep.port = lep.port;
    // scif_setup_qp_accept()
    const remote = this.ioremap(req.payload[1], 256);
    const bad = !remote || this.dv(remote, 8).getBigUint64(0, true) !== SCIFEP_MAGIC;
    const rbufAddr = remote ? this.dv(at(remote, QP.local_buf), 8).getBigUint64(0, true) : 0n;
    const rsize = remote ? u32(at(remote, QP['inbound_q.size'])) : 0;
    const rbuf = remote ? this.ioremap(rbufAddr, rsize) : null;
    if (bad || !rbuf) {
      this.nodeqpSend(newMsg(SCIF.CNCT_REJ, { dst: { ...req.src }, payload: [req.payload[0], req.payload[1], 0n, 0n] }));
      this.endpoints.delete(cep.handle);
      return null;
    }
    setU32(at(remote!, QP.local_write), 0);
    const qpOff = this.kzalloc(256);
    const ringOff = this.kzalloc(SCIF_ENDPT_QP_SIZE);
    const qp = { buf: this.ram, off: qpOff };
    this.dv(qp, 8).setBigUint64(0, SCIFEP_MAGIC, true);
    this.dv(at(qp, QP.local_buf), 8).setBigUint64(0, this.msa(ringOff), true);
    setU32(at(qp, QP['inbound_q.size']), SCIF_ENDPT_QP_SIZE);
    const outbound = new LinuxRb(rbuf, rsize, at(qp, QP.local_read), at(remote!, QP.local_write));
    setU32(at(remote!, QP.local_read), 0);
    const inbound = new LinuxRb({ buf: this.ram, off: ringOff }, SCIF_ENDPT_QP_SIZE, at(remote!, QP.local_read), at(qp, QP.local_write));
    cep.qp = { qp, ring: { buf: this.ram, off: ringOff }, msa: this.msa(qpOff), inbound, outbound, remoteQp: remote };
    this.nodeqpSend(newMsg(SCIF.CNCT_GNT, { src: { node: 0, port: lep.port }, payload: [cep.remoteEp, cep.qp.msa, cep.handle, 0n] }));
    return cep;
  }

  /** _scif_send(), non-blocking: what fits now; CLIENT_SENT after each commit. */
  send(ep: HostEndpoint, data: Uint8Array): number {
    let sent = 0;
    while (sent < data.byteLength && ep.state === 'CONNECTED') {
      const rb = ep.qp!.outbound!;
      const space = rb.space();
      if (!space) break;
      const n = Math.min(space, data.byteLength - sent);
      rb.write(data.subarray(sent, sent + n));
      rb.commit();
      this.nodeqpSend(newMsg(SCIF.CLIENT_SENT, { src: { node: 0, port: ep.port }, payload: [ep.remoteEp, 0n, 0n, 0n] }));
      sent += n;
    }
    if (!sent && ep.state !== 'CONNECTED') throw new HostScifError(ep.state === 'DISCONNECTED' ? 'ECONNRESET' : 'ENOTCONN');
    return sent;
  }

  /** _scif_recv(), non-blocking: what is there; CLIENT_RCVD after each consume while connected. */
  recv(ep: HostEndpoint, len: number): Uint8Array {
    const out: number[] = [];
    while (out.length < len && (ep.state === 'CONNECTED' || ep.state === 'DISCONNECTED') && ep.qp) {
      const rb = ep.qp.inbound;
      const c = rb.count(len - out.length);
      if (!c) break;
      const n = Math.min(c, len - out.length);
      out.push(...rb.getNext(n)!);
      if (ep.state === 'CONNECTED') {
        rb.updateReadPtr();
        this.nodeqpSend(newMsg(SCIF.CLIENT_RCVD, { src: { node: 0, port: ep.port }, payload: [ep.remoteEp, 0n, 0n, 0n] }));
      }
    }
    if (!out.length && ep.state !== 'CONNECTED') throw new HostScifError(ep.state === 'DISCONNECTED' ? 'ECONNRESET' : 'ENOTCONN');
    return Uint8Array.from(out);
  }

  /** scif_close() → scif_disconnect_ep(): DISCNCT; `discon` once DISCNT_ACK is back. */
  close(ep: HostEndpoint): void {
    const old = ep.state;
    ep.state = 'CLOSING';
    if (old === 'CONNECTED' || old === 'MAPPING') {
      ep.discon = false;
      this.nodeqpSend(newMsg(SCIF.DISCNCT, { src: { node: 0, port: ep.port }, dst: { ...ep.peer }, payload: [ep.handle, ep.remoteEp, 0n, 0n] }));
    } else if (old === 'LISTENING') {
      for (const req of ep.conreqs.splice(0)) {
        this.nodeqpSend(newMsg(SCIF.CNCT_REJ, { dst: { ...req.src }, payload: [req.payload[0], req.payload[1], 0n, 0n] }));
      }
    }
  }

  // ---- driving ----

  /** Run the card's scheduled work, the host ISR and promise callbacks until all are quiet. */
  async settle(maxRounds = 10_000): Promise<void> {
    let idle = 0;
    for (let i = 0; i < maxRounds && idle < 3; i++) {
      const a = this.env.drain();
      const b = this.pollIrq();
      await new Promise((r) => setImmediate(r));
      idle = a || b ? 0 : idle + 1;
    }
  }

  /** Advance the fake clock by `ms` in `step` slices, settling after each. */
  async advance(ms: number, step = 100): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      this.env.advance(Math.min(step, ms - t));
      await this.settle();
    }
  }

  /** Probe (unless late), boot, and wait for both SCIF_INITs. */
  async bringUp(): Promise<void> {
    this.boot();
    await this.settle();
    if (!this.alive) await this.advance(1000);
  }

  /** Device page fields as the host reads them. */
  devicePage() {
    const dv = this.dv(this.dp, 24);
    return { h2cScifDb: dv.getUint8(6), c2hScifDb: dv.getUint8(7), scifHostDmaAddr: dv.getBigUint64(8, true), scifCardDmaAddr: dv.getBigUint64(16, true) };
  }

  received(uop: number): ScifMsg[] {
    return this.rx.filter((m) => m.uop === uop);
  }
}
