/*
 * The subtests of vphi-scif-rma: each against the RMA agent on --node (1:
 * the card's, 0: `vphi-scif-rma serve`), data as pattern(seed) and checked
 * by CRC32 (the agent's CRC) or byte by byte (host memory).
 */
#include "vphi-scif-rma/rma.h"

#define RW (SCIF_PROT_READ | SCIF_PROT_WRITE)

const char *const xdir_name[X_NDIRS] = { "writeto", "readfrom", "vwriteto", "vreadfrom", "card-writeto", "card-readfrom" };

const char *flag_names(int flags)
{
	static char s[64];
	snprintf(s, sizeof(s), "%s%s%s%s%s", flags ? "" : "0", flags & SCIF_RMA_SYNC ? "SYNC " : "",
		 flags & SCIF_RMA_ORDERED ? "ORDERED " : "", flags & SCIF_RMA_USECPU ? "USECPU " : "",
		 flags & SCIF_RMA_USECACHE ? "USECACHE " : "");
	size_t n = strlen(s);
	if (n && s[n - 1] == ' ')
		s[n - 1] = 0;
	return s;
}

int pair_open(struct pair *p, size_t len)
{
	*p = (struct pair){ .fd = -1, .len = page_up(len) };
	p->fd = ep_dial(o.node, o.rma_port);
	if (p->fd < 0)
		return -1;
	p->hbuf = map_anon(p->len);
	p->vbuf = map_anon(p->len);
	uint64_t v = 0;
	if (!p->hbuf || !p->vbuf)
		goto fail;
	p->loff = rma_reg(p->fd, p->hbuf, p->len, 0, RW, 0);
	if (p->loff < 0) {
		ktap_diag("SCIF_REG %zu bytes: %s", p->len, strerror((int)-p->loff));
		goto fail;
	}
	if (agent_ok(p->fd, "pair", OP_REGISTER, 0, p->len, 0, RW, 0, &v))
		goto fail;
	p->roff = (int64_t)v;
	return 0;
fail:
	pair_close(p);
	return -1;
}

void pair_close(struct pair *p)
{
	if (p->fd >= 0)
		close(p->fd); /* unregisters both sides' windows (scif_close()) */
	unmap_anon(p->hbuf, p->len);
	unmap_anon(p->vbuf, p->len);
	p->fd = -1;
	p->hbuf = p->vbuf = NULL;
}

/* Mismatching bytes of buf[0, n) against pattern(seed) (first one reported unless quiet). */
static unsigned long count_pattern(uint32_t seed, const uint8_t *buf, size_t n, const char *what, int quiet)
{
	size_t at = pattern_mismatch(seed, buf, n);
	if (at == n)
		return 0;
	uint8_t *want = xmalloc(n);
	pattern_fill(seed, want, n);
	unsigned long bad = 0;
	for (size_t i = at; i < n; i++)
		bad += buf[i] != want[i];
	if (!quiet)
		ktap_diag("%s: %lu of %zu bytes wrong, the first at %zu: 0x%02x, expected 0x%02x", what, bad, n, at, buf[at],
			  want[at]);
	free(want);
	return bad;
}

/* Bytes of buf[0, n) other than v. */
static unsigned long count_not(const uint8_t *buf, size_t n, uint8_t v, const char *what, int quiet)
{
	unsigned long bad = 0;
	size_t first = n;
	for (size_t i = 0; i < n; i++)
		if (buf[i] != v) {
			bad++;
			if (first == n)
				first = i;
		}
	if (bad && !quiet)
		ktap_diag("%s: %lu of %zu bytes changed, the first at %zu", what, bad, n, first);
	return bad;
}

/* The agent's CRC of [off, off + n) against want: 1 if equal (0 bytes: 1). */
static int agent_crc_is(int fd, int64_t off, size_t n, uint32_t want, const char *what, int quiet)
{
	if (!n)
		return 1;
	uint64_t v = 0;
	if (agent_ok(fd, what, OP_CRC, 0, (uint64_t)off, n, 0, 0, &v))
		return 0;
	if ((uint32_t)v != want) {
		if (!quiet)
			ktap_diag("%s: CRC32 0x%08x of %zu bytes at 0x%llx, expected 0x%08x", what, (uint32_t)v, n,
				  (unsigned long long)off, want);
		return 0;
	}
	return 1;
}

/* The agent's window outside [coff, coff + n) still holds pattern(gseed, len). */
static int agent_guard_ok(struct pair *p, size_t coff, size_t n, uint32_t gseed, const char *what, int quiet)
{
	uint8_t *g = xmalloc(p->len);
	pattern_fill(gseed, g, p->len);
	char w[256];
	snprintf(w, sizeof(w), "%s: card bytes before the range", what);
	int ok = agent_crc_is(p->fd, p->roff, coff, crc32(g, coff), w, quiet);
	snprintf(w, sizeof(w), "%s: card bytes after the range", what);
	ok = agent_crc_is(p->fd, p->roff + (int64_t)(coff + n), p->len - coff - n, crc32(g + coff + n, p->len - coff - n), w,
			  quiet) && ok;
	free(g);
	return ok;
}

/* A fence on the agent's side: FENCE_MARK(INIT_SELF) + FENCE_WAIT. */
static int agent_fence(int fd, const char *what)
{
	uint64_t mark = 0;
	if (agent_ok(fd, what, OP_FENCE_MARK, SCIF_FENCE_INIT_SELF, 0, 0, 0, 0, &mark))
		return -1;
	return agent_ok(fd, what, OP_FENCE_WAIT, 0, mark, 0, 0, 0, NULL);
}

int xfer_check(struct pair *p, enum xdir dir, size_t hoff, size_t coff, size_t n, int flags, uint32_t seed, int guard,
	       int quiet, unsigned long *bad)
{
	char what[160];
	snprintf(what, sizeof(what), "%s %zu B, host +%zu, card +%zu, %s", xdir_name[dir], n, hoff, coff, flag_names(flags));
	uint32_t gseed = seed ^ 0x5a5a5a5au;
	int v = dir == X_VWRITETO || dir == X_VREADFROM;
	uint8_t *buf = v ? p->vbuf : p->hbuf, *at = buf + hoff;
	int64_t loff = p->loff + (int64_t)hoff, roff = p->roff + (int64_t)coff;
	int ok = 1, r = 0;
	unsigned long b = 0;
	switch (dir) {
	case X_WRITETO:
	case X_VWRITETO:
	case X_CARD_READFROM:
		/* host bytes -> card window */
		if (guard && agent_ok(p->fd, what, OP_FILL, 0, (uint64_t)p->roff, p->len, gseed, 0, NULL))
			return 0;
		pattern_fill(seed, at, n);
		if (dir == X_CARD_READFROM) {
			if (agent_ok(p->fd, what, OP_READFROM, (uint32_t)flags, (uint64_t)roff, n, (uint64_t)loff, 0, NULL) ||
			    (!(flags & SCIF_RMA_SYNC) && agent_fence(p->fd, what)))
				r = -1;
		} else {
			r = rma_copy(p->fd, v ? SCIF_VWRITETO : SCIF_WRITETO, v ? 0 : loff, n, roff, v ? at : NULL, flags);
			if (r)
				ktap_diag("%s: %s: %s", what, rma_cmd_name(v ? SCIF_VWRITETO : SCIF_WRITETO), strerror(-r));
			else if (!(flags & SCIF_RMA_SYNC))
				r = rma_fence(p->fd, SCIF_FENCE_INIT_SELF);
		}
		if (r) {
			ok = 0;
			b = 1;
			break;
		}
		if (!agent_crc_is(p->fd, roff, n, crc32(at, n), what, quiet))
			ok = 0, b++;
		if (guard && !agent_guard_ok(p, coff, n, gseed, what, quiet))
			ok = 0, b++;
		break;
	case X_READFROM:
	case X_VREADFROM:
	case X_CARD_WRITETO:
		/* card window -> host bytes */
		if (agent_ok(p->fd, what, OP_FILL, 0, (uint64_t)roff, n, seed, 0, NULL))
			return 0;
		if (guard)
			memset(buf, 0xa5, p->len);
		if (dir == X_CARD_WRITETO) {
			if (agent_ok(p->fd, what, OP_WRITETO, (uint32_t)flags, (uint64_t)roff, n, (uint64_t)loff, 0, NULL) ||
			    (!(flags & SCIF_RMA_SYNC) && agent_fence(p->fd, what)))
				r = -1;
		} else {
			r = rma_copy(p->fd, v ? SCIF_VREADFROM : SCIF_READFROM, v ? 0 : loff, n, roff, v ? at : NULL, flags);
			if (r)
				ktap_diag("%s: %s: %s", what, rma_cmd_name(v ? SCIF_VREADFROM : SCIF_READFROM), strerror(-r));
			else if (!(flags & SCIF_RMA_SYNC))
				r = rma_fence(p->fd, SCIF_FENCE_INIT_SELF);
		}
		if (r) {
			ok = 0;
			b = 1;
			break;
		}
		b += count_pattern(seed, at, n, what, quiet);
		if (guard) {
			char w[256];
			snprintf(w, sizeof(w), "%s: host bytes before the range", what);
			b += count_not(buf, hoff, 0xa5, w, quiet);
			snprintf(w, sizeof(w), "%s: host bytes after the range", what);
			b += count_not(at + n, p->len - hoff - n, 0xa5, w, quiet);
		}
		ok = !b;
		break;
	default:
		return 0;
	}
	if (bad)
		*bad += b;
	return ok;
}

/* ---------------------------------------------------------------- copy subtests */

struct xcase {
	size_t hoff, coff, n;
};

/* Every case in every direction of dirs (a bit mask of 1 << enum xdir) with each of the flag sets; guards on. */
static int run_cases(size_t winlen, const struct xcase *c, int nc, int dirs, const int *flagsets, int nf)
{
	struct pair p;
	int ok = pair_open(&p, winlen) == 0;
	uint32_t seed = (uint32_t)o.seed * 7919u;
	for (int d = 0; ok && d < X_NDIRS; d++) {
		if (!(dirs & (1 << d)))
			continue;
		for (int f = 0; f < nf; f++)
			for (int i = 0; i < nc; i++) {
				int k = xfer_check(&p, (enum xdir)d, c[i].hoff, c[i].coff, c[i].n, flagsets[f], ++seed, 1, 0, NULL);
				ok = k && ok;
			}
	}
	pair_close(&p);
	return ok;
}

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define HOST_DIRS ((1 << X_WRITETO) | (1 << X_READFROM))

/* Page-aligned offsets and sizes: the DMA path without head or tail (scif_rma_list_dma_copy_aligned()). */
static int t_aligned(void)
{
	static const struct xcase c[] = { { 0, 0, 4096 }, { 0, 0, 64 * KiB }, { 8192, 4096, 128 * KiB }, { 0, 0, 256 * KiB } };
	static const int f[] = { SCIF_RMA_SYNC, 0 };
	return run_cases(256 * KiB, c, N(c), HOST_DIRS, f, N(f));
}

/*
 * Same cache-line offset with a head and/or tail for the CPU, and different
 * offsets for the bounce buffer (scif_rma_list_dma_copy_unaligned()), one
 * longer than SCIF_MAX_UNALIGNED_BUF_SIZE (cut into 1 MiB chunks).
 */
static const struct xcase unaligned_cases[] = {
	{ 1, 1, 1 },	      { 5, 5, 1000 },	     { 64 + 17, 17, 4096 + 3 }, { 0, 0, 63 },	      { 3, 40, 10000 },
	{ 100, 1, 70000 },   { 4095, 7, 200000 },  { 0, 33, 64 },		  { 63, 0, 129 },      { 17, 5, MiB + 100 },
};

static int t_unaligned(void)
{
	static const int f[] = { SCIF_RMA_SYNC, 0 };
	return run_cases(MiB + 2 * PAGE, unaligned_cases, N(unaligned_cases), HOST_DIRS, f, N(f));
}

/* SCIF_RMA_ORDERED: the last bytes written after the rest (scif_ordered_memcpy_toio(), the fenced split). */
static int t_ordered(void)
{
	static const struct xcase c[] = { { 0, 0, 64 * KiB }, { 0, 0, 64 * KiB + 5 }, { 7, 7, 1000 }, { 3, 40, 5000 }, { 0, 0, 64 } };
	static const int f[] = { SCIF_RMA_ORDERED | SCIF_RMA_SYNC, SCIF_RMA_ORDERED };
	return run_cases(128 * KiB, c, N(c), HOST_DIRS, f, N(f));
}

/* SCIF_RMA_USECPU: scif_rma_list_cpu_copy() through BAR0. */
static int t_usecpu(void)
{
	static const struct xcase c[] = { { 0, 0, 64 * KiB }, { 5, 5, 1000 }, { 3, 40, 70000 }, { 4095, 1, 8193 } };
	static const int f[] = { SCIF_RMA_USECPU | SCIF_RMA_SYNC, SCIF_RMA_USECPU };
	return run_cases(128 * KiB, c, N(c), HOST_DIRS, f, N(f));
}

/* SCIF_VWRITETO/VREADFROM on unregistered memory: temporary windows (scif_register_temp()). */
static int t_vcopy(void)
{
	static const struct xcase c[] = { { 0, 0, 4096 }, { 100, 100, 5000 }, { 3, 70, 300000 }, { 4095, 0, 1 }, { 0, 0, 512 * KiB } };
	static const int f[] = { SCIF_RMA_SYNC, 0, SCIF_RMA_USECPU | SCIF_RMA_SYNC };
	return run_cases(512 * KiB, c, N(c), (1 << X_VWRITETO) | (1 << X_VREADFROM), f, N(f));
}

/* The agent's scif_writeto() from its window into the host's. */
static int t_card_writeto(void)
{
	static const struct xcase c[] = { { 0, 0, 64 * KiB }, { 5, 5, 1000 }, { 3, 40, 70000 }, { 0, 0, 1 } };
	static const int f[] = { SCIF_RMA_SYNC, 0, SCIF_RMA_USECPU | SCIF_RMA_SYNC, SCIF_RMA_ORDERED | SCIF_RMA_SYNC };
	return run_cases(128 * KiB, c, N(c), 1 << X_CARD_WRITETO, f, N(f));
}

static int t_card_readfrom(void)
{
	static const struct xcase c[] = { { 0, 0, 64 * KiB }, { 5, 5, 1000 }, { 3, 40, 70000 }, { 0, 0, 1 } };
	static const int f[] = { SCIF_RMA_SYNC, 0, SCIF_RMA_USECPU | SCIF_RMA_SYNC, SCIF_RMA_ORDERED | SCIF_RMA_SYNC };
	return run_cases(128 * KiB, c, N(c), 1 << X_CARD_READFROM, f, N(f));
}

/* ---------------------------------------------------------------- several windows */

/*
 * Three host windows (separate mappings, SCIF_MAP_FIXED at adjacent
 * offsets) and three agent windows with other boundaries; copies that
 * cross all of them (SCIF_WINDOW_PARTIAL walks, scif_query_window()).
 */
static int t_span(void)
{
	static const size_t hw[3] = { 64 * KiB, 128 * KiB, 64 * KiB }, cw[3] = { 96 * KiB, 64 * KiB, 96 * KiB };
	const size_t total = 256 * KiB;
	const int64_t hbase = 0x100000, cbase = 0x200000;
	int fd = ep_dial(o.node, o.rma_port), ok = fd >= 0;
	uint8_t *hm[3] = { 0 };
	int64_t hoffs[3];
	for (int i = 0, h = 0, c = 0; ok && i < 3; h += (int)hw[i], c += (int)cw[i], i++) {
		hm[i] = map_anon(hw[i]);
		if (!hm[i])
			ok = 0;
		else if ((hoffs[i] = rma_reg(fd, hm[i], hw[i], hbase + h, RW, SCIF_MAP_FIXED)) != hbase + h) {
			ktap_diag("SCIF_REG %zu bytes at 0x%llx (SCIF_MAP_FIXED): got %lld", hw[i], (unsigned long long)(hbase + h),
				  (long long)hoffs[i]);
			ok = 0;
		}
		uint64_t v = 0;
		if (ok && (agent_ok(fd, "span", OP_REGISTER, SCIF_MAP_FIXED, cw[i], (uint64_t)(cbase + c), RW, 0, &v) ||
			   (int64_t)v != cbase + c)) {
			ktap_diag("agent REGISTER at 0x%llx (SCIF_MAP_FIXED): offset 0x%llx", (unsigned long long)(cbase + c),
				  (unsigned long long)v);
			ok = 0;
		}
	}
	uint8_t *want = xmalloc(total), *got = xmalloc(total);
	/* host offset, card offset, length: aligned, then with different cache-line offsets */
	static const struct xcase c[] = { { 4096, 4096, 256 * KiB - 8192 }, { 1000, 2000, 256 * KiB - 3000 } };
	for (int k = 0; ok && k < 2; k++) {
		for (int dir = 0; ok && dir < 2; dir++) {
			char what[96];
			snprintf(what, sizeof(what), "span %s %zu B, host +%zu, card +%zu", dir ? "readfrom" : "writeto", c[k].n,
				 c[k].hoff, c[k].coff);
			uint32_t seed = (uint32_t)(o.seed * 31u + (uint32_t)k * 2u + (uint32_t)dir);
			if (!dir) {
				/* the pattern across the host windows */
				pattern_fill(seed, want, c[k].n);
				for (size_t i = 0, h = 0; i < 3; h += hw[i], i++)
					for (size_t x = 0; x < hw[i]; x++)
						if (h + x >= c[k].hoff && h + x < c[k].hoff + c[k].n)
							hm[i][x] = want[h + x - c[k].hoff];
				int r = rma_copy(fd, SCIF_WRITETO, hbase + (int64_t)c[k].hoff, c[k].n, cbase + (int64_t)c[k].coff, NULL,
						 SCIF_RMA_SYNC);
				if (r) {
					ktap_diag("%s: %s", what, strerror(-r));
					ok = 0;
					break;
				}
				/* checked per agent window */
				for (size_t i = 0, cc = 0; i < 3; cc += cw[i], i++) {
					size_t lo = c[k].coff > cc ? c[k].coff : cc, hi = c[k].coff + c[k].n < cc + cw[i] ? c[k].coff + c[k].n : cc + cw[i];
					if (hi > lo)
						ok = agent_crc_is(fd, cbase + (int64_t)lo, hi - lo, crc32(want + lo - c[k].coff, hi - lo), what, 0) && ok;
				}
			} else {
				/* FILL per agent window, each piece its own seed */
				for (size_t i = 0, cc = 0; ok && i < 3; cc += cw[i], i++) {
					size_t lo = c[k].coff > cc ? c[k].coff : cc, hi = c[k].coff + c[k].n < cc + cw[i] ? c[k].coff + c[k].n : cc + cw[i];
					if (hi <= lo)
						continue;
					pattern_fill(seed + (uint32_t)i, want + lo - c[k].coff, hi - lo);
					if (agent_ok(fd, what, OP_FILL, 0, (uint64_t)cbase + lo, hi - lo, seed + (uint32_t)i, 0, NULL))
						ok = 0;
				}
				for (int i = 0; i < 3; i++)
					memset(hm[i], 0xa5, hw[i]);
				int r = ok ? rma_copy(fd, SCIF_READFROM, hbase + (int64_t)c[k].hoff, c[k].n, cbase + (int64_t)c[k].coff, NULL,
						      SCIF_RMA_SYNC)
					   : -EIO;
				if (r) {
					ktap_diag("%s: %s", what, strerror(-r));
					ok = 0;
					break;
				}
				for (size_t i = 0, h = 0; i < 3; h += hw[i], i++)
					for (size_t x = 0; x < hw[i]; x++)
						if (h + x >= c[k].hoff && h + x < c[k].hoff + c[k].n)
							got[h + x - c[k].hoff] = hm[i][x];
				for (size_t x = 0; x < c[k].n; x++)
					if (got[x] != want[x]) {
						ktap_diag("%s: first difference at %zu: 0x%02x, expected 0x%02x", what, x, got[x], want[x]);
						ok = 0;
						break;
					}
			}
		}
	}
	/* SCIF_UNREG of the three whole windows at once (SCIF_WINDOW_FULL) */
	if (ok) {
		int r = rma_unreg(fd, hbase, total);
		if (r) {
			ktap_diag("SCIF_UNREG of the three windows: %s", strerror(-r));
			ok = 0;
		}
	}
	free(want);
	free(got);
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 3; i++)
		unmap_anon(hm[i], hw[i]);
	return ok;
}

/* ---------------------------------------------------------------- USECACHE */

/*
 * SCIF_RMA_USECACHE (the temporary-window cache, CONFIG_MMU_NOTIFIER): copy
 * a buffer twice (new bytes the second time), munmap it, map fresh memory
 * at a fresh address and copy, then at the old address again (the MMU
 * notifier must have dropped the cached window: stale pages would carry
 * the old bytes); each time the card must get the new bytes. Then
 * vreadfrom into it.
 */
static int t_usecache(void)
{
	const size_t n = 256 * KiB;
	const int flags = SCIF_RMA_USECACHE | SCIF_RMA_SYNC;
	int fd = ep_dial(o.node, o.rma_port), ok = fd >= 0;
	uint64_t v = 0;
	if (ok && agent_ok(fd, "usecache", OP_REGISTER, 0, n, 0, RW, 0, &v))
		ok = 0;
	int64_t roff = (int64_t)v;
	uint8_t *buf = map_anon(n), *first = buf;
	static const char *const step[] = { "first copy", "second copy, same buffer", "after munmap, fresh memory at a fresh address",
					    "after munmap, fresh memory at the first address" };
	for (int k = 0; ok && k < 4; k++) {
		if (k == 2) {
			/* a fresh address: map the new buffer while the old one still exists */
			uint8_t *fresh = map_anon(n);
			munmap(buf, n);
			buf = fresh;
		} else if (k == 3) {
			munmap(buf, n);
			buf = mmap(first, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			if (buf == MAP_FAILED) {
				ktap_diag("mmap at %p: %s", (void *)first, strerror(errno));
				buf = NULL;
				ok = 0;
				break;
			}
		}
		if (!buf) {
			ok = 0;
			break;
		}
		uint32_t seed = (uint32_t)o.seed * 101u + (uint32_t)k;
		pattern_fill(seed, buf, n);
		int r = rma_copy(fd, SCIF_VWRITETO, 0, n, roff, buf, flags);
		if (r) {
			ktap_diag("%s: SCIF_VWRITETO %p USECACHE: %s", step[k], (void *)buf, strerror(-r));
			ok = 0;
			break;
		}
		char what[128];
		snprintf(what, sizeof(what), "%s (%p)", step[k], (void *)buf);
		ok = agent_crc_is(fd, roff, n, crc32(buf, n), what, 0) && ok;
	}
	if (ok) {
		uint32_t seed = (uint32_t)o.seed * 103u;
		memset(buf, 0, n);
		int r = agent_ok(fd, "usecache", OP_FILL, 0, (uint64_t)roff, n, seed, 0, NULL) ? -EIO
											    : rma_copy(fd, SCIF_VREADFROM, 0, n, roff, buf, flags);
		if (r) {
			ktap_diag("SCIF_VREADFROM USECACHE: %s", strerror(-r));
			ok = 0;
		} else
			ok = !count_pattern(seed, buf, n, "vreadfrom USECACHE into the remapped buffer", 0);
	}
	if (buf)
		munmap(buf, n);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ---------------------------------------------------------------- fences and signals */

/*
 * Eight async SCIF_WRITETOs then FENCE_MARK(INIT_SELF)/WAIT, then the CRCs;
 * eight async card WRITETOs then the host's FENCE_MARK(INIT_PEER)/WAIT
 * (scif_send_fence_mark()), then the host bytes; and the same with the
 * agent's own mark and wait.
 */
static int t_fence(void)
{
	const size_t piece = 64 * KiB;
	struct pair p;
	int ok = pair_open(&p, 8 * piece) == 0;
	for (int round = 0; ok && round < 3; round++) {
		static const char *const how[] = { "host writetos, host INIT_SELF", "card writetos, host INIT_PEER",
						   "card writetos, card INIT_SELF" };
		uint32_t seed = (uint32_t)o.seed * 211u + (uint32_t)round * 8u;
		if (round == 0) {
			for (int i = 0; i < 8; i++)
				pattern_fill(seed + (uint32_t)i, p.hbuf + (size_t)i * piece, piece);
			for (int i = 0; ok && i < 8; i++) {
				/* odd pieces off their cache line: the bounce path too */
				size_t sk = (size_t)(i & 1) * 8;
				int r = rma_copy(p.fd, SCIF_WRITETO, p.loff + (int64_t)(i * piece + sk), piece - 64,
						 p.roff + (int64_t)(i * piece), NULL, 0);
				if (r) {
					ktap_diag("%s: SCIF_WRITETO %d: %s", how[round], i, strerror(-r));
					ok = 0;
				}
			}
			if (ok && rma_fence(p.fd, SCIF_FENCE_INIT_SELF))
				ok = 0;
			for (int i = 0; ok && i < 8; i++) {
				size_t sk = (size_t)(i & 1) * 8;
				ok = agent_crc_is(p.fd, p.roff + (int64_t)(i * piece), piece - 64, crc32(p.hbuf + i * piece + sk, piece - 64),
						  how[round], 0) && ok;
			}
		} else {
			memset(p.hbuf, 0, p.len);
			for (int i = 0; ok && i < 8; i++)
				if (agent_ok(p.fd, how[round], OP_FILL, 0, (uint64_t)p.roff + (uint64_t)(i * piece), piece, seed + (uint32_t)i,
					     0, NULL))
					ok = 0;
			for (int i = 0; ok && i < 8; i++)
				if (agent_ok(p.fd, how[round], OP_WRITETO, 0, (uint64_t)p.roff + (uint64_t)(i * piece), piece,
					     (uint64_t)p.loff + (uint64_t)(i * piece), 0, NULL))
					ok = 0;
			if (ok && (round == 1 ? rma_fence(p.fd, SCIF_FENCE_INIT_PEER) : agent_fence(p.fd, how[round])))
				ok = 0;
			for (int i = 0; ok && i < 8; i++)
				ok = !count_pattern(seed + (uint32_t)i, p.hbuf + (size_t)i * piece, piece, how[round], 0) && ok;
		}
	}
	pair_close(&p);
	return ok;
}

static uint64_t host_word(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, (const void *)p, 8);
	__asm__ volatile("" ::: "memory");
	return v;
}

/* The agent's word at off must be want. */
static int peek_is(int fd, int64_t off, uint64_t want, const char *what)
{
	uint64_t v = 0;
	if (agent_ok(fd, what, OP_PEEK, 0, (uint64_t)off, 0, 0, 0, &v))
		return 0;
	if (v != want) {
		ktap_diag("%s: PEEK(0x%llx) = 0x%016llx, expected 0x%016llx", what, (unsigned long long)off, (unsigned long long)v,
			  (unsigned long long)want);
		return 0;
	}
	return 1;
}

static int host_is(const uint8_t *p, uint64_t want, const char *what)
{
	uint64_t v = host_word(p);
	if (v != want) {
		ktap_diag("%s: host word 0x%016llx, expected 0x%016llx", what, (unsigned long long)v, (unsigned long long)want);
		return 0;
	}
	return 1;
}

/*
 * SCIF_FENCE_SIGNAL: INIT_SELF with SIGNAL_REMOTE (rval at roff, seen by
 * PEEK) and SIGNAL_LOCAL (lval at loff in the host window); INIT_PEER with
 * both (scif_send_fence_signal(): rval at roff, lval at loff); after async
 * writetos; and the agent's own signal into the host window.
 */
static int t_signal(void)
{
	struct pair p;
	if (pair_open(&p, 64 * KiB))
		return 0;
	int ok = 1;
	memset(p.hbuf, 0, p.len);
	int r;
	const uint64_t v1 = 0x1122334455667788ULL, v2 = 0x8877665544332211ULL, v3 = 0xa5a5a5a5deadbeefULL,
		       v4 = 0x0123456789abcdefULL, v5 = 0xfedcba9876543210ULL, v6 = 0x5555aaaa5555aaaaULL;
	r = rma_signal(p.fd, 0, 0, p.roff + 8, v1, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE);
	if (r)
		ktap_diag("FENCE_SIGNAL INIT_SELF|SIGNAL_REMOTE: %s", strerror(-r)), ok = 0;
	else
		ok = peek_is(p.fd, p.roff + 8, v1, "INIT_SELF|SIGNAL_REMOTE") && ok;
	r = rma_signal(p.fd, p.loff + 16, v2, 0, 0, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL);
	if (r)
		ktap_diag("FENCE_SIGNAL INIT_SELF|SIGNAL_LOCAL: %s", strerror(-r)), ok = 0;
	else {
		/* a local signal is queued behind the DMA: a fence makes sure it is done */
		if (rma_fence(p.fd, SCIF_FENCE_INIT_SELF))
			ok = 0;
		ok = host_is(p.hbuf + 16, v2, "INIT_SELF|SIGNAL_LOCAL") && ok;
	}
	r = rma_signal(p.fd, p.loff + 32, v3, p.roff + 24, v4, SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE);
	if (r)
		ktap_diag("FENCE_SIGNAL INIT_PEER|SIGNAL_LOCAL|SIGNAL_REMOTE: %s", strerror(-r)), ok = 0;
	else {
		ok = peek_is(p.fd, p.roff + 24, v4, "INIT_PEER: rval at roff") && ok;
		ok = host_is(p.hbuf + 32, v3, "INIT_PEER: lval at loff") && ok;
	}
	/* after an async writeto of the window's first half: the signal comes after its bytes */
	pattern_fill((uint32_t)o.seed, p.hbuf + 4096, 28 * KiB);
	r = rma_copy(p.fd, SCIF_WRITETO, p.loff + 4096, 28 * KiB, p.roff + 4096, NULL, 0);
	if (!r)
		r = rma_signal(p.fd, 0, 0, p.roff + 40, v5, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE);
	if (r)
		ktap_diag("async writeto, then FENCE_SIGNAL: %s", strerror(-r)), ok = 0;
	else {
		/* the signal lands after the writeto's bytes: once it is seen, so are they */
		uint64_t t0 = vg_now_us(), v = 0;
		while (!agent_ok(p.fd, "signal after writeto", OP_PEEK, 0, (uint64_t)p.roff + 40, 0, 0, 0, &v) && v != v5 &&
		       vg_now_us() - t0 < 5000000)
			vg_sleep_ms(10);
		if (v != v5)
			ktap_diag("signal after writeto: PEEK 0x%016llx, expected 0x%016llx", (unsigned long long)v,
				  (unsigned long long)v5), ok = 0;
		ok = agent_crc_is(p.fd, p.roff + 4096, 28 * KiB, crc32(p.hbuf + 4096, 28 * KiB), "signal after writeto", 0) && ok;
	}
	/* the agent signals into the host window (card INIT_SELF, SIGNAL_REMOTE) */
	if (agent_ok(p.fd, "card signal", OP_FENCE_SIGNAL, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE, 0, 0,
		     (uint64_t)p.loff + 48, v6, NULL))
		ok = 0;
	else {
		uint64_t t0 = vg_now_us();
		while (host_word(p.hbuf + 48) != v6 && vg_now_us() - t0 < 5000000)
			vg_sleep_ms(10);
		ok = host_is(p.hbuf + 48, v6, "card INIT_SELF|SIGNAL_REMOTE") && ok;
	}
	pair_close(&p);
	return ok;
}

/* ---------------------------------------------------------------- mmap */

/*
 * REGISTER + FILL, mmap the card window (scif_mmap()), check, write, CRC; a
 * partial mapping too; then the card UNREGISTERs while mapped (NACK: the
 * memory stays) and the munmap frees it.
 */
static int t_mmap(void)
{
	const size_t n = 64 * KiB;
	int fd = ep_dial(o.node, o.rma_port), ok = fd >= 0;
	uint64_t v = 0;
	uint32_t seed = (uint32_t)o.seed * 307u;
	if (ok && (agent_ok(fd, "mmap", OP_REGISTER, 0, n, 0, RW, 0, &v) ||
		   agent_ok(fd, "mmap", OP_FILL, 0, v, n, seed, 0, NULL)))
		ok = 0;
	int64_t roff = (int64_t)v;
	uint8_t *m = ok ? mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)roff) : MAP_FAILED;
	if (ok && m == MAP_FAILED) {
		ktap_diag("mmap of the card window at 0x%llx: %s", (unsigned long long)roff, strerror(errno));
		ok = 0;
	}
	if (ok) {
		uint8_t *copy = xmalloc(n);
		memcpy(copy, m, n);
		ok = !count_pattern(seed, copy, n, "mmap: the card's bytes", 0);
		pattern_fill(seed + 1, copy, n);
		memcpy(m, copy, n);
		__asm__ volatile("mfence" ::: "memory");
		ok = agent_crc_is(fd, roff, n, crc32(copy, n), "mmap: bytes written through the mapping", 0) && ok;
		/* a second mapping of two pages in the middle */
		uint8_t *m2 = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, (off_t)(roff + 3 * (int64_t)PAGE));
		if (m2 == MAP_FAILED) {
			ktap_diag("mmap of two pages at 0x%llx: %s", (unsigned long long)roff + 3 * PAGE, strerror(errno));
			ok = 0;
		} else {
			memcpy(copy, m2, 2 * PAGE);
			uint8_t *want = xmalloc(n);
			pattern_fill(seed + 1, want, n);
			if (memcmp(copy, want + 3 * PAGE, 2 * PAGE)) {
				ktap_diag("mmap of two pages at +3 pages: bytes differ from the window's");
				ok = 0;
			}
			free(want);
			munmap(m2, 2 * PAGE);
		}
		/*
		 * The card unregisters while the host still maps the window:
		 * scif_recv_unreg() answers SCIF_UNREGISTER_NACK, and the card
		 * keeps the memory until the host's munmap sends SCIF_MUNMAP
		 * (scif_rma_list_munmap(), scif_recv_munmap()).
		 */
		if (agent_ok(fd, "mmap: UNREGISTER while mapped", OP_UNREGISTER, 0, (uint64_t)roff, n, 0, 0, NULL))
			ok = 0;
		memcpy(copy, m, n);
		ok = !count_pattern(seed + 1, copy, n, "mmap: the mapping after the card's UNREGISTER", 0) && ok;
		/*
		 * The card's agent keeps the window until SCIF_MUNMAP. The
		 * loopback agent is a Linux program: its scif_unregister()
		 * returns 0 on the NACK (scif_unregister_window()) and nothing
		 * tells it of the munmap, so it drops its record at once.
		 */
		if (o.node != 0) {
			pattern_fill(seed + 2, copy, n);
			memcpy(m, copy, n);
			__asm__ volatile("mfence" ::: "memory");
			ok = agent_crc_is(fd, roff, n, crc32(copy, n), "mmap: the card keeps a NACKed window's memory", 0) && ok;
		}
		free(copy);
		munmap(m, n);
		/* SCIF_MUNMAP is asynchronous: the window goes soon after. */
		int64_t st = 0;
		for (int k = 0; k < 200; k++) {
			st = agent(fd, OP_CRC, 0, (uint64_t)roff, n, 0, 0, NULL);
			if (st != 0)
				break;
			vg_sleep_ms(10);
		}
		if (st != -ENXIO) {
			ktap_diag("agent CRC after the host's munmap of a NACKed window: status %lld, expected -ENXIO",
				  (long long)st);
			ok = 0;
		}
	}
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ---------------------------------------------------------------- cleanup */

/*
 * 100 rounds of connect, register on both sides (1 MiB on the agent), one
 * checked copy, close without unregistering: each close must free both
 * sides' windows (a leak runs the agent out of memory). Then SCIF_UNREG
 * and UNREGISTER: copies to the old offsets get ENXIO.
 */
static int t_cleanup(void)
{
	int ok = 1;
	uint64_t t0 = vg_now_us();
	for (int k = 0; ok && k < o.rounds; k++) {
		struct pair p;
		if (pair_open(&p, 64 * KiB)) {
			ktap_diag("round %d: connect/register failed", k);
			ok = 0;
		} else {
			uint64_t v;
			if (agent_ok(p.fd, "cleanup", OP_REGISTER, 0, MiB, 0, RW, 0, &v))
				ok = 0;
			else
				ok = xfer_check(&p, k & 1 ? X_READFROM : X_WRITETO, (size_t)(k % 7) * 9, (size_t)(k % 5) * 13, 4096,
						SCIF_RMA_SYNC, (uint32_t)k, 0, 0, NULL);
			if (!ok)
				ktap_diag("round %d failed", k);
		}
		pair_close(&p);
	}
	ktap_diag("%d connect/register/close rounds in %.1f s", o.rounds, (double)(vg_now_us() - t0) / 1e6);
	struct pair p;
	if (ok && pair_open(&p, 64 * KiB) == 0) {
		int r = rma_unreg(p.fd, p.loff, p.len);
		if (r)
			ktap_diag("SCIF_UNREG: %s", strerror(-r)), ok = 0;
		r = rma_copy(p.fd, SCIF_WRITETO, p.loff, 4096, p.roff, NULL, SCIF_RMA_SYNC);
		if (r != -ENXIO)
			ktap_diag("SCIF_WRITETO from an unregistered offset: %s, expected ENXIO", r ? strerror(-r) : "success"), ok = 0;
		if (agent_ok(p.fd, "UNREGISTER", OP_UNREGISTER, 0, (uint64_t)p.roff, p.len, 0, 0, NULL))
			ok = 0;
		r = rma_copy(p.fd, SCIF_VWRITETO, 0, 4096, p.roff, p.vbuf, SCIF_RMA_SYNC);
		if (r != -ENXIO)
			ktap_diag("SCIF_VWRITETO to an unregistered card offset: %s, expected ENXIO", r ? strerror(-r) : "success"),
				ok = 0;
		int64_t st = agent(p.fd, OP_CRC, 0, (uint64_t)p.roff, 4096, 0, 0, NULL);
		if (st != -ENXIO)
			ktap_diag("agent CRC of an unregistered window: status %lld, expected -ENXIO", (long long)st), ok = 0;
		/* registering again works */
		int64_t lo = rma_reg(p.fd, p.hbuf, p.len, 0, RW, 0);
		uint64_t v;
		if (lo < 0 || agent_ok(p.fd, "REGISTER again", OP_REGISTER, 0, p.len, 0, RW, 0, &v))
			ktap_diag("registering again: %s", lo < 0 ? strerror((int)-lo) : "agent failed"), ok = 0;
		else {
			p.loff = lo;
			p.roff = (int64_t)v;
			ok = xfer_check(&p, X_WRITETO, 0, 0, 8192, SCIF_RMA_SYNC, 77, 1, 0, NULL) && ok;
		}
		pair_close(&p);
	} else
		ok = 0;
	return ok;
}

/* ---------------------------------------------------------------- errors */

static int expect_err(int got, int want, const char *what)
{
	if (got == -want)
		return 1;
	ktap_diag("%s: %s, expected %s", what, got ? strerror(-got) : "success", strerror(want));
	return 0;
}

/*
 * ENXIO for ranges outside the windows (scif_query_window()), EPERM for a
 * copy against a window's protection, EINVAL for misaligned signals
 * (scif_fence_signal()) and an unknown agent op.
 */
static int t_errors(void)
{
	struct pair p;
	if (pair_open(&p, 64 * KiB))
		return 0;
	int ok = 1;
	int64_t end = p.roff + (int64_t)p.len;
	ok = expect_err(rma_copy(p.fd, SCIF_READFROM, p.loff, 4096, end + 16 * (int64_t)PAGE, NULL, SCIF_RMA_SYNC), ENXIO,
			"SCIF_READFROM outside the card's windows") && ok;
	ok = expect_err(rma_copy(p.fd, SCIF_READFROM, p.loff, 8192, end - 4096, NULL, SCIF_RMA_SYNC), ENXIO,
			"SCIF_READFROM running past the card window's end") && ok;
	ok = expect_err(rma_copy(p.fd, SCIF_WRITETO, p.loff + (int64_t)p.len + 64 * (int64_t)PAGE, 4096, p.roff, NULL, SCIF_RMA_SYNC),
			ENXIO, "SCIF_WRITETO from outside the host's windows") && ok;
	ok = expect_err((int)agent(p.fd, OP_READFROM, SCIF_RMA_SYNC, (uint64_t)p.roff, 4096,
				   (uint64_t)(p.loff + (int64_t)p.len + 64 * (int64_t)PAGE), 0, NULL),
			ENXIO, "agent READFROM outside the host's windows") && ok;
	/* a read-only card window: a writeto needs remote WRITE, a readfrom works */
	uint64_t v = 0;
	if (agent_ok(p.fd, "errors", OP_REGISTER, 0, 16 * KiB, 0, SCIF_PROT_READ, 0, &v))
		ok = 0;
	else {
		ok = expect_err(rma_copy(p.fd, SCIF_WRITETO, p.loff, 4096, (int64_t)v, NULL, SCIF_RMA_SYNC), EPERM,
				"SCIF_WRITETO to a PROT_READ card window") && ok;
		ok = expect_err(rma_signal(p.fd, 0, 0, (int64_t)v, 1, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE), EPERM,
				"FENCE_SIGNAL into a PROT_READ card window") && ok;
		ok = expect_err(rma_copy(p.fd, SCIF_READFROM, p.loff, 4096, (int64_t)v, NULL, SCIF_RMA_SYNC), 0,
				"SCIF_READFROM from a PROT_READ card window") && ok;
	}
	/*
	 * A read-only host window: a readfrom needs local WRITE. __scif_pin_pages()
	 * upgrades SCIF_PROT_READ to read-write when FOLL_WRITE pins every page,
	 * retries read-only after a partial pin, and oopses when it pins none (it
	 * hands the negative count to unpin_user_pages()): so the first page is
	 * writable and the other three read-only.
	 */
	uint8_t *ro = map_anon(16 * KiB);
	if (ro) {
		memset(ro, 1, 16 * KiB);
		mprotect(ro + PAGE, 16 * KiB - PAGE, PROT_READ);
		int64_t lo = rma_reg(p.fd, ro, 16 * KiB, 0, SCIF_PROT_READ, 0);
		if (lo < 0)
			ktap_diag("SCIF_REG of read-only pages with SCIF_PROT_READ: %s", strerror((int)-lo)), ok = 0;
		else {
			ok = expect_err(rma_copy(p.fd, SCIF_READFROM, lo, 4096, p.roff, NULL, SCIF_RMA_SYNC), EPERM,
					"SCIF_READFROM into a PROT_READ host window") && ok;
			ok = expect_err(rma_copy(p.fd, SCIF_WRITETO, lo, 4096, p.roff, NULL, SCIF_RMA_SYNC), 0,
					"SCIF_WRITETO from a PROT_READ host window") && ok;
			ok = expect_err((int)agent(p.fd, OP_WRITETO, SCIF_RMA_SYNC, (uint64_t)p.roff, 4096, (uint64_t)lo, 0, NULL), EPERM,
					"agent WRITETO into a PROT_READ host window") && ok;
		}
		unmap_anon(ro, 16 * KiB);
	} else
		ok = 0;
	ok = expect_err(rma_signal(p.fd, 0, 0, p.roff + 2, 1, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE), EINVAL,
			"FENCE_SIGNAL SIGNAL_REMOTE at roff + 2") && ok;
	ok = expect_err(rma_signal(p.fd, p.loff + 1, 1, 0, 0, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL), EINVAL,
			"FENCE_SIGNAL SIGNAL_LOCAL at loff + 1") && ok;
	ok = expect_err(rma_signal(p.fd, 0, 0, p.roff, 1, SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_REMOTE),
			EINVAL, "FENCE_SIGNAL with INIT_SELF and INIT_PEER") && ok;
	ok = expect_err((int)agent(p.fd, OP_FENCE_SIGNAL, SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_REMOTE, 0, 0, (uint64_t)p.loff + 6, 1,
				   NULL),
			EINVAL, "agent FENCE_SIGNAL at a misaligned host offset") && ok;
	ok = expect_err(rma_copy(p.fd, SCIF_WRITETO, p.loff, 4096, p.roff, NULL, 0x100), EINVAL, "SCIF_WRITETO with flag 0x100") &&
	     ok;
	ok = expect_err((int)agent(p.fd, 99, 0, 0, 0, 0, 0, NULL), EINVAL, "agent op 99") && ok;
	/* the connection still works */
	ok = xfer_check(&p, X_WRITETO, 0, 0, 4096, SCIF_RMA_SYNC, 5, 0, 0, NULL) && ok;
	pair_close(&p);
	return ok;
}

/* ---------------------------------------------------------------- selftest */

static int t_selftest(void)
{
	static const uint8_t want[8] = { 0x6c, 0x59, 0x88, 0x3c, 0xdb, 0x85, 0x88, 0x5e };
	uint8_t b[8];
	pattern_fill(1, b, sizeof(b));
	int ok = !memcmp(b, want, 8) && crc32(b, 8) == 0xab3b8c88u && crc32("123456789", 9) == 0xcbf43926u;
	if (!ok)
		ktap_diag("pattern(1, 8) or crc32 wrong: crc32 0x%08x", crc32(b, 8));
	return ok;
}

const struct rma_test rma_tests[] = {
	{ "aligned", t_aligned, 1 },	       { "unaligned", t_unaligned, 1 },	    { "ordered", t_ordered, 1 },
	{ "usecpu", t_usecpu, 1 },	       { "span", t_span, 1 },		    { "vcopy", t_vcopy, 1 },
	{ "usecache", t_usecache, 1 },	       { "card-writeto", t_card_writeto, 1 }, { "card-readfrom", t_card_readfrom, 1 },
	{ "fence", t_fence, 1 },	       { "signal", t_signal, 1 },	    { "mmap", t_mmap, 1 },
	{ "cleanup", t_cleanup, 1 },	       { "errors", t_errors, 1 },	    { "soak", t_soak, 1 },
	{ "bench", t_bench, 0 },	       { "selftest", t_selftest, 0 },
};
const int rma_ntests = N(rma_tests);
