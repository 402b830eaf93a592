/**
 * DMA engine registers (spec dma-engine.md §2–3; drivers/dma/mic_x100_dma.h,
 * MPSS micsboxdefine.h / mic_dma_md.c). Eight channels of 13 registers at
 * SBOX 0xA000 + 0x40·ch (BAR4 0x1A000 + 0x40·ch, MIC_DMA_SBOX_CH_BASE) and
 * the global DCR at SBOX 0xA280. Register names carry the channel number
 * (DCAR0 … DCHERRMSK7) so that they are unique in BAR4.
 *
 * All channel state lives in these registers: the engine (engine.ts) keeps
 * DHPR/DTPR/DSTAT/DCHERR current through refs, so a read always shows it.
 */
import { type BlockDef, type FieldDef, bit, block, field, reg } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

export const DMA_CHANNELS = 8; // MIC_DMA_MAX_NUM_CHAN
/** BAR4 offset of channel 0's block (MIC_DMA_SBOX_CH_BASE). */
export const DMA_CH_BASE = SBOX_BASE + 0xa000;
export const DMA_CH_STRIDE = 0x40; // MIC_DMA_SBOX_CHAN_OFF
/** BAR4 offset of DCR (MIC_DMA_SBOX_BASE + MIC_DMA_SBOX_DCR). */
export const DCR_OFFSET = SBOX_BASE + 0xa280;
/** DCR after reset: channels 0-3 owned by the host, every channel disabled. */
export const DCR_RESET = 0x00000055;

/** Register offsets within a channel block (MIC_DMA_REG_*, MPSS SBOX_*_0). */
export const DCAR = 0x00;
export const DHPR = 0x04;
export const DTPR = 0x08;
export const DAUX_LO = 0x0c;
export const DAUX_HI = 0x10;
export const DRAR_LO = 0x14;
export const DRAR_HI = 0x18;
export const DITR = 0x1c;
export const DSTAT = 0x20;
export const DSTATWB_LO = 0x24;
export const DSTATWB_HI = 0x28;
export const DCHERR = 0x2c;
export const DCHERRMSK = 0x30;

/** BAR4 offset of register `r` of channel `ch`. */
export const dmaReg = (ch: number, r: number): number => DMA_CH_BASE + DMA_CH_STRIDE * ch + r;

/** DCAR bits (MIC_DMA_SBOX_DCAR_IM0/IM1; MPSS SBOX_DCAR_IS0). */
export const DCAR_IM0 = 1 << 24;
export const DCAR_IM1 = 1 << 25;
export const DCAR_IS0 = 1 << 26;

/** DRAR_HI bits (mic_dma_chan_set_desc_ring()). */
export const DRAR_HI_SYS = 1 << 26; // MIC_DMA_SBOX_DRARHI_SYS_MASK
export const DRAR_HI_SIZE_SHIFT = 4;
export const DRAR_HI_SIZE_MASK = 0x1ffff;
export const DRAR_HI_SMPT_SHIFT = 21;
export const DRAR_HI_SMPT_MASK = 0x1f;

/** DSTAT bits. */
export const DSTAT_COUNT_MASK = 0x1ffff; // MIC_DMA_HW_CMP_CNT_MASK
export const DSTAT_QUIESCE = 0x20000000; // MIC_DMA_CHAN_QUIESCE

/**
 * DCHERR / DCHERRMSK bit layout. The silicon layout is unknown
 * (dma-engine.md §11.4); this one is the emulator's own. Any bit set stops
 * the channel at the failing descriptor and sets DSTAT bit 29; a DCHERR bit
 * whose DCHERRMSK bit is clear also raises the SBOX error source (30).
 */
export const DCHERR_DESC_TYPE = 1 << 0;
export const DCHERR_SRC_ADDR = 1 << 1;
export const DCHERR_DST_ADDR = 1 << 2;
export const DCHERR_RING_FETCH = 1 << 3;
export const DCHERR_RING_INDEX = 1 << 4;
export const DCHERR_INTERNAL = 1 << 5;

export const DCHERR_FIELDS: readonly FieldDef[] = [
  bit('DESC_TYPE', 0, 'descriptor type is not NOP, MEMCPY, STATUS or GENERAL (4-15)'),
  bit('SRC_ADDR', 1, 'memcpy source outside GDDR and the system window, or not backed by mapped guest RAM'),
  bit('DST_ADDR', 2, 'destination outside GDDR and the system window, not backed by mapped guest RAM, or read-only'),
  bit('RING_FETCH', 3, 'the descriptor at ring + 16·tail could not be read'),
  bit('RING_INDEX', 4, 'DHPR written with a value >= the ring size, or the tail is beyond a reprogrammed ring'),
  bit('INTERNAL', 5, 'emulator fault while executing a descriptor (a bug: see the trace)'),
];

/** Descriptor types (qw1 bits 63:60). */
export const DESC_NOP = 0;
export const DESC_MEMCPY = 1; // MIC_DMA_MEMCPY
export const DESC_STATUS = 2; // MIC_DMA_STATUS
export const DESC_GENERAL = 3; // (MPSS) 32-bit write
export const DESC_TYPE_NAMES: readonly string[] = [
  'NOP', 'MEMCPY', 'STATUS', 'GENERAL', 'KEYNONCECNT', 'KEY',
  'TYPE6', 'TYPE7', 'TYPE8', 'TYPE9', 'TYPE10', 'TYPE11', 'TYPE12', 'TYPE13', 'TYPE14', 'TYPE15',
];

/** One channel's block. */
function channelBlock(ch: number): BlockDef {
  const n = String(ch);
  return block(`dma${n}`, DMA_CH_BASE + DMA_CH_STRIDE * ch, `DMA channel ${n}`, [
    reg(`DCAR${n}`, DCAR, 'RW', 0, 'channel attributes: interrupt masks and status', [
      bit('IM0', 24, 'interrupt mask, card-owned channel (APIC delivery)'),
      bit('IM1', 25, 'interrupt mask, host-owned channel (MSI-X delivery)'),
      bit('IS0', 26, '(MPSS) interrupt status; never set by the emulator, never read by Linux'),
    ]),
    reg(`DHPR${n}`, DHPR, 'RW', 0, 'head: software has written descriptors up to head − 1', [
      field('HEAD', 0, 17, 'ring index of the next descriptor software will write'),
    ]),
    reg(`DTPR${n}`, DTPR, 'RO', 0, 'tail: ring index of the next descriptor the engine executes', [
      field('TAIL', 0, 17, 'ring index'),
    ]),
    reg(`DAUX_LO${n}`, DAUX_LO, 'RW', 0, '(MPSS) auxiliary, low; storage only'),
    reg(`DAUX_HI${n}`, DAUX_HI, 'RW', 0, '(MPSS) auxiliary, high; storage only'),
    reg(`DRAR_LO${n}`, DRAR_LO, 'RW', 0, 'descriptor ring address bits 31:0', [
      field('BASE_LO', 0, 32, 'ring address bits 31:0'),
    ]),
    reg(`DRAR_HI${n}`, DRAR_HI, 'RW', 0, 'descriptor ring: high address bits, size, SMPT entry, system-memory flag', [
      field('BASE_HI', 0, 4, 'ring address bits 35:32 (GDDR ring); only bits 33:32 (bits 1:0) with SYS'),
      field('SIZE', 4, 17, 'number of descriptors in the ring'),
      field('SMPT', 21, 5, 'SMPT entry of a system-memory ring'),
      bit('SYS', 26, 'ring is in system (host) memory, reached through the SMPT'),
    ]),
    reg(`DITR${n}`, DITR, 'RW', 0, '(MPSS) interrupt timer; storage only'),
    reg(`DSTAT${n}`, DSTAT, 'RO', 0, 'status: completion count and engine state', [
      field('COUNT', 0, 17, 'completion count: ring index one past the last completed descriptor (= DTPR)'),
      field('STATUS', 28, 4, 'engine status (0: running normally)'),
      bit('QUIESCE', 29, 'channel stopped by an error (see DCHERR)'),
    ]),
    reg(`DSTATWB_LO${n}`, DSTATWB_LO, 'RW', 0, '(MPSS) status write-back address, low; storage only'),
    reg(`DSTATWB_HI${n}`, DSTATWB_HI, 'RW', 0, '(MPSS) status write-back address, high; storage only'),
    reg(`DCHERR${n}`, DCHERR, 'W1C', 0, 'channel error (emulator-defined bits); clearing every bit resumes the channel', DCHERR_FIELDS),
    reg(`DCHERRMSK${n}`, DCHERRMSK, 'RW', 0, 'channel error mask: a set bit keeps that error from raising the SBOX error source', DCHERR_FIELDS),
  ]);
}

const DCR_FIELDS: FieldDef[] = Array.from({ length: DMA_CHANNELS }, (_, ch) => [
  bit(`OWNER${ch}`, 2 * ch, `channel ${ch} owner (1 = host, 0 = card)`),
  bit(`EN${ch}`, 2 * ch + 1, `channel ${ch} enable`),
]).flat();

export const DCR_BLOCK = block('dma-dcr', DCR_OFFSET, 'DMA configuration', [
  reg('DCR', 0x0, 'RW', DCR_RESET, 'DMA configuration: per channel, bit 2·ch owner and bit 2·ch+1 enable', DCR_FIELDS),
]);

/** Every DMA block of BAR4: channels 0-7, then DCR. */
export const DMA_BLOCKS: BlockDef[] = [...Array.from({ length: DMA_CHANNELS }, (_, ch) => channelBlock(ch)), DCR_BLOCK];
