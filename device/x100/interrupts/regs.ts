/**
 * SBOX interrupt controller and doorbells (drivers/misc/mic/host/mic_x100.c,
 * mic_x100.h).
 *
 * Source bits (SICR0/SICE0/SIAC0/MXARn, mic_x100_intr_init[]):
 *   3:0   DB   host doorbells 0-3, rung by the card (SDBIC0-3)
 *   15:8  DMA  DMA channels 0-7
 *   30    ERR  SBOX error
 *
 * A card reset (RGCR) clears SICR0, the doorbell registers APICICR,
 * RDMASR and SDBIC; SICE0, SIAC0 and MXAR survive it.
 */
import { bit, block, field, maskOf, reg, regArray, regAt, repeat } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

export const SRC_FIELDS = [
  field('DB', 0, 4, 'host doorbells 0-3, card → host (MIC_X100_SBOX_SICR0_DBR)'),
  field('DMA', 8, 8, 'DMA channels 0-7 (MIC_X100_SBOX_SICR0_DMA)'),
  bit('ERR', 30, 'SBOX error'),
];

/** Bits that name a source at all. */
export const SOURCE_BITS = maskOf(SRC_FIELDS);

export const BSP_INTERRUPT_VECTOR = 229; // MIC_X100_BSP_INTERRUPT_VECTOR

export const INTERRUPT_BLOCK = block('sbox-intr', SBOX_BASE + 0x9000, 'interrupt controller', [
  reg('SICR0', 0x004, 'W1C', 0, 'system interrupt cause 0: pending sources', SRC_FIELDS, { cardReset: 'clear' }),
  reg('SICE0', 0x00c, 'RW', 0, 'system interrupt enable 0: per-source enable', SRC_FIELDS),
  reg('SICC0', 0x010, 'WO', 0, 'system interrupt enable clear 0: 1 clears the SICE0 bit', SRC_FIELDS),
  reg('SIAC0', 0x014, 'RW', 0, 'system interrupt auto-clear 0: clear SICR0 when the MSI-X message is sent', SRC_FIELDS),
  reg('SICR1', 0x01c, 'W1C', 0, 'system interrupt cause 1 (MPSS; unused by Linux)'),
  reg('SICC1', 0x028, 'WO', 0, 'system interrupt enable clear 1 (MPSS; unused by Linux)'),
  regArray('MXAR', 16, 0x044, 4, 'RW', 0, 'MSI-X allocation: bit k routes source k to this MSI-X entry', SRC_FIELDS),
  reg('MSIXPBACR', 0x084, 'WO', 0, 'MSI-X PBA clear (written by A0-stepping hosts only)'),
]);

/** APIC ICR n low, at 8·n (mic_x100_send_sbox_intr(), mic_x100_send_firmware_intr()). */
export const APICICR_LO = reg('APICICR_LO', 0, 'RW', 0, 'APIC ICR low: host → card doorbell', [
  field('VECTOR', 0, 8, 'interrupt vector (229: boot)'),
  bit('SEND', 13, 'send: rings the doorbell (self-clearing)'),
], { selfClear: 'SEND' });
/** APIC ICR n high, at 8·n + 4. */
export const APICICR_HI = reg('APICICR_HI', 4, 'RW', 0, 'APIC ICR high: destination APIC id', [field('DEST', 0, 32, 'destination')]);

export const DOORBELL_BLOCK = block('sbox-doorbell', SBOX_BASE + 0xa9d0, 'host → card doorbells (APIC ICR)', [
  ...Array.from({ length: 8 }, (_, n) => [
    regAt(APICICR_LO, `APICICR${n}_LO`, 8 * n, n, `APIC ICR ${n} low: host → card doorbell ${n}${n === 7 ? ', and the boot interrupt' : ''}`),
    regAt(APICICR_HI, `APICICR${n}_HI`, 8 * n + 4, n, `APIC ICR ${n} high: destination APIC id`),
  ]).flat(),
], { cardReset: 'clear' });

export const RDMASR_BLOCK = block('sbox-rdmasr', SBOX_BASE + 0xb180, 'host → card doorbells 8-15', [
  regArray('RDMASR', 8, 0x000, 4, 'RW', 0, 'remote DMA status n: any write rings card doorbell 8+n'),
  reg('SBQ_FLUSH', 0x020, 'RW', 0, '(MPSS) SBQ flush; not a doorbell', [], { cardReset: 'keep' }),
  reg('TLB_FLUSH', 0x024, 'RW', 0, '(MPSS) TLB flush; not a doorbell', [], { cardReset: 'keep' }),
  // 3.13-era hosts added MIC_X100_RDMASR_IRQ_BASE (17) to the index.
  ...Array.from({ length: 8 }, (_, i) =>
    reg(`RDMASR${17 + i}`, 4 * (17 + i), 'RW', 0, `remote DMA status ${17 + i}: an old (biased) host rings card doorbell ${8 + i}`)),
], { cardReset: 'clear' });

/** System doorbell interrupt command n (mic_send_intr() in card/mic_x100.c). */
export const SDBIC = reg('SDBIC', 0x000, 'RW', 0, 'system doorbell interrupt command: the card sets DBREQ to raise host source n',
  [bit('DBREQ', 31, 'doorbell request (MIC_X100_SBOX_SDBIC0_DBREQ_BIT)')], { selfClear: 'DBREQ' });

export const SDBIC_BLOCK = block('sbox-sdbic', SBOX_BASE + 0xcc90, 'card → host doorbells', [repeat(SDBIC, 4, 4)], { cardReset: 'clear' });
