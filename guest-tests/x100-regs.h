/*
 * x100-regs.h: BAR4 (MMIO) offsets of the Intel Xeon Phi x100, with the
 * names of the Linux host drivers (drivers/misc/mic/host/mic_x100.h,
 * drivers/dma/mic_x100_dma.h). Every offset is from the start of BAR4.
 */
#ifndef X100_REGS_H
#define X100_REGS_H

#define X100_APER_BAR 0				/* MIC_X100_APER_BAR: card memory (GDDR) */
#define X100_MMIO_BAR 4				/* MIC_X100_MMIO_BAR */
#define X100_MMIO_SIZE 0x20000u			/* BAR4 as the card decodes it */

#define X100_SBOX_BASE 0x10000u			/* MIC_X100_SBOX_BASE_ADDRESS */
#define X100_SBOX(off) (X100_SBOX_BASE + (off))

/* SMPT: 32 entries of 16 GiB each (mic_x100_smpt_hw_init(), mic_x100_smpt.c) */
#define X100_SMPT_ENTRIES 32u
#define X100_SMPT(i) X100_SBOX(0x3100u + 4u * (i))	/* MIC_X100_SBOX_SMPT00 */
#define X100_SMPT_SHIFT 34			/* one entry maps 1 << 34 bytes */
/* BUILD_SMPT(SNOOP_ON, pa >> 34) of mic_x100_smpt_set(): bits 31:2 host address, bit 0 no snoop */
#define X100_SMPT_ENTRY(pa) ((uint32_t)((pa) >> X100_SMPT_SHIFT) << 2)
#define X100_SYS_WINDOW 0x8000000000ull		/* card address of SMPT entry 0 (info->base) */

#define X100_RGCR X100_SBOX(0x4010u)		/* MIC_X100_SBOX_RGCR */
#define X100_RGCR_RESET 1u			/* mic_x100_hw_reset() */

/* SBOX interrupt registers (mic_x100_intr_init(), mic_x100.c) */
#define X100_SICR0 X100_SBOX(0x9004u)		/* MIC_X100_SBOX_SICR0: W1C status */
#define X100_SICE0 X100_SBOX(0x900Cu)		/* MIC_X100_SBOX_SICE0: enable set */
#define X100_SICC0 X100_SBOX(0x9010u)		/* MIC_X100_SBOX_SICC0: enable clear */
#define X100_SIAC0 X100_SBOX(0x9014u)		/* MIC_X100_SBOX_SIAC0: auto clear */
#define X100_MXAR0 X100_SBOX(0x9044u)		/* MIC_X100_SBOX_MXAR0 */
#define X100_MSIXPBACR X100_SBOX(0x9084u)	/* MIC_X100_SBOX_MSIXPBACR */
#define X100_SICR0_DBR(n) (1u << (n))		/* doorbell n (MIC_X100_DOORBELL_IDX_START) */
#define X100_SICR0_DMA(ch) (1u << (8 + (ch)))	/* DMA channel ch (MIC_X100_DMA_IDX_START) */
#define X100_SICR0_ERR (1u << 30)		/* SBOX error (MIC_X100_ERR_IDX_START) */

#define X100_APICICR(i) X100_SBOX(0xA9D0u + 8u * (i))	/* MIC_X100_SBOX_APICICR0 .. 7 */

/* Scratchpads (mic_x100_read_spad(), mic_x100.c) */
#define X100_SPAD(i) X100_SBOX(0xAB20u + 4u * (i))	/* MIC_X100_SBOX_SPAD0 */
#define X100_SPAD_DOWNLOAD_INFO 2		/* MIC_X100_DOWNLOAD_INFO */
#define X100_SPAD_FW_SIZE 5			/* MIC_X100_FW_SIZE */
#define X100_SPAD2_DOWNLOAD_STATUS 1u		/* MIC_X100_SPAD2_DOWNLOAD_STATUS() */

/* Doorbells: host -> card in SDBIC0-3, card -> host in RDMASR0-7 */
#define X100_RDMASR(i) X100_SBOX(0xB180u + 4u * (i))	/* MIC_X100_SBOX_RDMASR0 */
#define X100_SDBIC(i) X100_SBOX(0xCC90u + 4u * (i))	/* MIC_X100_SBOX_SDBIC0 */
#define X100_SDBIC_DBREQ (1u << 31)		/* MIC_X100_SBOX_SDBIC0_DBREQ_BIT */

/* DMA (drivers/dma/mic_x100_dma.h) */
#define X100_DMA_CHANNELS 8			/* MIC_DMA_MAX_NUM_CHAN */
#define X100_DMA_HOST_CHANNELS 4		/* MIC_DMA_NUM_CHAN: 0-3 belong to the host */
#define X100_DMA_CH_BASE 0x1A000u		/* MIC_DMA_SBOX_CH_BASE */
#define X100_DMA_CH_STRIDE 0x40u		/* MIC_DMA_SBOX_CHAN_OFF */
#define X100_DMA_CH(ch, reg) (X100_DMA_CH_BASE + X100_DMA_CH_STRIDE * (ch) + (reg))
#define X100_DCR X100_SBOX(0xA280u)		/* MIC_DMA_SBOX_DCR */
#define X100_DCR_EN(ch) (1u << (2 * (ch) + 1))	/* mic_dma_enable_chan() */

#define X100_DCAR 0x00u				/* MIC_DMA_REG_DCAR */
#define X100_DHPR 0x04u				/* MIC_DMA_REG_DHPR */
#define X100_DTPR 0x08u				/* MIC_DMA_REG_DTPR */
#define X100_DRAR_LO 0x14u			/* MIC_DMA_REG_DRAR_LO */
#define X100_DRAR_HI 0x18u			/* MIC_DMA_REG_DRAR_HI */
#define X100_DSTAT 0x20u			/* MIC_DMA_REG_DSTAT */
#define X100_DCHERR 0x2Cu			/* MIC_DMA_REG_DCHERR */
#define X100_DCHERRMSK 0x30u			/* MIC_DMA_REG_DCHERRMSK */

#define X100_DCAR_IM0 (1u << 24)		/* MIC_DMA_SBOX_DCAR_IM0 */
#define X100_DCAR_IM1 (1u << 25)		/* MIC_DMA_SBOX_DCAR_IM1 */
#define X100_DRAR_HI_SYS (1u << 26)		/* MIC_DMA_SBOX_DRARHI_SYS_MASK */
#define X100_DSTAT_COUNT 0x1ffffu		/* MIC_DMA_HW_CMP_CNT_MASK */
#define X100_DSTAT_QUIESCE 0x20000000u		/* MIC_DMA_CHAN_QUIESCE */

#endif
