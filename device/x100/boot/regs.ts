/**
 * Reset and boot-status registers (mic_x100_hw_reset(), mic_x100_get_postcode()
 * in host/mic_x100.c).
 */
import { bit, block, field, reg } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

/** Post codes the emulated bootstrap shows (emulator-defined; Linux never checks them). */
export const POSTCODE_READY = 0x4646; // "FF": bootstrap done, waiting for download
export const POSTCODE_RESET = 0x3030; // "00": reset in progress
export const POSTCODE_OS = 0x534f; // "OS": card OS running
export const POSTCODE_CRASH = 0x5243; // "CR": the card OS crashed (an injected card-crash)

export const DBOX_BLOCK = block('dbox', 0x0000, 'DBOX', [
  reg('POSTCODE', 0x242c, 'RO', POSTCODE_READY, 'bootstrap post code: two ASCII characters, bits 7:0 first (MIC_X100_POSTCODE)', [
    field('CHAR0', 0, 8, 'first character'),
    field('CHAR1', 8, 8, 'second character'),
  ]),
]);

export const RGCR = reg('RGCR', 0x0, 'RW', 0, 'reset global control: bit 0 starts a card reset (mic_x100_hw_reset())', [
  bit('RESET', 0, 'start a card reset (self-clearing)'),
], { selfClear: 'RESET' });

export const RGCR_BLOCK = block('sbox-rgcr', SBOX_BASE + 0x4010, 'reset', [RGCR]);
