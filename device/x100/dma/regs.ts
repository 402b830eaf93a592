/**
 * DMA engine registers (drivers/dma/mic_x100_dma.h, mic_x100_dma.c).
 * Eight channels of 13 registers at SBOX 0xA000 + 0x40·ch (BAR4 0x1A000 +
 * 0x40·ch, MIC_DMA_SBOX_CH_BASE) and the global DCR at SBOX 0xA280.
 * Register names carry the channel number (DCAR0 … DCHERRMSK7) so that they
 * are unique in BAR4; code reads any channel's fields through DMA_CH.
 *
 * All channel state lives in these registers: the engine (engine.ts) keeps
 * DHPR/DTPR/DSTAT/DCHERR current through refs, so a read always shows it.
 * A card reset (RGCR) clears every DMA register.
 */
import { type Field, bit, block, blockArray, field, fieldOf, masksOf, reg } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

export const DMA_CHANNELS = 8; // MIC_DMA_MAX_NUM_CHAN
/** BAR4 offset of channel 0's block (MIC_DMA_SBOX_CH_BASE). */
export const DMA_CH_BASE = SBOX_BASE + 0xa000;
export const DMA_CH_STRIDE = 0x40; // MIC_DMA_SBOX_CHAN_OFF
/** BAR4 offset of DCR (MIC_DMA_SBOX_BASE + MIC_DMA_SBOX_DCR). */
export const DCR_OFFSET = SBOX_BASE + 0xa280;

/**
 * DCHERR / DCHERRMSK bits. The silicon layout is not public; this one is
 * the emulator's own (Linux only tests DCHERR != 0, mic_dma_check_chan()).
 * Any bit set stops the channel at the failing descriptor and sets DSTAT
 * QUIESCE; a DCHERR bit whose DCHERRMSK bit is clear also raises the SBOX
 * error source (30).
 */
export const DCHERR_FIELDS = [
  bit('DESC_TYPE', 0, 'descriptor type is not NOP, MEMCPY, STATUS or GENERAL (4-15)'),
  bit('SRC_ADDR', 1, 'memcpy source outside GDDR and the system window, or not backed by mapped guest RAM'),
  bit('DST_ADDR', 2, 'destination outside GDDR and the system window, not backed by mapped guest RAM, or read-only'),
  bit('RING_FETCH', 3, 'the descriptor at ring + 16·tail could not be read'),
  bit('RING_INDEX', 4, 'DHPR written with a value >= the ring size, or the tail is beyond a reprogrammed ring'),
  bit('INTERNAL', 5, 'emulator fault while executing a descriptor (a bug: see the warning)'),
];

/** One channel's registers (MIC_DMA_REG_*; MPSS SBOX_*_0), offsets within the channel block. */
export const DMA_CH = {
  DCAR: reg('DCAR', 0x00, 'RW', 0, 'channel attributes: interrupt masks and status', [
    bit('IM0', 24, 'interrupt mask, card-owned channel (MIC_DMA_SBOX_DCAR_IM0)'),
    bit('IM1', 25, 'interrupt mask, host-owned channel (MIC_DMA_SBOX_DCAR_IM1)'),
    bit('IS0', 26, '(MPSS) interrupt status; never set by the emulator, never read by Linux'),
  ]),
  DHPR: reg('DHPR', 0x04, 'RW', 0, 'head: software has written descriptors up to head − 1', [
    field('HEAD', 0, 17, 'ring index of the next descriptor software will write'),
  ]),
  DTPR: reg('DTPR', 0x08, 'RO', 0, 'tail: ring index of the next descriptor the engine executes', [
    field('TAIL', 0, 17, 'ring index'),
  ]),
  DAUX_LO: reg('DAUX_LO', 0x0c, 'RW', 0, '(MPSS) auxiliary, low; storage only'),
  DAUX_HI: reg('DAUX_HI', 0x10, 'RW', 0, '(MPSS) auxiliary, high; storage only'),
  DRAR_LO: reg('DRAR_LO', 0x14, 'RW', 0, 'descriptor ring address bits 31:0', [
    field('BASE_LO', 0, 32, 'ring address bits 31:0'),
  ]),
  // mic_dma_chan_set_desc_ring()
  DRAR_HI: reg('DRAR_HI', 0x18, 'RW', 0, 'descriptor ring: high address bits, size, SMPT entry, system-memory flag', [
    field('BASE_HI', 0, 4, 'ring address bits 35:32 (GDDR ring); with SYS, bits 33:32 of the offset in the SMPT page'),
    field('SIZE', 4, 17, 'number of descriptors in the ring'),
    field('SMPT', 21, 5, 'SMPT entry of a system-memory ring'),
    bit('SYS', 26, 'ring is in system (host) memory, reached through the SMPT (MIC_DMA_SBOX_DRARHI_SYS_MASK)'),
  ]),
  DITR: reg('DITR', 0x1c, 'RW', 0, '(MPSS) interrupt timer; storage only'),
  DSTAT: reg('DSTAT', 0x20, 'RO', 0, 'status: completion count and engine state', [
    field('COUNT', 0, 17, 'completion count: ring index one past the last completed descriptor (= DTPR; MIC_DMA_HW_CMP_CNT_MASK)'),
    field('STATUS', 28, 4, 'engine status (0: running normally)'),
    bit('QUIESCE', 29, 'channel stopped by an error, see DCHERR (MIC_DMA_CHAN_QUIESCE)'),
  ]),
  DSTATWB_LO: reg('DSTATWB_LO', 0x24, 'RW', 0, '(MPSS) status write-back address, low; storage only'),
  DSTATWB_HI: reg('DSTATWB_HI', 0x28, 'RW', 0, '(MPSS) status write-back address, high; storage only'),
  DCHERR: reg('DCHERR', 0x2c, 'W1C', 0, 'channel error (emulator-defined bits); clearing every bit resumes the channel', DCHERR_FIELDS),
  DCHERRMSK: reg('DCHERRMSK', 0x30, 'RW', 0, 'channel error mask: a set bit keeps that error from raising the SBOX error source', DCHERR_FIELDS),
} as const;

/** Register offsets within a channel block, as the driver names them (MIC_DMA_REG_*). */
export const { DCAR, DHPR, DTPR, DAUX_LO, DAUX_HI, DRAR_LO, DRAR_HI, DITR, DSTAT, DSTATWB_LO, DSTATWB_HI, DCHERR, DCHERRMSK } =
  Object.fromEntries(Object.entries(DMA_CH).map(([k, r]) => [k, r.offset])) as { readonly [K in keyof typeof DMA_CH]: number };

/** BAR4 offset of register `r` of channel `ch`. */
export const dmaReg = (ch: number, r: number): number => DMA_CH_BASE + DMA_CH_STRIDE * ch + r;

/**
 * The driver's own names for single bits, for code that mirrors the driver
 * (the test doubles); derived from the fields above.
 */
export const { IM0: DCAR_IM0, IM1: DCAR_IM1 } = masksOf(DMA_CH.DCAR); // MIC_DMA_SBOX_DCAR_IM0/IM1
export const { SYS: DRAR_HI_SYS } = masksOf(DMA_CH.DRAR_HI); // MIC_DMA_SBOX_DRARHI_SYS_MASK
export const { COUNT: DSTAT_COUNT_MASK, QUIESCE: DSTAT_QUIESCE } = masksOf(DMA_CH.DSTAT); // MIC_DMA_HW_CMP_CNT_MASK, MIC_DMA_CHAN_QUIESCE
export const {
  DESC_TYPE: DCHERR_DESC_TYPE,
  SRC_ADDR: DCHERR_SRC_ADDR,
  DST_ADDR: DCHERR_DST_ADDR,
  RING_FETCH: DCHERR_RING_FETCH,
  RING_INDEX: DCHERR_RING_INDEX,
  INTERNAL: DCHERR_INTERNAL,
} = masksOf(DMA_CH.DCHERR);

/**
 * DCR: per channel, bit 2·ch owner and bit 2·ch+1 enable, as
 * mic_dma_chan_set_owner() and mic_dma_enable_chan() write them (the
 * comment in mic_x100_dma.h has the two the other way round).
 */
export const DCR = reg('DCR', 0x0, 'RW', 0x55, 'DMA configuration: per channel an owner and an enable bit',
  Array.from({ length: DMA_CHANNELS }, (_, ch) => [
    bit(`OWNER${ch}` as `OWNER${number}`, 2 * ch, `channel ${ch} owner (1 = host, 0 = card)`),
    bit(`EN${ch}` as `EN${number}`, 2 * ch + 1, `channel ${ch} enable`),
  ]).flat());

/** DCR's owner bit of channel `ch` (throws for a channel that does not exist). */
export const dcrOwner = (ch: number): Field => fieldOf(DCR, `OWNER${ch}`);
/** DCR's enable bit of channel `ch`. */
export const dcrEnable = (ch: number): Field => fieldOf(DCR, `EN${ch}`);

/** DCR after reset: channels 0-3 owned by the host, every channel disabled. */
export const DCR_RESET = DCR.reset;

export const DCR_BLOCK = block('dma-dcr', DCR_OFFSET, 'DMA configuration', [DCR], { cardReset: 'clear' });

/** Every DMA block of BAR4: channels 0-7, then DCR. */
export const DMA_BLOCKS = [
  ...blockArray('dma', DMA_CHANNELS, DMA_CH_BASE, DMA_CH_STRIDE, (ch) => `DMA channel ${ch}`, Object.values(DMA_CH), { cardReset: 'clear' }),
  DCR_BLOCK,
];
