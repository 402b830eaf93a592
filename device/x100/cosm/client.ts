/**
 * The card's COSM client (drivers/misc/mic/cosm_client/cosm_scif_client.c):
 * connects to the host's COSM server on SCIF port 201, takes the host's
 * SYNC_TIME, sends a HEARTBEAT every COSM_HEARTBEAT_SEND_SEC and after each
 * batch of host messages, and answers COSM_MSG_SHUTDOWN the way the card's
 * orderly_poweroff() does: its reboot notifier sends SHUTDOWN_STATUS, then
 * the card halts.
 */
import type { Tracer } from '../../../src/trace/tracer.ts';
import { ScifError, type CardService, type ScifApi, type ScifEndpoint } from '../scif/api.ts';
import {
  COSM_HEARTBEAT_SEND_SEC,
  COSM_MSG_ID,
  COSM_MSG_SIZE,
  MIC_STATUS,
  SCIF_COSM_LISTEN_PORT,
  cosmMsgName,
  decodeCosmMsg,
  describeCosmMsg,
  encodeCosmMsg,
  type CosmMsg,
} from './msg.ts';

/** cosm_scif_client.c: connect attempts, one second apart (msleep(1000)). */
export const COSM_SCIF_MAX_RETRIES = 10;
export const COSM_SCIF_RETRY_MSEC = 1000;
export const COSM_HEARTBEAT_SEND_MSEC = COSM_HEARTBEAT_SEND_SEC * 1000;

/**
 * What the reboot notifier sends after a host-requested shutdown:
 * orderly_poweroff() ends in kernel_power_off(), whose notifier event
 * SYS_POWER_OFF (3) is MIC_POWER_OFF (cosm_reboot_event()).
 */
export const COSM_SHUTDOWN_STATUS = MIC_STATUS.MIC_POWER_OFF;

export type CosmClientState = 'idle' | 'connecting' | 'online' | 'shutdown' | 'disconnected' | 'failed' | 'stopped';

export interface CosmClientOptions {
  after(ms: number, fn: () => void): () => void;
  /** Wall-clock ms, to trace the skew against the host's SYNC_TIME. */
  now(): number;
  tracer: Tracer;
  /** The card powers off with this enum mic_status (after SHUTDOWN_STATUS went out). */
  halt(status: number): void;
}

export interface CosmSyncTime {
  tv_sec: number;
  tv_nsec: number;
  /** o.now() when it arrived. */
  receivedAt: number;
  /** Host time minus card time, ms. */
  skewMs: number;
}

export class CosmClient implements CardService {
  readonly name = 'cosm';
  state: CosmClientState = 'idle';
  /** The last COSM_MSG_SYNC_TIME (cosm_set_time()). */
  syncTime: CosmSyncTime | null = null;
  /** Heartbeats sent since start(). */
  heartbeats = 0;

  private ep: ScifEndpoint | null = null;
  /** Bumped by start() and stop(): continuations of an older run do nothing. */
  private gen = 0;
  private cancelRetry: (() => void) | null = null;
  private cancelHeartbeat: (() => void) | null = null;

  constructor(private readonly o: CosmClientOptions) {}

  start(api: ScifApi): void {
    if (this.state !== 'idle' && this.state !== 'stopped') this.stop();
    const gen = ++this.gen;
    this.heartbeats = 0;
    this.setState('connecting');
    let ep: ScifEndpoint;
    try {
      ep = api.open();
    } catch (e) {
      this.trace({ error: 'scif_open', err: errText(e) });
      this.setState('failed');
      return;
    }
    this.ep = ep;
    this.connect(gen, ep, 0);
  }

  stop(): void {
    this.gen++;
    this.cancelTimers();
    this.closeEp();
    if (this.state !== 'idle') this.setState('stopped');
  }

  /**
   * The reboot notifier (cosm_reboot_event()): tell the host how the card
   * is going down. Resolves when the message is in the ring (SCIF_SEND_BLOCK).
   */
  async sendShutdownStatus(status: number): Promise<void> {
    await this.send({ id: BigInt(COSM_MSG_ID.COSM_MSG_SHUTDOWN_STATUS), shutdown_status: BigInt(status) });
  }

  /** cosm_scif_connect(): the same endpoint tries again a second later. */
  private connect(gen: number, ep: ScifEndpoint, attempt: number): void {
    ep.connect({ node: 0, port: SCIF_COSM_LISTEN_PORT }).then(
      (local) => {
        if (gen !== this.gen) return;
        this.trace({ connected: { node: 0, port: SCIF_COSM_LISTEN_PORT }, local, attempt });
        this.setState('online');
        this.armHeartbeat(gen);
        void this.receive(gen, ep);
      },
      (e: unknown) => {
        if (gen !== this.gen) return;
        this.trace({ error: 'scif_connect', err: errText(e), attempt });
        this.cancelRetry = this.o.after(COSM_SCIF_RETRY_MSEC, () => {
          this.cancelRetry = null;
          if (gen !== this.gen) return;
          if (attempt + 1 < COSM_SCIF_MAX_RETRIES) {
            this.connect(gen, ep, attempt + 1);
          } else {
            this.trace({ error: 'gave up connecting', attempts: COSM_SCIF_MAX_RETRIES });
            this.closeEp();
            this.setState('failed');
          }
        });
      },
    );
  }

  /** cosm_scif_client(): wait for host messages; a heartbeat after each batch. */
  private async receive(gen: number, ep: ScifEndpoint): Promise<void> {
    try {
      for (;;) {
        const first = await this.recvMsg(ep, true);
        if (gen !== this.gen) return;
        if (!first) return this.peerGone(gen);
        let shutdown = this.handle(first);
        // cosm_client_recv(): everything already queued belongs to this batch.
        for (;;) {
          const more = await this.recvMsg(ep, false);
          if (gen !== this.gen) return;
          if (!more) break;
          shutdown = this.handle(more) || shutdown;
        }
        this.cancelHeartbeatTimer();
        await this.heartbeat(gen);
        if (gen !== this.gen) return;
        if (shutdown) return await this.shutdown(gen);
        this.armHeartbeat(gen);
      }
    } catch (e) {
      if (gen !== this.gen) return;
      this.trace({ error: 'client thread', err: errText(e) });
      this.peerGone(gen);
    }
  }

  /** One cosm_msg; null when the peer has gone (a partial message is traced and dropped). */
  private async recvMsg(ep: ScifEndpoint, block: boolean): Promise<CosmMsg | null> {
    const gone = (e: unknown) => e instanceof ScifError && (e.code === 'ECONNRESET' || e.code === 'ENOTCONN');
    let buf: Uint8Array;
    try {
      buf = await ep.recv(COSM_MSG_SIZE, { block });
    } catch (e) {
      if (gone(e)) return null;
      throw e;
    }
    if (!block && buf.length === 0) return null;
    // A short read: the rest of the message is on its way, or the peer went.
    while (buf.length > 0 && buf.length < COSM_MSG_SIZE) {
      let rest: Uint8Array;
      try {
        rest = await ep.recv(COSM_MSG_SIZE - buf.length, { block: true });
      } catch (e) {
        if (gone(e)) break;
        throw e;
      }
      if (rest.length === 0) break;
      buf = Buffer.concat([buf, rest]);
    }
    if (buf.length < COSM_MSG_SIZE) {
      if (buf.length) this.trace({ error: 'partial cosm_msg at disconnect', bytes: buf.length });
      return null;
    }
    return decodeCosmMsg(buf);
  }

  /** One host message; true for COSM_MSG_SHUTDOWN. */
  private handle(m: CosmMsg): boolean {
    this.trace({ dir: 'rx', ...describeCosmMsg(m) });
    switch (cosmMsgName(m.id)) {
      case 'COSM_MSG_SYNC_TIME': {
        const tv_sec = Number(m.tv_sec ?? 0n);
        const tv_nsec = Number(m.tv_nsec ?? 0n);
        const receivedAt = this.o.now();
        const skewMs = tv_sec * 1000 + tv_nsec / 1e6 - receivedAt;
        this.syncTime = { tv_sec, tv_nsec, receivedAt, skewMs };
        this.trace({ sync_time: { tv_sec, tv_nsec }, skew_ms: Math.round(skewMs) });
        return false;
      }
      case 'COSM_MSG_SHUTDOWN':
        return true;
      default:
        // cosm_client_recv(): "unknown id"
        this.trace({ error: 'unknown id', id: describeCosmMsg(m).id });
        return false;
    }
  }

  /** orderly_poweroff(): the reboot notifier reports MIC_POWER_OFF, then the card halts. */
  private async shutdown(gen: number): Promise<void> {
    this.setState('shutdown');
    this.cancelTimers();
    try {
      await this.sendShutdownStatus(COSM_SHUTDOWN_STATUS);
    } catch (e) {
      this.trace({ error: 'shutdown status', err: errText(e) });
    }
    if (gen !== this.gen) return;
    this.trace({ halt: COSM_SHUTDOWN_STATUS });
    try {
      this.o.halt(COSM_SHUTDOWN_STATUS);
    } catch (e) {
      this.trace({ error: 'halt', err: errText(e) });
    }
  }

  private armHeartbeat(gen: number): void {
    this.cancelHeartbeatTimer();
    this.cancelHeartbeat = this.o.after(COSM_HEARTBEAT_SEND_MSEC, () => {
      this.cancelHeartbeat = null;
      if (gen !== this.gen || this.state !== 'online') return;
      void this.heartbeat(gen).then(() => {
        if (gen === this.gen && this.state === 'online' && !this.cancelHeartbeat) this.armHeartbeat(gen);
      });
    });
  }

  private async heartbeat(gen: number): Promise<void> {
    try {
      await this.send({ id: BigInt(COSM_MSG_ID.COSM_MSG_HEARTBEAT) });
      if (gen === this.gen) this.heartbeats++;
    } catch (e) {
      // cosm_scif_client(): "scif_send rc"; the receive side sees the disconnect.
      if (gen === this.gen) this.trace({ error: 'heartbeat', err: errText(e) });
    }
  }

  private async send(m: CosmMsg): Promise<void> {
    const ep = this.ep;
    if (!ep) throw new ScifError('ENOTCONN');
    this.trace({ dir: 'tx', ...describeCosmMsg(m) });
    await ep.send(encodeCosmMsg(m), { block: true });
  }

  /** The host closed its end (or its node went): stop, without halting. */
  private peerGone(gen: number): void {
    if (gen !== this.gen) return;
    this.cancelTimers();
    this.closeEp();
    this.setState('disconnected');
  }

  private cancelHeartbeatTimer(): void {
    this.cancelHeartbeat?.();
    this.cancelHeartbeat = null;
  }

  private cancelTimers(): void {
    this.cancelHeartbeatTimer();
    this.cancelRetry?.();
    this.cancelRetry = null;
  }

  private closeEp(): void {
    const ep = this.ep;
    this.ep = null;
    if (ep) ep.close().catch((e: unknown) => this.trace({ error: 'scif_close', err: errText(e) }));
  }

  private setState(s: CosmClientState): void {
    if (this.state === s) return;
    this.state = s;
    this.trace({ state: s });
  }

  private trace(data: Record<string, unknown>): void {
    if (this.o.tracer.enabled) this.o.tracer.event('cosm', data);
  }
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
