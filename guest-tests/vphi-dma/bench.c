#include "vphi-dma.h"

/*
 * vphi-dma bench: MB/s of guest->card and card->guest copies with 512 KiB
 * (MIC_DMA_MAX_XFER_SIZE_HOST) and 1 MiB - 64 (the length field's maximum)
 * descriptors: "# bench host->card 1MiB-desc: NNN MB/s".
 */

static struct x100_dma_chan bench_ch;
static struct gm_buf bench_buf;
static int bench_chan = 0;
#define BENCH_BUF (8 * MiB)

static int t_bench_setup(void)
{
	x100_smpt_identity(bar4);
	uint32_t slots = o.ring_slots < 256 ? 256 : (uint32_t)o.ring_slots;
	if (chan_alloc(&bench_ch, bench_chan, slots) || gm_alloc(&bench_buf, BENCH_BUF, GM_HUGE_PREF))
		return 0;
	ktap_diag("bench buffer: %u MiB in %s, %d physically contiguous runs; %ld MiB per measurement", BENCH_BUF / MiB,
		  gm_kind(&bench_buf), bench_buf.nruns, o.bench_mib);
	if (!x100_dma_chan_setup(&bench_ch))
		return 0;
	/* Warm up: both buffers touched by the engine once (first-touch page faults are not the engine's speed). */
	memset(gddr + G(G_BENCH), 0, BENCH_BUF);
	return x100_dma_copy(&bench_ch, &bench_buf, 0, G(G_BENCH), BENCH_BUF, 1, X100_MAX_XFER_HOST) > 0 &&
	       x100_dma_copy(&bench_ch, &bench_buf, 0, G(G_BENCH), BENCH_BUF, 0, X100_MAX_XFER_HOST) > 0 &&
	       x100_dma_sync(&bench_ch) == 0;
}

static int bench(int to_card, uint32_t desc, const char *label)
{
	struct x100_dma_chan *c = &bench_ch;
	if (!c->ready)
		return 0;
	uint32_t seed = new_seed();
	if (to_card)
		pattern_fill(seed, bench_buf.va, BENCH_BUF);
	else
		pattern_fill(seed, gddr + G(G_BENCH), BENCH_BUF);
	__sync_synchronize();
	size_t total = (size_t)o.bench_mib * MiB, done = 0;
	long descs = 0;
	long polls0 = c->polls;
	uint64_t t0 = vg_now_us();
	while (done < total) {
		size_t len = total - done < BENCH_BUF ? total - done : BENCH_BUF;
		long n = x100_dma_copy(c, &bench_buf, 0, G(G_BENCH), len, to_card, desc);
		if (n < 0)
			return 0;
		descs += n;
		done += len;
		x100_dma_issue(c); /* keep the engine busy while the next lap is queued */
	}
	if (x100_dma_sync(c))
		return 0;
	uint64_t us = vg_now_us() - t0;
	size_t bad = to_card ? check_pattern(gddr + G(G_BENCH), total < BENCH_BUF ? total : BENCH_BUF, seed, "bench card")
			     : check_pattern(bench_buf.va, total < BENCH_BUF ? total : BENCH_BUF, seed, "bench guest");
	ktap_diag("bench %s %s: %.0f MB/s", to_card ? "host->card" : "card->host", label,
		  us ? (double)total / (double)us : 0.0);
	ktap_diag("  %zu bytes in %ld descriptors of <= %u bytes, %" PRIu64 " us, %ld DSTAT polls", total, descs, desc, us,
		  c->polls - polls0);
	return !bad;
}

static int t_bench_h2c_512(void) { return bench(1, X100_MAX_XFER_HOST, "512KiB-desc"); }
static int t_bench_h2c_1m(void) { return bench(1, X100_MAX_XFER_CARD, "1MiB-desc"); }
static int t_bench_c2h_512(void) { return bench(0, X100_MAX_XFER_HOST, "512KiB-desc"); }
static int t_bench_c2h_1m(void) { return bench(0, X100_MAX_XFER_CARD, "1MiB-desc"); }

static void bench_teardown(void)
{
	gm_free(&bench_buf);
	x100_dma_chan_free(&bench_ch);
}

static const struct dma_test tests[] = {
	{ "bench-setup", t_bench_setup },
	{ "bench-host-to-card-512KiB", t_bench_h2c_512 },
	{ "bench-host-to-card-1MiB", t_bench_h2c_1m },
	{ "bench-card-to-host-512KiB", t_bench_c2h_512 },
	{ "bench-card-to-host-1MiB", t_bench_c2h_1m },
	{ 0 },
};

const struct dma_group group_bench = { GR_BENCH, 1, 1, tests, bench_teardown, &bench_chan };
