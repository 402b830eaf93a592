/**
 * Per-endpoint RMA state (struct scif_endpt_rma_info, scif_rma.h): the
 * card's own windows (reg_list, SCIF_WINDOW_SELF), the host's windows
 * (remote_reg_list, SCIF_WINDOW_PEER), the remote-window images the card
 * granted (scif_create_remote_window()), and the card's own transfers
 * the fences wait for.
 */
import type { ScifMsg } from '../msg.ts';
import type { CardEndpoint } from '../endpoints.ts';
import { type After, WaitQueue } from '../waitq.ts';
import { type Window, WindowList } from './space.ts';

/** enum scif_msg_state for a card window's registration and unregistration. */
export type SelfState = 'alloc' | 'registering' | 'registered' | 'unregistering' | 'nacked' | 'gone';

/** A card window (the card is the registrant, the host allocated the remote copy). */
export interface SelfWindow extends Window {
  /** C_win: peer_window in the host's copy, REGISTER p2, MUNMAP p0; also the ALLOC_REQ allocmsg. */
  readonly handle: bigint;
  readonly ep: CardEndpoint;
  /** H_rw: the host's remote window (ALLOC_GNT p0). */
  hostRw: bigint;
  state: SelfState;
  /** The host's answer the registrant waits for. */
  reply: ScifMsg | null;
  /** Called once the card may reuse the memory (UNREGISTER_ACK, MUNMAP, endpoint or node loss). */
  onFree?: () => void;
}

/** A host window, as the card recorded it at SCIF_REGISTER (scif_recv_reg()). */
export interface RemoteWindow extends Window {
  /** C_rw, the card's handle of the image it granted. */
  readonly handle: bigint;
  /** H_win: the host's own window (peer_window). */
  readonly hostWin: bigint;
  readonly ep: CardEndpoint;
}

/** Card memory of one granted remote window: the scif_window image, page arrays and lookups. */
export interface RemoteImage {
  readonly handle: bigint;
  readonly nrPages: number;
  /** Allocator generation the memory belongs to. */
  readonly gen: number;
  readonly rw: bigint;
  readonly dmaAddr: bigint;
  readonly numPages: bigint;
  readonly lookups: bigint;
  readonly nrLookup: number;
}

/** A card-initiated copy in flight: `id` is node-wide, the trace's `copy`. */
export interface ActiveCopy {
  readonly id: number;
  readonly dir: 'writeto' | 'readfrom';
  readonly loffset: bigint;
  readonly roffset: bigint;
  readonly len: bigint;
}

export class EpRma {
  /** reg_list: card windows once REGISTER_ACKed (and NACKed unregisters, still mapped by the host). */
  readonly self = new WindowList<SelfWindow>();
  /** Every card window holding its offset (the iova reservation), registered or not. */
  readonly reserved = new WindowList<SelfWindow>();
  /** remote_reg_list */
  readonly remote = new WindowList<RemoteWindow>();
  /** Woken on every reply for this endpoint and on node loss. */
  readonly wq: WaitQueue;
  /** Card-initiated transfers: the next sequence number, and those not yet done (by sequence). */
  issued = 0;
  readonly outstanding = new Map<number, ActiveCopy>();
  /** Remote fences waiting for an answer, by their handle (H_fence of our requests). */
  readonly fences = new Map<bigint, ScifMsg | null>();
  constructor(readonly ep: CardEndpoint, after: After) {
    this.wq = new WaitQueue(after);
  }
}
