/**
 * The RMA agent's wire format (port 2003): 48-byte requests, 24-byte
 * replies, little-endian, answered one by one in order.
 */

export const RMA_PORT = 2003;

/** Request fields: byte offset and size. */
export const RMA_REQ = {
  op: { off: 0, size: 4 },
  /** SCIF flag bits for the op, as in scif.h. */
  flags: { off: 4, size: 4 },
  a: { off: 8, size: 8 },
  b: { off: 16, size: 8 },
  c: { off: 24, size: 8 },
  d: { off: 32, size: 8 },
  /** Echoed in the reply. */
  tag: { off: 40, size: 8 },
} as const;
export const RMA_REQ_SIZE = 48;

/** Reply fields. */
export const RMA_REPLY = {
  /** 0, or a negative errno as the card-side SCIF call returned it. */
  status: { off: 0, size: 8 },
  value: { off: 8, size: 8 },
  tag: { off: 16, size: 8 },
} as const;
export const RMA_REPLY_SIZE = 24;

export const RMA_OP = {
  REGISTER: 1,
  UNREGISTER: 2,
  FILL: 3,
  CRC: 4,
  WRITETO: 5,
  READFROM: 6,
  FENCE_MARK: 7,
  FENCE_WAIT: 8,
  FENCE_SIGNAL: 9,
  PEEK: 10,
  DIAL: 11,
} as const;
export type RmaOpName = keyof typeof RMA_OP;

export interface RmaRequest {
  op: number;
  flags: number;
  a: bigint;
  b: bigint;
  c: bigint;
  d: bigint;
  tag: bigint;
}

export interface RmaReply {
  status: number;
  value: bigint;
  tag: bigint;
}

export function rmaOpName(op: number): RmaOpName | null {
  for (const [k, v] of Object.entries(RMA_OP)) if (v === op) return k as RmaOpName;
  return null;
}

export function encodeRmaRequest(r: RmaRequest): Uint8Array {
  const b = Buffer.alloc(RMA_REQ_SIZE);
  b.writeUInt32LE(r.op >>> 0, RMA_REQ.op.off);
  b.writeUInt32LE(r.flags >>> 0, RMA_REQ.flags.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.a), RMA_REQ.a.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.b), RMA_REQ.b.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.c), RMA_REQ.c.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.d), RMA_REQ.d.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.tag), RMA_REQ.tag.off);
  return b;
}

export function decodeRmaRequest(bytes: Uint8Array): RmaRequest {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, RMA_REQ_SIZE);
  return {
    op: b.readUInt32LE(RMA_REQ.op.off),
    flags: b.readUInt32LE(RMA_REQ.flags.off),
    a: b.readBigUInt64LE(RMA_REQ.a.off),
    b: b.readBigUInt64LE(RMA_REQ.b.off),
    c: b.readBigUInt64LE(RMA_REQ.c.off),
    d: b.readBigUInt64LE(RMA_REQ.d.off),
    tag: b.readBigUInt64LE(RMA_REQ.tag.off),
  };
}

export function encodeRmaReply(r: RmaReply): Uint8Array {
  const b = Buffer.alloc(RMA_REPLY_SIZE);
  b.writeBigInt64LE(BigInt(r.status), RMA_REPLY.status.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.value), RMA_REPLY.value.off);
  b.writeBigUInt64LE(BigInt.asUintN(64, r.tag), RMA_REPLY.tag.off);
  return b;
}

export function decodeRmaReply(bytes: Uint8Array): RmaReply {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, RMA_REPLY_SIZE);
  return {
    status: Number(b.readBigInt64LE(RMA_REPLY.status.off)),
    value: b.readBigUInt64LE(RMA_REPLY.value.off),
    tag: b.readBigUInt64LE(RMA_REPLY.tag.off),
  };
}
