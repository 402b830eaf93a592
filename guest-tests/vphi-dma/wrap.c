#include "vphi-dma.h"

/*
 * vphi-dma wrap: a small ring (--ring-slots) and several laps of batches
 * through it: the completion count must wrap at the ring size, not at 2^17
 * (mic_dma_hw_ring_inc(), mic_dma_ring_count()).
 */

static struct x100_dma_chan wrap_ch;
static int wrap_chan = 1;
static struct gm_buf wrap_src, wrap_stat;
static uint32_t wrap_seed;
static long wrap_total, wrap_batches;
static int wrap_laps_ok;

static int t_wrap_setup(void)
{
	x100_smpt_identity(bar4);
	if (chan_alloc(&wrap_ch, wrap_chan, (uint32_t)o.ring_slots))
		return 0;
	if (gm_alloc(&wrap_src, 64 * KiB, GM_SMALL) || gm_alloc(&wrap_stat, GM_PAGE, GM_SMALL))
		return 0;
	return x100_dma_chan_setup(&wrap_ch);
}

/*
 * Batches of 1 .. N-1 descriptors (N-1 = the ring completely full) until
 * more than 5 laps went through the ring. Every descriptor but the last of a
 * batch copies 64 bytes guest -> card (slot k of the source to slot k of
 * the destination); the last one writes a STATUS value (batch number) to
 * guest memory. After each batch: DSTAT count == DTPR == expected index.
 */
static int t_wrap_laps(void)
{
	struct x100_dma_chan *c = &wrap_ch;
	if (!c->ready)
		return 0;
	const uint32_t N = c->nslots;
	const uint32_t sizes[] = { 1, 7, 13, N - 1, N / 2 - 1, N - 1, 2, N - 1, N - 3, N - 1, N / 3, N - 1, 5 };
	const int nb = sizeof(sizes) / sizeof(sizes[0]);
	const uint32_t max_slots = 64 * KiB / 64;
	wrap_seed = new_seed();
	pattern_fill(wrap_seed, wrap_src.va, 64 * KiB);
	memset(gddr + G(G_WRAP), 0, 64 * KiB);
	memset(wrap_stat.va, 0, GM_PAGE);
	__sync_synchronize();
	uint32_t start = c->head;
	long k = 0; /* memcpy slot */
	int ok = 1, wraps = 0;
	char counts[1024];
	size_t cl = 0;
	counts[0] = 0;
	for (int b = 0; b < nb && ok; b++) {
		uint32_t before = c->head;
		for (uint32_t i = 0; i + 1 < sizes[b]; i++, k++) {
			uint32_t slot = (uint32_t)(k % max_slots);
			if (x100_dma_memcpy(c, x100_sys_addr(&wrap_src, slot * 64u), G(G_WRAP) + slot * 64u, 64))
				ok = 0;
		}
		if (x100_dma_status(c, 0xB47C000000000000ull | (uint64_t)b, x100_sys_addr(&wrap_stat, (size_t)b * 8), 0))
			ok = 0;
		wrap_total += sizes[b];
		wrap_batches++;
		uint32_t expect = (uint32_t)((start + wrap_total) % N);
		if (!ok || x100_dma_sync(c)) {
			ok = 0;
			break;
		}
		if (c->tail != expect) {
			ktap_diag("batch %d (%u descriptors): count %u, expected %u", b, sizes[b], c->tail, expect);
			ok = 0;
		}
		if (c->tail < before)
			wraps++;
		if (cl < sizeof(counts) - 16)
			cl += snprintf(counts + cl, sizeof(counts) - cl, " %u", c->tail);
	}
	ktap_diag("ring of %u: %ld descriptors in %ld batches (%.1f laps), count wrapped %d times; counts:%s", N, wrap_total,
		  wrap_batches, (double)wrap_total / N, wraps, counts);
	if (ok && wrap_total < 5L * N) {
		ktap_diag("only %ld descriptors: fewer than 5 laps", wrap_total);
		ok = 0;
	}
	if (ok && wraps < 5) {
		ktap_diag("the count wrapped only %d times", wraps);
		ok = 0;
	}
	wrap_laps_ok = ok;
	return ok;
}

static int t_wrap_data(void)
{
	if (!wrap_laps_ok)
		return 0;
	long memcpys = wrap_total - wrap_batches;
	size_t bytes = (size_t)(memcpys < 1024 ? memcpys : 1024) * 64;
	size_t bad = check_pattern(gddr + G(G_WRAP), bytes, wrap_seed, "wrap destination");
	const volatile uint64_t *st = (const volatile uint64_t *)wrap_stat.va;
	for (long b = 0; b < wrap_batches; b++) {
		uint64_t want = 0xB47C000000000000ull | (uint64_t)b;
		if (st[b] != want && bad++ < 8)
			ktap_diag("status of batch %ld: 0x%016" PRIx64 ", expected 0x%016" PRIx64, b, st[b], want);
	}
	ktap_diag("%ld memcpy descriptors (%zu bytes) and %ld status values checked", memcpys, bytes, wrap_batches);
	if (!bad)
		ktap_diag("gddr-check 0x%" PRIx64 " %zu 0x%08x", G(G_WRAP), bytes, wrap_seed);
	return !bad;
}

static void wrap_teardown(void)
{
	gm_free(&wrap_src);
	gm_free(&wrap_stat);
	x100_dma_chan_free(&wrap_ch);
}

static const struct dma_test tests[] = {
	{ "wrap-setup", t_wrap_setup },
	{ "wrap-laps", t_wrap_laps },
	{ "wrap-data", t_wrap_data },
	{ 0 },
};

const struct dma_group group_wrap = { GR_WRAP, 1, 0, tests, wrap_teardown, &wrap_chan };
