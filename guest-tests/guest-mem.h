/*
 * guest-mem.h: guest memory a device can reach, from guest userspace (root):
 * locked buffers of 4 KiB or 2 MiB pages and their guest physical addresses
 * from /proc/self/pagemap (Documentation/admin-guide/mm/pagemap.rst), as
 * physically contiguous runs. Include after vphi-guest.h.
 *
 *   gm_hugepages = 8;                   before the first GM_HUGE_PREF buffer
 *   struct gm_buf b;
 *   gm_alloc(&b, len, GM_HUGE_PREF);    0, or -1 (reported)
 *   gm_pa(&b, off)                      guest physical address of byte off
 *   gm_free(&b);
 *
 * Locked pages are not swapped; they are not migrated either once
 * /proc/sys/vm/compact_unevictable_allowed is 0 (a program that gives
 * buffers to a device sets that).
 */
#ifndef GUEST_MEM_H
#define GUEST_MEM_H

#ifndef __USE_GNU
#error "guest-mem.h needs _GNU_SOURCE (mremap): include vphi-guest.h before any system header"
#endif

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GM_PAGE 4096u
#define GM_HUGE (2u << 20)

/* Raise /proc/sys/vm/nr_hugepages to at least this for GM_HUGE_PREF buffers; 0: no huge pages. */
VG_SHARED long gm_hugepages;
VG_SHARED int gm_huge_state = -1; /* -1: not looked yet, else gm_hugepages_ready() */
VG_SHARED int gm_pagemap_fd = -1;

/* A physically contiguous piece of a buffer. */
struct gm_run {
	size_t off;  /* in the buffer */
	uint64_t pa; /* guest physical */
	size_t len;
};

struct gm_buf {
	uint8_t *va;
	size_t len, maplen;
	int huge;
	struct gm_run *runs;
	int nruns;
};

/*
 * GM_SMALL: 4 KiB pages; GM_HUGE_PREF: 2 MiB pages when there are any;
 * GM_SCATTER: 4 KiB pages, no two neighbours physically adjacent.
 */
enum gm_mode { GM_SMALL = 0, GM_HUGE_PREF = 1, GM_SCATTER = 2 };

/* 1 if 2 MiB pages can be had (asks for gm_hugepages of them once), else 0. */
static inline int gm_hugepages_ready(void)
{
	if (gm_huge_state >= 0)
		return gm_huge_state;
	gm_huge_state = 0;
	if (gm_hugepages <= 0)
		return 0;
	char buf[64];
	long cur = vg_read_file("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : -1;
	if (cur < 0) {
		ktap_diag("no /proc/sys/vm/nr_hugepages: huge pages unavailable, using 4 KiB pages");
		return 0;
	}
	if (cur < gm_hugepages) {
		snprintf(buf, sizeof(buf), "%ld", gm_hugepages);
		if (vg_write_file("/proc/sys/vm/nr_hugepages", buf))
			ktap_diag("cannot write nr_hugepages: %s", strerror(errno));
		cur = vg_read_file("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : 0;
	}
	gm_huge_state = cur > 0;
	return gm_huge_state;
}

/* Physically contiguous runs of b from /proc/self/pagemap; 0 or -1. */
static inline int gm_find_runs(struct gm_buf *b)
{
	if (gm_pagemap_fd < 0)
		gm_pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (gm_pagemap_fd < 0) {
		ktap_diag("cannot open /proc/self/pagemap: %s", strerror(errno));
		return -1;
	}
	size_t npages = b->maplen / GM_PAGE;
	uint64_t *pm = malloc(npages * 8);
	b->runs = calloc(npages, sizeof(*b->runs));
	if (!pm || !b->runs) {
		free(pm);
		return -1;
	}
	off_t at = (off_t)((uintptr_t)b->va / GM_PAGE * 8);
	if (pread(gm_pagemap_fd, pm, npages * 8, at) != (ssize_t)(npages * 8)) {
		ktap_diag("pagemap read: %s", strerror(errno));
		free(pm);
		return -1;
	}
	b->nruns = 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t e = pm[i];
		uint64_t pfn = e & ((1ull << 55) - 1); /* bits 0-54: PFN, bit 63: present */
		if (!(e & (1ull << 63)) || pfn == 0) {
			ktap_diag("page %zu of the buffer: pagemap entry 0x%016" PRIx64 " (%s)", i, e,
				  !(e & (1ull << 63)) ? "not present" : "no PFN: not root?");
			free(pm);
			return -1;
		}
		uint64_t pa = pfn * GM_PAGE;
		struct gm_run *r = b->nruns ? &b->runs[b->nruns - 1] : NULL;
		if (r && r->pa + r->len == pa)
			r->len += GM_PAGE;
		else
			b->runs[b->nruns++] = (struct gm_run){ i * GM_PAGE, pa, GM_PAGE };
	}
	free(pm);
	return 0;
}

static inline void gm_free(struct gm_buf *b)
{
	if (b->va)
		munmap(b->va, b->maplen);
	free(b->runs);
	memset(b, 0, sizeof(*b));
}

/*
 * GM_SCATTER: put the pages in the order 0, 2, 4, ..., 1, 3, 5, ... (mremap),
 * so that no two neighbours are physically adjacent if the allocator
 * handed out a contiguous block: a run-splitting path is then always
 * exercised.
 */
static inline void *gm_scatter_pages(void *p, size_t maplen)
{
	size_t n = maplen / GM_PAGE;
	uint8_t *dst = mmap(NULL, maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dst == MAP_FAILED)
		return p;
	for (size_t i = 0; i < n; i++) {
		size_t from = i < (n + 1) / 2 ? 2 * i : 2 * (i - (n + 1) / 2) + 1;
		if (mremap((uint8_t *)p + from * GM_PAGE, GM_PAGE, GM_PAGE, MREMAP_MAYMOVE | MREMAP_FIXED,
			   dst + i * GM_PAGE) == MAP_FAILED) {
			ktap_diag("mremap: %s", strerror(errno));
			return NULL;
		}
	}
	return dst;
}

/* A locked, zeroed buffer of len bytes with its runs; 0, or -1 (reported). */
static inline int gm_alloc(struct gm_buf *b, size_t len, enum gm_mode mode)
{
	memset(b, 0, sizeof(*b));
	b->len = len;
	void *p = MAP_FAILED;
	if (mode == GM_HUGE_PREF && gm_hugepages_ready()) {
		b->maplen = (len + GM_HUGE - 1) & ~(size_t)(GM_HUGE - 1);
		p = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
		if (p == MAP_FAILED)
			ktap_diag("huge-page mmap of 0x%zx: %s; using 4 KiB pages", b->maplen, strerror(errno));
		else
			b->huge = 1;
	}
	if (p == MAP_FAILED) {
		b->maplen = (len + GM_PAGE - 1) & ~(size_t)(GM_PAGE - 1);
		p = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			ktap_diag("mmap of 0x%zx: %s", b->maplen, strerror(errno));
			return -1;
		}
		/* No transparent huge page (which the kernel may split or move later). */
		madvise(p, b->maplen, MADV_NOHUGEPAGE);
	}
	/* mlock() faults every page in and keeps it there. */
	if (mlock(p, b->maplen))
		ktap_diag("mlock: %s", strerror(errno));
	memset(p, 0, b->maplen);
	if (mode == GM_SCATTER && b->maplen > GM_PAGE) {
		void *q = gm_scatter_pages(p, b->maplen);
		if (!q) {
			munmap(p, b->maplen);
			return -1;
		}
		p = q;
	}
	b->va = p;
	if (gm_find_runs(b)) {
		gm_free(b);
		return -1;
	}
	return 0;
}

/* Guest physical address of byte off of b, or 0 if off is outside it. */
static inline uint64_t gm_pa(const struct gm_buf *b, size_t off)
{
	for (int i = 0; i < b->nruns; i++) {
		const struct gm_run *r = &b->runs[i];
		if (off >= r->off && off < r->off + r->len)
			return r->pa + (off - r->off);
	}
	return 0;
}

/* Runs of b touched by [off, off+len). */
static inline int gm_runs_in(const struct gm_buf *b, size_t off, size_t len)
{
	int n = 0;
	for (int i = 0; i < b->nruns; i++)
		if (b->runs[i].off < off + len && b->runs[i].off + b->runs[i].len > off)
			n++;
	return n;
}

static inline const char *gm_kind(const struct gm_buf *b)
{
	return b->huge ? "2 MiB pages" : "4 KiB pages";
}

#endif
