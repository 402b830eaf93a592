#include "vphi-dma.h"

/*
 * vphi-dma errors: bad descriptors stop the channel (DCHERR != 0, DSTAT bit
 * 29, the count at the failing descriptor) as mic_dma_check_chan() expects;
 * other channels keep working; a card reset (mic_x100_hw_reset()) clears it.
 */

/* qw0 length field of a 4 KiB MEMCPY (mic_dma_memcpy_desc()) */
#define MEMCPY_4K ((uint64_t)(4096 >> 6) << X100_MEMCPY_LEN_SHIFT)

static struct x100_dma_chan err_ch, oth_ch;
static int err_chan = 3;
static struct gm_buf err_buf;

/*
 * Queue: a good memcpy (guest -> card A), a good STATUS to guest memory,
 * then the bad descriptor, then a memcpy (guest -> card B) and a STATUS
 * that must never execute. Expect: the channel stops with DCHERR != 0 and
 * DSTAT bit 29, the count at the bad descriptor, B and the second status
 * untouched; and it stays that way.
 */
static int error_case(const char *what, uint64_t bad_qw0, uint64_t bad_qw1)
{
	struct x100_dma_chan *c = &err_ch;
	if (!c->ready) {
		ktap_diag("channel %d is not set up", c->n);
		return 0;
	}
	uint32_t seed = new_seed();
	uint8_t *a = gddr + G(G_ERR), *b = gddr + G(G_ERR) + 64 * KiB;
	volatile uint64_t *st = (volatile uint64_t *)(err_buf.va + 8 * KiB);
	pattern_fill(seed, err_buf.va, 4 * KiB);
	memset(a, 0xEE, 4 * KiB);
	memset(b, 0xEE, 4 * KiB);
	st[0] = st[1] = 0;
	__sync_synchronize();
	uint32_t start = c->head;
	uint32_t bad_at = (start + 2) % c->nslots;
	int ok = x100_dma_memcpy(c, x100_sys_addr(&err_buf, 0), G(G_ERR), 4 * KiB) == 0 &&
		 x100_dma_status(c, 0x600D, x100_sys_addr(&err_buf, 8 * KiB), 0) == 0 && x100_dma_put(c, bad_qw0, bad_qw1) == 0 &&
		 x100_dma_memcpy(c, x100_sys_addr(&err_buf, 0), G(G_ERR) + 64 * KiB, 4 * KiB) == 0 &&
		 x100_dma_status(c, 0xBAD, x100_sys_addr(&err_buf, 8 * KiB + 8), 0) == 0;
	if (!ok)
		return 0;
	x100_dma_issue(c);
	int r = x100_dma_poll(c, c->head, 0);
	vg_sleep_ms(50); /* and it does not move on */
	uint32_t dstat = x100_dma_rd(c, X100_DSTAT), dtpr = x100_dma_rd(c, X100_DTPR);
	uint32_t dcherr = x100_dma_rd(c, X100_DCHERR), sicr = rd(X100_SICR0);
	ktap_diag("%s at ring index %u (qw0 0x%016" PRIx64 ", qw1 0x%016" PRIx64 "): DSTAT 0x%08x, DTPR %u, DCHERR 0x%08x, "
		  "SICR0 0x%08x",
		  what, bad_at, bad_qw0, bad_qw1, dstat, dtpr, dcherr, sicr);
	ktap_diag("dma-error ch%d index %u dcherr 0x%x", c->n, bad_at, dcherr);
	if (r != -2) {
		ktap_diag("the channel did not stop with DSTAT bit 29 (poll result %d)", r);
		ok = 0;
	}
	if (!dcherr) {
		ktap_diag("DCHERR is 0");
		ok = 0;
	}
	if (!(dstat & X100_DSTAT_QUIESCE)) {
		ktap_diag("DSTAT bit 29 is clear");
		ok = 0;
	}
	if ((dstat & X100_DSTAT_COUNT) != bad_at || dtpr != bad_at) {
		ktap_diag("count %u / DTPR %u: expected both to stop at the failing descriptor %u", dstat & X100_DSTAT_COUNT, dtpr,
			  bad_at);
		ok = 0;
	}
	if (check_pattern(a, 4 * KiB, seed, "memcpy before the bad descriptor") || st[0] != 0x600D) {
		ktap_diag("the descriptors before the bad one did not complete (status 0x%" PRIx64 ")", st[0]);
		ok = 0;
	}
	if (check_fill(b, 4 * KiB, 0xEE, "memcpy after the bad descriptor") || st[1] != 0) {
		ktap_diag("descriptors after the bad one executed (status 0x%" PRIx64 ")", st[1]);
		ok = 0;
	}
	if (!(sicr & X100_SICR0_ERR))
		ktap_diag("note: SICR0 bit 30 (SBOX error source) is not set");
	return ok;
}

/* A clean channel for the next error case: reset the card if the channel is stopped. */
static int error_prepare(void)
{
	struct x100_dma_chan *c = &err_ch;
	if (!c->ring && chan_alloc(c, err_chan, (uint32_t)o.ring_slots))
		return 0;
	if (!err_buf.va && gm_alloc(&err_buf, 16 * KiB, GM_SMALL))
		return 0;
	if ((x100_dma_rd(c, X100_DCHERR) || (x100_dma_rd(c, X100_DSTAT) & X100_DSTAT_QUIESCE)) && card_reset())
		return 0;
	x100_smpt_identity(bar4);
	return x100_dma_chan_setup(c);
}

static int t_err_type(void)
{
	if (!error_prepare())
		return 0;
	return error_case("descriptor type 7", 0, 7ull << X100_DESC_TYPE_SHIFT);
}

/* While one channel is stopped, another one copies; the stopped one stays stopped. */
static int other_channel(void)
{
	struct x100_dma_chan *c = &oth_ch;
	int ch = (err_ch.n + 1) % 4;
	if (!c->ring && chan_alloc(c, ch, (uint32_t)o.ring_slots))
		return 0;
	uint32_t e0 = x100_dma_rd(&err_ch, X100_DCHERR), s0 = x100_dma_rd(&err_ch, X100_DSTAT);
	if (!x100_dma_chan_setup(c))
		return 0;
	struct gm_buf b;
	if (gm_alloc(&b, 64 * KiB + GUARD, GM_SMALL))
		return 0;
	static uint32_t calls;
	uint32_t dst = G_OTHER + 0x100000u * (1 + calls++ % 3); /* a fresh area per call: its gddr-check stays valid */
	int ok = do_copy(c, H2C, 64 * KiB, &b, NULL, 0, dst, X100_MAX_XFER_HOST);
	ok = do_copy(c, C2H, 64 * KiB, NULL, &b, G_C2H, 0, X100_MAX_XFER_HOST) && ok;
	gm_free(&b);
	uint32_t e1 = x100_dma_rd(&err_ch, X100_DCHERR), s1 = x100_dma_rd(&err_ch, X100_DSTAT);
	ktap_diag("stopped ch%d meanwhile: DCHERR 0x%x -> 0x%x, DSTAT 0x%08x -> 0x%08x", err_ch.n, e0, e1, s0, s1);
	if (e1 != e0 || s1 != s0) {
		ktap_diag("the stopped channel changed");
		ok = 0;
	}
	return ok;
}

static int t_err_other(void) { return other_channel(); }

static int t_err_reset(void)
{
	struct x100_dma_chan *c = &err_ch;
	if (!c->ring)
		return 0;
	uint32_t e0 = x100_dma_rd(c, X100_DCHERR), s0 = x100_dma_rd(c, X100_DSTAT);
	if (!e0) {
		ktap_diag("ch%d has no error to clear", c->n);
		return 0;
	}
	if (card_reset())
		return 0;
	uint32_t e1 = x100_dma_rd(c, X100_DCHERR), s1 = x100_dma_rd(c, X100_DSTAT), t1 = x100_dma_rd(c, X100_DTPR);
	ktap_diag("ch%d: DCHERR 0x%x -> 0x%x, DSTAT 0x%08x -> 0x%08x, DTPR %u", c->n, e0, e1, s0, s1, t1);
	int ok = !e1 && !(s1 & X100_DSTAT_QUIESCE);
	/* and the channel works again */
	ok = x100_dma_chan_setup(c) && ok;
	if (ok) {
		struct gm_buf b;
		if (gm_alloc(&b, 4 * KiB + GUARD, GM_SMALL))
			return 0;
		ok = do_copy(c, H2C, 4 * KiB, &b, NULL, 0, G_ERR + 0x20000u, X100_MAX_XFER_HOST);
		gm_free(&b);
	}
	return ok;
}

static int t_err_src_gddr(void)
{
	if (!error_prepare())
		return 0;
	uint64_t src = gddr_size; /* the first byte past card memory */
	ktap_diag("memcpy source 0x%" PRIx64 ": just past the %llu MiB of card memory", src, gddr_size >> 20);
	return error_case("memcpy from outside card memory", (src & X100_ADDR40) | MEMCPY_4K,
			  (X100_DESC_MEMCPY << X100_DESC_TYPE_SHIFT) | G(G_ERR + 0x40000u));
}

/* 256 GiB: inside the SMPT window (identity), far above any guest RAM. */
#define UNMAPPED_PA 0x4000000000ull

static int t_err_src_guest(void)
{
	if (!error_prepare())
		return 0;
	uint64_t src = X100_SYS_WINDOW + UNMAPPED_PA;
	return error_case("memcpy from unmapped guest memory", (src & X100_ADDR40) | MEMCPY_4K,
			  (X100_DESC_MEMCPY << X100_DESC_TYPE_SHIFT) | G(G_ERR + 0x40000u));
}

static int t_err_dst_guest(void)
{
	if (!error_prepare())
		return 0;
	uint64_t dst = X100_SYS_WINDOW + UNMAPPED_PA;
	return error_case("memcpy to unmapped guest memory", G(G_ERR + 0x40000u) | MEMCPY_4K,
			  (X100_DESC_MEMCPY << X100_DESC_TYPE_SHIFT) | (dst & X100_ADDR40));
}

static void errors_teardown(void)
{
	/* The last error stays in place for the host to look at. */
	gm_free(&err_buf);
	x100_dma_chan_free(&err_ch);
	x100_dma_chan_free(&oth_ch);
}

static const struct dma_test tests[] = {
	{ "error-bad-type", t_err_type },
	{ "error-other-channel-works", t_err_other },
	{ "error-cleared-by-card-reset", t_err_reset },
	{ "error-src-outside-card-memory", t_err_src_gddr },
	{ "error-src-unmapped-guest", t_err_src_guest },
	{ "error-dst-unmapped-guest", t_err_dst_guest },
	{ "error-other-channel-after-errors", t_err_other },
	{ 0 },
};

const struct dma_group group_errors = { GR_ERRORS, 1, 1, tests, errors_teardown, &err_chan };
