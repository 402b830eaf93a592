/*
 * soak: random transfers until --soak-bytes moved; bench: throughput of the
 * copies, "# rma_<dir>_bytes=N MBps=X" diagnostics (dir: writeto, readfrom,
 * vwriteto, vreadfrom, card_writeto, card_readfrom).
 */
#include "vphi-scif-rma/rma.h"

#define RW (SCIF_PROT_READ | SCIF_PROT_WRITE)

/*
 * Random sizes 1 B..--soak-max (log-uniform), random offsets in both
 * windows (a quarter of them on a shared cache-line offset, the rest
 * independent), random flag mixes of SYNC, ORDERED, USECPU (USECACHE for
 * the v-variants), all six directions; no guards, every transfer checked.
 * Ends early after 20 failed transfers.
 */
int t_soak(void)
{
	size_t max = o.soak_max;
	struct pair p;
	if (pair_open(&p, max + 2 * PAGE))
		return 0;
	unsigned long transfers = 0, bytes = 0, bad = 0, failed = 0, per_dir[X_NDIRS] = { 0 };
	uint64_t t0 = vg_now_us();
	while (bytes < o.soak_bytes && failed < 20) {
		enum xdir dir = (enum xdir)(rng() % X_NDIRS);
		size_t n = rand_size(max);
		size_t room = p.len - n;
		size_t hoff = (size_t)(rng() % (room + 1)), coff;
		if (rng() % 4 == 0) {
			/* the same cache-line offset: head/body/tail on the aligned path */
			coff = ((size_t)(rng() % (room + 1)) & ~(size_t)63) + (hoff & 63);
			if (coff > room)
				coff -= 64;
		} else
			coff = (size_t)(rng() % (room + 1));
		int flags = 0;
		uint64_t f = rng();
		if (f & 1)
			flags |= SCIF_RMA_SYNC;
		if (f & 2)
			flags |= SCIF_RMA_ORDERED;
		if ((f & 12) == 12)
			flags |= SCIF_RMA_USECPU;
		if ((dir == X_VWRITETO || dir == X_VREADFROM) && (f & 16))
			flags |= SCIF_RMA_USECACHE;
		unsigned long b = 0;
		int ok = xfer_check(&p, dir, hoff, coff, n, flags, (uint32_t)rng(), 0, failed >= 5, &b);
		transfers++;
		per_dir[dir]++;
		bytes += n;
		bad += b;
		if (!ok) {
			failed++;
			if (failed <= 5)
				ktap_diag("soak transfer %lu failed: %s %zu B, host +%zu, card +%zu, %s", transfers, xdir_name[dir], n,
					  hoff, coff, flag_names(flags));
		}
	}
	double s = (double)(vg_now_us() - t0) / 1e6;
	ktap_diag("soak: transfers=%lu bytes=%lu mismatches=%lu failed=%lu (%.1f s, %.1f MB/s; writeto %lu readfrom %lu "
		  "vwriteto %lu vreadfrom %lu card-writeto %lu card-readfrom %lu)",
		  transfers, bytes, bad, failed, s, s > 0 ? (double)bytes / s / 1e6 : 0.0, per_dir[0], per_dir[1], per_dir[2],
		  per_dir[3], per_dir[4], per_dir[5]);
	pair_close(&p);
	return failed == 0 && bad == 0 && bytes >= o.soak_bytes;
}

/* One timed copy in dir (SYNC): 0 or -1 (reported). */
static int bench_once(struct pair *p, enum xdir dir, size_t n)
{
	int r;
	switch (dir) {
	case X_WRITETO:
		r = rma_copy(p->fd, SCIF_WRITETO, p->loff, n, p->roff, NULL, SCIF_RMA_SYNC);
		break;
	case X_READFROM:
		r = rma_copy(p->fd, SCIF_READFROM, p->loff, n, p->roff, NULL, SCIF_RMA_SYNC);
		break;
	case X_VWRITETO:
		r = rma_copy(p->fd, SCIF_VWRITETO, 0, n, p->roff, p->vbuf, SCIF_RMA_SYNC);
		break;
	case X_VREADFROM:
		r = rma_copy(p->fd, SCIF_VREADFROM, 0, n, p->roff, p->vbuf, SCIF_RMA_SYNC);
		break;
	default: {
		int64_t st = agent(p->fd, dir == X_CARD_WRITETO ? OP_WRITETO : OP_READFROM, SCIF_RMA_SYNC, (uint64_t)p->roff, n,
				   (uint64_t)p->loff, 0, NULL);
		r = st == AGENT_LOST ? -EIO : (int)st;
	}
	}
	if (r)
		ktap_diag("bench %s %zu B: %s", xdir_name[dir], n, strerror(-r));
	return r ? -1 : 0;
}

/*
 * Each direction at 4 KiB..--bench-max (x4 steps), SYNC, repeated until
 * --bench-total bytes moved (at least twice); each size checked once
 * after its timing (xfer_check).
 */
int t_bench(void)
{
	struct pair p;
	if (pair_open(&p, o.bench_max))
		return 0;
	int ok = 1;
	for (int d = 0; ok && d < X_NDIRS; d++) {
		for (size_t n = 4 * KiB; ok && n <= o.bench_max; n *= 4) {
			unsigned long reps = o.bench_total / n;
			if (reps < 2)
				reps = 2;
			uint64_t t0 = vg_now_us();
			for (unsigned long k = 0; ok && k < reps; k++)
				ok = bench_once(&p, (enum xdir)d, n) == 0;
			double us = (double)(vg_now_us() - t0);
			if (!ok)
				break;
			char key[32];
			snprintf(key, sizeof(key), "%s", xdir_name[d]);
			for (char *c = key; *c; c++)
				if (*c == '-')
					*c = '_';
			ktap_diag("rma_%s_bytes=%zu MBps=%.1f (%lu x %zu B to node %d, %.1f us each)", key, n,
				  (double)n * (double)reps / us, reps, n, o.node, us / (double)reps);
			ok = xfer_check(&p, (enum xdir)d, 0, 0, n, SCIF_RMA_SYNC, (uint32_t)(n + (size_t)d), 0, 0, NULL);
		}
	}
	pair_close(&p);
	return ok;
}
