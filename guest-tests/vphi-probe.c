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
 *   --bar0-pattern-len NUM      its length (4096); byte i is (i*7+3)&0xff
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
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYSFS_PCI "/sys/bus/pci/devices"

#define IORESOURCE_IO 0x00000100UL
#define IORESOURCE_MEM 0x00000200UL
#define IORESOURCE_PREFETCH 0x00002000UL
#define IORESOURCE_MEM_64 0x00100000UL

#define PCI_CAP_ID_EXP 0x10
#define PCI_CAP_ID_MSIX 0x11

/* ------------------------------------------------------------ options */

struct opts {
	unsigned long vendor, device;
	char bdf[256];
	unsigned long long bar0_size; /* 0: any power of two */
	unsigned long long bar4_size;
	unsigned long revision, class_code, msix_vectors;
	long msix_bar; /* -1: any */
	int mem_bar, mmio_bar, spad_bar;
	unsigned long long spad_offset;
	int spad_count;
	unsigned long long pattern_offset, pattern_len;
	int need_pcie, need_msix, restore;
};

static struct opts o = {
	.vendor = 0x8086,
	.device = 0x225c,
	.bar0_size = 0,
	.bar4_size = 0x20000,
	.revision = 0x20,
	.class_code = 0x0b4000,
	.msix_vectors = 16,
	.msix_bar = -1,
	.mem_bar = 0,
	.mmio_bar = 4,
	.spad_bar = 4,
	.spad_offset = 0x1ab20,
	.spad_count = 16,
	.pattern_offset = 0x100000,
	.pattern_len = 4096,
	.need_pcie = 1,
	.need_msix = 1,
	.restore = 0,
};

static void usage_exit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "vphi-probe: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(see the comment at the top of guest-tests/vphi-probe.c)\n");
	va_end(ap);
	exit(2);
}

static unsigned long long parse_num(const char *name, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		usage_exit("%s: not a number: '%s'", name, s);
	return v;
}

enum kind { K_U32, K_U64, K_INT, K_LONG, K_STR, K_FLAG_SET, K_FLAG_CLEAR };

struct optdef {
	const char *name;
	enum kind kind;
	void *ptr;
};

static const struct optdef optdefs[] = {
	{ "vendor", K_U32, &o.vendor },
	{ "device", K_U32, &o.device },
	{ "bdf", K_STR, o.bdf },
	{ "bar0-size", K_U64, &o.bar0_size },
	{ "bar4-size", K_U64, &o.bar4_size },
	{ "revision", K_U32, &o.revision },
	{ "class", K_U32, &o.class_code },
	{ "msix-vectors", K_U32, &o.msix_vectors },
	{ "msix-bar", K_LONG, &o.msix_bar },
	{ "mem-bar", K_INT, &o.mem_bar },
	{ "mmio-bar", K_INT, &o.mmio_bar },
	{ "spad-bar", K_INT, &o.spad_bar },
	{ "spad-offset", K_U64, &o.spad_offset },
	{ "spad-count", K_INT, &o.spad_count },
	{ "bar0-pattern-offset", K_U64, &o.pattern_offset },
	{ "bar0-pattern-len", K_U64, &o.pattern_len },
	{ "no-pcie", K_FLAG_CLEAR, &o.need_pcie },
	{ "no-msix", K_FLAG_CLEAR, &o.need_msix },
	{ "restore", K_FLAG_SET, &o.restore },
	{ "keep", K_FLAG_CLEAR, &o.restore },
};
#define NOPTS (sizeof(optdefs) / sizeof(optdefs[0]))

static void set_opt(const struct optdef *d, const char *v)
{
	switch (d->kind) {
	case K_U32:
		*(unsigned long *)d->ptr = (unsigned long)parse_num(d->name, v);
		break;
	case K_U64:
		*(unsigned long long *)d->ptr = parse_num(d->name, v);
		break;
	case K_INT:
		*(int *)d->ptr = (int)parse_num(d->name, v);
		break;
	case K_LONG:
		*(long *)d->ptr = (long)parse_num(d->name, v);
		break;
	case K_STR:
		snprintf((char *)d->ptr, sizeof(o.bdf), "%s", v);
		break;
	case K_FLAG_SET: /* --restore, --restore=1: 1; --restore=0: 0 */
		*(int *)d->ptr = !(v && strcmp(v, "0") == 0);
		break;
	case K_FLAG_CLEAR: /* --no-pcie, --no-pcie=1: need_pcie 0; --no-pcie=0: 1 */
		*(int *)d->ptr = v && strcmp(v, "0") == 0;
		break;
	}
}

/* VPHI_BAR0_SIZE etc. */
static void env_defaults(void)
{
	for (size_t i = 0; i < NOPTS; i++) {
		char env[64] = "VPHI_";
		size_t n = strlen(env);
		for (const char *p = optdefs[i].name; *p && n < sizeof(env) - 1; p++)
			env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
		env[n] = 0;
		const char *v = getenv(env);
		if (v && *v)
			set_opt(&optdefs[i], v);
	}
}

/* ------------------------------------------------------------ KTAP */

static int test_no, n_failed;

static void diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static void result(int ok, const char *name)
{
	test_no++;
	if (!ok)
		n_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", test_no, name);
}

static void skip(const char *name, const char *why)
{
	test_no++;
	printf("ok %d - %s # SKIP %s\n", test_no, name, why);
}

/* ------------------------------------------------------------ sysfs */

static int read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return (int)n;
}

static int read_hex_attr(const char *bdf, const char *attr, unsigned long *v)
{
	char path[512], buf[64];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/%s", bdf, attr);
	if (read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	*v = strtoul(buf, NULL, 0);
	return 0;
}

static char bdf[256];

static int find_device(void)
{
	if (o.bdf[0]) {
		unsigned long v, d;
		if (read_hex_attr(o.bdf, "vendor", &v) || read_hex_attr(o.bdf, "device", &d)) {
			diag("no PCI device %s", o.bdf);
			return -1;
		}
		if (v != o.vendor || d != o.device)
			diag("warning: %s is %04lx:%04lx, not %04lx:%04lx", o.bdf, v, d, o.vendor, o.device);
		snprintf(bdf, sizeof(bdf), "%s", o.bdf);
		return 0;
	}
	DIR *dir = opendir(SYSFS_PCI);
	if (!dir) {
		diag("cannot open " SYSFS_PCI ": %s", strerror(errno));
		return -1;
	}
	struct dirent *e;
	int found = 0, seen = 0;
	char first[256] = "";
	while ((e = readdir(dir))) {
		if (e->d_name[0] == '.')
			continue;
		unsigned long v, d;
		if (read_hex_attr(e->d_name, "vendor", &v) || read_hex_attr(e->d_name, "device", &d))
			continue;
		seen++;
		if (v == o.vendor && d == o.device) {
			found++;
			/* readdir order is not sorted: keep the lowest BDF */
			if (!first[0] || strcmp(e->d_name, first) < 0)
				snprintf(first, sizeof(first), "%s", e->d_name);
		}
	}
	closedir(dir);
	if (!found) {
		diag("no %04lx:%04lx among %d PCI devices", o.vendor, o.device, seen);
		return -1;
	}
	if (found > 1)
		diag("%d devices match, using %s", found, first);
	snprintf(bdf, sizeof(bdf), "%s", first);
	return 0;
}

/* ------------------------------------------------------------ resource */

struct res {
	unsigned long long start, end, flags, size;
};
static struct res res[17];
static int nres = -1;

static int load_resources(void)
{
	if (nres >= 0)
		return nres;
	char path[512], buf[4096];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource", bdf);
	if (read_file(path, buf, sizeof(buf)) < 0) {
		diag("cannot read %s: %s", path, strerror(errno));
		return nres = 0;
	}
	nres = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line && nres < 17; line = strtok_r(NULL, "\n", &save)) {
		struct res *r = &res[nres];
		if (sscanf(line, "%llx %llx %llx", &r->start, &r->end, &r->flags) != 3)
			break;
		r->size = (r->end || r->start) ? r->end - r->start + 1 : 0;
		nres++;
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
		diag("BAR%d is not a BAR index", bar);
		return -1;
	}
	if (load_resources() <= bar) {
		diag("no resource line for BAR%d", bar);
		return -1;
	}
	return 0;
}

static void test_bar_size(int bar, unsigned long long expect, const char *name)
{
	if (check_bar(bar)) {
		result(0, name);
		return;
	}
	struct res *r = &res[bar];
	char fb[64];
	diag("BAR%d: 0x%llx-0x%llx size 0x%llx flags 0x%llx%s", bar, r->start, r->end, r->size, r->flags,
	     flag_names(r->flags, fb, sizeof(fb)));
	int ok;
	if (expect) {
		ok = r->size == expect;
		if (!ok)
			diag("BAR%d size 0x%llx, expected 0x%llx", bar, r->size, expect);
	} else {
		ok = is_pow2(r->size);
		if (!ok)
			diag("BAR%d size 0x%llx is not a non-zero power of two", bar, r->size);
	}
	result(ok, name);
}

static void test_bar_mem64_prefetch(int bar, const char *name)
{
	if (check_bar(bar)) {
		result(0, name);
		return;
	}
	unsigned long long f = res[bar].flags;
	int ok = (f & IORESOURCE_MEM) && (f & IORESOURCE_MEM_64) && (f & IORESOURCE_PREFETCH);
	if (!ok) {
		char fb[64];
		diag("BAR%d flags 0x%llx (%s ), want mem 64bit prefetchable (0x%lx)", bar, f,
		     flag_names(f, fb, sizeof(fb)), IORESOURCE_MEM | IORESOURCE_MEM_64 | IORESOURCE_PREFETCH);
	}
	result(ok, name);
}

/* ------------------------------------------------------------ config */

static uint8_t cfg[4096];
static int cfg_len = -1;

static int load_config(void)
{
	if (cfg_len >= 0)
		return cfg_len;
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/config", bdf);
	int fd = open(path, O_RDONLY);
	if (fd < 0) {
		diag("cannot open %s: %s", path, strerror(errno));
		return cfg_len = 0;
	}
	ssize_t n = pread(fd, cfg, sizeof(cfg), 0);
	close(fd);
	cfg_len = n < 0 ? 0 : (int)n;
	if (cfg_len < 64)
		diag("config space: only %d bytes", cfg_len);
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
		diag("capabilities:%s", list[0] ? list : " none");
	return found;
}

static void test_revision(void)
{
	if (load_config() < 64) {
		result(0, "revision");
		return;
	}
	unsigned v = cfg16(0), d = cfg16(2);
	if (v != o.vendor || d != o.device)
		diag("config space IDs %04x:%04x, expected %04lx:%04lx", v, d, o.vendor, o.device);
	unsigned rev = cfg8(0x08);
	if (rev != o.revision)
		diag("revision 0x%02x, expected 0x%02lx", rev, o.revision);
	result(rev == o.revision && v == o.vendor && d == o.device, "revision");
}

static void test_class(void)
{
	if (load_config() < 64) {
		result(0, "class");
		return;
	}
	uint32_t cls = cfg32(0x08) >> 8;
	if (cls != o.class_code)
		diag("class 0x%06x, expected 0x%06lx", cls, o.class_code);
	result(cls == o.class_code, "class");
}

static void test_msix_cap(void)
{
	int c = find_cap(PCI_CAP_ID_MSIX);
	if (!c) {
		diag("no MSI-X capability (id 0x11)");
		if (o.need_msix)
			result(0, "msix-capability");
		else
			skip("msix-capability", "no MSI-X, --no-msix");
		return;
	}
	unsigned ctrl = cfg16(c + 2);
	unsigned vectors = (ctrl & 0x7ff) + 1;
	uint32_t table = cfg32(c + 4), pba = cfg32(c + 8);
	diag("MSI-X at 0x%02x: %u vectors, table BAR%u+0x%x, PBA BAR%u+0x%x%s%s", c, vectors, table & 7, table & ~7u,
	     pba & 7, pba & ~7u, ctrl & 0x8000 ? ", enabled" : "", ctrl & 0x4000 ? ", masked" : "");
	if (vectors != o.msix_vectors)
		diag("MSI-X table size %u, expected %lu", vectors, o.msix_vectors);
	result(vectors == o.msix_vectors, "msix-capability");
}

static void test_msix_bar(void)
{
	load_config();
	int c = find_cap(PCI_CAP_ID_MSIX);
	if (!c) {
		if (o.need_msix) {
			diag("no MSI-X capability: no table BAR");
			result(0, "msix-bar");
		} else
			skip("msix-bar", "no MSI-X, --no-msix");
		return;
	}
	int ok = 1;
	unsigned bir = cfg32(c + 4) & 7, pbir = cfg32(c + 8) & 7;
	unsigned vectors = (cfg16(c + 2) & 0x7ff) + 1;
	unsigned long long need = (cfg32(c + 4) & ~7u) + 16ULL * vectors;
	if (o.msix_bar >= 0 && bir != (unsigned long)o.msix_bar) {
		diag("MSI-X table in BAR%u, expected BAR%ld", bir, o.msix_bar);
		ok = 0;
	}
	if (bir > 5 || check_bar((int)bir)) {
		diag("MSI-X table BIR %u is not a BAR", bir);
		ok = 0;
	} else if (res[bir].size < need) {
		diag("MSI-X table BAR%u size 0x%llx, the table needs 0x%llx", bir, res[bir].size, need);
		ok = 0;
	} else if (!(res[bir].flags & IORESOURCE_MEM)) {
		diag("MSI-X table BAR%u is not a memory BAR", bir);
		ok = 0;
	} else
		diag("MSI-X table BAR%u: size 0x%llx", bir, res[bir].size);
	if (pbir > 5 || check_bar((int)pbir) || res[pbir].size == 0) {
		diag("MSI-X PBA BIR %u is not a present BAR", pbir);
		ok = 0;
	}
	result(ok, "msix-bar");
}

static void test_pcie_cap(void)
{
	int c = find_cap(PCI_CAP_ID_EXP);
	if (!c) {
		diag("no PCI Express capability (id 0x10)");
		if (o.need_pcie)
			result(0, "pcie-capability");
		else
			skip("pcie-capability", "no PCIe, --no-pcie");
		return;
	}
	static const char *types[] = { "endpoint", "legacy endpoint", "?", "?", "root port", "upstream port",
				       "downstream port", "PCIe-PCI bridge", "PCI-PCIe bridge", "RC integrated endpoint",
				       "RC event collector" };
	unsigned flags = cfg16(c + 2), type = (flags >> 4) & 0xf;
	uint32_t lnkcap = cfg32(c + 0x0c);
	unsigned lnksta = cfg16(c + 0x12);
	diag("PCIe at 0x%02x: version %u, %s; link cap x%u gen%u, status x%u gen%u", c, flags & 0xf,
	     type < sizeof(types) / sizeof(types[0]) ? types[type] : "?", (lnkcap >> 4) & 0x3f, lnkcap & 0xf,
	     (lnksta >> 4) & 0x3f, lnksta & 0xf);
	int ok = type == 0 || type == 1;
	if (!ok)
		diag("device/port type %u is not an endpoint", type);
	result(ok, "pcie-capability");
}

/* ------------------------------------------------------------ BAR access */

static int enabled = -1;

static int enable_device(void)
{
	if (enabled >= 0)
		return enabled;
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/enable", bdf);
	unsigned long before = 0;
	read_hex_attr(bdf, "enable", &before);
	int fd = open(path, O_WRONLY);
	if (fd < 0 || write(fd, "1", 1) != 1) {
		diag("cannot write 1 to %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return enabled = 0;
	}
	close(fd);
	unsigned long after = 0;
	read_hex_attr(bdf, "enable", &after);
	cfg_len = -1; /* re-read the command register */
	load_config();
	unsigned cmd = cfg16(0x04);
	diag("enable: %lu -> %lu, command 0x%04x (memory space %s)", before, after, cmd, cmd & 2 ? "on" : "OFF");
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
		diag("0x%llx+0x%llx is outside BAR%d (size 0x%llx)", off, len, bar, res[bar].size);
		return -1;
	}
	if (!(res[bar].flags & IORESOURCE_MEM)) {
		diag("BAR%d is not a memory BAR", bar);
		return -1;
	}
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource%d", bdf, bar);
	int fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0) {
		diag("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	long page = sysconf(_SC_PAGESIZE);
	unsigned long long moff = off & ~(unsigned long long)(page - 1);
	size_t mlen = (size_t)((off + len - moff + page - 1) & ~(unsigned long long)(page - 1));
	void *p = mmap(NULL, mlen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)moff);
	int err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		diag("mmap %s at 0x%llx+0x%zx: %s", path, moff, mlen, strerror(err));
		return -1;
	}
	m->base = p;
	m->len = mlen;
	m->at = (volatile uint8_t *)p + (off - moff);
	return 0;
}

static void test_enable(void)
{
	result(enable_device(), "enable");
}

static void test_spad(void)
{
	const char *name = "spad-readback";
	struct map m;
	if (!enable_device() || map_bar(o.spad_bar, o.spad_offset, 4ULL * o.spad_count, &m)) {
		result(0, name);
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
			diag("SPAD%d (BAR%d+0x%llx): read 0x%08x, wrote 0x%08x", i, o.spad_bar,
			     o.spad_offset + 4ULL * i, v, want);
	}
	/* and a second pattern, so a stuck or aliased register shows */
	for (int i = 0; i < n; i++)
		spad[i] = ~(0xC0DE0000u | (uint32_t)i);
	for (int i = 0; i < n; i++) {
		uint32_t v = spad[i], want = ~(0xC0DE0000u | (uint32_t)i);
		if (v != want && bad++ < 8)
			diag("SPAD%d: read 0x%08x, wrote 0x%08x", i, v, want);
	}
	for (int i = 0; i < n; i++)
		spad[i] = o.restore ? old[i] : 0xC0DE0000u | (uint32_t)i;
	if (bad)
		diag("%d mismatches", bad);
	else
		diag("SPAD0..SPAD%d at BAR%d+0x%llx read back (left as 0xc0de00NN%s)", n - 1, o.spad_bar,
		     o.spad_offset, o.restore ? ", then restored" : "");
	munmap(m.base, m.len);
	result(!bad, name);
}

static void test_bar0_pattern(void)
{
	const char *name = "bar0-pattern";
	struct map m;
	if (!enable_device() || map_bar(o.mem_bar, o.pattern_offset, o.pattern_len, &m)) {
		result(0, name);
		return;
	}
	unsigned long long len = o.pattern_len, bad = 0;
	for (unsigned long long i = 0; i < len; i++)
		m.at[i] = (uint8_t)((i * 7 + 3) & 0xff);
	if (msync(m.base, m.len, MS_SYNC))
		diag("msync: %s", strerror(errno));
	for (unsigned long long i = 0; i < len; i++) {
		uint8_t v = m.at[i], want = (uint8_t)((i * 7 + 3) & 0xff);
		if (v != want && bad++ < 8)
			diag("BAR%d+0x%llx: read 0x%02x, wrote 0x%02x", o.mem_bar, o.pattern_offset + i, v, want);
	}
	if (bad)
		diag("%llu of %llu bytes differ", bad, len);
	else
		diag("0x%llx bytes of (i*7+3)&0xff at BAR%d+0x%llx read back", len, o.mem_bar, o.pattern_offset);
	munmap(m.base, m.len);
	result(!bad, name);
}

static void test_bar0_size(void) { test_bar_size(o.mem_bar, o.bar0_size, "bar0-size"); }
static void test_bar0_flags(void) { test_bar_mem64_prefetch(o.mem_bar, "bar0-64bit-prefetchable"); }
static void test_bar4_size(void) { test_bar_size(o.mmio_bar, o.bar4_size, "bar4-size"); }

/* ------------------------------------------------------------ main */

enum { G_FIND = 1, G_RESOURCE = 2, G_CONFIG = 4, G_SPAD = 8, G_BAR0 = 16, G_ALL = 31 };

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	env_defaults();
	int groups = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) == 0) {
			const char *nm = a + 2, *eq = strchr(nm, '=');
			size_t len = eq ? (size_t)(eq - nm) : strlen(nm);
			const struct optdef *d = NULL;
			for (size_t k = 0; k < NOPTS; k++)
				if (strlen(optdefs[k].name) == len && strncmp(optdefs[k].name, nm, len) == 0)
					d = &optdefs[k];
			if (!d) {
				if (strcmp(nm, "help") == 0)
					usage_exit("usage: vphi-probe [options] [all|find|resource|config|spad|bar0 ...]");
				usage_exit("unknown option %s", a);
			}
			const char *v = eq ? eq + 1 : NULL;
			if (!v && d->kind != K_FLAG_SET && d->kind != K_FLAG_CLEAR) {
				if (i + 1 >= argc)
					usage_exit("%s needs a value", a);
				v = argv[++i];
			}
			set_opt(d, v);
		} else if (!strcmp(a, "all"))
			groups |= G_ALL;
		else if (!strcmp(a, "find"))
			groups |= G_FIND;
		else if (!strcmp(a, "resource"))
			groups |= G_RESOURCE;
		else if (!strcmp(a, "config"))
			groups |= G_CONFIG;
		else if (!strcmp(a, "spad"))
			groups |= G_SPAD;
		else if (!strcmp(a, "bar0"))
			groups |= G_BAR0;
		else
			usage_exit("unknown test group '%s'", a);
	}
	if (!groups)
		groups = G_ALL;
	if (o.spad_count < 1 || o.spad_count > 64)
		usage_exit("--spad-count must be 1..64");

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
	};
	int plan = 1;
	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++)
		plan += (tests[k].groups & groups) != 0;

	printf("KTAP version 1\n1..%d\n", plan);
	int found = find_device() == 0;
	if (found) {
		unsigned long cls = 0;
		read_hex_attr(bdf, "class", &cls);
		char link[1024], target[512];
		snprintf(link, sizeof(link), SYSFS_PCI "/%s/driver", bdf);
		ssize_t n = readlink(link, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		const char *drv = n > 0 ? strrchr(target, '/') + 1 : "none";
		diag("device %04lx:%04lx at %s, class 0x%06lx, driver %s", o.vendor, o.device, bdf, cls, drv);
	}
	result(found, "find-device");
	for (size_t k = 0; k < sizeof(tests) / sizeof(tests[0]); k++) {
		if (!(tests[k].groups & groups))
			continue;
		if (found)
			tests[k].fn();
		else
			result(0, tests[k].name); /* everything needs the device */
	}
	printf("# vphi-probe: %d of %d failed\n", n_failed, plan);
	return n_failed ? 1 : 0;
}
