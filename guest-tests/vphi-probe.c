/*
 * vphi-probe: exercise the vphi card (Intel Xeon Phi x100, 8086:225c) from
 * guest userspace through sysfs, printing KTAP.
 *
 *   vphi-probe [options] [all|find|resource|config|spad|bar0 ...]
 *
 * Groups (default: all):
 *   find      the card by vendor/device in /sys/bus/pci/devices
 *   resource  BAR sizes and flags from .../resource, the MSI-X table BAR
 *   config    revision, class, capability list (MSI-X, PCI Express)
 *   spad      enable, then write/read back the 16 scratchpads through resource4
 *   bar0      enable, then write a pattern into resource0, msync, read back
 *
 * Options (NUM is C syntax: 0x.., 0.., decimal; the defaults are the x100's):
 *   --vendor NUM --device NUM   identity to look for (0x8086, 0x225c)
 *   --bdf DDDD:BB:DD.F          use this device, skip the scan
 *   --bar0-size NUM             expected BAR0 size (default: any power of two)
 *   --bar4-size NUM             expected BAR4 size (0x20000)
 *   --revision NUM --class NUM  expected revision (0x20), class code (0x0b4000)
 *   --msix-vectors NUM          expected MSI-X table size (16)
 *   --msix-bar NUM              expected MSI-X table BAR (default: any present one)
 *   --mem-bar N                 the aperture BAR (0), 64-bit prefetchable
 *   --mmio-bar N                the register BAR (4)
 *   --spad-bar N                BAR holding the scratchpads (4)
 *   --spad-offset NUM           SPAD0's offset in it (0x1ab20); SPADi at +4*i
 *   --spad-count N              number of scratchpads (16)
 *   --bar0-pattern-offset NUM   where to write the pattern in the aperture (0x100000)
 *   --bar0-pattern-len NUM      its length (4096)
 *   --bar0-pattern-seed NUM     its seed (1): the bytes are pattern(SEED, LEN), pattern.h
 *   --no-pcie --no-msix         do not require these capabilities
 *   --keep                      leave the written values in place (default; the
 *                               host side checks them); --restore puts back the old ones
 * Every option also reads a default from the environment: --bar0-size from
 * VPHI_BAR0_SIZE and so on (upper case, '-' -> '_', "VPHI_" prefix), which
 * init.sh sets from vphi.bar0_size=... on the kernel command line.
 * Both "--opt value" and "--opt=value" work.
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
#include <unistd.h>

#define VG_PROG "vphi-probe"
#define VG_USAGE "(see the comment at the top of guest-tests/vphi-probe.c)\n"
#include "vphi-guest.h"
#include "pattern.h"
#include "x100-regs.h"

#define IORESOURCE_IO 0x00000100UL
#define IORESOURCE_MEM 0x00000200UL
#define IORESOURCE_PREFETCH 0x00002000UL
#define IORESOURCE_MEM_64 0x00100000UL

#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11

/* ------------------------------------------------------------ options */

/* Besides vg_card (--vendor, --device, --bdf): */
struct opts {
	unsigned long long bar0_size; /* 0: any power of two */
	unsigned long long bar4_size;
	unsigned long revision, class_code, msix_vectors;
	long msix_bar; /* -1: any */
	int mem_bar, mmio_bar, spad_bar;
	unsigned long long spad_offset;
	int spad_count;
	unsigned long long pattern_offset, pattern_len;
	unsigned long pattern_seed;
	int need_pcie, need_msix, restore;
};

static struct opts o = {
	.bar0_size = 0,
	.bar4_size = X100_MMIO_SIZE,
	.revision = 0x20,
	.class_code = 0x0b4000,
	.msix_vectors = 16,
	.msix_bar = -1,
	.mem_bar = X100_APER_BAR,
	.mmio_bar = X100_MMIO_BAR,
	.spad_bar = X100_MMIO_BAR,
	.spad_offset = X100_SPAD(0),
	.spad_count = 16,
	.pattern_offset = 0x100000,
	.pattern_len = 4096,
	.pattern_seed = 1,
	.need_pcie = 1,
	.need_msix = 1,
	.restore = 0,
};

static const struct vg_opt optdefs[] = {
	{ "bar0-size", VG_ULLONG, &o.bar0_size },
	{ "bar4-size", VG_ULLONG, &o.bar4_size },
	{ "revision", VG_ULONG, &o.revision },
	{ "class", VG_ULONG, &o.class_code },
	{ "msix-vectors", VG_ULONG, &o.msix_vectors },
	{ "msix-bar", VG_LONG, &o.msix_bar },
	{ "mem-bar", VG_INT, &o.mem_bar },
	{ "mmio-bar", VG_INT, &o.mmio_bar },
	{ "spad-bar", VG_INT, &o.spad_bar },
	{ "spad-offset", VG_ULLONG, &o.spad_offset },
	{ "spad-count", VG_INT, &o.spad_count },
	{ "bar0-pattern-offset", VG_ULLONG, &o.pattern_offset },
	{ "bar0-pattern-len", VG_ULLONG, &o.pattern_len },
	{ "bar0-pattern-seed", VG_ULONG, &o.pattern_seed },
	{ "no-pcie", VG_CLEAR, &o.need_pcie },
	{ "no-msix", VG_CLEAR, &o.need_msix },
	{ "restore", VG_SET, &o.restore },
	{ "keep", VG_CLEAR, &o.restore },
	{ 0 },
};

static void help(void)
{
	vg_usage_exit("usage: vphi-probe [options] [all|find|resource|config|spad|bar0 ...]");
}

/* ------------------------------------------------------------ the card */

static int find_device(void)
{
	int seen, found = vg_find_card(&seen);
	if (found == 0)
		ktap_diag("no %04lx:%04lx among %d PCI devices", vg_card.vendor, vg_card.device, seen);
	else if (found > 1)
		ktap_diag("%d devices match, using %s", found, vg_bdf);
	return found > 0 ? 0 : -1;
}

/* ------------------------------------------------------------ resource */

static struct vg_res res[17];
static int nres = -1;

static int load_resources(void)
{
	if (nres >= 0)
		return nres;
	nres = vg_read_resources(res, 17);
	if (nres < 0) {
		ktap_diag("cannot read " SYSFS_PCI "/%s/resource: %s", vg_bdf, strerror(errno));
		nres = 0;
	}
	return nres;
}

static const char *flag_names(unsigned long long f, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%s%s", f & IORESOURCE_IO ? " io" : "", f & IORESOURCE_MEM ? " mem" : "",
		 f & IORESOURCE_MEM_64 ? " 64bit" : "", f & IORESOURCE_PREFETCH ? " prefetchable" : "");
	return buf;
}

static int is_pow2(unsigned long long v) { return v && !(v & (v - 1)); }

static int check_bar(int bar)
{
	if (bar < 0 || bar > 5) {
		ktap_diag("BAR%d is not a BAR index", bar);
		return -1;
	}
	if (load_resources() <= bar) {
		ktap_diag("no resource line for BAR%d", bar);
		return -1;
	}
	return 0;
}

static void test_bar_size(int bar, unsigned long long expect, const char *name)
{
	if (check_bar(bar)) {
		ktap_result(0, name);
		return;
	}
	struct vg_res *r = &res[bar];
	char fb[64];
	ktap_diag("BAR%d: 0x%llx-0x%llx size 0x%llx flags 0x%llx%s", bar, r->start, r->end, r->size, r->flags,
		  flag_names(r->flags, fb, sizeof(fb)));
	int ok;
	if (expect) {
		ok = r->size == expect;
		if (!ok)
			ktap_diag("BAR%d size 0x%llx, expected 0x%llx", bar, r->size, expect);
	} else {
		ok = is_pow2(r->size);
		if (!ok)
			ktap_diag("BAR%d size 0x%llx is not a non-zero power of two", bar, r->size);
	}
	ktap_result(ok, name);
}

static void test_bar_mem64_prefetch(int bar, const char *name)
{
	if (check_bar(bar)) {
		ktap_result(0, name);
		return;
	}
	unsigned long long f = res[bar].flags;
	int ok = (f & IORESOURCE_MEM) && (f & IORESOURCE_MEM_64) && (f & IORESOURCE_PREFETCH);
	if (!ok) {
		char fb[64];
		ktap_diag("BAR%d flags 0x%llx (%s ), want mem 64bit prefetchable (0x%lx)", bar, f,
			  flag_names(f, fb, sizeof(fb)), IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_PREFETCH);
	}
	ktap_result(ok, name);
}

/* ------------------------------------------------------------ config */

static uint8_t cfg[4096];
static int cfg_len = -1;

static int load_config(void)
{
	if (cfg_len >= 0)
		return cfg_len;
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/config", vg_bdf);
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		ktap_diag("cannot open %s: %s", path, strerror(errno));
		return cfg_len = 0;
	}
	ssize_t n = pread(fd, cfg, sizeof(cfg), 0);
	close(fd);
	cfg_len = n < 0 ? 0 : (int)n;
	if (cfg_len < 64)
		ktap_diag("config space: only %d bytes", cfg_len);
	return cfg_len;
}

static unsigned cfg8(int off) { return off < cfg_len ? cfg[off] : 0xff; }
static unsigned cfg16(int off) { return cfg8(off) | cfg8(off + 1) << 8; }
static uint32_t cfg32(int off) { return cfg16(off) | (uint32_t)cfg16(off + 2) << 16; }

/* Offset of capability `id` in the standard list, 0 if absent; logs the list once. */
static int find_cap(unsigned id)
{
	static int logged;
	if (load_config() < 64 || !(cfg16(0x06) & 0x10))
		return 0;
	char list[256] = "";
	size_t n = 0;
	int found = 0;
	unsigned ptr = cfg8(0x34) & 0xfc;
	for (int guard = 0; ptr >= 0x40 && guard < 48; guard++) {
		unsigned cid = cfg8(ptr);
		if (n < sizeof(list) - 16)
			n += snprintf(list + n, sizeof(list) - n, " 0x%02x@0x%02x", cid, ptr);
		if (cid == id && !found)
			found = ptr;
		ptr = cfg8(ptr + 1) & 0xfc;
	}
	if (!logged++)
		ktap_diag("capabilities:%s", list[0] ? list : " none");
	return found;
}

static void test_revision(void)
{
	if (load_config() < 64) {
		ktap_result(0, "revision");
		return;
	}
	unsigned v = cfg16(0), d = cfg16(2);
	if (v != vg_card.vendor || d != vg_card.device)
		ktap_diag("config space IDs %04x:%04x, expected %04lx:%04lx", v, d, vg_card.vendor, vg_card.device);
	unsigned rev = cfg8(0x08);
	if (rev != o.revision)
		ktap_diag("revision 0x%02x, expected 0x%02lx", rev, o.revision);
	ktap_result(rev == o.revision && v == vg_card.vendor && d == vg_card.device, "revision");
}

static void test_class(void)
{
	if (load_config() < 64) {
		ktap_result(0, "class");
		return;
	}
	uint32_t cls = cfg32(0x08) >> 8;
	if (cls != o.class_code)
		ktap_diag("class 0x%06x, expected 0x%06lx", cls, o.class_code);
	ktap_result(cls == o.class_code, "class");
}

static void test_msix_cap(void)
{
	int c = find_cap(PCI_CAP_ID_MSIX);
	if (!c) {
		ktap_diag("no MSI-X capability (id 0x11)");
		if (o.need_msix)
			ktap_result(0, "msix-capability");
		else
			ktap_skip("msix-capability", "no MSI-X, --no-msix");
		return;
	}
	unsigned ctrl = cfg16(c + 2);
	unsigned vectors = (ctrl & 0x7ff) + 1;
	uint32_t table = cfg32(c + 4), pba = cfg32(c + 8);
	ktap_diag("MSI-X at 0x%02x: %u vectors, table BAR%u+0x%x, PBA BAR%u+0x%x%s%s", c, vectors, table & 7, table & ~7u,
		  pba & 7, pba & ~7u, ctrl & 0x8000 ? ", enabled" : "", ctrl & 0x4000 ? ", masked" : "");
	if (vectors != o.msix_vectors)
		ktap_diag("MSI-X table size %u, expected %lu", vectors, o.msix_vectors);
	ktap_result(vectors == o.msix_vectors, "msix-capability");
}

static void test_msix_bar(void)
{
	load_config();
	int c = find_cap(PCI_CAP_ID_MSIX);
	if (!c) {
		if (o.need_msix) {
			ktap_diag("no MSI-X capability: no table BAR");
			ktap_result(0, "msix-bar");
		} else
			ktap_skip("msix-bar", "no MSI-X, --no-msix");
		return;
	}
	int ok = 1;
	unsigned bir = cfg32(c + 4) & 7, pbir = cfg32(c + 8) & 7;
	unsigned vectors = (cfg16(c + 2) & 0x7ff) + 1;
	unsigned long long need = (cfg32(c + 4) & ~7u) + 16ULL * vectors;
	if (o.msix_bar >= 0 && bir != (unsigned long)o.msix_bar) {
		ktap_diag("MSI-X table in BAR%u, expected BAR%ld", bir, o.msix_bar);
		ok = 0;
	}
	if (bir > 5 || check_bar((int)bir)) {
		ktap_diag("MSI-X table BIR %u is not a BAR", bir);
		ok = 0;
	} else if (res[bir].size < need) {
		ktap_diag("MSI-X table BAR%u size 0x%llx, the table needs 0x%llx", bir, res[bir].size, need);
		ok = 0;
	} else if (!(res[bir].flags & IORESOURCE_MEM)) {
		ktap_diag("MSI-X table BAR%u is not a memory BAR", bir);
		ok = 0;
	} else
		ktap_diag("MSI-X table BAR%u: size 0x%llx", bir, res[bir].size);
	if (pbir > 5 || check_bar((int)pbir) || res[pbir].size == 0) {
		ktap_diag("MSI-X PBA BIR %u is not a present BAR", pbir);
		ok = 0;
	}
	ktap_result(ok, "msix-bar");
}

static void test_pcie_cap(void)
{
	int c = find_cap(PCI_CAP_ID_EXP);
	if (!c) {
		ktap_diag("no PCI Express capability (id 0x10)");
		if (o.need_pcie)
			ktap_result(0, "pcie-capability");
		else
			ktap_skip("pcie-capability", "no PCIe, --no-pcie");
		return;
	}
	static const char *types[] = { "endpoint", "legacy endpoint", "?", "?", "root port", "upstream port",
				       "downstream port", "PCIe-PCI bridge", "PCI-PCIe bridge", "RC integrated endpoint",
				       "RC event collector" };
	unsigned flags = cfg16(c + 2), type = (flags >> 4) & 0xf;
	uint32_t lnkcap = cfg32(c + 0x0c);
	unsigned lnksta = cfg16(c + 0x12);
	ktap_diag("PCIe at 0x%02x: version %u, %s; link cap x%u gen%u, status x%u gen%u", c, flags & 0xf,
		  type < sizeof(types) / sizeof(types[0]) ? types[type] : "?", (lnkcap >> 4) & 0x3f, lnkcap & 0xf,
		  (lnksta >> 4) & 0x3f, lnksta & 0xf);
	int ok = type == 0 || type == 1;
	if (!ok)
		ktap_diag("device/port type %u is not an endpoint", type);
	ktap_result(ok, "pcie-capability");
}

/* ------------------------------------------------------------ BAR access */

static int enabled = -1;

static int enable_device(void)
{
	if (enabled >= 0)
		return enabled;
	unsigned long before = 0;
	vg_read_hex_attr(vg_bdf, "enable", &before);
	/* A bound driver (mic) already enabled it, and sysfs refuses a second enable with EBUSY. */
	if (!before && vg_enable())
		return enabled = 0;
	unsigned long after = 0;
	vg_read_hex_attr(vg_bdf, "enable", &after);
	cfg_len = -1; /* re-read the command register */
	load_config();
	unsigned cmd = cfg16(0x04);
	ktap_diag("enable: %lu -> %lu, command 0x%04x (memory space %s)", before, after, cmd, cmd & 2 ? "on" : "OFF");
	return enabled = after != 0 && (cmd & 2);
}

struct map {
	void *base;
	size_t len;
	volatile uint8_t *at; /* the requested offset */
};

/* mmap [off, off+len) of resourceN, page-aligned around it. */
static int map_bar(int bar, unsigned long long off, unsigned long long len, struct map *m)
{
	if (check_bar(bar))
		return -1;
	if (off + len > res[bar].size || off + len < off) {
		ktap_diag("0x%llx+0x%llx is outside BAR%d (size 0x%llx)", off, len, bar, res[bar].size);
		return -1;
	}
	if (!(res[bar].flags & IORESOURCE_MEM)) {
		ktap_diag("BAR%d is not a memory BAR", bar);
		return -1;
	}
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long moff = off & ~(unsigned long long)(page - 1);
	size_t mlen = (size_t)((off + len - moff + page - 1) & ~(unsigned long long)(page - 1));
	void *p = vg_map_resource(bar, moff, mlen, "at 0x%llx+0x%zx", moff, mlen);
	if (!p)
		return -1;
	m->base = p;
	m->len = mlen;
	m->at = (volatile uint8_t *)p + (off - moff);
	return 0;
}

static void test_enable(void)
{
	ktap_result(enable_device(), "enable");
}

static void test_spad(void)
{
	const char *name = "spad-readback";
	struct map m;
	if (!enable_device() || map_bar(o.spad_bar, o.spad_offset, 4ULL * o.spad_count, &m)) {
		ktap_result(0, name);
		return;
	}
	volatile uint32_t *spad = (volatile uint32_t *)m.at;
	uint32_t old[64];
	int n = o.spad_count > 64 ? 64 : o.spad_count, bad = 0;
	for (int i = 0; i < n; i++)
		old[i] = spad[i];
	for (int i = 0; i < n; i++)
		spad[i] = 0xC0DE0000u | (uint32_t)i;
	for (int i = 0; i < n; i++) {
		uint32_t v = spad[i], want = 0xC0DE0000u | (uint32_t)i;
		if (v != want && bad++ < 8)
			ktap_diag("SPAD%d (BAR%d+0x%llx): read 0x%08x, wrote 0x%08x", i, o.spad_bar,
				  o.spad_offset + 4ULL * i, v, want);
	}
	/* and a second pattern, so a stuck or aliased register shows */
	for (int i = 0; i < n; i++)
		spad[i] = ~(0xC0DE0000u | (uint32_t)i);
	for (int i = 0; i < n; i++) {
		uint32_t v = spad[i], want = ~(0xC0DE0000u | (uint32_t)i);
		if (v != want && bad++ < 8)
			ktap_diag("SPAD%d: read 0x%08x, wrote 0x%08x", i, v, want);
	}
	for (int i = 0; i < n; i++)
		spad[i] = o.restore ? old[i] : 0xC0DE0000u | (uint32_t)i;
	if (bad)
		ktap_diag("%d mismatches", bad);
	else
		ktap_diag("SPAD0..SPAD%d at BAR%d+0x%llx read back (left as 0xc0de00NN%s)", n - 1, o.spad_bar,
			  o.spad_offset, o.restore ? ", then restored" : "");
	munmap(m.base, m.len);
	ktap_result(!bad, name);
}

static void test_bar0_pattern(void)
{
	const char *name = "bar0-pattern";
	struct map m;
	if (!enable_device() || map_bar(o.mem_bar, o.pattern_offset, o.pattern_len, &m)) {
		ktap_result(0, name);
		return;
	}
	unsigned long long len = o.pattern_len, bad = 0;
	uint32_t seed = (uint32_t)o.pattern_seed;
	uint8_t *want = malloc(len);
	if (!want) {
		munmap(m.base, m.len);
		ktap_result(0, name);
		return;
	}
	pattern_fill(seed, want, len);
	for (unsigned long long i = 0; i < len; i++)
		m.at[i] = want[i];
	if (msync(m.base, m.len, MS_SYNC))
		ktap_diag("msync: %s", strerror(errno));
	for (unsigned long long i = 0; i < len; i++) {
		uint8_t v = m.at[i];
		if (v != want[i] && bad++ < 8)
			ktap_diag("BAR%d+0x%llx: read 0x%02x, wrote 0x%02x", o.mem_bar, o.pattern_offset + i, v, want[i]);
	}
	free(want);
	if (bad)
		ktap_diag("%llu of %llu bytes differ", bad, len);
	else
		ktap_diag("0x%llx bytes of pattern(0x%x) at BAR%d+0x%llx read back", len, seed, o.mem_bar, o.pattern_offset);
	munmap(m.base, m.len);
	ktap_result(!bad, name);
}

static void test_bar0_size(void) { test_bar_size(o.mem_bar, o.bar0_size, "bar0-size"); }
static int cmp_ull(const void *a, const void *b)
{
	unsigned long long x = *(const unsigned long long *)a, y = *(const unsigned long long *)b;
	return x < y ? -1 : x > y;
}

/* The trapped-access round trip as the guest sees it: 4-byte reads of SPAD0 (for npm run bench). */
static void test_mmio_rtt(void)
{
	enum { N = 2000 };
	static unsigned long long t[N];
	struct map m;
	if (!enable_device() || map_bar(o.spad_bar, o.spad_offset, 4, &m)) {
		ktap_result(0, "mmio-rtt");
		return;
	}
	volatile uint32_t *spad0 = (volatile uint32_t *)m.at;
	for (int i = 0; i < N; i++) {
		unsigned long long t0 = vg_now_us();
		(void)*spad0;
		t[i] = vg_now_us() - t0;
	}
	qsort(t, N, sizeof(t[0]), cmp_ull);
	ktap_diag("mmio_rtt_us=%llu (median of %d 4-byte reads of BAR%d+0x%llx; min %llu, p90 %llu)", t[N / 2], N, o.spad_bar,
		  o.spad_offset, t[0], t[N * 9 / 10]);
	munmap(m.base, m.len);
	ktap_result(1, "mmio-rtt");
}

static void test_bar0_flags(void) { test_bar_mem64_prefetch(o.mem_bar, "bar0-64bit-prefetchable"); }
static void test_bar4_size(void) { test_bar_size(o.mmio_bar, o.bar4_size, "bar4-size"); }

/* ------------------------------------------------------------ main */

enum { G_FIND = 1, G_RESOURCE = 2, G_CONFIG = 4, G_SPAD = 8, G_BAR0 = 16, G_ALL = 31, G_RTT = 32 /* not in all */ };

static const struct vg_group words[] = {
	{ "all", G_ALL }, { "find", G_FIND }, { "resource", G_RESOURCE }, { "config", G_CONFIG },
	{ "spad", G_SPAD }, { "bar0", G_BAR0 }, { "rtt", G_RTT }, { 0 },
};

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int groups = vg_options(optdefs, words, help, argc, argv);
	if (o.spad_count < 1 || o.spad_count > 64)
		vg_usage_exit("--spad-count must be 1..64");

	static const struct test {
		int groups;
		const char *name;
		void (*fn)(void);
	} tests[] = {
		{ G_RESOURCE, "bar0-size", test_bar0_size },
		{ G_RESOURCE, "bar0-64bit-prefetchable", test_bar0_flags },
		{ G_RESOURCE, "bar4-size", test_bar4_size },
		{ G_RESOURCE, "msix-bar", test_msix_bar },
		{ G_CONFIG, "revision", test_revision },
		{ G_CONFIG, "class", test_class },
		{ G_CONFIG, "msix-capability", test_msix_cap },
		{ G_CONFIG, "pcie-capability", test_pcie_cap },
		{ G_SPAD | G_BAR0, "enable", test_enable },
		{ G_SPAD, "spad-readback", test_spad },
		{ G_BAR0, "bar0-pattern", test_bar0_pattern },
		{ G_RTT, "mmio-rtt", test_mmio_rtt },
	};
	int plan = 1;
	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++)
		plan += (tests[k].groups & groups) != 0;

	ktap_plan(plan);
	int found = find_device() == 0;
	if (found) {
		unsigned long cls = 0;
		vg_read_hex_attr(vg_bdf, "class", &cls);
		char link[1024], target[512];
		snprintf(link, sizeof(link), SYSFS_PCI "/%s/driver", vg_bdf);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		const char *drv = n > 0 ? strrchr(target, '/') + 1 : "none";
		ktap_diag("device %04lx:%04lx at %s, class 0x%06lx, driver %s", vg_card.vendor, vg_card.device, vg_bdf, cls, drv);
	}
	ktap_result(found, "find-device");
	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++) {
		if (!(tests[k].groups & groups))
			continue;
		if (found)
			tests[k].fn();
		else
			ktap_result(0, tests[k].name); /* everything needs the device */
	}
	return ktap_done();
}
