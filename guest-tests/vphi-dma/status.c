#include "vphi-dma.h"

/*
 * vphi-dma status: STATUS descriptors with and without the interrupt flag
 * (mic_dma_prep_status_desc(), mic_dma_prog_intr()): the value lands, SICR0
 * bit 8+ch is set only with the flag and with DCAR IM1 clear.
 */

static struct x100_dma_chan stat_ch;
static int stat_chan = 2;
static struct gm_buf stat_buf, stat_data;

static int t_status_setup(void)
{
	x100_smpt_identity(bar4);
	if (chan_alloc(&stat_ch, stat_chan, (uint32_t)o.ring_slots) || gm_alloc(&stat_buf, GM_PAGE, GM_SMALL) ||
	    gm_alloc(&stat_data, 64 * KiB, GM_SMALL))
		return 0;
	return x100_dma_chan_setup(&stat_ch);
}

static volatile uint64_t *stat_slot(int i) { return (volatile uint64_t *)stat_buf.va + i; }

/* W1C the channel's SICR0 bit and check it reads 0. */
static int sicr_clear(int ch)
{
	wr(X100_SICR0, X100_SICR0_DMA(ch));
	uint32_t v = rd(X100_SICR0);
	if (v & X100_SICR0_DMA(ch)) {
		ktap_diag("SICR0 0x%08x: bit %d still set after writing 1 to clear it", v, 8 + ch);
		return 0;
	}
	return 1;
}

/* One STATUS descriptor to guest memory; checks the value and SICR0 bit 8+ch against want_irq. */
static int status_one(int slot, int intr, int masked, int want_irq)
{
	struct x100_dma_chan *c = &stat_ch;
	if (!c->ready || !sicr_clear(c->n))
		return 0;
	uint64_t value = ((uint64_t)new_seed() << 32) | new_seed();
	*stat_slot(slot) = ~value;
	if (masked)
		x100_dma_wr(c, X100_DCAR, x100_dma_rd(c, X100_DCAR) | X100_DCAR_IM1);
	__sync_synchronize();
	uint32_t start = c->head;
	int ok = x100_dma_status(c, value, x100_sys_addr(&stat_buf, (size_t)slot * 8), intr) == 0 && x100_dma_sync(c) == 0;
	uint32_t sicr = rd(X100_SICR0), dcar = x100_dma_rd(c, X100_DCAR);
	if (masked) {
		x100_dma_wr(c, X100_DCAR, dcar & ~X100_DCAR_IM1);
		if (rd(X100_SICR0) & X100_SICR0_DMA(c->n)) {
			ktap_diag("SICR0 bit %d is set after the masked STATUS (read after unmasking again)", 8 + c->n);
			ok = 0;
		}
	}
	uint64_t got = *stat_slot(slot);
	ktap_diag("STATUS 0x%016" PRIx64 "%s, DCAR 0x%08x: count %u -> %u, value read back 0x%016" PRIx64 ", SICR0 0x%08x",
		  value, intr ? " with bit 59" : "", dcar, start, c->tail, got, sicr);
	if (got != value) {
		ktap_diag("the status value did not land");
		ok = 0;
	}
	if (!!(sicr & X100_SICR0_DMA(c->n)) != want_irq) {
		ktap_diag("SICR0 bit %d is %d, expected %d", 8 + c->n, !!(sicr & X100_SICR0_DMA(c->n)), want_irq);
		ok = 0;
	}
	if (want_irq)
		ok = sicr_clear(c->n) && ok;
	return ok;
}

static int t_status_plain(void) { return status_one(0, 0, 0, 0); }
static int t_status_intr(void) { return status_one(1, 1, 0, 1); }
static int t_status_masked(void) { return status_one(2, 1, 1, 0); }

static int t_status_card(void)
{
	struct x100_dma_chan *c = &stat_ch;
	if (!c->ready)
		return 0;
	uint64_t value = ((uint64_t)new_seed() << 32) | new_seed();
	uint64_t addr = G(G_STATUS) + 0x40;
	volatile uint64_t *p = (volatile uint64_t *)(gddr + addr);
	*p = ~value;
	__sync_synchronize();
	int ok = x100_dma_status(c, value, addr, 0) == 0 && x100_dma_sync(c) == 0;
	uint64_t got = *p;
	ktap_diag("STATUS 0x%016" PRIx64 " -> card 0x%" PRIx64 ": read back 0x%016" PRIx64, value, addr, got);
	if (ok && got == value)
		ktap_diag("gddr-u64 0x%" PRIx64 " 0x%016" PRIx64, addr, value);
	return ok && got == value;
}

/*
 * What mic_dma_prep_memcpy_lock(..., DMA_PREP_INTERRUPT) queues: the
 * memcpy, then STATUS(0) without and STATUS(0) with the interrupt flag to
 * the channel's status_dest (mic_dma_prog_intr()).
 */
static int t_status_linux(void)
{
	struct x100_dma_chan *c = &stat_ch;
	if (!c->ready || !sicr_clear(c->n))
		return 0;
	uint32_t seed = new_seed();
	pattern_fill(seed, gddr + G(G_STATUS) + 0x1000, 64 * KiB);
	memset(stat_data.va, 0, 64 * KiB);
	*stat_slot(8) = ~0ull;
	__sync_synchronize();
	uint32_t start = c->head;
	long n = x100_dma_copy(c, &stat_data, 0, G(G_STATUS) + 0x1000, 64 * KiB, 0, X100_MAX_XFER_HOST);
	int ok = n > 0 && x100_dma_status(c, 0, x100_sys_addr(&stat_buf, 64), 0) == 0 &&
		 x100_dma_status(c, 0, x100_sys_addr(&stat_buf, 64), 1) == 0 && x100_dma_sync(c) == 0;
	uint32_t sicr = rd(X100_SICR0);
	uint32_t expect = (uint32_t)((start + n + 2) % c->nslots);
	ktap_diag("%ld memcpy + 2 STATUS: count %u -> %u (expected %u), status_dest 0x%016" PRIx64 ", SICR0 0x%08x", n,
		  start, c->tail, expect, *stat_slot(8), sicr);
	ok = ok && c->tail == expect && *stat_slot(8) == 0 && (sicr & X100_SICR0_DMA(c->n));
	ok = !check_pattern(stat_data.va, 64 * KiB, seed, "memcpy before the status pair") && ok;
	return sicr_clear(c->n) && ok;
}

static void status_teardown(void)
{
	gm_free(&stat_buf);
	gm_free(&stat_data);
	x100_dma_chan_free(&stat_ch);
}

static const struct dma_test tests[] = {
	{ "status-setup", t_status_setup },
	{ "status-no-interrupt", t_status_plain },
	{ "status-interrupt", t_status_intr },
	{ "status-interrupt-masked", t_status_masked },
	{ "status-to-card-memory", t_status_card },
	{ "status-linux-interrupt-pair", t_status_linux },
	{ 0 },
};

const struct dma_group group_status = { GR_STATUS, 1, 0, tests, status_teardown, &stat_chan };
