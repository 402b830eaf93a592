/*
 * vphi-guest.h: what the static guest programs of guest-tests/ share.
 *
 *   #define VG_PROG "vphi-probe"   names the program in usage errors and the summary
 *   #define VG_USAGE "..."         what follows a usage error's message (ends in "\n")
 *   #include "vphi-guest.h"
 *
 * Sections: KTAP output (ktap_*), options (vg_options: VPHI_* environment, then
 * the command line), sysfs files, the card (vg_find_card, vg_enable,
 * vg_read_resources, vg_map_resource), time (vg_now_us, vg_sleep_ms).
 *
 * A program may be several files (guest-tests/<prog>.c and guest-tests/<prog>/
 * *.c, each defining VG_PROG before the include): the state here (KTAP counts,
 * vg_card, vg_bdf) is one VG_SHARED definition for all of them.
 */
#ifndef VPHI_GUEST_H
#define VPHI_GUEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mremap() and MAP_HUGETLB of guest-mem.h: include this header first */
#endif

#ifndef VG_PROG
#error "define VG_PROG and VG_USAGE before including vphi-guest.h"
#endif

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SYSFS_PCI "/sys/bus/pci/devices"
/* A variable every file of a program shares: defined in each, merged by the linker. */
#define VG_SHARED __attribute__((weak))
#define VG_STR_LEN 256 /* a VG_STR option, a PCI address */

/* ------------------------------------------------------------ KTAP */

VG_SHARED int ktap_tests, ktap_failed, ktap_planned;

static inline void ktap_plan(int n)
{
	ktap_planned = n;
	printf("KTAP version 1\n1..%d\n", n);
}

static inline void ktap_diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void ktap_diag(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("# ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
}

static inline void ktap_result(int ok, const char *name)
{
	ktap_tests++;
	if (!ok)
		ktap_failed++;
	printf("%sok %d - %s\n", ok ? "" : "not ", ktap_tests, name);
}

static inline void ktap_skip(const char *name, const char *why)
{
	ktap_tests++;
	printf("ok %d - %s # SKIP %s\n", ktap_tests, name, why);
}

/* The summary line; returns the exit status (0: every test passed, 1: not). */
static inline int ktap_done(void)
{
	printf("# " VG_PROG ": %d of %d failed\n", ktap_failed, ktap_planned);
	return ktap_failed ? 1 : 0;
}

/* ------------------------------------------------------------ options */

/* "VG_PROG: message" and VG_USAGE on stderr, exit status 2. */
static inline void vg_usage_exit(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static inline void vg_usage_exit(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, VG_PROG ": ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n" VG_USAGE);
	va_end(ap);
	exit(2);
}

/* A number in C syntax (0x.., 0.., decimal), or a usage error. */
static inline unsigned long long vg_parse_num(const char *name, const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || end == s || *end)
		vg_usage_exit("%s: not a number: '%s'", name, s);
	return v;
}

enum vg_kind {
	VG_ULONG,  /* unsigned long */
	VG_ULLONG, /* unsigned long long */
	VG_INT,    /* int */
	VG_LONG,   /* long */
	VG_STR,    /* char[VG_STR_LEN] */
	VG_SET,    /* int flag: --x and --x=1 set it to 1, --x=0 to 0 */
	VG_CLEAR,  /* int flag: --no-x and --no-x=1 set it to 0, --no-x=0 to 1 */
};

/* An option ("bar0-size": --bar0-size, VPHI_BAR0_SIZE); tables end with { 0 }. */
struct vg_opt {
	const char *name;
	enum vg_kind kind;
	void *ptr;
};

/* The card to use: options of every program, ahead of its own. */
struct vg_card {
	unsigned long vendor, device; /* default: the x100's */
	char bdf[VG_STR_LEN];         /* given: use it, no scan */
};
VG_SHARED struct vg_card vg_card = { .vendor = 0x8086, .device = 0x225c };

static const struct vg_opt vg_card_opts[] = {
	{ "vendor", VG_ULONG, &vg_card.vendor },
	{ "device", VG_ULONG, &vg_card.device },
	{ "bdf", VG_STR, vg_card.bdf },
	{ 0 },
};

/* A command-line word naming test groups ("all", G_ALL); tables start with the default, end with { 0 }. */
struct vg_group {
	const char *name;
	int bits;
};

/* v is NULL for a flag given without "=value". */
static inline void vg_set_opt(const struct vg_opt *d, const char *v)
{
	switch (d->kind) {
	case VG_ULONG:
		*(unsigned long *)d->ptr = (unsigned long)vg_parse_num(d->name, v);
		break;
	case VG_ULLONG:
		*(unsigned long long *)d->ptr = vg_parse_num(d->name, v);
		break;
	case VG_INT:
		*(int *)d->ptr = (int)vg_parse_num(d->name, v);
		break;
	case VG_LONG:
		*(long *)d->ptr = (long)vg_parse_num(d->name, v);
		break;
	case VG_STR:
		snprintf((char *)d->ptr, VG_STR_LEN, "%s", v);
		break;
	case VG_SET:
		*(int *)d->ptr = !(v && strcmp(v, "0") == 0);
		break;
	case VG_CLEAR:
		*(int *)d->ptr = v && strcmp(v, "0") == 0;
		break;
	}
}

/* Defaults from the environment: "bar0-size" from VPHI_BAR0_SIZE (init.sh sets them). */
static inline void vg_env_defaults(const struct vg_opt *opts)
{
	for (const struct vg_opt *d = opts; d->name; d++) {
		char env[64] = "VPHI_";
		size_t n = strlen(env);
		for (const char *p = d->name; *p && n < sizeof(env) - 1; p++)
			env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
		env[n] = 0;
		const char *v = getenv(env);
		if (v && *v)
			vg_set_opt(d, v);
	}
}

/* The option in vg_card_opts or opts whose name is the len chars at `name`; NULL if none. */
static inline const struct vg_opt *vg_find_opt(const struct vg_opt *opts, const char *name, size_t len)
{
	const struct vg_opt *tables[] = { vg_card_opts, opts };
	for (int t = 0; t < 2; t++)
		for (const struct vg_opt *d = tables[t]; d->name; d++)
			if (strlen(d->name) == len && strncmp(d->name, name, len) == 0)
				return d;
	return NULL;
}

/*
 * Options vg_card_opts and opts: their environment defaults, then the command line:
 * "--name value" or "--name=value" (flags take no value), and words naming test groups.
 * --help calls help(), which does not return. Anything else is a usage error.
 * Returns the groups named, the first entry's (the default) if none.
 */
static inline int vg_options(const struct vg_opt *opts, const struct vg_group *groups, void (*help)(void), int argc,
			     char **argv)
{
	vg_env_defaults(vg_card_opts);
	vg_env_defaults(opts);
	int bits = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			const struct vg_group *g = groups;
			while (g->name && strcmp(g->name, a) != 0)
				g++;
			if (!g->name)
				vg_usage_exit("unknown test group '%s'", a);
			bits |= g->bits;
			continue;
		}
		const char *nm = a + 2, *eq = strchr(nm, '=');
		size_t len = eq ? (size_t)(eq - nm) : strlen(nm);
		const struct vg_opt *d = vg_find_opt(opts, nm, len);
		if (!d) {
			if (strcmp(nm, "help") == 0)
				help();
			vg_usage_exit("unknown option %s", a);
		}
		const char *v = eq ? eq + 1 : NULL;
		if (!v && d->kind != VG_SET && d->kind != VG_CLEAR) {
			if (i + 1 >= argc)
				vg_usage_exit("%s needs a value", a);
			v = argv[++i];
		}
		vg_set_opt(d, v);
	}
	return bits ? bits : groups[0].bits;
}

/* ------------------------------------------------------------ sysfs files */

/* The file's contents, NUL-terminated (at most len - 1 bytes); their length, -1 on errors. */
static inline int vg_read_file(const char *path, char *buf, size_t len)
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

static inline int vg_write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* A number from SYSFS_PCI/<bdf>/<attr> ("0x8086\n"). */
static inline int vg_read_hex_attr(const char *bdf, const char *attr, unsigned long *v)
{
	char path[512], buf[64];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/%s", bdf, attr);
	if (vg_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	*v = strtoul(buf, NULL, 0);
	return 0;
}

/* ------------------------------------------------------------ the card */

/* Its PCI address ("0000:01:00.0"), once vg_find_card() has found it. */
VG_SHARED char vg_bdf[VG_STR_LEN];

/*
 * Sets vg_bdf: to --bdf if that is given (the device must exist, another identity is
 * only warned about), else to the lowest address of a --vendor:--device in SYSFS_PCI.
 * Returns how many devices match (1 for --bdf), 0 for none (*seen: how many PCI
 * devices were looked at), -1 for an error (reported).
 */
static inline int vg_find_card(int *seen)
{
	const char *bdf = vg_card.bdf;
	unsigned long vendor = vg_card.vendor, device = vg_card.device;
	*seen = 0;
	if (bdf[0]) {
		unsigned long v, d;
		if (vg_read_hex_attr(bdf, "vendor", &v) || vg_read_hex_attr(bdf, "device", &d)) {
			ktap_diag("no PCI device %s", bdf);
			return -1;
		}
		if (v != vendor || d != device)
			ktap_diag("warning: %s is %04lx:%04lx, not %04lx:%04lx", bdf, v, d, vendor, device);
		snprintf(vg_bdf, sizeof(vg_bdf), "%s", bdf);
		return 1;
	}
	DIR *dir = opendir(SYSFS_PCI);
	if (!dir) {
		ktap_diag("cannot open " SYSFS_PCI ": %s", strerror(errno));
		return -1;
	}
	struct dirent *e;
	int found = 0;
	char first[VG_STR_LEN] = "";
	while ((e = readdir(dir))) {
		unsigned long v, d;
		if (e->d_name[0] == '.' || vg_read_hex_attr(e->d_name, "vendor", &v) ||
		    vg_read_hex_attr(e->d_name, "device", &d))
			continue;
		++*seen;
		if (v == vendor && d == device) {
			found++;
			/* readdir order is not sorted: keep the lowest BDF */
			if (!first[0] || strcmp(e->d_name, first) < 0)
				snprintf(first, sizeof(first), "%s", e->d_name);
		}
	}
	closedir(dir);
	if (found)
		snprintf(vg_bdf, sizeof(vg_bdf), "%s", first);
	return found;
}

/* Writes 1 to its sysfs "enable" (memory decode on). */
static inline int vg_enable(void)
{
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/enable", vg_bdf);
	if (vg_write_file(path, "1")) {
		ktap_diag("cannot write 1 to %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* A line of its sysfs "resource": BAR0..5, the ROM, ... */
struct vg_res {
	unsigned long long start, end, flags, size;
};

/* The first `max` lines of "resource" into r: how many there are, -1 if unreadable (errno). */
static inline int vg_read_resources(struct vg_res *r, int max)
{
	char path[512], buf[4096];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource", vg_bdf);
	if (vg_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	int n = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line && n < max; line = strtok_r(NULL, "\n", &save), n++) {
		if (sscanf(line, "%llx %llx %llx", &r[n].start, &r[n].end, &r[n].flags) != 3)
			break;
		r[n].size = (r[n].end || r[n].start) ? r[n].end - r[n].start + 1 : 0;
	}
	return n;
}

/*
 * mmap [off, off + len) of its "resource<bar>", shared, read-write, O_SYNC; off page
 * aligned. NULL on failure, reported; a failed mmap as "mmap <path> <fmt...>: <error>".
 */
static inline void *vg_map_resource(int bar, unsigned long long off, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static inline void *vg_map_resource(int bar, unsigned long long off, size_t len, const char *fmt, ...)
{
	char path[512];
	snprintf(path, sizeof(path), SYSFS_PCI "/%s/resource%d", vg_bdf, bar);
	int fd = open(path, O_RDWR | O_SYNC);
	if (fd < 0) {
		ktap_diag("cannot open %s: %s", path, strerror(errno));
		return NULL;
	}
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)off);
	int err = errno;
	close(fd);
	if (p == MAP_FAILED) {
		char what[128];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(what, sizeof(what), fmt, ap);
		va_end(ap);
		ktap_diag("mmap %s %s: %s", path, what, strerror(err));
		return NULL;
	}
	return p;
}

/* ------------------------------------------------------------ time */

static inline unsigned long long vg_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000u + (unsigned long long)ts.tv_nsec / 1000u;
}

static inline void vg_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

#endif /* VPHI_GUEST_H */
