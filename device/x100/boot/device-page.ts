/**
 * The device page's boot parameters (struct mic_bootparam,
 * include/uapi/linux/mic_common.h): 24 bytes at the start of a 4 KiB page
 * of host memory whose card address the host publishes in SPAD14/15.
 */
export const MIC_MAGIC = 0xc0ffee00;
export const MIC_DP_SIZE = 4096;

/** Field offsets in struct mic_bootparam. */
export const BOOTPARAM = {
  magic: 0, // le32, MIC_MAGIC
  h2c_config_db: 4, // s8, card → host: VOP config doorbell, -1 none
  node_id: 5, // u8, host: the card's SCIF node id
  h2c_scif_db: 6, // u8, card: doorbell the host rings for SCIF
  c2h_scif_db: 7, // u8, host: doorbell the card rings for SCIF
  scif_host_dma_addr: 8, // u64, host: SMPT-window address of the host queue pair
  scif_card_dma_addr: 16, // u64, card: GDDR address of the card queue pair
} as const;

export interface BootParam {
  magic: number;
  h2cConfigDb: number;
  nodeId: number;
  h2cScifDb: number;
  c2hScifDb: number;
  scifHostDmaAddr: bigint;
  scifCardDmaAddr: bigint;
}

export function decodeBootParam(b: Uint8Array): BootParam {
  const v = new DataView(b.buffer, b.byteOffset, 24);
  return {
    magic: v.getUint32(BOOTPARAM.magic, true),
    h2cConfigDb: v.getInt8(BOOTPARAM.h2c_config_db),
    nodeId: v.getUint8(BOOTPARAM.node_id),
    h2cScifDb: v.getInt8(BOOTPARAM.h2c_scif_db),
    c2hScifDb: v.getInt8(BOOTPARAM.c2h_scif_db),
    scifHostDmaAddr: v.getBigUint64(BOOTPARAM.scif_host_dma_addr, true),
    scifCardDmaAddr: v.getBigUint64(BOOTPARAM.scif_card_dma_addr, true),
  };
}
