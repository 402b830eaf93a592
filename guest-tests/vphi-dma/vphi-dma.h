/*
 * vphi-dma/vphi-dma.h: what the files of vphi-dma share (see the comment
 * at the top of guest-tests/vphi-dma.c): the options, the mapped BARs, the
 * card-memory layout, the pattern checks, and the test groups.
 */
#ifndef VPHI_DMA_H
#define VPHI_DMA_H

#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define VG_PROG "vphi-dma"
#define VG_USAGE \
	"usage: vphi-dma [all|copy|wrap|status|errors|bench|selftest ...] [--channel N] [--bdf D:B:D.F] ...\n" \
	"(see the comment at the top of guest-tests/vphi-dma.c)\n"
#include "vphi-guest.h"
#include "guest-mem.h"
#include "pattern.h"
#include "x100-dma.h"
#include "x100-regs.h"

#define KiB 1024u
#define MiB (1024u * 1024u)

/* Besides vg_card (--vendor, --device, --bdf): */
struct opts {
	long channel; /* -1: per-group default */
	long ring_slots;
	unsigned long long gddr_base;
	long timeout_ms;
	long hugepages;
	int no_huge;
	long bench_mib;
};
extern struct opts o;

extern volatile uint8_t *bar4;
extern uint8_t *gddr; /* BAR0: card address X is gddr[X] */
extern unsigned long long gddr_size;

static inline uint32_t rd(uint32_t off) { return x100_rd(bar4, off); }
static inline void wr(uint32_t off, uint32_t v) { x100_wr(bar4, off, v); }

/* A channel of this program: on BAR4, with --timeout-ms. */
int chan_alloc(struct x100_dma_chan *c, int n, uint32_t nslots);

/* ------------------------------------------------------------ card memory layout */

/* Offsets from o.gddr_base (64 MiB in all). */
#define G_H2C 0x0000000u	/* host->card destinations, 8 MiB */
#define G_C2H 0x0800000u	/* card->host / card->card sources, 4 MiB */
#define G_C2C 0x0C00000u	/* card->card destinations, 8 MiB */
#define G_SMALL 0x1400000u	/* host->card from 4 KiB pages, 4 MiB */
#define G_WRAP 0x1800000u	/* wrap destinations, 1 MiB */
#define G_STATUS 0x1900000u	/* status values, 1 MiB */
#define G_ERR 0x1A00000u	/* error tests, 2 MiB */
#define G_OTHER 0x1C00000u	/* other-channel copies, 4 MiB */
#define G_BENCH 0x2000000u	/* bench, 32 MiB */
#define G_TOTAL 0x4000000u
#define GUARD 64u		/* bytes after a destination that must stay untouched */

static inline uint64_t G(uint32_t off) { return o.gddr_base + off; }

/* ------------------------------------------------------------ common.c */

/* A fresh nonzero pattern seed. */
uint32_t new_seed(void);
/* 0 if [p, p+len) holds pattern(seed, len); else the number of differing words (the first ones reported). */
size_t check_pattern(const void *p, size_t len, uint32_t seed, const char *what);
/* 0 if every byte of [p, p+len) is v; else how many differ. */
size_t check_fill(const void *p, size_t len, uint8_t v, const char *what);
/* mic_x100_hw_reset() + mic_x100_reset_fw_ready(), wait for the bootstrap, identity SMPT again; 0 or -1. */
int card_reset(void);

enum dir { H2C, C2H, C2C };
/*
 * One copy of len bytes in direction d on channel c, checked byte for byte
 * (plus a guard after the destination) and by the completion count.
 * card_src / card_dst: GDDR offsets from gddr_base. 1: passed.
 */
int do_copy(struct x100_dma_chan *c, enum dir d, size_t len, struct gm_buf *hsrc, struct gm_buf *hdst, uint32_t card_src,
	    uint32_t card_dst, uint32_t max);

/* ------------------------------------------------------------ groups */

enum { GR_COPY = 1, GR_WRAP = 2, GR_STATUS = 4, GR_ERRORS = 8, GR_BENCH = 16, GR_SELFTEST = 32, GR_ALL = 15 };

struct dma_test {
	const char *name;
	int (*fn)(void); /* 1: passed */
};

struct dma_group {
	int bit;
	int needs_card;			 /* 0: runs without a card (selftest) */
	int late_teardown;		 /* 1: teardown only at the end (errors: the last error stays for the host) */
	const struct dma_test *tests;	 /* ends with { 0 } */
	void (*teardown)(void);
	int *chan;			 /* its default channel, set by --channel */
};

/* One file each: copy.c, wrap.c, status.c, errors.c, bench.c, selftest.c. */
extern const struct dma_group group_copy, group_wrap, group_status, group_errors, group_bench, group_selftest;

#endif
