/**
 * Scratchpads SPAD0..SPAD15 (MPSS: SCRATCH0..15): plain 32-bit storage
 * shared by host and card, at SBOX 0xAB20 + 4·n (mic_x100_read_spad() in
 * host/mic_x100.c). A card reset leaves them alone.
 */
import { bit, block, field, reg } from '../../../src/regs/define.ts';
import { SBOX_BASE } from '../pci/identity.ts';

/** MIC_X100_DOWNLOAD_INFO: what the bootstrap tells the host (MIC_X100_SPAD2_* in host/mic_x100.h). */
export const SPAD2 = reg('SPAD2', 0x08, 'RW', 0x04000001, 'MIC_X100_DOWNLOAD_INFO: card bootstrap → host; host writes 0 before a reset', [
  bit('READY', 0, 'card is ready for an OS download (MIC_X100_SPAD2_DOWNLOAD_STATUS)'),
  field('APIC_ID', 1, 9, 'bootstrap-processor APIC id (MIC_X100_SPAD2_APIC_ID)'),
  field('DOWNLOAD_ADDR', 12, 20, 'download address in GDDR >> 12 (MIC_X100_SPAD2_DOWNLOAD_ADDR)'),
]);

export const SPAD_BLOCK = block('spad', SBOX_BASE + 0xab20, 'scratchpads', [
  reg('SPAD0', 0x00, 'RW', 0, 'scratchpad 0 (MPSS: memory size; unused by Linux)'),
  reg('SPAD1', 0x04, 'RW', 0, 'scratchpad 1 (unused)'),
  SPAD2,
  reg('SPAD3', 0x0c, 'RW', 0, 'scratchpad 3 (unused)'),
  reg('SPAD4', 0x10, 'RW', 0, 'scratchpad 4 (unused)'),
  reg('SPAD5', 0x14, 'RW', 0, 'MIC_X100_FW_SIZE: host → card, byte size of the image just downloaded'),
  reg('SPAD6', 0x18, 'RW', 0, 'scratchpad 6 (unused)'),
  reg('SPAD7', 0x1c, 'RW', 0, 'scratchpad 7 (unused)'),
  reg('SPAD8', 0x20, 'RW', 0, 'scratchpad 8 (unused)'),
  reg('SPAD9', 0x24, 'RW', 0, 'scratchpad 9 (unused)'),
  reg('SPAD10', 0x28, 'RW', 0, 'scratchpad 10 (unused)'),
  reg('SPAD11', 0x2c, 'RW', 0, 'scratchpad 11 (unused)'),
  reg('SPAD12', 0x30, 'RW', 0, 'scratchpad 12 (unused)'),
  reg('SPAD13', 0x34, 'RW', 0, 'scratchpad 13 (MPSS: stepping; unused by Linux)'),
  reg('SPAD14', 0x38, 'RW', 0, 'MIC_DPLO_SPAD: host → card, device page card address bits 31:0'),
  reg('SPAD15', 0x3c, 'RW', 0, 'MIC_DPHI_SPAD: host → card, device page card address bits 63:32'),
]);
