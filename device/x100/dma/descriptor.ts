/**
 * The 16-byte DMA descriptor (struct mic_dma_desc, qw0 then qw1, in
 * drivers/dma/mic_x100_dma.h), one layout per type: bit n of qw1 is bit
 * 64 + n here. Written by mic_dma_memcpy_desc() and
 * mic_dma_prep_status_desc(); GENERAL is MPSS's 32-bit write.
 */
import { layout, wideField as field } from '../../../src/regs/define.ts';

/** Bytes per descriptor (sizeof(struct mic_dma_desc)). */
export const DESC_SIZE = 16;

/** qw1 63:60 (MIC_DMA_DESC_TYPE_SHIFT). */
const TYPE = field('TYPE', 124, 4, 'descriptor type');
/** qw1 39:0: the destination card address. */
const DST = field('DST', 64, 40, 'destination card address');

/** Any descriptor: only its type. */
export const DESC = layout('desc', DESC_SIZE, 'any descriptor', [TYPE]);

export const NOP_DESC = layout('nop', DESC_SIZE, 'no operation: consumes its slot', [TYPE]);

export const MEMCPY_DESC = layout('memcpy', DESC_SIZE, 'copy LEN·64 bytes from SRC to DST (mic_dma_memcpy_desc())', [
  field('SRC', 0, 40, 'source card address'),
  field('LEN', 46, 14, 'length in 64-byte units (MIC_DMA_MEMCPY_LEN_SHIFT, MIC_DMA_ALIGN_SHIFT)'),
  DST,
  TYPE,
]);

export const STATUS_DESC = layout('status', DESC_SIZE, 'write the 8 bytes of DATA to DST (mic_dma_prep_status_desc())', [
  field('DATA', 0, 64, 'the value written'),
  DST,
  field('INTR', 123, 1, 'interrupt once complete (qw1 bit 59, MIC_DMA_STAT_INTR_SHIFT)'),
  TYPE,
]);

export const GENERAL_DESC = layout('general', DESC_SIZE, '(MPSS) write the 4 bytes of DATA to DST', [
  field('DATA', 0, 32, 'the value written'),
  DST,
  TYPE,
]);

/** Descriptor types (enum mic_dma_desc_format_type; GENERAL from MPSS). */
export const DESC_NOP = 0;
export const DESC_MEMCPY = 1; // MIC_DMA_MEMCPY
export const DESC_STATUS = 2; // MIC_DMA_STATUS
export const DESC_GENERAL = 3;
export const DESC_TYPE_NAMES: readonly string[] = [
  'NOP', 'MEMCPY', 'STATUS', 'GENERAL', 'KEYNONCECNT', 'KEY',
  'TYPE6', 'TYPE7', 'TYPE8', 'TYPE9', 'TYPE10', 'TYPE11', 'TYPE12', 'TYPE13', 'TYPE14', 'TYPE15',
];
