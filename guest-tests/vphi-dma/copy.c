#include "vphi-dma.h"

/*
 * vphi-dma copy: guest RAM -> card memory, card memory -> guest RAM,
 * card <-> card, 64 B .. 4 MiB, from 2 MiB huge pages (when there are any)
 * and from ordinary 4 KiB pages, as mic_dma_prep_memcpy_lock() queues them.
 */

static struct x100_dma_chan copy_ch;
static struct gm_buf hbuf_src, hbuf_dst; /* huge pages when possible */
static struct gm_buf sbuf;		      /* always 4 KiB pages */
static int copy_chan = 0;

static int copy_setup(void)
{
	x100_smpt_identity(bar4);
	int ok = chan_alloc(&copy_ch, copy_chan, (uint32_t)o.ring_slots) == 0 && x100_dma_chan_setup(&copy_ch);
	if (ok && (gm_alloc(&hbuf_src, 4 * MiB, GM_HUGE_PREF) || gm_alloc(&hbuf_dst, 4 * MiB + GUARD, GM_HUGE_PREF)))
		ok = 0;
	if (ok)
		ktap_diag("guest buffers: source in %s (%d runs), destination in %s (%d runs)", gm_kind(&hbuf_src),
			  hbuf_src.nruns, gm_kind(&hbuf_dst), hbuf_dst.nruns);
	copy_ch.ready = ok;
	return ok;
}

static const size_t copy_sizes[] = { 64, 4096, 65536, 1 * MiB, 4 * MiB };
#define NSIZES (sizeof(copy_sizes) / sizeof(copy_sizes[0]))

/* Destination offset of size index k inside an 8 MiB area: the sizes laid end to end, 64-byte aligned. */
static uint32_t area_off(int k)
{
	uint32_t off = 0;
	for (int i = 0; i < k; i++)
		off += (uint32_t)((copy_sizes[i] + GUARD + 4095) & ~4095u);
	return off;
}

static int t_copy_setup(void) { return copy_setup(); }
#define COPY_FN(nm, d, k)                                                                                      \
	static int nm(void)                                                                                    \
	{                                                                                                      \
		return do_copy(&copy_ch, d, copy_sizes[k], &hbuf_src, &hbuf_dst, G_C2H,                        \
			       (d) == H2C ? G_H2C + area_off(k) : (d) == C2C ? G_C2C + area_off(k) : 0, X100_MAX_XFER_HOST); \
	}
COPY_FN(t_h2c_0, H2C, 0)
COPY_FN(t_h2c_1, H2C, 1)
COPY_FN(t_h2c_2, H2C, 2)
COPY_FN(t_h2c_3, H2C, 3)
COPY_FN(t_h2c_4, H2C, 4)
COPY_FN(t_c2h_0, C2H, 0)
COPY_FN(t_c2h_1, C2H, 1)
COPY_FN(t_c2h_2, C2H, 2)
COPY_FN(t_c2h_3, C2H, 3)
COPY_FN(t_c2h_4, C2H, 4)
COPY_FN(t_c2c_0, C2C, 0)
COPY_FN(t_c2c_1, C2C, 1)
COPY_FN(t_c2c_2, C2C, 2)
COPY_FN(t_c2c_3, C2C, 3)
COPY_FN(t_c2c_4, C2C, 4)

/* The fallback path: a buffer of ordinary pages, descriptors per physically contiguous run. */
static int small_pages_buf(void)
{
	if (sbuf.va)
		return 0;
	if (gm_alloc(&sbuf, 4 * MiB + GUARD, GM_SCATTER))
		return -1;
	ktap_diag("4 KiB-page buffer, pages interleaved: %d physically contiguous runs", sbuf.nruns);
	return 0;
}

static int t_h2c_small(void)
{
	if (small_pages_buf())
		return 0;
	return do_copy(&copy_ch, H2C, 4 * MiB, &sbuf, NULL, 0, G_SMALL, X100_MAX_XFER_HOST);
}

static int t_c2h_small(void)
{
	if (small_pages_buf())
		return 0;
	return do_copy(&copy_ch, C2H, 4 * MiB, NULL, &sbuf, G_C2H, 0, X100_MAX_XFER_HOST);
}

/* Several copies in one DHPR write, mixed directions. */
static int t_copy_batch(void)
{
	struct x100_dma_chan *c = &copy_ch;
	if (!c->ready)
		return 0;
	uint32_t s1 = new_seed(), s2 = new_seed(), s3 = new_seed();
	const size_t len = 256 * KiB;
	pattern_fill(s1, hbuf_src.va, len);
	pattern_fill(s2, gddr + G(G_C2H), len);
	pattern_fill(s3, gddr + G(G_C2H) + len, len);
	memset(hbuf_dst.va, 0, len);
	memset(gddr + G(G_OTHER), 0, 2 * len);
	__sync_synchronize();
	uint32_t start = c->head;
	long n1 = x100_dma_copy(c, &hbuf_src, 0, G(G_OTHER), len, 1, 64 * KiB);
	long n2 = x100_dma_copy(c, &hbuf_dst, 0, G(G_C2H), len, 0, 64 * KiB);
	long n3 = x100_dma_memcpy(c, G(G_C2H) + len, G(G_OTHER) + len, (uint32_t)len) ? -1 : 1;
	if (n1 < 0 || n2 < 0 || n3 < 0 || x100_dma_sync(c))
		return 0;
	uint32_t expect = (uint32_t)((start + n1 + n2 + n3) % c->nslots);
	size_t bad = check_pattern(gddr + G(G_OTHER), len, s1, "batch host->card") +
		     check_pattern(hbuf_dst.va, len, s2, "batch card->host") +
		     check_pattern(gddr + G(G_OTHER) + len, len, s3, "batch card->card");
	ktap_diag("one batch of %ld descriptors (64 KiB each): count %u -> %u, expected %u", n1 + n2 + n3, start, c->tail,
		  expect);
	return !bad && c->tail == expect;
}

static void copy_teardown(void)
{
	gm_free(&hbuf_src);
	gm_free(&hbuf_dst);
	gm_free(&sbuf);
	x100_dma_chan_free(&copy_ch);
}

static const struct dma_test tests[] = {
	{ "copy-setup", t_copy_setup },
	{ "host-to-card-64B", t_h2c_0 },
	{ "host-to-card-4KiB", t_h2c_1 },
	{ "host-to-card-64KiB", t_h2c_2 },
	{ "host-to-card-1MiB", t_h2c_3 },
	{ "host-to-card-4MiB", t_h2c_4 },
	{ "card-to-host-64B", t_c2h_0 },
	{ "card-to-host-4KiB", t_c2h_1 },
	{ "card-to-host-64KiB", t_c2h_2 },
	{ "card-to-host-1MiB", t_c2h_3 },
	{ "card-to-host-4MiB", t_c2h_4 },
	{ "card-to-card-64B", t_c2c_0 },
	{ "card-to-card-4KiB", t_c2c_1 },
	{ "card-to-card-64KiB", t_c2c_2 },
	{ "card-to-card-1MiB", t_c2c_3 },
	{ "card-to-card-4MiB", t_c2c_4 },
	{ "host-to-card-4MiB-small-pages", t_h2c_small },
	{ "card-to-host-4MiB-small-pages", t_c2h_small },
	{ "copy-batch-mixed", t_copy_batch },
	{ 0 },
};

const struct dma_group group_copy = { GR_COPY, 1, 0, tests, copy_teardown, &copy_chan };
