/**
 * The card-side SCIF API: what a program running on the card's own Linux
 * called (include/linux/scif.h, the kernel-mode scif_open() ... scif_poll()
 * of drivers/misc/mic/scif/scif_api.c), for TypeScript. The card services
 * (device/x100/services/) and a user's `--service FILE` are written against
 * it. Calls that block in Linux return a Promise here; the non-blocking
 * forms (no SCIF_SEND_BLOCK / SCIF_RECV_BLOCK) resolve at once with what
 * could be done.
 *
 * Errors are ScifError with Linux's errno name and number, exactly as the
 * kernel API would return them negated (ECONNREFUSED for an unbound port,
 * ECONNRESET once the peer has gone, ENOTCONN before connect, ...).
 */

export interface ScifPortId {
  node: number;
  port: number;
}

/** Linux errno values the API uses (include/uapi/asm-generic/errno*.h). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ENOSYS: 38,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  ENETDOWN: 100,
  ECONNRESET: 104,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EINPROGRESS: 115,
} as const;
export type ErrnoName = keyof typeof ERRNO;

export class ScifError extends Error {
  readonly errno: number;
  constructor(
    readonly code: ErrnoName,
    message?: string,
  ) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'ScifError';
    this.errno = ERRNO[code];
  }
}

/** poll(2) event bits (include/uapi/asm-generic/poll.h), as scif_poll() uses them. */
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;

/** Ports below this need CAP_SYS_ADMIN on Linux (SCIF_ADMIN_PORT_END, scif.h). */
export const SCIF_ADMIN_PORT_END = 1024;

export interface SendOptions {
  /** SCIF_SEND_BLOCK: resolve only when every byte went into the ring. */
  block?: boolean;
}

export interface RecvOptions {
  /** SCIF_RECV_BLOCK: resolve only when `len` bytes arrived (or the peer went). */
  block?: boolean;
}

export interface ScifEndpoint {
  /** A small number that names this endpoint in the trace. */
  readonly id: number;
  /** scif_bind(): port 0 takes a free port. Returns the port bound. */
  bind(port: number): number;
  /** scif_listen(). */
  listen(backlog: number): void;
  /**
   * scif_accept(): the next connection request, as a connected endpoint.
   * With `block: false` and none pending, rejects with EAGAIN.
   */
  accept(opts?: { block?: boolean }): Promise<{ ep: ScifEndpoint; peer: ScifPortId }>;
  /** scif_connect(): binds a free port first if unbound; resolves to the local port id. */
  connect(dst: ScifPortId): Promise<ScifPortId>;
  /** scif_send(): the number of bytes sent. */
  send(data: Uint8Array, opts?: SendOptions): Promise<number>;
  /** scif_recv(): the bytes received (fewer than `len` unless blocking). */
  recv(len: number, opts?: RecvOptions): Promise<Uint8Array>;
  /**
   * scif_poll() on this endpoint alone: resolves with the ready subset of
   * `events` (POLLIN/POLLOUT) plus POLLHUP/POLLERR, once any is ready or
   * after `timeoutMs` (0 if none; no timeout if omitted).
   */
  poll(events: number, timeoutMs?: number): Promise<number>;
  /** The peer's port id once connected. */
  readonly peer: ScifPortId | null;
  /** scif_close(): unregisters this endpoint's windows, disconnects (SCIF_DISCNCT) and frees the endpoint. */
  close(): Promise<void>;

  // ---- RMA (scif_rma.c, scif_dma.c, scif_fence.c); nodes without RMA leave these out ----

  /**
   * scif_register() of the card memory `buf` (GDDR CPAs, page aligned):
   * resolves to the registered offset. `flags`: SCIF_MAP_FIXED (then
   * `offset` is used). `onFree` runs once the card may reuse the memory:
   * after UNREGISTER_ACK, after the host's SCIF_MUNMAP when it still had
   * the window mapped, or when the endpoint or the node goes.
   */
  register?(buf: CardRange, offset: bigint, prot: number, flags?: number, onFree?: () => void): Promise<bigint>;
  /** scif_unregister(): whole windows in [offset, offset + len). */
  unregister?(offset: bigint, len: bigint): Promise<void>;
  /** scif_readfrom(): `len` bytes from the host's window at `roffset` into ours at `loffset`. */
  readfrom?(loffset: bigint, len: number, roffset: bigint, flags?: number): Promise<void>;
  /** scif_writeto(): `len` bytes from our window at `loffset` to the host's at `roffset`. */
  writeto?(loffset: bigint, len: number, roffset: bigint, flags?: number): Promise<void>;
  /** scif_fence_mark(): SCIF_FENCE_INIT_SELF or SCIF_FENCE_INIT_PEER; the mark (negative for a peer mark). */
  fenceMark?(flags: number): Promise<number>;
  /** scif_fence_wait() */
  fenceWait?(mark: number): Promise<void>;
  /** scif_fence_signal() */
  fenceSignal?(loff: bigint, lval: bigint, roff: bigint, rval: bigint, flags: number): Promise<void>;
}

/** A range of card memory (GDDR CPAs). */
export interface CardRange {
  readonly addr: bigint;
  readonly len: number;
}

/** Card memory a card program owns (what it would get from its kernel's allocator). */
export interface CardBuffer extends CardRange {
  read(off: number, len: number): Uint8Array;
  write(off: number, data: Uint8Array): void;
  /** Give it back; a no-op after a card reset took it already. */
  free(): void;
}

export interface ScifApi {
  /** This node's id (1 for the first card). */
  readonly self: number;
  /** scif_get_node_ids(): the online nodes, this one included. */
  nodeIds(): number[];
  /** scif_open(). */
  open(): ScifEndpoint;
  /** `len` bytes (rounded up to pages) of fresh, zeroed GDDR, for scif_register(); ENOMEM if none. */
  allocBuffer?(len: number): CardBuffer;
}

/** A card service: started when the card's SCIF node is up, stopped when it goes. */
export interface CardService {
  readonly name: string;
  start(api: ScifApi): void;
  /** The node went away (card reset or shutdown): stop and drop every endpoint. */
  stop(): void;
}

/** What `--service FILE` exports by default: a function that starts the service, or a CardService. */
export type ServiceModule = { default: ((api: ScifApi) => void | Promise<void>) | CardService };
