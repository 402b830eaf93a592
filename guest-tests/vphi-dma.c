/*
 * vphi-dma: drive the vphi card's DMA engine (Intel Xeon Phi x100,
 * 8086:225c) directly through BAR4 from guest userspace, exactly as
 * drivers/dma/mic_x100_dma.c does, and print KTAP.
 *
 *   vphi-dma [all|copy|wrap|status|errors|bench ...] [options]
 *
 * Groups (default: all = copy wrap status errors; bench only on request):
 *   copy    guest RAM -> card memory, card memory -> guest RAM, card <-> card,
 *           64 B .. 4 MiB, from 2 MiB huge pages (when there are any) and from
 *           ordinary 4 KiB pages; bytes checked through resource0, completion
 *           count (DSTAT[16:0] == DTPR == expected ring index) after each batch
 *   wrap    a small ring (--ring-slots, 64) and several laps of batches through
 *           it: the count must wrap at the ring size, not at 2^17
 *   status  STATUS descriptors with and without the interrupt flag (qw1 bit 59):
 *           the value lands, SICR0 bit 8+ch is set only with the flag and with
 *           DCAR IM1 clear
 *   errors  a descriptor of unknown type, a memcpy from outside card memory,
 *           from and to unmapped guest memory: DCHERR != 0, DSTAT bit 29, the
 *           count stops at the failing descriptor, other channels keep working,
 *           a card reset (RGCR) clears the error
 *   bench   MB/s of guest->card and card->guest copies with 512 KiB (the host
 *           driver's maximum) and 1 MiB - 64 (the length field's maximum)
 *           descriptors: "# bench host->card 1MiB-desc: NNN MB/s"
 *
 * Options (NUM is C syntax):
 *   --channel N        the DMA channel (0-3) for the selected group(s); default
 *                      copy 0, wrap 1, status 2, errors 3 (its "other" channel
 *                      is N+1 mod 4), bench 0
 *   --bdf DDDD:BB:DD.F use this device instead of scanning for 8086:225c
 *   --vendor NUM --device NUM
 *   --ring-slots N     descriptors in the ring (64; 2..256 fit one page)
 *   --gddr-base NUM    card memory the tests use, 64 MiB from here (0x1000000)
 *   --timeout-ms N     how long to poll DSTAT for one batch (5000, as dma_sync_wait)
 *   --hugepages N      raise /proc/sys/vm/nr_hugepages to at least N (8); 0: none
 *   --no-huge          never use huge pages (only the 4 KiB-page path)
 *   --bench-mib N      MiB copied per bench measurement (256)
 * Every option also reads a default from the environment (VPHI_CHANNEL, ...),
 * which init.sh sets from vphi.channel=... on the kernel command line.
 *
 * For the host side, every card-memory range whose final contents are known
 * is announced as "# gddr-check ADDR LEN SEED" (pattern: see pat_word()), and
 * 64-bit status values written to card memory as "# gddr-u64 ADDR VALUE".
 *
 * How it reaches guest memory: the SMPT is programmed as mic_smpt_init()
 * does (SMPT[i] = i << 2, identity), so guest physical address P is card
 * address 0x80_0000_0000 + P; physical addresses come from
 * /proc/self/pagemap (root), buffers are locked. Huge pages are physically
 * contiguous; otherwise descriptors follow the physically contiguous runs.
 * Meant for the throwaway test guest: once it has found the card it sets
 * /proc/sys/vm/compact_unevictable_allowed to 0 and raises nr_hugepages,
 * and leaves both so.
 *
 * Exit status: 0 if every test passed, 1 otherwise, 2 for usage errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VG_PROG "vphi-dma"
#define VG_USAGE \
	"usage: vphi-dma [all|copy|wrap|status|errors|bench ...] [--channel N] [--bdf D:B:D.F] ...\n" \
	"(see the comment at the top of guest-tests/vphi-dma.c)\n"
#include "vphi-guest.h"

/* ------------------------------------------------------------ hardware */

/* BAR4 offsets (card-hardware.md §4, dma-engine.md §2). */
#define SMPT_REG(i) (0x13100u + 4u * (i))
#define RGCR 0x14010u
#define RGCR_RESET 1u
#define SICR0 0x19004u
#define SPAD2 0x1AB28u
#define SPAD2_READY 1u
#define DMA_CH_BASE 0x1A000u
#define DMA_CH_STRIDE 0x40u
#define DCR 0x1A280u

/* Channel registers (MIC_DMA_REG_*). */
#define DCAR 0x00u
#define DHPR 0x04u
#define DTPR 0x08u
#define DRAR_LO 0x14u
#define DRAR_HI 0x18u
#define DSTAT 0x20u
#define DCHERR 0x2Cu
#define DCHERRMSK 0x30u

#define DCAR_IM1 (1u << 25)			/* MIC_DMA_SBOX_DCAR_IM1 */
#define DRAR_HI_SYS (1u << 26)			/* MIC_DMA_SBOX_DRARHI_SYS_MASK */
#define DSTAT_COUNT 0x1ffffu			/* MIC_DMA_HW_CMP_CNT_MASK */
#define DSTAT_QUIESCE 0x20000000u		/* MIC_DMA_CHAN_QUIESCE */
#define DMA_SRC(ch) (1u << (8 + (ch)))		/* SICR0 bit of channel ch */
#define ERR_SRC (1u << 30)			/* SICR0 SBOX error source */

#define SYS_WINDOW 0x8000000000ull		/* card address of SMPT page 0 */
#define DESC_MEMCPY 1ull			/* MIC_DMA_MEMCPY */
#define DESC_STATUS 2ull			/* MIC_DMA_STATUS */
#define DESC_TYPE_SHIFT 60			/* MIC_DMA_DESC_TYPE_SHIFT */
#define MEMCPY_LEN_SHIFT 46			/* MIC_DMA_MEMCPY_LEN_SHIFT */
#define STAT_INTR (1ull << 59)			/* MIC_DMA_STAT_INTR_SHIFT */
#define ADDR40 0xffffffffffull
#define MAX_XFER_HOST (512u << 10)		/* MIC_DMA_MAX_XFER_SIZE_HOST */
#define MAX_XFER_CARD ((1u << 20) - 64)		/* the 14-bit length field's maximum */

#define PAGE 4096u
#define HUGE (2u << 20)
#define KiB 1024u
#define MiB (1024u * 1024u)

/* ------------------------------------------------------------ options */

/* Besides vg_card (--vendor, --device, --bdf): */
struct opts {
	long channel; /* -1: per-group default */
	long ring_slots;
	unsigned long long gddr_base;
	long timeout_ms;
	long hugepages;
	int no_huge;
	long bench_mib;
};

static struct opts o = {
	.channel = -1,
	.ring_slots = 64,
	.gddr_base = 0x1000000,
	.timeout_ms = 5000,
	.hugepages = 8,
	.no_huge = 0,
	.bench_mib = 256,
};

static const struct vg_opt optdefs[] = {
	{ "channel", VG_LONG, &o.channel },
	{ "ring-slots", VG_LONG, &o.ring_slots },
	{ "gddr-base", VG_ULLONG, &o.gddr_base },
	{ "timeout-ms", VG_LONG, &o.timeout_ms },
	{ "hugepages", VG_LONG, &o.hugepages },
	{ "no-huge", VG_SET, &o.no_huge },
	{ "bench-mib", VG_LONG, &o.bench_mib },
	{ 0 },
};

static void help(void)
{
	printf("usage: vphi-dma [all|copy|wrap|status|errors|bench ...] [--channel N] [--bdf D:B:D.F]\n"
	       "  [--ring-slots N] [--gddr-base NUM] [--timeout-ms N] [--hugepages N] [--no-huge]\n"
	       "  [--bench-mib N]   (see the comment at the top of guest-tests/vphi-dma.c)\n");
	exit(0);
}

/* ------------------------------------------------------------ time */

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ patterns */

/* Word i of the pattern with this seed (lowbias32 of seed ^ i*golden); little endian. */
static uint32_t pat_word(uint32_t seed, uint32_t i)
{
	uint32_t x = seed ^ (i * 0x9E3779B1u);
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	return x;
}

static uint32_t seed_counter;

static uint32_t new_seed(void)
{
	uint32_t s = pat_word((uint32_t)now_us() ^ ((uint32_t)getpid() << 16), ++seed_counter);
	return s ? s : 1;
}

static void fill_pattern(void *p, size_t len, uint32_t seed)
{
	uint32_t *w = p;
	for (size_t i = 0; i < len / 4; i++)
		w[i] = pat_word(seed, (uint32_t)i);
}

/* 0 if [p, p+len) holds the pattern; else the number of differing words (first reported). */
static size_t check_pattern(const void *p, size_t len, uint32_t seed, const char *what)
{
	const uint32_t *w = p;
	size_t bad = 0;
	for (size_t i = 0; i < len / 4; i++) {
		uint32_t want = pat_word(seed, (uint32_t)i);
		if (w[i] != want && bad++ < 4)
			ktap_diag("%s: word at +0x%zx is 0x%08x, expected 0x%08x", what, i * 4, w[i], want);
	}
	if (bad)
		ktap_diag("%s: %zu of %zu words differ", what, bad, len / 4);
	return bad;
}

static size_t check_fill(const void *p, size_t len, uint8_t v, const char *what)
{
	const uint8_t *b = p;
	size_t bad = 0;
	for (size_t i = 0; i < len; i++) {
		if (b[i] != v && bad++ < 4)
			ktap_diag("%s: byte at +0x%zx is 0x%02x, expected it untouched (0x%02x)", what, i, b[i], v);
	}
	return bad;
}

#define barrier() __asm__ __volatile__("" ::: "memory")

/* ------------------------------------------------------------ sysfs / device */

static int find_device(void)
{
	int seen, found = vg_find_card(&seen);
	if (found == 0)
		ktap_diag("no %04lx:%04lx PCI device", vg_card.vendor, vg_card.device);
	return found > 0 ? 0 : -1;
}

static unsigned long long bar_size(int bar)
{
	struct vg_res r[6];
	return vg_read_resources(r, 6) > bar ? r[bar].size : 0;
}

/* sysfs enable (memory decode), then bus mastering in the command register. */
static int enable_device(void)
{
	if (vg_enable())
		return -1;
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/config", vg_bdf);
	int fd = open(path, O_RDWR);
	uint16_t cmd = 0;
	if (fd < 0 || pread(fd, &cmd, 2, 4) != 2) {
		ktap_diag("cannot read the command register from %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	uint16_t want = cmd | 0x6; /* memory space, bus master */
	if (want != cmd && pwrite(fd, &want, 2, 4) != 2)
		ktap_diag("cannot set bus mastering: %s", strerror(errno));
	if (pread(fd, &cmd, 2, 4) != 2)
		cmd = 0;
	close(fd);
	if ((cmd & 0x6) != 0x6) {
		ktap_diag("command register 0x%04x: memory space or bus master still off", cmd);
		return -1;
	}
	return 0;
}

static volatile uint8_t *bar4;
static uint8_t *gddr; /* BAR0: card address X is gddr[X] */
static unsigned long long gddr_size;

static void *map_bar(int bar, size_t len)
{
	return vg_map_resource(bar, 0, len, "(0x%zx bytes)", len);
}

static uint32_t rd(uint32_t off)
{
	return *(volatile uint32_t *)(bar4 + off);
}

static void wr(uint32_t off, uint32_t v)
{
	__sync_synchronize(); /* wmb(): descriptors before the doorbell */
	*(volatile uint32_t *)(bar4 + off) = v;
}

/* ------------------------------------------------------------ guest memory */

struct run {
	size_t off;  /* in the buffer */
	uint64_t pa; /* guest physical */
	size_t len;
};

struct buf {
	uint8_t *va;
	size_t len, maplen;
	int huge;
	struct run *runs;
	int nruns;
};

static int pagemap_fd = -1;

static int hugepages_ready(void)
{
	static int state = -1;
	if (state >= 0)
		return state;
	state = 0;
	if (o.no_huge || o.hugepages <= 0)
		return state;
	char buf[64];
	long cur = vg_read_file("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : -1;
	if (cur < 0) {
		ktap_diag("no /proc/sys/vm/nr_hugepages: huge pages unavailable, using 4 KiB pages");
		return state;
	}
	if (cur < o.hugepages) {
		snprintf(buf, sizeof(buf), "%ld", o.hugepages);
		if (vg_write_file("/proc/sys/vm/nr_hugepages", buf))
			ktap_diag("cannot write nr_hugepages: %s", strerror(errno));
		cur = vg_read_file("/proc/sys/vm/nr_hugepages", buf, sizeof(buf)) > 0 ? strtol(buf, NULL, 10) : 0;
	}
	state = cur > 0;
	return state;
}

/* Physically contiguous runs of b from /proc/self/pagemap; 0 or -1. */
static int find_runs(struct buf *b)
{
	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY);
	if (pagemap_fd < 0) {
		ktap_diag("cannot open /proc/self/pagemap: %s", strerror(errno));
		return -1;
	}
	size_t npages = b->maplen / PAGE;
	uint64_t *pm = malloc(npages * 8);
	b->runs = calloc(npages, sizeof(*b->runs));
	if (!pm || !b->runs)
		return -1;
	off_t at = (off_t)((uintptr_t)b->va / PAGE * 8);
	if (pread(pagemap_fd, pm, npages * 8, at) != (ssize_t)(npages * 8)) {
		ktap_diag("pagemap read: %s", strerror(errno));
		free(pm);
		return -1;
	}
	b->nruns = 0;
	for (size_t i = 0; i < npages; i++) {
		uint64_t e = pm[i];
		uint64_t pfn = e & ((1ull << 55) - 1);
		if (!(e & (1ull << 63)) || pfn == 0) {
			ktap_diag("page %zu of the buffer: pagemap entry 0x%016" PRIx64 " (%s)", i, e,
				  !(e & (1ull << 63)) ? "not present" : "no PFN: not root?");
			free(pm);
			return -1;
		}
		uint64_t pa = pfn * PAGE;
		struct run *r = b->nruns ? &b->runs[b->nruns - 1] : NULL;
		if (r && r->pa + r->len == pa)
			r->len += PAGE;
		else
			b->runs[b->nruns++] = (struct run){ i * PAGE, pa, PAGE };
	}
	free(pm);
	return 0;
}

static void buf_free(struct buf *b)
{
	if (b->va)
		munmap(b->va, b->maplen);
	free(b->runs);
	memset(b, 0, sizeof(*b));
}

enum { SMALL = 0, HUGE_PREF = 1, SCATTER = 2 };

/*
 * SCATTER: put the pages in the order 0, 2, 4, ..., 1, 3, 5, ... (mremap),
 * so that no two neighbours are physically adjacent if the allocator
 * handed out a contiguous block: the run-splitting path is then always
 * exercised.
 */
static void *scatter_pages(void *p, size_t maplen)
{
	size_t n = maplen / PAGE;
	uint8_t *dst = mmap(NULL, maplen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dst == MAP_FAILED)
		return p;
	for (size_t i = 0; i < n; i++) {
		size_t from = i < (n + 1) / 2 ? 2 * i : 2 * (i - (n + 1) / 2) + 1;
		if (mremap((uint8_t *)p + from * PAGE, PAGE, PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, dst + i * PAGE) ==
		    MAP_FAILED) {
			ktap_diag("mremap: %s", strerror(errno));
			return NULL;
		}
	}
	return dst;
}

/* A locked buffer of len bytes (mode: SMALL, HUGE_PREF: 2 MiB pages when there are any, SCATTER). */
static int buf_alloc(struct buf *b, size_t len, int mode)
{
	memset(b, 0, sizeof(*b));
	b->len = len;
	void *p = MAP_FAILED;
	if (mode == HUGE_PREF && hugepages_ready()) {
		b->maplen = (len + HUGE - 1) & ~(size_t)(HUGE - 1);
		p = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE | MAP_LOCKED, -1, 0);
		if (p == MAP_FAILED)
			ktap_diag("huge-page mmap of 0x%zx: %s; using 4 KiB pages", b->maplen, strerror(errno));
		else
			b->huge = 1;
	}
	if (p == MAP_FAILED) {
		b->maplen = (len + PAGE - 1) & ~(size_t)(PAGE - 1);
		p = mmap(NULL, b->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			ktap_diag("mmap of 0x%zx: %s", b->maplen, strerror(errno));
			return -1;
		}
		/* No transparent huge page (which the kernel may split or move later). */
		madvise(p, b->maplen, MADV_NOHUGEPAGE);
	}
	/* mlock() faults every page in and keeps it there; locked pages are not swapped or migrated
	 * (compact_unevictable_allowed is 0, see main()). */
	if (mlock(p, b->maplen))
		ktap_diag("mlock: %s", strerror(errno));
	memset(p, 0, b->maplen);
	if (mode == SCATTER && b->maplen > PAGE) {
		void *q = scatter_pages(p, b->maplen);
		if (!q) {
			munmap(p, b->maplen);
			return -1;
		}
		p = q;
	}
	b->va = p;
	if (find_runs(b)) {
		buf_free(b);
		return -1;
	}
	return 0;
}

/* Card address (through the identity SMPT) of byte off of b; it must lie in one run. */
static uint64_t card_of(const struct buf *b, size_t off)
{
	for (int i = 0; i < b->nruns; i++) {
		const struct run *r = &b->runs[i];
		if (off >= r->off && off < r->off + r->len)
			return SYS_WINDOW + r->pa + (off - r->off);
	}
	return 0;
}

static const char *buf_kind(const struct buf *b)
{
	return b->huge ? "2 MiB pages" : "4 KiB pages";
}

/* ------------------------------------------------------------ SMPT, reset */

static void smpt_identity(void)
{
	for (uint32_t i = 0; i < 32; i++)
		wr(SMPT_REG(i), i << 2); /* BUILD_SMPT(i << 34, SNOOP_ON) */
}

/* mic_x100_hw_reset() + mic_x100_reset_fw_ready(), then wait for the bootstrap. */
static int card_reset(void)
{
	wr(SPAD2, 0);
	wr(RGCR, rd(RGCR) | RGCR_RESET);
	uint64_t t0 = now_us();
	while (!(rd(SPAD2) & SPAD2_READY)) {
		if (now_us() - t0 > 5000000u) {
			ktap_diag("card reset: SPAD2 bit 0 not set after 5 s (SPAD2 0x%08x)", rd(SPAD2));
			return -1;
		}
		sleep_ms(5);
	}
	ktap_diag("card reset: ready after %" PRIu64 " ms (SPAD2 0x%08x)", (now_us() - t0) / 1000, rd(SPAD2));
	smpt_identity();
	return 0;
}

/* ------------------------------------------------------------ a channel */

struct chan {
	int n;
	uint32_t nslots;
	struct buf ringbuf;
	volatile uint64_t *ring;
	uint64_t ring_card;
	uint32_t head;	 /* next slot software writes */
	uint32_t issued; /* last value written to DHPR */
	uint32_t tail;	 /* last completion count seen */
	int ready;
	long polls;
	uint32_t err_dstat;
};

static uint32_t crd(const struct chan *c, uint32_t r) { return rd(DMA_CH_BASE + DMA_CH_STRIDE * c->n + r); }
static void cwr(const struct chan *c, uint32_t r, uint32_t v) { wr(DMA_CH_BASE + DMA_CH_STRIDE * c->n + r, v); }

static int chan_alloc(struct chan *c, int n, uint32_t nslots)
{
	memset(c, 0, sizeof(*c));
	c->n = n;
	c->nslots = nslots;
	size_t bytes = (nslots * 16u + 63) & ~63u;
	if (buf_alloc(&c->ringbuf, bytes, bytes > PAGE ? HUGE_PREF : SMALL)) /* up to 256 descriptors fit one page */
		return -1;
	if (c->ringbuf.runs[0].len < bytes) {
		ktap_diag("ring of %u descriptors: not physically contiguous", nslots);
		buf_free(&c->ringbuf);
		return -1;
	}
	c->ring = (volatile uint64_t *)c->ringbuf.va;
	c->ring_card = card_of(&c->ringbuf, 0);
	return 0;
}

static void chan_free(struct chan *c)
{
	buf_free(&c->ringbuf);
	c->ring = NULL;
	c->ready = 0;
}

static void dump_chan(const struct chan *c)
{
	ktap_diag("ch%d: DCR 0x%08x DCAR 0x%08x DHPR %u DTPR %u DSTAT 0x%08x DCHERR 0x%08x DRAR 0x%08x:%08x", c->n, rd(DCR),
		  crd(c, DCAR), crd(c, DHPR), crd(c, DTPR), crd(c, DSTAT), crd(c, DCHERR), crd(c, DRAR_HI), crd(c, DRAR_LO));
}

/* mic_dma_chan_setup(): the exact register sequence of the host driver; 1 if the channel is usable. */
static int chan_setup(struct chan *c)
{
	uint32_t en = 1u << (2 * c->n + 1);
	memset((void *)c->ring, 0, c->nslots * 16u);
	wr(DCR, rd(DCR) & ~en);			/* mic_dma_disable_chan() */
	cwr(c, DCAR, crd(c, DCAR) | DCAR_IM1);	/* mic_dma_chan_mask_intr() */
	cwr(c, DCHERRMSK, 0);
	/* mic_dma_chan_set_desc_ring() for a host-owned channel */
	uint32_t drar_hi = (c->nslots & 0x1ffffu) << 4;
	drar_hi |= DRAR_HI_SYS;
	drar_hi |= (uint32_t)((c->ring_card >> 34) & 0x1f) << 21;
	drar_hi |= (uint32_t)((c->ring_card >> 32) & 0x3);
	cwr(c, DRAR_LO, (uint32_t)c->ring_card);
	cwr(c, DRAR_HI, drar_hi);
	c->head = c->tail = crd(c, DTPR);	/* ch->last_tail = ch->head = DTPR */
	c->issued = c->head;			/* DHPR holds it already: never rewrite the same value */
	cwr(c, DCAR, crd(c, DCAR) & ~DCAR_IM1);	/* mic_dma_chan_unmask_intr() */
	wr(DCR, rd(DCR) | en);			/* mic_dma_enable_chan() */
	uint32_t err = crd(c, DCHERR), st = crd(c, DSTAT);	/* mic_dma_check_chan() */
	c->ready = !err && !(st & DSTAT_QUIESCE) && c->head < c->nslots;
	ktap_diag("ch%d set up: ring of %u at card 0x%010" PRIx64 " (DRAR_HI 0x%08x), DTPR %u, DSTAT 0x%08x, DCHERR 0x%x%s",
		  c->n, c->nslots, c->ring_card, drar_hi, c->head, st, err, c->ready ? "" : ": UNUSABLE");
	if ((st & DSTAT_COUNT) != c->head) {
		ktap_diag("ch%d: idle but DSTAT count %u != DTPR %u", c->n, st & DSTAT_COUNT, c->head);
		c->ready = 0;
	}
	return c->ready;
}

static uint32_t ring_used(const struct chan *c) { return (c->head + c->nslots - c->tail) % c->nslots; }

/* mic_dma_issue_pending() */
static void chan_issue(struct chan *c)
{
	if (c->issued == c->head)
		return;
	c->issued = c->head;
	wr(DMA_CH_BASE + DMA_CH_STRIDE * c->n + DHPR, c->head);
}

/*
 * Poll DSTAT until the count reaches `target` (0), the channel stops with
 * an error (-2, c->err_dstat set) or the time runs out (-1). `progress`: any
 * change of the count is enough.
 */
static int chan_poll(struct chan *c, uint32_t target, int progress)
{
	uint64_t t0 = now_us();
	for (;;) {
		uint32_t st = crd(c, DSTAT);
		uint32_t cnt = st & DSTAT_COUNT;
		c->polls++;
		if (cnt >= c->nslots) {
			ktap_diag("ch%d: DSTAT count %u is outside the ring of %u (DSTAT 0x%08x)", c->n, cnt, c->nslots, st);
			return -3;
		}
		if (cnt == target || (progress && cnt != c->tail)) {
			c->tail = cnt;
			barrier();
			return 0;
		}
		if (st & DSTAT_QUIESCE) {
			c->tail = cnt;
			c->err_dstat = st;
			barrier();
			return -2;
		}
		if (now_us() - t0 > (uint64_t)o.timeout_ms * 1000u) {
			ktap_diag("ch%d: no completion after %ld ms (count %u, waiting for %u)", c->n, o.timeout_ms, cnt, target);
			dump_chan(c);
			return -1;
		}
	}
}

/* Queue one descriptor, making room (issue and reap) when the ring is full. */
static int chan_put(struct chan *c, uint64_t qw0, uint64_t qw1)
{
	while (ring_used(c) >= c->nslots - 1) {
		chan_issue(c);
		int r = chan_poll(c, c->head, 1);
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
static int put_memcpy(struct chan *c, uint64_t src, uint64_t dst, uint32_t len)
{
	return chan_put(c, (src & ADDR40) | ((uint64_t)(len >> 6) << MEMCPY_LEN_SHIFT),
			(DESC_MEMCPY << DESC_TYPE_SHIFT) | (dst & ADDR40));
}

/* mic_dma_prep_status_desc() */
static int put_status(struct chan *c, uint64_t value, uint64_t dst, int intr)
{
	return chan_put(c, value, (DESC_STATUS << DESC_TYPE_SHIFT) | (dst & ADDR40) | (intr ? STAT_INTR : 0));
}

/* Issue and wait until everything queued completed; checks DSTAT count == DTPR == head. */
static int chan_sync(struct chan *c)
{
	chan_issue(c);
	int r = chan_poll(c, c->head, 0);
	if (r == -2)
		ktap_diag("ch%d stopped with an error: DSTAT 0x%08x DCHERR 0x%08x", c->n, c->err_dstat, crd(c, DCHERR));
	if (r)
		return r;
	uint32_t dtpr = crd(c, DTPR), st = crd(c, DSTAT);
	if (dtpr != c->head || (st & DSTAT_COUNT) != c->head || (st & DSTAT_QUIESCE)) {
		ktap_diag("ch%d idle: DTPR %u, DSTAT 0x%08x, expected both at %u", c->n, dtpr, st, c->head);
		return -4;
	}
	return 0;
}

/*
 * MEMCPY descriptors between guest buffer b (bytes [off, off+len)) and
 * card address `card` (GDDR), following b's physically contiguous runs, at
 * most `max` bytes each. to_card: b is the source. Returns descriptors
 * queued, or -1.
 */
static long put_copy(struct chan *c, const struct buf *b, size_t off, uint64_t card, size_t len, int to_card,
		     uint32_t max)
{
	long n = 0;
	for (int i = 0; i < b->nruns && len; i++) {
		const struct run *r = &b->runs[i];
		if (off >= r->off + r->len)
			continue;
		size_t in = off - r->off, avail = r->len - in;
		while (avail && len) {
			uint32_t chunk = (uint32_t)(avail < len ? avail : len);
			if (chunk > max)
				chunk = max;
			uint64_t host = SYS_WINDOW + r->pa + in;
			if (put_memcpy(c, to_card ? host : card, to_card ? card : host, chunk))
				return -1;
			n++;
			in += chunk, avail -= chunk, off += chunk, len -= chunk, card += chunk;
		}
	}
	return len ? -1 : n;
}

/* Runs of b touched by [off, off+len). */
static int runs_in(const struct buf *b, size_t off, size_t len)
{
	int n = 0;
	for (int i = 0; i < b->nruns; i++)
		if (b->runs[i].off < off + len && b->runs[i].off + b->runs[i].len > off)
			n++;
	return n;
}

/* ------------------------------------------------------------ card memory layout */

/* Offsets from o.gddr_base (64 MiB in all). */
#define G_H2C 0x0000000u	/* host->card destinations, 8 MiB */
#define G_C2H 0x0800000u	/* card->host / card->card sources, 4 MiB */
#define G_C2C 0x0C00000u	/* card->card destinations, 8 MiB */
#define G_SMALL 0x1400000u	/* host->card from 4 KiB pages, 4 MiB */
#define G_WRAP 0x1800000u	/* wrap destinations, 1 MiB */
#define G_STATUS 0x1900000u	/* status values, 1 MiB */
#define G_ERR 0x1A00000u	/* error tests, 2 MiB */
#define G_OTHER 0x1C00000u	/* other-channel copies, 4 MiB */
#define G_BENCH 0x2000000u	/* bench, 32 MiB */
#define G_TOTAL 0x4000000u
#define GUARD 64u		/* bytes after a destination that must stay untouched */

static uint64_t G(uint32_t off) { return o.gddr_base + off; }

/* ------------------------------------------------------------ group: copy */

static struct chan copy_ch;
static struct buf hbuf_src, hbuf_dst; /* huge pages when possible */
static struct buf sbuf;		      /* always 4 KiB pages */
static int copy_chan = 0;

static int copy_setup(void)
{
	smpt_identity();
	int ok = chan_alloc(&copy_ch, copy_chan, (uint32_t)o.ring_slots) == 0 && chan_setup(&copy_ch);
	if (ok && (buf_alloc(&hbuf_src, 4 * MiB, HUGE_PREF) || buf_alloc(&hbuf_dst, 4 * MiB + GUARD, HUGE_PREF)))
		ok = 0;
	if (ok)
		ktap_diag("guest buffers: source in %s (%d runs), destination in %s (%d runs)", buf_kind(&hbuf_src),
			  hbuf_src.nruns, buf_kind(&hbuf_dst), hbuf_dst.nruns);
	copy_ch.ready = ok;
	return ok;
}

enum dir { H2C, C2H, C2C };

/*
 * One copy of len bytes in direction d on channel c, checked byte for byte
 * (plus a guard after the destination) and by the completion count.
 * card_dst / card_src: GDDR offsets from gddr_base.
 */
static int do_copy(struct chan *c, enum dir d, size_t len, struct buf *hsrc, struct buf *hdst, uint32_t card_src,
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
		fill_pattern(hsrc->va, len, seed);
		memset(gdst, 0xA5, len + GUARD);
	} else {
		fill_pattern(gsrc, len, seed);
		if (d == C2H)
			memset(hdst->va, 0x5A, len + GUARD);
		else
			memset(gdst, 0xA5, len + GUARD);
	}
	__sync_synchronize();
	uint32_t start = c->head;
	long polls0 = c->polls;
	uint64_t t0 = now_us();
	long n;
	if (d == H2C)
		n = put_copy(c, hsrc, 0, G(card_dst), len, 1, max);
	else if (d == C2H)
		n = put_copy(c, hdst, 0, G(card_src), len, 0, max);
	else {
		n = 0;
		for (size_t done = 0; done < len; n++) {
			uint32_t chunk = len - done > max ? max : (uint32_t)(len - done);
			if (put_memcpy(c, G(card_src) + done, G(card_dst) + done, chunk)) {
				n = -1;
				break;
			}
			done += chunk;
		}
	}
	int r = n < 0 ? -1 : chan_sync(c);
	uint64_t us = now_us() - t0;
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
	int runs = d == H2C ? runs_in(hsrc, 0, len) : d == C2H ? runs_in(hdst, 0, len) : 1;
	ktap_diag("%s %zu bytes: %ld descriptors (%d runs), count %u -> %u, %ld polls, %" PRIu64 " us, seed 0x%08x", what,
		  len, n, runs, start, c->tail, c->polls - polls0, us, seed);
	if (ok && d != C2H)
		ktap_diag("gddr-check 0x%" PRIx64 " %zu 0x%08x", G(card_dst), len, seed);
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
			       (d) == H2C ? G_H2C + area_off(k) : (d) == C2C ? G_C2C + area_off(k) : 0, MAX_XFER_HOST); \
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
	if (buf_alloc(&sbuf, 4 * MiB + GUARD, SCATTER))
		return -1;
	ktap_diag("4 KiB-page buffer, pages interleaved: %d physically contiguous runs", sbuf.nruns);
	return 0;
}

static int t_h2c_small(void)
{
	if (small_pages_buf())
		return 0;
	return do_copy(&copy_ch, H2C, 4 * MiB, &sbuf, NULL, 0, G_SMALL, MAX_XFER_HOST);
}

static int t_c2h_small(void)
{
	if (small_pages_buf())
		return 0;
	return do_copy(&copy_ch, C2H, 4 * MiB, NULL, &sbuf, G_C2H, 0, MAX_XFER_HOST);
}

/* Several copies in one DHPR write, mixed directions. */
static int t_copy_batch(void)
{
	struct chan *c = &copy_ch;
	if (!c->ready)
		return 0;
	uint32_t s1 = new_seed(), s2 = new_seed(), s3 = new_seed();
	const size_t len = 256 * KiB;
	fill_pattern(hbuf_src.va, len, s1);
	fill_pattern(gddr + G(G_C2H), len, s2);
	fill_pattern(gddr + G(G_C2H) + len, len, s3);
	memset(hbuf_dst.va, 0, len);
	memset(gddr + G(G_OTHER), 0, 2 * len);
	__sync_synchronize();
	uint32_t start = c->head;
	long n1 = put_copy(c, &hbuf_src, 0, G(G_OTHER), len, 1, 64 * KiB);
	long n2 = put_copy(c, &hbuf_dst, 0, G(G_C2H), len, 0, 64 * KiB);
	long n3 = put_memcpy(c, G(G_C2H) + len, G(G_OTHER) + len, (uint32_t)len) ? -1 : 1;
	if (n1 < 0 || n2 < 0 || n3 < 0 || chan_sync(c))
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
	buf_free(&hbuf_src);
	buf_free(&hbuf_dst);
	buf_free(&sbuf);
	chan_free(&copy_ch);
}

/* ------------------------------------------------------------ group: wrap */

static struct chan wrap_ch;
static int wrap_chan = 1;
static struct buf wrap_src, wrap_stat;
static uint32_t wrap_seed;
static long wrap_total, wrap_batches;
static int wrap_laps_ok;

static int t_wrap_setup(void)
{
	smpt_identity();
	if (chan_alloc(&wrap_ch, wrap_chan, (uint32_t)o.ring_slots))
		return 0;
	if (buf_alloc(&wrap_src, 64 * KiB, SMALL) || buf_alloc(&wrap_stat, PAGE, SMALL))
		return 0;
	return chan_setup(&wrap_ch);
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
	struct chan *c = &wrap_ch;
	if (!c->ready)
		return 0;
	const uint32_t N = c->nslots;
	const uint32_t sizes[] = { 1, 7, 13, N - 1, N / 2 - 1, N - 1, 2, N - 1, N - 3, N - 1, N / 3, N - 1, 5 };
	const int nb = sizeof(sizes) / sizeof(sizes[0]);
	const uint32_t max_slots = 64 * KiB / 64;
	wrap_seed = new_seed();
	fill_pattern(wrap_src.va, 64 * KiB, wrap_seed);
	memset(gddr + G(G_WRAP), 0, 64 * KiB);
	memset(wrap_stat.va, 0, PAGE);
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
			if (put_memcpy(c, card_of(&wrap_src, slot * 64u), G(G_WRAP) + slot * 64u, 64))
				ok = 0;
		}
		if (put_status(c, 0xB47C000000000000ull | (uint64_t)b, card_of(&wrap_stat, (size_t)b * 8), SMALL))
			ok = 0;
		wrap_total += sizes[b];
		wrap_batches++;
		uint32_t expect = (uint32_t)((start + wrap_total) % N);
		if (!ok || chan_sync(c)) {
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
	buf_free(&wrap_src);
	buf_free(&wrap_stat);
	chan_free(&wrap_ch);
}

/* ------------------------------------------------------------ group: status */

static struct chan stat_ch;
static int stat_chan = 2;
static struct buf stat_buf, stat_data;

static int t_status_setup(void)
{
	smpt_identity();
	if (chan_alloc(&stat_ch, stat_chan, (uint32_t)o.ring_slots) || buf_alloc(&stat_buf, PAGE, SMALL) ||
	    buf_alloc(&stat_data, 64 * KiB, SMALL))
		return 0;
	return chan_setup(&stat_ch);
}

static volatile uint64_t *stat_slot(int i) { return (volatile uint64_t *)stat_buf.va + i; }

/* W1C the channel's SICR0 bit and check it reads 0. */
static int sicr_clear(int ch)
{
	wr(SICR0, DMA_SRC(ch));
	uint32_t v = rd(SICR0);
	if (v & DMA_SRC(ch)) {
		ktap_diag("SICR0 0x%08x: bit %d still set after writing 1 to clear it", v, 8 + ch);
		return 0;
	}
	return 1;
}

/* One STATUS descriptor to guest memory; checks the value and SICR0 bit 8+ch against want_irq. */
static int status_one(int slot, int intr, int masked, int want_irq)
{
	struct chan *c = &stat_ch;
	if (!c->ready || !sicr_clear(c->n))
		return 0;
	uint64_t value = ((uint64_t)new_seed() << 32) | new_seed();
	*stat_slot(slot) = ~value;
	if (masked)
		cwr(c, DCAR, crd(c, DCAR) | DCAR_IM1);
	__sync_synchronize();
	uint32_t start = c->head;
	int ok = put_status(c, value, card_of(&stat_buf, (size_t)slot * 8), intr) == 0 && chan_sync(c) == 0;
	uint32_t sicr = rd(SICR0), dcar = crd(c, DCAR);
	if (masked) {
		cwr(c, DCAR, dcar & ~DCAR_IM1);
		if (rd(SICR0) & DMA_SRC(c->n)) {
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
	if (!!(sicr & DMA_SRC(c->n)) != want_irq) {
		ktap_diag("SICR0 bit %d is %d, expected %d", 8 + c->n, !!(sicr & DMA_SRC(c->n)), want_irq);
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
	struct chan *c = &stat_ch;
	if (!c->ready)
		return 0;
	uint64_t value = ((uint64_t)new_seed() << 32) | new_seed();
	uint64_t addr = G(G_STATUS) + 0x40;
	volatile uint64_t *p = (volatile uint64_t *)(gddr + addr);
	*p = ~value;
	__sync_synchronize();
	int ok = put_status(c, value, addr, 0) == 0 && chan_sync(c) == 0;
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
	struct chan *c = &stat_ch;
	if (!c->ready || !sicr_clear(c->n))
		return 0;
	uint32_t seed = new_seed();
	fill_pattern(gddr + G(G_STATUS) + 0x1000, 64 * KiB, seed);
	memset(stat_data.va, 0, 64 * KiB);
	*stat_slot(8) = ~0ull;
	__sync_synchronize();
	uint32_t start = c->head;
	long n = put_copy(c, &stat_data, 0, G(G_STATUS) + 0x1000, 64 * KiB, 0, MAX_XFER_HOST);
	int ok = n > 0 && put_status(c, 0, card_of(&stat_buf, 64), 0) == 0 &&
		 put_status(c, 0, card_of(&stat_buf, 64), 1) == 0 && chan_sync(c) == 0;
	uint32_t sicr = rd(SICR0);
	uint32_t expect = (uint32_t)((start + n + 2) % c->nslots);
	ktap_diag("%ld memcpy + 2 STATUS: count %u -> %u (expected %u), status_dest 0x%016" PRIx64 ", SICR0 0x%08x", n,
		  start, c->tail, expect, *stat_slot(8), sicr);
	ok = ok && c->tail == expect && *stat_slot(8) == 0 && (sicr & DMA_SRC(c->n));
	ok = !check_pattern(stat_data.va, 64 * KiB, seed, "memcpy before the status pair") && ok;
	return sicr_clear(c->n) && ok;
}

static void status_teardown(void)
{
	buf_free(&stat_buf);
	buf_free(&stat_data);
	chan_free(&stat_ch);
}

/* ------------------------------------------------------------ group: errors */

static struct chan err_ch, oth_ch;
static int err_chan = 3;
static struct buf err_buf;

/*
 * Queue: a good memcpy (guest -> card A), a good STATUS to guest memory,
 * then the bad descriptor, then a memcpy (guest -> card B) and a STATUS
 * that must never execute. Expect: the channel stops with DCHERR != 0 and
 * DSTAT bit 29, the count at the bad descriptor, B and the second status
 * untouched; and it stays that way.
 */
static int error_case(const char *what, uint64_t bad_qw0, uint64_t bad_qw1)
{
	struct chan *c = &err_ch;
	if (!c->ready) {
		ktap_diag("channel %d is not set up", c->n);
		return 0;
	}
	uint32_t seed = new_seed();
	uint8_t *a = gddr + G(G_ERR), *b = gddr + G(G_ERR) + 64 * KiB;
	volatile uint64_t *st = (volatile uint64_t *)(err_buf.va + 8 * KiB);
	fill_pattern(err_buf.va, 4 * KiB, seed);
	memset(a, 0xEE, 4 * KiB);
	memset(b, 0xEE, 4 * KiB);
	st[0] = st[1] = 0;
	__sync_synchronize();
	uint32_t start = c->head;
	uint32_t bad_at = (start + 2) % c->nslots;
	int ok = put_memcpy(c, card_of(&err_buf, 0), G(G_ERR), 4 * KiB) == 0 &&
		 put_status(c, 0x600D, card_of(&err_buf, 8 * KiB), 0) == 0 && chan_put(c, bad_qw0, bad_qw1) == 0 &&
		 put_memcpy(c, card_of(&err_buf, 0), G(G_ERR) + 64 * KiB, 4 * KiB) == 0 &&
		 put_status(c, 0xBAD, card_of(&err_buf, 8 * KiB + 8), 0) == 0;
	if (!ok)
		return 0;
	chan_issue(c);
	int r = chan_poll(c, c->head, 0);
	sleep_ms(50); /* and it does not move on */
	uint32_t dstat = crd(c, DSTAT), dtpr = crd(c, DTPR), dcherr = crd(c, DCHERR), sicr = rd(SICR0);
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
	if (!(dstat & DSTAT_QUIESCE)) {
		ktap_diag("DSTAT bit 29 is clear");
		ok = 0;
	}
	if ((dstat & DSTAT_COUNT) != bad_at || dtpr != bad_at) {
		ktap_diag("count %u / DTPR %u: expected both to stop at the failing descriptor %u", dstat & DSTAT_COUNT, dtpr,
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
	if (!(sicr & ERR_SRC))
		ktap_diag("note: SICR0 bit 30 (SBOX error source) is not set");
	return ok;
}

/* A clean channel for the next error case: reset the card if the channel is stopped. */
static int error_prepare(void)
{
	struct chan *c = &err_ch;
	if (!c->ring && chan_alloc(c, err_chan, (uint32_t)o.ring_slots))
		return 0;
	if (!err_buf.va && buf_alloc(&err_buf, 16 * KiB, SMALL))
		return 0;
	if ((crd(c, DCHERR) || (crd(c, DSTAT) & DSTAT_QUIESCE)) && card_reset())
		return 0;
	smpt_identity();
	return chan_setup(c);
}

static int t_err_type(void)
{
	if (!error_prepare())
		return 0;
	return error_case("descriptor type 7", 0, 7ull << DESC_TYPE_SHIFT);
}

/* While one channel is stopped, another one copies; the stopped one stays stopped. */
static int other_channel(void)
{
	struct chan *c = &oth_ch;
	int ch = (err_ch.n + 1) % 4;
	if (!c->ring && chan_alloc(c, ch, (uint32_t)o.ring_slots))
		return 0;
	uint32_t e0 = crd(&err_ch, DCHERR), s0 = crd(&err_ch, DSTAT);
	if (!chan_setup(c))
		return 0;
	struct buf b;
	if (buf_alloc(&b, 64 * KiB + GUARD, SMALL))
		return 0;
	static uint32_t calls;
	uint32_t dst = G_OTHER + 0x100000u * (1 + calls++ % 3); /* a fresh area per call: its gddr-check stays valid */
	int ok = do_copy(c, H2C, 64 * KiB, &b, NULL, 0, dst, MAX_XFER_HOST);
	ok = do_copy(c, C2H, 64 * KiB, NULL, &b, G_C2H, 0, MAX_XFER_HOST) && ok;
	buf_free(&b);
	uint32_t e1 = crd(&err_ch, DCHERR), s1 = crd(&err_ch, DSTAT);
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
	struct chan *c = &err_ch;
	if (!c->ring)
		return 0;
	uint32_t e0 = crd(c, DCHERR), s0 = crd(c, DSTAT);
	if (!e0) {
		ktap_diag("ch%d has no error to clear", c->n);
		return 0;
	}
	if (card_reset())
		return 0;
	uint32_t e1 = crd(c, DCHERR), s1 = crd(c, DSTAT), t1 = crd(c, DTPR);
	ktap_diag("ch%d: DCHERR 0x%x -> 0x%x, DSTAT 0x%08x -> 0x%08x, DTPR %u", c->n, e0, e1, s0, s1, t1);
	int ok = !e1 && !(s1 & DSTAT_QUIESCE);
	/* and the channel works again */
	ok = chan_setup(c) && ok;
	if (ok) {
		struct buf b;
		if (buf_alloc(&b, 4 * KiB + GUARD, SMALL))
			return 0;
		ok = do_copy(c, H2C, 4 * KiB, &b, NULL, 0, G_ERR + 0x20000u, MAX_XFER_HOST);
		buf_free(&b);
	}
	return ok;
}

static int t_err_src_gddr(void)
{
	if (!error_prepare())
		return 0;
	uint64_t src = gddr_size; /* the first byte past card memory */
	ktap_diag("memcpy source 0x%" PRIx64 ": just past the %llu MiB of card memory", src, gddr_size >> 20);
	return error_case("memcpy from outside card memory", (src & ADDR40) | ((uint64_t)(4096 >> 6) << MEMCPY_LEN_SHIFT),
			  (DESC_MEMCPY << DESC_TYPE_SHIFT) | G(G_ERR + 0x40000u));
}

/* 256 GiB: inside the SMPT window (identity), far above any guest RAM. */
#define UNMAPPED_PA 0x4000000000ull

static int t_err_src_guest(void)
{
	if (!error_prepare())
		return 0;
	uint64_t src = SYS_WINDOW + UNMAPPED_PA;
	return error_case("memcpy from unmapped guest memory", (src & ADDR40) | ((uint64_t)(4096 >> 6) << MEMCPY_LEN_SHIFT),
			  (DESC_MEMCPY << DESC_TYPE_SHIFT) | G(G_ERR + 0x40000u));
}

static int t_err_dst_guest(void)
{
	if (!error_prepare())
		return 0;
	uint64_t dst = SYS_WINDOW + UNMAPPED_PA;
	return error_case("memcpy to unmapped guest memory", G(G_ERR + 0x40000u) | ((uint64_t)(4096 >> 6) << MEMCPY_LEN_SHIFT),
			  (DESC_MEMCPY << DESC_TYPE_SHIFT) | (dst & ADDR40));
}

static void errors_teardown(void)
{
	/* The last error stays in place for the host to look at. */
	buf_free(&err_buf);
	chan_free(&err_ch);
	chan_free(&oth_ch);
}

/* ------------------------------------------------------------ group: bench */

static struct chan bench_ch;
static struct buf bench_buf;
static int bench_chan = 0;
#define BENCH_BUF (8 * MiB)

static int t_bench_setup(void)
{
	smpt_identity();
	uint32_t slots = o.ring_slots < 256 ? 256 : (uint32_t)o.ring_slots;
	if (chan_alloc(&bench_ch, bench_chan, slots) || buf_alloc(&bench_buf, BENCH_BUF, HUGE_PREF))
		return 0;
	ktap_diag("bench buffer: %u MiB in %s, %d physically contiguous runs; %ld MiB per measurement", BENCH_BUF / MiB,
		  buf_kind(&bench_buf), bench_buf.nruns, o.bench_mib);
	if (!chan_setup(&bench_ch))
		return 0;
	/* Warm up: both buffers touched by the engine once (first-touch page faults are not the engine's speed). */
	memset(gddr + G(G_BENCH), 0, BENCH_BUF);
	return put_copy(&bench_ch, &bench_buf, 0, G(G_BENCH), BENCH_BUF, 1, MAX_XFER_HOST) > 0 &&
	       put_copy(&bench_ch, &bench_buf, 0, G(G_BENCH), BENCH_BUF, 0, MAX_XFER_HOST) > 0 && chan_sync(&bench_ch) == 0;
}

static int bench(int to_card, uint32_t desc, const char *label)
{
	struct chan *c = &bench_ch;
	if (!c->ready)
		return 0;
	uint32_t seed = new_seed();
	if (to_card)
		fill_pattern(bench_buf.va, BENCH_BUF, seed);
	else
		fill_pattern(gddr + G(G_BENCH), BENCH_BUF, seed);
	__sync_synchronize();
	size_t total = (size_t)o.bench_mib * MiB, done = 0;
	long descs = 0;
	long polls0 = c->polls;
	uint64_t t0 = now_us();
	while (done < total) {
		size_t len = total - done < BENCH_BUF ? total - done : BENCH_BUF;
		long n = put_copy(c, &bench_buf, 0, G(G_BENCH), len, to_card, desc);
		if (n < 0)
			return 0;
		descs += n;
		done += len;
		chan_issue(c); /* keep the engine busy while the next lap is queued */
	}
	if (chan_sync(c))
		return 0;
	uint64_t us = now_us() - t0;
	size_t bad = to_card ? check_pattern(gddr + G(G_BENCH), total < BENCH_BUF ? total : BENCH_BUF, seed, "bench card")
			     : check_pattern(bench_buf.va, total < BENCH_BUF ? total : BENCH_BUF, seed, "bench guest");
	ktap_diag("bench %s %s: %.0f MB/s", to_card ? "host->card" : "card->host", label,
		  us ? (double)total / (double)us : 0.0);
	ktap_diag("  %zu bytes in %ld descriptors of <= %u bytes, %" PRIu64 " us, %ld DSTAT polls", total, descs, desc, us,
		  c->polls - polls0);
	return !bad;
}

static int t_bench_h2c_512(void) { return bench(1, MAX_XFER_HOST, "512KiB-desc"); }
static int t_bench_h2c_1m(void) { return bench(1, MAX_XFER_CARD, "1MiB-desc"); }
static int t_bench_c2h_512(void) { return bench(0, MAX_XFER_HOST, "512KiB-desc"); }
static int t_bench_c2h_1m(void) { return bench(0, MAX_XFER_CARD, "1MiB-desc"); }

static void bench_teardown(void)
{
	buf_free(&bench_buf);
	chan_free(&bench_ch);
}

/* ------------------------------------------------------------ main */

enum { GR_COPY = 1, GR_WRAP = 2, GR_STATUS = 4, GR_ERRORS = 8, GR_BENCH = 16, GR_ALL = 15 };

static const struct vg_group words[] = {
	{ "all", GR_ALL }, { "copy", GR_COPY }, { "wrap", GR_WRAP }, { "status", GR_STATUS },
	{ "errors", GR_ERRORS }, { "bench", GR_BENCH }, { 0 },
};

struct test {
	int group;
	const char *name;
	int (*fn)(void);
};

static const struct test tests[] = {
	{ GR_COPY, "copy-setup", t_copy_setup },
	{ GR_COPY, "host-to-card-64B", t_h2c_0 },
	{ GR_COPY, "host-to-card-4KiB", t_h2c_1 },
	{ GR_COPY, "host-to-card-64KiB", t_h2c_2 },
	{ GR_COPY, "host-to-card-1MiB", t_h2c_3 },
	{ GR_COPY, "host-to-card-4MiB", t_h2c_4 },
	{ GR_COPY, "card-to-host-64B", t_c2h_0 },
	{ GR_COPY, "card-to-host-4KiB", t_c2h_1 },
	{ GR_COPY, "card-to-host-64KiB", t_c2h_2 },
	{ GR_COPY, "card-to-host-1MiB", t_c2h_3 },
	{ GR_COPY, "card-to-host-4MiB", t_c2h_4 },
	{ GR_COPY, "card-to-card-64B", t_c2c_0 },
	{ GR_COPY, "card-to-card-4KiB", t_c2c_1 },
	{ GR_COPY, "card-to-card-64KiB", t_c2c_2 },
	{ GR_COPY, "card-to-card-1MiB", t_c2c_3 },
	{ GR_COPY, "card-to-card-4MiB", t_c2c_4 },
	{ GR_COPY, "host-to-card-4MiB-small-pages", t_h2c_small },
	{ GR_COPY, "card-to-host-4MiB-small-pages", t_c2h_small },
	{ GR_COPY, "copy-batch-mixed", t_copy_batch },
	{ GR_WRAP, "wrap-setup", t_wrap_setup },
	{ GR_WRAP, "wrap-laps", t_wrap_laps },
	{ GR_WRAP, "wrap-data", t_wrap_data },
	{ GR_STATUS, "status-setup", t_status_setup },
	{ GR_STATUS, "status-no-interrupt", t_status_plain },
	{ GR_STATUS, "status-interrupt", t_status_intr },
	{ GR_STATUS, "status-interrupt-masked", t_status_masked },
	{ GR_STATUS, "status-to-card-memory", t_status_card },
	{ GR_STATUS, "status-linux-interrupt-pair", t_status_linux },
	{ GR_ERRORS, "error-bad-type", t_err_type },
	{ GR_ERRORS, "error-other-channel-works", t_err_other },
	{ GR_ERRORS, "error-cleared-by-card-reset", t_err_reset },
	{ GR_ERRORS, "error-src-outside-card-memory", t_err_src_gddr },
	{ GR_ERRORS, "error-src-unmapped-guest", t_err_src_guest },
	{ GR_ERRORS, "error-dst-unmapped-guest", t_err_dst_guest },
	{ GR_ERRORS, "error-other-channel-after-errors", t_err_other },
	{ GR_BENCH, "bench-setup", t_bench_setup },
	{ GR_BENCH, "bench-host-to-card-512KiB", t_bench_h2c_512 },
	{ GR_BENCH, "bench-host-to-card-1MiB", t_bench_h2c_1m },
	{ GR_BENCH, "bench-card-to-host-512KiB", t_bench_c2h_512 },
	{ GR_BENCH, "bench-card-to-host-1MiB", t_bench_c2h_1m },
};
#define NTESTS (sizeof(tests) / sizeof(tests[0]))

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int groups = vg_options(optdefs, words, help, argc, argv);
	if (o.channel >= 4)
		vg_usage_exit("--channel must be 0..3 (the host-owned channels)");
	if (o.ring_slots < 16 || o.ring_slots > 0x1ffff)
		vg_usage_exit("--ring-slots must be 16..131071");
	if (o.gddr_base & 0xfff)
		vg_usage_exit("--gddr-base must be 4 KiB aligned");
	if (o.timeout_ms <= 0 || o.bench_mib <= 0)
		vg_usage_exit("--timeout-ms and --bench-mib must be positive");
	if (o.channel >= 0)
		copy_chan = wrap_chan = stat_chan = err_chan = bench_chan = (int)o.channel;

	int plan = 0;
	for (size_t k = 0; k < NTESTS; k++)
		plan += (tests[k].group & groups) != 0;
	plan++; /* find-device */
	ktap_plan(plan);

	int found = find_device() == 0 && enable_device() == 0;
	if (found) {
		gddr_size = bar_size(0);
		unsigned long long b4 = bar_size(4);
		if (gddr_size < o.gddr_base + G_TOTAL || b4 < 0x20000) {
			ktap_diag("BAR0 0x%llx bytes (need 0x%llx for the tests), BAR4 0x%llx (need 0x20000)", gddr_size,
				  o.gddr_base + G_TOTAL, b4);
			found = 0;
		}
	}
	if (found) {
		gddr = map_bar(0, gddr_size);
		bar4 = map_bar(4, 0x20000);
		found = gddr && bar4;
	}
	if (found) {
		/* Locked buffers must not move: no compaction of unevictable pages (the card is there, so
		 * this is the test guest; the setting is not put back). */
		vg_write_file("/proc/sys/vm/compact_unevictable_allowed", "0");
		ktap_diag("card at %s: BAR0 %llu MiB, DCR 0x%08x, SPAD2 0x%08x; huge pages %s", vg_bdf, gddr_size >> 20, rd(DCR),
			  rd(SPAD2), hugepages_ready() ? "available" : "unavailable");
	}
	ktap_result(found, "find-device");

	int last_group = 0;
	for (size_t k = 0; k < NTESTS; k++) {
		const struct test *t = &tests[k];
		if (!(t->group & groups))
			continue;
		if (last_group && t->group != last_group) {
			if (last_group == GR_COPY)
				copy_teardown();
			else if (last_group == GR_WRAP)
				wrap_teardown();
			else if (last_group == GR_STATUS)
				status_teardown();
		}
		last_group = t->group;
		ktap_result(found && t->fn(), t->name);
	}
	copy_teardown();
	wrap_teardown();
	status_teardown();
	errors_teardown();
	bench_teardown();
	return ktap_done();
}
