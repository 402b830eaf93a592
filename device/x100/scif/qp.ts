/**
 * struct scif_qp and struct scif_rb (drivers/misc/mic/scif/scif_nodeqp.h,
 * scif_rb.h) as x86_64 lays them out. Both nodes keep one scif_qp per
 * node pair and per endpoint connection, in their own memory; the peer
 * reads `magic`, `inbound_q.size` and `local_buf`, and writes
 * `local_write` / `local_read` ("we can only write across the PCIe").
 */
import { member, struct } from './layout.ts';

/** SCIFEP_MAGIC (scif_nodeqp.h): the first u64 of every scif_qp. */
export const SCIFEP_MAGIC = 0x5c1f000000005c1fn;
/** SCIF_NODE_QP_SIZE (scif_main.h): the node QP ring. */
export const SCIF_NODE_QP_SIZE = 0x10000;
/** SCIF_ENDPT_QP_SIZE (scif_main.h): an endpoint connection's ring. */
export const SCIF_ENDPT_QP_SIZE = 0x1000;
/** Card memory reserved per scif_qp image (the host maps sizeof(struct scif_qp)). */
export const SCIF_QP_RESERVE = 0x1000;
/** qp_state (P2P only). */
export const SCIF_QP_OFFLINE = 0xdead;
export const SCIF_QP_ONLINE = 0xc0de;

/** struct scif_rb: private to its owner; only `size` of the inbound ring is read remotely. */
export const SCIF_RB = struct('scif_rb', 40, 'ring buffer bookkeeping (scif_rb.h)', [
  member('rb_base', 0, 'u64', 'kernel address of the ring'),
  member('read_ptr', 8, 'u64', 'kernel address of the consumer offset'),
  member('write_ptr', 16, 'u64', 'kernel address of the producer offset'),
  member('size', 24, 'u32', 'ring size in bytes, a power of two'),
  member('current_read_offset', 28, 'u32', 'cached consumer offset'),
  member('current_write_offset', 32, 'u32', 'cached producer offset'),
]);

/** struct scif_qp (local_write / local_read are __aligned(64), so sizeof is 256). */
export const SCIF_QP = struct('scif_qp', 256, 'queue pair (scif_nodeqp.h)', [
  member('magic', 0, 'u64', 'SCIFEP_MAGIC; read by the peer'),
  member('outbound_q.rb_base', 8, 'u64', 'private'),
  member('outbound_q.read_ptr', 16, 'u64', 'private'),
  member('outbound_q.write_ptr', 24, 'u64', 'private'),
  member('outbound_q.size', 32, 'u32', 'private'),
  member('outbound_q.current_read_offset', 36, 'u32', 'private'),
  member('outbound_q.current_write_offset', 40, 'u32', 'private'),
  member('inbound_q.rb_base', 48, 'u64', 'private'),
  member('inbound_q.read_ptr', 56, 'u64', 'private'),
  member('inbound_q.write_ptr', 64, 'u64', 'private'),
  member('inbound_q.size', 72, 'u32', 'size of this node\'s receive ring; read by the peer'),
  member('inbound_q.current_read_offset', 76, 'u32', 'private'),
  member('inbound_q.current_write_offset', 80, 'u32', 'private'),
  member('local_write', 128, 'u32', 'producer offset of the ring in this node\'s memory; written by the peer'),
  member('local_read', 192, 'u32', 'consumer offset of the ring in the peer\'s memory; written by the peer'),
  member('remote_qp', 200, 'u64', 'private'),
  member('local_buf', 208, 'u64', 'address of this node\'s receive ring (CPA on the card, MSA on the host); read by the peer'),
  member('local_qp', 216, 'u64', 'private'),
  member('remote_buf', 224, 'u64', 'private'),
  member('qp_state', 232, 'u32', 'SCIF_QP_ONLINE / SCIF_QP_OFFLINE (P2P)'),
  member('send_lock', 236, 'u32', 'spinlock_t'),
  member('recv_lock', 240, 'u32', 'spinlock_t'),
]);

export const QP = SCIF_QP.offsetOf;
