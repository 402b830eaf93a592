/**
 * struct cosm_msg (drivers/misc/mic/cosm/cosm_main.h): the 24-byte message
 * the host's COSM driver and the card's COSM client exchange as a byte
 * stream on SCIF port 201. Little-endian u64 fields; the union after `id`
 * is shutdown_status for SHUTDOWN_STATUS and a timespec for SYNC_TIME.
 */

export const SCIF_COSM_LISTEN_PORT = 201;
/** cosm_main.h */
export const COSM_HEARTBEAT_SEND_SEC = 30;

/** enum cosm_msg_id */
export const COSM_MSG_ID = {
  COSM_MSG_SHUTDOWN: 0,
  COSM_MSG_SYNC_TIME: 1,
  COSM_MSG_HEARTBEAT: 2,
  COSM_MSG_SHUTDOWN_STATUS: 3,
} as const;
export type CosmMsgName = keyof typeof COSM_MSG_ID;

/** enum mic_status (include/uapi/linux/mic_common.h) */
export const MIC_STATUS = {
  MIC_NOP: 0,
  MIC_CRASHED: 1,
  MIC_HALTED: 2,
  MIC_POWER_OFF: 3,
  MIC_RESTART: 4,
} as const;

/** The fields of struct cosm_msg: byte offset and size. */
export const COSM_MSG = {
  id: { off: 0, size: 8 },
  shutdown_status: { off: 8, size: 8 },
  tv_sec: { off: 8, size: 8 },
  tv_nsec: { off: 16, size: 8 },
} as const;
export const COSM_MSG_SIZE = 24;

export interface CosmMsg {
  id: bigint;
  shutdown_status?: bigint;
  tv_sec?: bigint;
  tv_nsec?: bigint;
}

export function cosmMsgName(id: bigint): CosmMsgName | null {
  for (const [k, v] of Object.entries(COSM_MSG_ID)) if (BigInt(v) === id) return k as CosmMsgName;
  return null;
}

export function encodeCosmMsg(m: CosmMsg): Uint8Array {
  const b = Buffer.alloc(COSM_MSG_SIZE);
  b.writeBigUInt64LE(BigInt.asUintN(64, m.id), COSM_MSG.id.off);
  if (m.shutdown_status !== undefined)
    b.writeBigUInt64LE(BigInt.asUintN(64, m.shutdown_status), COSM_MSG.shutdown_status.off);
  if (m.tv_sec !== undefined) b.writeBigUInt64LE(BigInt.asUintN(64, m.tv_sec), COSM_MSG.tv_sec.off);
  if (m.tv_nsec !== undefined) b.writeBigUInt64LE(BigInt.asUintN(64, m.tv_nsec), COSM_MSG.tv_nsec.off);
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** Every field as the union allows it; the reader picks by `id`. */
export function decodeCosmMsg(bytes: Uint8Array): Required<CosmMsg> {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, COSM_MSG_SIZE);
  return {
    id: b.readBigUInt64LE(COSM_MSG.id.off),
    shutdown_status: b.readBigUInt64LE(COSM_MSG.shutdown_status.off),
    tv_sec: b.readBigUInt64LE(COSM_MSG.tv_sec.off),
    tv_nsec: b.readBigUInt64LE(COSM_MSG.tv_nsec.off),
  };
}

/** A trace-friendly view: the message's name and the fields its id uses. */
export function describeCosmMsg(m: CosmMsg): Record<string, unknown> {
  const name = cosmMsgName(m.id);
  const num = (v: bigint): number | string => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : `0x${v.toString(16)}`);
  const out: Record<string, unknown> = { msg: name ?? 'unknown', id: num(m.id) };
  if (name === 'COSM_MSG_SYNC_TIME') {
    out.tv_sec = num(m.tv_sec ?? 0n);
    out.tv_nsec = num(m.tv_nsec ?? 0n);
  } else if (name === 'COSM_MSG_SHUTDOWN_STATUS') {
    out.shutdown_status = num(m.shutdown_status ?? 0n);
  }
  return out;
}
