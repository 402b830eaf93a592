/**
 * SBOX interrupt controller and doorbells (spec card-hardware.md §4, §6;
 * drivers/misc/mic/host/mic_x100.c, mic_x100.h).
 *
 * Source bits (SICR0/SICE0/SIAC0/MXARn, mic_x100_intr_init[]):
 *   3:0   DB   host doorbells 0-3, rung by the card (SDBIC0-3)
 *   15:8  DMA  DMA channels 0-7
 *   30    ERR  SBOX error
 */
import { bit, block, field, reg, regArray } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

export const SRC_FIELDS = [
  field('DB', 0, 4, 'host doorbells 0-3 (card → host)'),
  field('DMA', 8, 8, 'DMA channels 0-7'),
  bit('ERR', 30, 'SBOX error'),
];

/** Bits that name a source at all. */
export const SRC_MASK = 0x4000ff0f;

/** APICICRn low: bit 13 sends (self-clearing); bits 7:0 the vector (229 = boot). */
export const APICICR_SEND = 1 << 13;
export const BSP_INTERRUPT_VECTOR = 229; // MIC_X100_BSP_INTERRUPT_VECTOR
/** SDBICn bit 31: doorbell request (MIC_X100_SBOX_SDBIC0_DBREQ_BIT). */
export const SDBIC_DBREQ = 0x80000000;

export const INTERRUPT_BLOCK = block('sbox-intr', SBOX_BASE + 0x9000, 'interrupt controller', [
  reg('SICR0', 0x004, 'W1C', 0, 'system interrupt cause 0: pending sources', SRC_FIELDS),
  reg('SICE0', 0x00c, 'RW', 0, 'system interrupt enable 0: per-source enable', SRC_FIELDS),
  reg('SICC0', 0x010, 'WO', 0, 'system interrupt enable clear 0: 1 clears the SICE0 bit', SRC_FIELDS),
  reg('SIAC0', 0x014, 'RW', 0, 'system interrupt auto-clear 0: clear SICR0 when the MSI-X message is sent', SRC_FIELDS),
  reg('SICR1', 0x01c, 'W1C', 0, 'system interrupt cause 1 (MPSS; unused by Linux)'),
  reg('SICC1', 0x028, 'WO', 0, 'system interrupt enable clear 1 (MPSS; unused by Linux)'),
  regArray('MXAR', 16, 0x044, 4, 'RW', 0, 'MSI-X allocation: bit k routes source k to this MSI-X entry', SRC_FIELDS),
  reg('MSIXPBACR', 0x084, 'WO', 0, 'MSI-X PBA clear (written by A0-stepping hosts only)'),
]);

export const DOORBELL_BLOCK = block('sbox-doorbell', SBOX_BASE + 0xa9d0, 'host → card doorbells (APIC ICR)', [
  ...Array.from({ length: 8 }, (_, n) => [
    reg(`APICICR${n}_LO`, 8 * n, 'RW', 0, `APIC ICR ${n} low: host → card doorbell ${n}${n === 7 ? ', and the boot interrupt' : ''}`,
      [field('VECTOR', 0, 8, 'interrupt vector (229: boot)'), bit('SEND', 13, 'send: rings the doorbell (self-clearing)')],
      { selfClear: APICICR_SEND }),
    reg(`APICICR${n}_HI`, 8 * n + 4, 'RW', 0, `APIC ICR ${n} high: destination APIC id`, [field('DEST', 0, 32, 'destination')]),
  ]).flat(),
]);

export const RDMASR_BLOCK = block('sbox-rdmasr', SBOX_BASE + 0xb180, 'host → card doorbells 8-15', [
  regArray('RDMASR', 8, 0x000, 4, 'RW', 0, 'remote DMA status n: any write rings card doorbell 8+n'),
  reg('SBQ_FLUSH', 0x020, 'RW', 0, '(MPSS) SBQ flush; not a doorbell'),
  reg('TLB_FLUSH', 0x024, 'RW', 0, '(MPSS) TLB flush; not a doorbell'),
  // 3.13-era hosts added MIC_X100_RDMASR_IRQ_BASE (17) to the index.
  ...Array.from({ length: 8 }, (_, i) =>
    reg(`RDMASR${17 + i}`, 4 * (17 + i), 'RW', 0, `remote DMA status ${17 + i}: an old (biased) host rings card doorbell ${8 + i}`)),
]);

export const SDBIC_BLOCK = block('sbox-sdbic', SBOX_BASE + 0xcc90, 'card → host doorbells', [
  regArray('SDBIC', 4, 0x000, 4, 'RW', 0, 'system doorbell interrupt command: the card sets DBREQ to raise host source n',
    [bit('DBREQ', 31, 'doorbell request')], { selfClear: SDBIC_DBREQ }),
]);
