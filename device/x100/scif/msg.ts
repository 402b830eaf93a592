/**
 * struct scifmsg (scif_nodeqp.h): 44 bytes, packed, the unit of the node
 * QP rings. Every opcode of scif_nodeqp.h is named here with the payload
 * slots its sender fills and its receiver reads (scif_nodeqp.c,
 * scif_epd.c, scif_api.c, scif_rma.c, scif_fence.c, scif_nm.c), so the
 * trace can print them by name.
 */
import { dataView, getMember, member, setMember, struct } from './layout.ts';

export const SCIFMSG = struct('scifmsg', 44, 'node QP message (scif_nodeqp.h, __packed)', [
  member('src.node', 0, 'u16', 'struct scif_port_id src'),
  member('src.port', 2, 'u16', ''),
  member('dst.node', 4, 'u16', 'struct scif_port_id dst'),
  member('dst.port', 6, 'u16', ''),
  member('uop', 8, 'u32', 'opcode'),
  member('payload[0]', 12, 'u64', ''),
  member('payload[1]', 20, 'u64', ''),
  member('payload[2]', 28, 'u64', ''),
  member('payload[3]', 36, 'u64', ''),
]);
export const SCIFMSG_SIZE = SCIFMSG.size;

export const SCIF = {
  INIT: 1,
  EXIT: 2,
  EXIT_ACK: 3,
  NODE_ADD: 4,
  NODE_ADD_ACK: 5,
  NODE_ADD_NACK: 6,
  NODE_REMOVE: 7,
  NODE_REMOVE_ACK: 8,
  CNCT_REQ: 9,
  CNCT_GNT: 10,
  CNCT_GNTACK: 11,
  CNCT_GNTNACK: 12,
  CNCT_REJ: 13,
  DISCNCT: 14,
  DISCNT_ACK: 15,
  CLIENT_SENT: 16,
  CLIENT_RCVD: 17,
  GET_NODE_INFO: 18,
  REGISTER: 19,
  REGISTER_ACK: 20,
  REGISTER_NACK: 21,
  UNREGISTER: 22,
  UNREGISTER_ACK: 23,
  UNREGISTER_NACK: 24,
  ALLOC_REQ: 25,
  ALLOC_GNT: 26,
  ALLOC_REJ: 27,
  FREE_VIRT: 28,
  MUNMAP: 29,
  MARK: 30,
  MARK_ACK: 31,
  MARK_NACK: 32,
  WAIT: 33,
  WAIT_ACK: 34,
  WAIT_NACK: 35,
  SIG_LOCAL: 36,
  SIG_REMOTE: 37,
  SIG_ACK: 38,
  SIG_NACK: 39,
} as const;
export type OpName = keyof typeof SCIF;
/** SCIF_MAX_MSG: uop 0 and uop > 39 are "Unknown message" (scif_nodeqp_msg_handler()). */
export const SCIF_MAX_MSG = SCIF.SIG_NACK;

const NAMES: string[] = [];
for (const [k, v] of Object.entries(SCIF)) NAMES[v] = `SCIF_${k}`;

/** "SCIF_CNCT_REQ", or "uop 77" for what scif_nodeqp.h does not define. */
export function opName(uop: number): string {
  return NAMES[uop] ?? `uop ${uop}`;
}

/** What each payload slot carries, per opcode (null: unused, may be stack garbage). */
type Slots = readonly [string | null, string | null, string | null, string | null];
export const PAYLOAD: Readonly<Record<OpName, Slots>> = {
  INIT: [null, null, null, null],
  EXIT: [null, null, null, null],
  EXIT_ACK: [null, null, null, null],
  NODE_ADD: ['aper_from_peer', 'peer_mmio', 'peer_aper', 'peer_aper_len'],
  NODE_ADD_ACK: ['qp_offset', 'maxid', 'db', null],
  NODE_ADD_NACK: [null, null, null, null],
  NODE_REMOVE: ['node', null, null, null],
  NODE_REMOVE_ACK: ['node', null, null, null],
  CNCT_REQ: ['ep', 'qp_offset', null, null],
  CNCT_GNT: ['ep', 'qp_offset', 'remote_ep', null],
  CNCT_GNTACK: ['ep', 'qp_offset', null, null],
  CNCT_GNTNACK: ['ep', null, null, null],
  CNCT_REJ: ['ep', 'qp_offset', null, null],
  DISCNCT: ['ep', 'remote_ep', null, null],
  DISCNT_ACK: ['ep', 'remote_ep', null, null],
  CLIENT_SENT: ['ep', null, null, null],
  CLIENT_RCVD: ['ep', null, null, null],
  GET_NODE_INFO: [null, 'maxid', 'total', 'completion'],
  REGISTER: ['ep', 'remote_window', 'window', null],
  REGISTER_ACK: ['ep', 'remote_window', 'window', null],
  REGISTER_NACK: ['ep', 'remote_window', 'window', null],
  UNREGISTER: ['remote_window', 'window', null, null],
  UNREGISTER_ACK: ['ep', 'window', null, null],
  UNREGISTER_NACK: ['ep', 'window', null, null],
  ALLOC_REQ: [null, 'nr_pages', 'allocmsg', null],
  ALLOC_GNT: ['remote_window', 'phys_addr', 'allocmsg', null],
  ALLOC_REJ: [null, null, 'allocmsg', null],
  FREE_VIRT: ['ep', 'remote_window', 'window', 'op'],
  MUNMAP: ['window', null, null, null],
  MARK: ['ep', 'fence', null, null],
  MARK_ACK: ['ep', 'fence', 'mark', null],
  MARK_NACK: ['ep', 'fence', null, null],
  WAIT: ['ep', 'fence', 'mark', null],
  WAIT_ACK: ['ep', 'fence', null, null],
  WAIT_NACK: ['ep', 'fence', null, null],
  SIG_LOCAL: ['ep', 'offset', 'value', 'fence'],
  SIG_REMOTE: ['ep', 'offset', 'value', 'fence'],
  SIG_ACK: ['ep', null, null, 'fence'],
  SIG_NACK: ['ep', null, null, 'fence'],
};

export interface ScifPortIdMsg {
  node: number;
  port: number;
}

export interface ScifMsg {
  src: ScifPortIdMsg;
  dst: ScifPortIdMsg;
  uop: number;
  payload: [bigint, bigint, bigint, bigint];
  /** Not on the wire: the node whose queue pair the message came in on (where its replies go). */
  via?: number;
}

const M = Object.fromEntries(SCIFMSG.members.map((m) => [m.name, m]));

export function newMsg(uop: number, fields: Partial<Omit<ScifMsg, 'uop'>> = {}): ScifMsg {
  return {
    src: fields.src ?? { node: 0, port: 0 },
    dst: fields.dst ?? { node: 0, port: 0 },
    uop,
    payload: fields.payload ?? [0n, 0n, 0n, 0n],
  };
}

export function cloneMsg(m: ScifMsg): ScifMsg {
  const c: ScifMsg = { src: { ...m.src }, dst: { ...m.dst }, uop: m.uop, payload: [...m.payload] };
  if (m.via !== undefined) c.via = m.via;
  return c;
}

export function encodeMsg(m: ScifMsg, out = new Uint8Array(SCIFMSG_SIZE)): Uint8Array {
  const v = dataView(out);
  setMember(v, M['src.node'], m.src.node);
  setMember(v, M['src.port'], m.src.port);
  setMember(v, M['dst.node'], m.dst.node);
  setMember(v, M['dst.port'], m.dst.port);
  setMember(v, M.uop, m.uop);
  for (let i = 0; i < 4; i++) setMember(v, M[`payload[${i}]`], m.payload[i]);
  return out;
}

export function decodeMsg(b: Uint8Array): ScifMsg {
  const v = dataView(b);
  const n = (k: string) => getMember(v, M[k]) as number;
  const p = (i: number) => getMember(v, M[`payload[${i}]`]) as bigint;
  return {
    src: { node: n('src.node'), port: n('src.port') },
    dst: { node: n('dst.node'), port: n('dst.port') },
    uop: n('uop'),
    payload: [p(0), p(1), p(2), p(3)],
  };
}

const hex = (v: bigint) => `0x${v.toString(16)}`;

/** The trace form: opcode by name, src/dst as node:port, the used payload slots by name. */
export function describeMsg(m: ScifMsg): Record<string, unknown> {
  const name = opName(m.uop);
  const slots = PAYLOAD[name.slice(5) as OpName] as Slots | undefined;
  const payload: Record<string, string> = {};
  if (slots) slots.forEach((s, i) => { if (s) payload[s] = hex(m.payload[i]); });
  else m.payload.forEach((p, i) => { payload[`payload[${i}]`] = hex(p); });
  return { op: name, uop: m.uop, src: `${m.src.node}:${m.src.port}`, dst: `${m.dst.node}:${m.dst.port}`, payload };
}
