/* vphi-dma: what several test groups use (declared in vphi-dma.h). */
#include "vphi-dma.h"

int chan_alloc(struct x100_dma_chan *c, int n, uint32_t nslots)
{
	int r = x100_dma_chan_alloc(c, bar4, n, nslots);
	c->timeout_ms = o.timeout_ms;
	return r;
}

uint32_t new_seed(void)
{
	static uint32_t counter;
	uint32_t s = pattern_next((uint32_t)vg_now_us() ^ ((uint32_t)getpid() << 16) ^ (++counter * 0x9E3779B1u));
	return s ? s : 1;
}

size_t check_pattern(const void *p, size_t len, uint32_t seed, const char *what)
{
	const uint8_t *b = p;
	size_t bad = 0, words = (len + 3) / 4;
	uint32_t s = seed;
	for (size_t i = 0; i < words; i++) {
		s = pattern_next(s);
		size_t n = len - 4 * i < 4 ? len - 4 * i : 4;
		uint32_t got = 0, want = n == 4 ? s : s & ((1u << (8 * n)) - 1);
		memcpy(&got, b + 4 * i, n);
		if (got != want && bad++ < 4)
			ktap_diag("%s: word at +0x%zx is 0x%08x, expected 0x%08x", what, i * 4, got, want);
	}
	if (bad)
		ktap_diag("%s: %zu of %zu words differ", what, bad, words);
	return bad;
}

size_t check_fill(const void *p, size_t len, uint8_t v, const char *what)
{
	const uint8_t *b = p;
	size_t bad = 0;
	for (size_t i = 0; i < len; i++) {
		if (b[i] != v && bad++ < 4)
			ktap_diag("%s: byte at +0x%zx is 0x%02x, expected it untouched (0x%02x)", what, i, b[i], v);
	}
	return bad;
}

int card_reset(void)
{
	wr(X100_SPAD(X100_SPAD_DOWNLOAD_INFO), 0);
	wr(X100_RGCR, rd(X100_RGCR) | X100_RGCR_RESET);
	unsigned long long t0 = vg_now_us();
	while (!(rd(X100_SPAD(X100_SPAD_DOWNLOAD_INFO)) & X100_SPAD2_DOWNLOAD_STATUS)) {
		if (vg_now_us() - t0 > 5000000u) {
			ktap_diag("card reset: SPAD2 bit 0 not set after 5 s (SPAD2 0x%08x)", rd(X100_SPAD(X100_SPAD_DOWNLOAD_INFO)));
			return -1;
		}
		vg_sleep_ms(5);
	}
	ktap_diag("card reset: ready after %llu ms (SPAD2 0x%08x)", (vg_now_us() - t0) / 1000,
		  rd(X100_SPAD(X100_SPAD_DOWNLOAD_INFO)));
	x100_smpt_identity(bar4);
	return 0;
}

int do_copy(struct x100_dma_chan *c, enum dir d, size_t len, struct gm_buf *hsrc, struct gm_buf *hdst, uint32_t card_src,
	    uint32_t card_dst, uint32_t max)
{
	if (!c->ready) {
		ktap_diag("channel %d is not set up", c->n);
		return 0;
	}
	uint32_t seed = new_seed();
	uint8_t *gsrc = gddr + G(card_src), *gdst = gddr + G(card_dst);
	const char *what = d == H2C ? "host->card" : d == C2H ? "card->host" : "card->card";
	/* Source: the pattern; destination and guard: a known filler. */
	if (d == H2C) {
		pattern_fill(seed, hsrc->va, len);
		memset(gdst, 0xA5, len + GUARD);
	} else {
		pattern_fill(seed, gsrc, len);
		if (d == C2H)
			memset(hdst->va, 0x5A, len + GUARD);
		else
			memset(gdst, 0xA5, len + GUARD);
	}
	__sync_synchronize();
	uint32_t start = c->head;
	long polls0 = c->polls;
	unsigned long long t0 = vg_now_us();
	long n;
	if (d == H2C)
		n = x100_dma_copy(c, hsrc, 0, G(card_dst), len, 1, max);
	else if (d == C2H)
		n = x100_dma_copy(c, hdst, 0, G(card_src), len, 0, max);
	else {
		n = 0;
		for (size_t done = 0; done < len; n++) {
			uint32_t chunk = len - done > max ? max : (uint32_t)(len - done);
			if (x100_dma_memcpy(c, G(card_src) + done, G(card_dst) + done, chunk)) {
				n = -1;
				break;
			}
			done += chunk;
		}
	}
	int r = n < 0 ? -1 : x100_dma_sync(c);
	unsigned long long us = vg_now_us() - t0;
	uint32_t expect = (uint32_t)((start + (n < 0 ? 0 : n)) % c->nslots);
	int ok = r == 0;
	if (ok && c->tail != expect) {
		ktap_diag("completion count %u, expected %u (%u + %ld descriptors mod %u)", c->tail, expect, start, n, c->nslots);
		ok = 0;
	}
	size_t bad = 0;
	if (d == C2H) {
		bad += check_pattern(hdst->va, len, seed, "guest destination");
		bad += check_fill(hdst->va + len, GUARD, 0x5A, "guest guard");
	} else {
		bad += check_pattern(gdst, len, seed, "card destination");
		bad += check_fill(gdst + len, GUARD, 0xA5, "card guard");
	}
	ok = ok && !bad;
	int runs = d == H2C ? gm_runs_in(hsrc, 0, len) : d == C2H ? gm_runs_in(hdst, 0, len) : 1;
	ktap_diag("%s %zu bytes: %ld descriptors (%d runs), count %u -> %u, %ld polls, %llu us, seed 0x%08x", what, len, n,
		  runs, start, c->tail, c->polls - polls0, us, seed);
	if (ok && d != C2H)
		ktap_diag("gddr-check 0x%" PRIx64 " %zu 0x%08x", G(card_dst), len, seed);
	return ok;
}
