/**
 * struct scif_window (scif_rma.h, __packed) as x86_64 lays it out, and the
 * constants of the registered address space (include/linux/scif.h,
 * scif_rma.h). The node that receives SCIF_ALLOC_REQ builds one in its own
 * memory (scif_create_remote_window()); the registering node fills the
 * members marked "registrant" across PCIe (scif_prep_remote_window()).
 * Bytes 106..153 are the second member of an anonymous union; the total
 * size is that of the guest config (no spinlock debugging).
 */
import { member, struct } from '../layout.ts';

export const SCIF_WINDOW = struct('scif_window', 242, 'registration window (scif_rma.h, __packed)', [
  member('nr_pages', 0, 'u64', 'pages in the window; set by the allocating node'),
  member('nr_contig_chunks', 8, 'u32', 'entries in the page list; registrant'),
  member('prot', 12, 'u32', 'SCIF_PROT_*; registrant'),
  member('ref_count', 16, 'u32', 'private'),
  member('magic', 20, 'u64', 'SCIFEP_MAGIC; set by the allocating node'),
  member('offset', 28, 'u64', 'registered offset (s64); registrant'),
  member('va_for_temp', 36, 'u64', 'private (temporary windows)'),
  member('dma_mark', 44, 'u32', 'private'),
  member('ep', 48, 'u64', "the allocating node's endpoint handle; registrant"),
  member('list.next', 56, 'u64', 'private'),
  member('list.prev', 64, 'u64', 'private'),
  member('type', 72, 'u32', 'enum scif_window_type: SCIF_WINDOW_PEER'),
  member('peer_window', 76, 'u64', "the registrant's window handle; registrant"),
  member('unreg_state', 84, 'u32', 'private'),
  member('offset_freed', 88, 'u8', 'private'),
  member('temp', 89, 'u8', 'private'),
  member('mm', 90, 'u64', 'private'),
  member('st', 98, 'u64', 'private'),
  member('dma_addr_lookup.lookup', 106, 'u64', 'private pointer'),
  member('dma_addr_lookup.offset', 114, 'u64', 'address of the dma_addr lookup array, as the registrant reaches it'),
  member('num_pages_lookup.lookup', 122, 'u64', 'private pointer'),
  member('num_pages_lookup.offset', 130, 'u64', 'address of the num_pages lookup array, as the registrant reaches it'),
  member('nr_lookup', 138, 'u32', 'private'),
  member('mapped_offset', 146, 'u64', 'address of this structure (ALLOC_GNT p1)'),
  member('dma_addr', 226, 'u64', 'private pointer'),
  member('num_pages', 234, 'u64', 'private pointer'),
]);
export const W = SCIF_WINDOW.offsetOf;

/** enum scif_window_type (scif_rma.h) */
export const SCIF_WINDOW_PARTIAL = 0;
export const SCIF_WINDOW_SINGLE = 1;
export const SCIF_WINDOW_FULL = 2;
export const SCIF_WINDOW_SELF = 3;
export const SCIF_WINDOW_PEER = 4;
export type QueryType = typeof SCIF_WINDOW_PARTIAL | typeof SCIF_WINDOW_SINGLE | typeof SCIF_WINDOW_FULL;

/** SCIF_NR_ADDR_IN_PAGE (scif_rma.h): u64 entries per lookup page. */
export const SCIF_NR_ADDR_IN_PAGE = 512;
export const PAGE_SIZE = 0x1000;
export const PAGE_SHIFT = 12n;
/** LONG_MAX: offset + len must not pass it (scif_register()). */
export const LONG_MAX = (1n << 63n) - 1n;
/** alloc_iova() limit of scif_get_window_offset(): SCIF_DMA_63BIT_PFN. */
export const SCIF_DMA_63BIT_PFN = 1n << 51n;

/** include/linux/scif.h */
export const SCIF_PROT_READ = 1 << 0;
export const SCIF_PROT_WRITE = 1 << 1;
export const SCIF_MAP_FIXED = 0x10;
export const SCIF_MAP_KERNEL = 0x20;
export const SCIF_FENCE_INIT_SELF = 1 << 0;
export const SCIF_FENCE_INIT_PEER = 1 << 1;
export const SCIF_SIGNAL_LOCAL = 1 << 4;
export const SCIF_SIGNAL_REMOTE = 1 << 5;
export const SCIF_RMA_USECPU = 1 << 0;
export const SCIF_RMA_USECACHE = 1 << 1;
export const SCIF_RMA_SYNC = 1 << 2;
export const SCIF_RMA_ORDERED = 1 << 3;
/** SCIF_REMOTE_FENCE (scif_rma.h): marks of the peer's fences. */
export const SCIF_REMOTE_FENCE = 1 << 31;
