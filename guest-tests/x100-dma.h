/*
 * x100-dma.h: an x100 DMA channel driven from guest userspace through BAR4,
 * as drivers/dma/mic_x100_dma.c drives it for the host: a descriptor ring in
 * guest memory reached through the SMPT (mic_dma_chan_setup(),
 * mic_dma_chan_set_desc_ring()), descriptors written with ordinary stores,
 * DHPR written by mic_dma_issue_pending(), completion read from DSTAT as
 * dma_sync_wait() polls. Include after vphi-guest.h; needs guest-mem.h and
 * x100-regs.h.
 *
 *   struct x100_dma_chan c;
 *   x100_smpt_identity(bar4);
 *   x100_dma_chan_alloc(&c, bar4, 0, 64) == 0 && x100_dma_chan_setup(&c)
 *   x100_dma_memcpy(&c, src, dst, len); x100_dma_sync(&c);
 *   x100_dma_chan_destroy(&c); x100_dma_chan_free(&c);
 */
#ifndef X100_DMA_H
#define X100_DMA_H

#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "guest-mem.h"
#include "x100-regs.h"

/* Descriptors (drivers/dma/mic_x100_dma.h) */
#define X100_DESC_MEMCPY 1ull			/* MIC_DMA_MEMCPY */
#define X100_DESC_STATUS 2ull			/* MIC_DMA_STATUS */
#define X100_DESC_TYPE_SHIFT 60			/* MIC_DMA_DESC_TYPE_SHIFT */
#define X100_MEMCPY_LEN_SHIFT 46		/* MIC_DMA_MEMCPY_LEN_SHIFT */
#define X100_STAT_INTR (1ull << 59)		/* MIC_DMA_STAT_INTR_SHIFT */
#define X100_ADDR40 0xffffffffffull		/* descriptor addresses are 40 bits */
#define X100_MAX_XFER_HOST (512u << 10)		/* MIC_DMA_MAX_XFER_SIZE_HOST */
#define X100_MAX_XFER_CARD ((1u << 20) - 64)	/* the 14-bit length field's maximum */

static inline uint32_t x100_rd(volatile uint8_t *mmio, uint32_t off)
{
	return *(volatile uint32_t *)(mmio + off);
}

/* mic_mmio_write(), after a wmb(): descriptors before the doorbell. */
static inline void x100_wr(volatile uint8_t *mmio, uint32_t off, uint32_t v)
{
	__sync_synchronize();
	*(volatile uint32_t *)(mmio + off) = v;
}

/* mic_smpt_init(): SMPT[i] maps i << 34, so guest physical P is card address X100_SYS_WINDOW + P. */
static inline void x100_smpt_identity(volatile uint8_t *mmio)
{
	for (uint32_t i = 0; i < X100_SMPT_ENTRIES; i++)
		x100_wr(mmio, X100_SMPT(i), X100_SMPT_ENTRY((uint64_t)i << X100_SMPT_SHIFT));
}

/* Card address of byte off of b through the identity SMPT (0: outside b). */
static inline uint64_t x100_sys_addr(const struct gm_buf *b, size_t off)
{
	uint64_t pa = gm_pa(b, off);
	return pa ? X100_SYS_WINDOW + pa : 0;
}

struct x100_dma_chan {
	volatile uint8_t *mmio; /* BAR4 */
	int n;
	uint32_t nslots;
	long timeout_ms;	/* how long x100_dma_poll() waits (5000, as dma_sync_wait()) */
	struct gm_buf ringbuf;
	volatile uint64_t *ring;
	uint64_t ring_card;
	uint32_t head;	 /* next slot software writes */
	uint32_t issued; /* last value written to DHPR */
	uint32_t tail;	 /* last completion count seen */
	int ready;
	long polls;
	uint32_t err_dstat;
};

static inline uint32_t x100_dma_rd(const struct x100_dma_chan *c, uint32_t r)
{
	return x100_rd(c->mmio, X100_DMA_CH(c->n, r));
}

static inline void x100_dma_wr(const struct x100_dma_chan *c, uint32_t r, uint32_t v)
{
	x100_wr(c->mmio, X100_DMA_CH(c->n, r), v);
}

/* The ring (16 bytes a descriptor, physically contiguous) in guest memory; 0 or -1. */
static inline int x100_dma_chan_alloc(struct x100_dma_chan *c, volatile uint8_t *mmio, int n, uint32_t nslots)
{
	memset(c, 0, sizeof(*c));
	c->mmio = mmio;
	c->n = n;
	c->nslots = nslots;
	c->timeout_ms = 5000;
	size_t bytes = (nslots * 16u + 63) & ~63u;
	/* up to 256 descriptors fit one page */
	if (gm_alloc(&c->ringbuf, bytes, bytes > GM_PAGE ? GM_HUGE_PREF : GM_SMALL))
		return -1;
	if (c->ringbuf.runs[0].len < bytes) {
		ktap_diag("ring of %u descriptors: not physically contiguous", nslots);
		gm_free(&c->ringbuf);
		return -1;
	}
	c->ring = (volatile uint64_t *)c->ringbuf.va;
	c->ring_card = x100_sys_addr(&c->ringbuf, 0);
	return 0;
}

/* mic_dma_chan_destroy(): disable the channel and mask its interrupt (the ring stays allocated). */
static inline void x100_dma_chan_destroy(struct x100_dma_chan *c)
{
	x100_wr(c->mmio, X100_DCR, x100_rd(c->mmio, X100_DCR) & ~X100_DCR_EN(c->n));
	x100_dma_wr(c, X100_DCAR, x100_dma_rd(c, X100_DCAR) | X100_DCAR_IM1);
	c->ready = 0;
}

/* The ring's memory back; the registers are left as they are (see x100_dma_chan_destroy()). */
static inline void x100_dma_chan_free(struct x100_dma_chan *c)
{
	gm_free(&c->ringbuf);
	c->ring = NULL;
	c->ready = 0;
}

static inline void x100_dma_dump(const struct x100_dma_chan *c)
{
	ktap_diag("ch%d: DCR 0x%08x DCAR 0x%08x DHPR %u DTPR %u DSTAT 0x%08x DCHERR 0x%08x DRAR 0x%08x:%08x", c->n,
		  x100_rd(c->mmio, X100_DCR), x100_dma_rd(c, X100_DCAR), x100_dma_rd(c, X100_DHPR), x100_dma_rd(c, X100_DTPR),
		  x100_dma_rd(c, X100_DSTAT), x100_dma_rd(c, X100_DCHERR), x100_dma_rd(c, X100_DRAR_HI),
		  x100_dma_rd(c, X100_DRAR_LO));
}

/* mic_dma_chan_setup(): the exact register sequence of the host driver; 1 if the channel is usable. */
static inline int x100_dma_chan_setup(struct x100_dma_chan *c)
{
	volatile uint8_t *m = c->mmio;
	memset((void *)c->ring, 0, c->nslots * 16u);
	x100_wr(m, X100_DCR, x100_rd(m, X100_DCR) & ~X100_DCR_EN(c->n));	/* mic_dma_disable_chan() */
	x100_dma_wr(c, X100_DCAR, x100_dma_rd(c, X100_DCAR) | X100_DCAR_IM1);	/* mic_dma_chan_mask_intr() */
	x100_dma_wr(c, X100_DCHERRMSK, 0);
	/* mic_dma_chan_set_desc_ring() for a host-owned channel */
	uint32_t drar_hi = (c->nslots & 0x1ffffu) << 4;
	drar_hi |= X100_DRAR_HI_SYS;
	drar_hi |= (uint32_t)((c->ring_card >> 34) & 0x1f) << 21;
	drar_hi |= (uint32_t)((c->ring_card >> 32) & 0x3);
	x100_dma_wr(c, X100_DRAR_LO, (uint32_t)c->ring_card);
	x100_dma_wr(c, X100_DRAR_HI, drar_hi);
	c->head = c->tail = x100_dma_rd(c, X100_DTPR);	/* ch->last_tail = ch->head = DTPR */
	c->issued = c->head;				/* DHPR holds it already: never rewrite the same value */
	x100_dma_wr(c, X100_DCAR, x100_dma_rd(c, X100_DCAR) & ~X100_DCAR_IM1);	/* mic_dma_chan_unmask_intr() */
	x100_wr(m, X100_DCR, x100_rd(m, X100_DCR) | X100_DCR_EN(c->n));	/* mic_dma_enable_chan() */
	uint32_t err = x100_dma_rd(c, X100_DCHERR), st = x100_dma_rd(c, X100_DSTAT);	/* mic_dma_check_chan() */
	c->ready = !err && !(st & X100_DSTAT_QUIESCE) && c->head < c->nslots;
	ktap_diag("ch%d set up: ring of %u at card 0x%010" PRIx64 " (DRAR_HI 0x%08x), DTPR %u, DSTAT 0x%08x, DCHERR 0x%x%s",
		  c->n, c->nslots, c->ring_card, drar_hi, c->head, st, err, c->ready ? "" : ": UNUSABLE");
	if ((st & X100_DSTAT_COUNT) != c->head) {
		ktap_diag("ch%d: idle but DSTAT count %u != DTPR %u", c->n, st & X100_DSTAT_COUNT, c->head);
		c->ready = 0;
	}
	return c->ready;
}

/* Descriptors queued and not yet completed. */
static inline uint32_t x100_dma_ring_used(const struct x100_dma_chan *c)
{
	return (c->head + c->nslots - c->tail) % c->nslots;
}

/* mic_dma_issue_pending() */
static inline void x100_dma_issue(struct x100_dma_chan *c)
{
	if (c->issued == c->head)
		return;
	c->issued = c->head;
	x100_dma_wr(c, X100_DHPR, c->head);
}

/*
 * Poll DSTAT until the count reaches `target` (0), the channel stops with
 * an error (-2, c->err_dstat set) or the time runs out (-1); -3 for a count
 * outside the ring. `progress`: any change of the count is enough.
 */
static inline int x100_dma_poll(struct x100_dma_chan *c, uint32_t target, int progress)
{
	unsigned long long t0 = vg_now_us();
	for (;;) {
		uint32_t st = x100_dma_rd(c, X100_DSTAT);
		uint32_t cnt = st & X100_DSTAT_COUNT;
		c->polls++;
		if (cnt >= c->nslots) {
			ktap_diag("ch%d: DSTAT count %u is outside the ring of %u (DSTAT 0x%08x)", c->n, cnt, c->nslots, st);
			return -3;
		}
		if (cnt == target || (progress && cnt != c->tail)) {
			c->tail = cnt;
			__asm__ __volatile__("" ::: "memory");
			return 0;
		}
		if (st & X100_DSTAT_QUIESCE) {
			c->tail = cnt;
			c->err_dstat = st;
			__asm__ __volatile__("" ::: "memory");
			return -2;
		}
		if (vg_now_us() - t0 > (unsigned long long)c->timeout_ms * 1000u) {
			ktap_diag("ch%d: no completion after %ld ms (count %u, waiting for %u)", c->n, c->timeout_ms, cnt, target);
			x100_dma_dump(c);
			return -1;
		}
	}
}

/* Queue one descriptor, making room (issue and reap) when the ring is full (mic_dma_avail_desc_ring_space()). */
static inline int x100_dma_put(struct x100_dma_chan *c, uint64_t qw0, uint64_t qw1)
{
	while (x100_dma_ring_used(c) >= c->nslots - 1) {
		x100_dma_issue(c);
		int r = x100_dma_poll(c, c->head, 1);
		if (r)
			return r;
	}
	volatile uint64_t *d = c->ring + 2 * c->head;
	d[0] = qw0;
	d[1] = qw1;
	c->head = (c->head + 1) % c->nslots;
	return 0;
}

/* mic_dma_memcpy_desc() */
static inline int x100_dma_memcpy(struct x100_dma_chan *c, uint64_t src, uint64_t dst, uint32_t len)
{
	return x100_dma_put(c, (src & X100_ADDR40) | ((uint64_t)(len >> 6) << X100_MEMCPY_LEN_SHIFT),
			    (X100_DESC_MEMCPY << X100_DESC_TYPE_SHIFT) | (dst & X100_ADDR40));
}

/* mic_dma_prep_status_desc() */
static inline int x100_dma_status(struct x100_dma_chan *c, uint64_t value, uint64_t dst, int intr)
{
	return x100_dma_put(c, value,
			    (X100_DESC_STATUS << X100_DESC_TYPE_SHIFT) | (dst & X100_ADDR40) | (intr ? X100_STAT_INTR : 0));
}

/* Issue and wait until everything queued completed; checks DSTAT count == DTPR == head. */
static inline int x100_dma_sync(struct x100_dma_chan *c)
{
	x100_dma_issue(c);
	int r = x100_dma_poll(c, c->head, 0);
	if (r == -2)
		ktap_diag("ch%d stopped with an error: DSTAT 0x%08x DCHERR 0x%08x", c->n, c->err_dstat,
			  x100_dma_rd(c, X100_DCHERR));
	if (r)
		return r;
	uint32_t dtpr = x100_dma_rd(c, X100_DTPR), st = x100_dma_rd(c, X100_DSTAT);
	if (dtpr != c->head || (st & X100_DSTAT_COUNT) != c->head || (st & X100_DSTAT_QUIESCE)) {
		ktap_diag("ch%d idle: DTPR %u, DSTAT 0x%08x, expected both at %u", c->n, dtpr, st, c->head);
		return -4;
	}
	return 0;
}

/*
 * MEMCPY descriptors between guest buffer b (bytes [off, off+len)) and
 * card address `card`, following b's physically contiguous runs, at most
 * `max` bytes each (mic_dma_prog_memcpy_desc()). to_card: b is the source.
 * Returns descriptors queued, or -1.
 */
static inline long x100_dma_copy(struct x100_dma_chan *c, const struct gm_buf *b, size_t off, uint64_t card, size_t len,
				 int to_card, uint32_t max)
{
	long n = 0;
	for (int i = 0; i < b->nruns && len; i++) {
		const struct gm_run *r = &b->runs[i];
		if (off >= r->off + r->len)
			continue;
		size_t in = off - r->off, avail = r->len - in;
		while (avail && len) {
			uint32_t chunk = (uint32_t)(avail < len ? avail : len);
			if (chunk > max)
				chunk = max;
			uint64_t host = X100_SYS_WINDOW + r->pa + in;
			if (x100_dma_memcpy(c, to_card ? host : card, to_card ? card : host, chunk))
				return -1;
			n++;
			in += chunk, avail -= chunk, off += chunk, len -= chunk, card += chunk;
		}
	}
	return len ? -1 : n;
}

#endif
