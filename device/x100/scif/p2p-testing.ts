/**
 * A test double of the Linux host with several cards (the management
 * node's P2P code in scif_nodeqp.c, 5.8): one LinuxScifHost per card for
 * its node QP, on one PciFabric, and on top of them scif_p2p_setup() →
 * scif_node_connect() with scif_init_p2p_info()'s addresses (each card's
 * SMPT is the identity map, so "X as seen from card i" is the system
 * window base + X's bus address), the forwarding of SCIF_NODE_ADD_ACK /
 * NACK with payload[1] = maxid (scif_node_add_ack(), host branch), and
 * scif_disconnect_node()'s SCIF_NODE_REMOVE to the other cards.
 */
import { PciFabric } from '../../../src/pci/fabric.ts';
import { SYSTEM_WINDOW_BASE } from '../smpt/regs.ts';
import { SCIF, type ScifMsg, cloneMsg, newMsg } from './msg.ts';
import { LinuxScifHost, type LinuxScifHostOptions } from './testing.ts';
import type { CardService } from './api.ts';

/** Bus addresses the double gives card k (1-based): BAR0 and BAR4, as a BIOS would place them. */
export const aperBase = (k: number): bigint => 0x20_0000_0000n + BigInt(k) * 0x1_0000_0000n;
export const mmioBase = (k: number): bigint => 0x30_0000_0000n + BigInt(k) * 0x10_0000n;

export class LinuxP2pHost {
  readonly fabric = new PciFabric();
  readonly hosts: LinuxScifHost[] = [];
  /** scif_dev[i].p2p: the peers each node has P2P mappings for. */
  readonly p2p = new Map<number, Set<number>>();
  /** NODE_REMOVE_ACKs seen, by removed node. */
  readonly removeAcks = new Map<number, number>();
  /** scif_info.p2p_enable */
  p2pEnable = true;

  /** `services(k)`: card k's own service objects (a service runs on one card). */
  constructor(cards: number, opts: Omit<LinuxScifHostOptions, 'services'> = {}, services?: (k: number) => CardService[]) {
    for (let k = 1; k <= cards; k++) {
      const h = new LinuxScifHost({ ...opts, services: services?.(k), nodeId: k, fabric: { fabric: this.fabric, aperBase: aperBase(k), mmioBase: mmioBase(k) } });
      h.p2pHandler = (m) => this.handle(m);
      this.hosts.push(h);
      this.p2p.set(k, new Set());
    }
  }

  card(k: number): LinuxScifHost {
    return this.hosts[k - 1];
  }

  get maxid(): number {
    return this.hosts.length;
  }

  /** Every card online, then scif_p2p_setup() as the last SCIF_INIT runs it. */
  async bringUp(): Promise<void> {
    for (const h of this.hosts) h.boot();
    await this.settle();
    await this.advance(1000);
    this.p2pSetup();
    await this.settle();
  }

  /** scif_p2p_setup(): nothing until every node is alive, then scif_node_connect() for each pair. */
  p2pSetup(): void {
    if (!this.p2pEnable) return;
    if (!this.hosts.every((h) => h.alive)) return;
    for (let i = 1; i <= this.maxid; i++) for (let j = 1; j <= this.maxid; j++) if (i !== j) this.nodeConnect(i, j);
  }

  /** scif_node_connect(scif_dev[i], j): dev_j = i, dev_i = j. */
  private nodeConnect(devJ: number, devI: number): void {
    const hi = this.card(devI), hj = this.card(devJ);
    if (!hi.alive) return;
    if (this.p2p.get(devI)!.has(devJ)) return;
    this.p2p.get(devI)!.add(devJ);
    this.p2p.get(devJ)!.add(devI);
    const len = (h: LinuxScifHost) => BigInt(h.card.aperture.byteLength);
    // NODE_ADD to dev_i: p0 its aperture as seen from dev_j, p1/p2 dev_j's MMIO/aperture as seen from dev_i.
    hi.nodeqpSend(newMsg(SCIF.NODE_ADD, {
      src: { node: devJ, port: 0 }, dst: { node: devI, port: 0 },
      payload: [SYSTEM_WINDOW_BASE + aperBase(devI), SYSTEM_WINDOW_BASE + mmioBase(devJ), SYSTEM_WINDOW_BASE + aperBase(devJ), len(hj)],
    }));
    hj.nodeqpSend(newMsg(SCIF.NODE_ADD, {
      src: { node: devI, port: 0 }, dst: { node: devJ, port: 0 },
      payload: [SYSTEM_WINDOW_BASE + aperBase(devJ), SYSTEM_WINDOW_BASE + mmioBase(devI), SYSTEM_WINDOW_BASE + aperBase(devI), len(hi)],
    }));
  }

  /** The management node's P2P handlers; true if the message was one of them. */
  private handle(m: ScifMsg): boolean {
    switch (m.uop) {
      case SCIF.NODE_ADD_ACK: {
        const r = cloneMsg(m);
        r.payload[1] = BigInt(this.maxid);
        this.card(m.dst.node)?.nodeqpSend(r);
        return true;
      }
      case SCIF.NODE_ADD_NACK:
        this.card(m.dst.node)?.nodeqpSend(cloneMsg(m));
        return true;
      case SCIF.NODE_REMOVE_ACK: {
        const node = Number(m.payload[0]);
        this.removeAcks.set(node, (this.removeAcks.get(node) ?? 0) + 1);
        return true;
      }
      default:
        return false;
    }
  }

  /** scif_disconnect_node(k): SCIF_NODE_REMOVE (p0 = k) to every other live card; scif_destroy_p2p(). */
  removeNode(k: number): void {
    for (const h of this.hosts) {
      const id = this.hosts.indexOf(h) + 1;
      if (id === k || !h.alive) continue;
      h.nodeqpSend(newMsg(SCIF.NODE_REMOVE, { src: { node: 0, port: 0 }, dst: { node: id, port: 0 }, payload: [BigInt(k), 0n, 0n, 0n] }));
    }
    for (const set of this.p2p.values()) set.delete(k);
    this.p2p.get(k)?.clear();
  }

  /** Every card's scheduled work, host ISRs and promise callbacks until all are quiet. */
  async settle(maxRounds = 20_000): Promise<void> {
    let idle = 0;
    for (let i = 0; i < maxRounds && idle < 3; i++) {
      let busy = 0;
      for (const h of this.hosts) busy += h.env.drain() + h.pollIrq();
      await new Promise((r) => setImmediate(r));
      idle = busy ? 0 : idle + 1;
    }
  }

  /** Every card's clock forward by `ms`, in `step` slices. */
  async advance(ms: number, step = 100): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      for (const h of this.hosts) h.env.advance(Math.min(step, ms - t));
      await this.settle();
    }
  }

  /** Run `p` to completion while settling every card. */
  async run<T>(p: Promise<T>, maxMs = 60_000): Promise<T> {
    let done = false;
    let out: { v?: T; e?: unknown } = {};
    p.then((v) => { out = { v }; done = true; }, (e) => { out = { e }; done = true; });
    for (let t = 0; !done && t < maxMs; t += 10) await this.advance(10, 10);
    if (!done) throw new Error(`not done after ${maxMs} ms of card time`);
    if ('e' in out) throw out.e;
    return out.v as T;
  }
}
