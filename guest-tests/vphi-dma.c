/*
 * vphi-dma: drive the vphi card's DMA engine (Intel Xeon Phi x100,
 * 8086:225c) directly through BAR4 from guest userspace, exactly as
 * drivers/dma/mic_x100_dma.c does, and print KTAP.
 *
 *   vphi-dma [all|copy|wrap|status|errors|bench|selftest ...] [options]
 *
 * Groups (default: all = copy wrap status errors; bench and selftest only on
 * request), one file each in guest-tests/vphi-dma/:
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
 *   selftest the pattern and CRC32 of pattern.h against the known vectors;
 *           needs no card (alone, it runs anywhere, also on the host)
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
 * is announced as "# gddr-check ADDR LEN SEED" (pattern(SEED, LEN), pattern.h), and
 * 64-bit status values written to card memory as "# gddr-u64 ADDR VALUE".
 *
 * How it reaches guest memory (x100-dma.h, guest-mem.h): the SMPT is
 * programmed as mic_smpt_init() does (SMPT[i] = i << 2, identity), so guest
 * physical address P is card address 0x80_0000_0000 + P; physical addresses
 * come from /proc/self/pagemap (root), buffers are locked. Huge pages are physically
 * contiguous; otherwise descriptors follow the physically contiguous runs.
 * Meant for the throwaway test guest: once it has found the card it sets
 * /proc/sys/vm/compact_unevictable_allowed to 0 and raises nr_hugepages,
 * and leaves both so.
 *
 * Exit status: 0 if every test passed, 1 otherwise, 2 for usage errors.
 */
#include "vphi-dma/vphi-dma.h"

struct opts o = {
	.channel = -1,
	.ring_slots = 64,
	.gddr_base = 0x1000000,
	.timeout_ms = 5000,
	.hugepages = 8,
	.no_huge = 0,
	.bench_mib = 256,
};

volatile uint8_t *bar4;
uint8_t *gddr;
unsigned long long gddr_size;

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

static const struct vg_group words[] = {
	{ "all", GR_ALL }, { "copy", GR_COPY }, { "wrap", GR_WRAP }, { "status", GR_STATUS },
	{ "errors", GR_ERRORS }, { "bench", GR_BENCH }, { "selftest", GR_SELFTEST }, { 0 },
};

/* In the order they run. */
static const struct dma_group *const groups[] = {
	&group_copy, &group_wrap, &group_status, &group_errors, &group_bench, &group_selftest,
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static void help(void)
{
	printf("usage: vphi-dma [all|copy|wrap|status|errors|bench|selftest ...] [--channel N] [--bdf D:B:D.F]\n"
	       "  [--ring-slots N] [--gddr-base NUM] [--timeout-ms N] [--hugepages N] [--no-huge]\n"
	       "  [--bench-mib N]   (see the comment at the top of guest-tests/vphi-dma.c)\n");
	exit(0);
}

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

/* sysfs enable (memory decode), then bus mastering in the command register (pci_set_master()). */
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

/* find-device: the card found, enabled, its BARs mapped. */
static int open_card(void)
{
	if (find_device() || enable_device())
		return 0;
	gddr_size = bar_size(X100_APER_BAR);
	unsigned long long b4 = bar_size(X100_MMIO_BAR);
	if (gddr_size < o.gddr_base + G_TOTAL || b4 < X100_MMIO_SIZE) {
		ktap_diag("BAR0 0x%llx bytes (need 0x%llx for the tests), BAR4 0x%llx (need 0x%x)", gddr_size,
			  o.gddr_base + G_TOTAL, b4, X100_MMIO_SIZE);
		return 0;
	}
	gddr = vg_map_resource(X100_APER_BAR, 0, gddr_size, "(0x%llx bytes)", gddr_size);
	bar4 = vg_map_resource(X100_MMIO_BAR, 0, X100_MMIO_SIZE, "(0x%x bytes)", X100_MMIO_SIZE);
	if (!gddr || !bar4)
		return 0;
	/* Locked buffers must not move: no compaction of unevictable pages (the card is there, so
	 * this is the test guest; the setting is not put back). */
	vg_write_file("/proc/sys/vm/compact_unevictable_allowed", "0");
	ktap_diag("card at %s: BAR0 %llu MiB, DCR 0x%08x, SPAD2 0x%08x; huge pages %s", vg_bdf, gddr_size >> 20,
		  rd(X100_DCR), rd(X100_SPAD(X100_SPAD_DOWNLOAD_INFO)), gm_hugepages_ready() ? "available" : "unavailable");
	return 1;
}

static int ntests(const struct dma_group *g)
{
	int n = 0;
	while (g->tests[n].name)
		n++;
	return n;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	int want = vg_options(optdefs, words, help, argc, argv);
	if (o.channel >= X100_DMA_HOST_CHANNELS)
		vg_usage_exit("--channel must be 0..3 (the host-owned channels)");
	if (o.ring_slots < 16 || o.ring_slots > 0x1ffff)
		vg_usage_exit("--ring-slots must be 16..131071");
	if (o.gddr_base & 0xfff)
		vg_usage_exit("--gddr-base must be 4 KiB aligned");
	if (o.timeout_ms <= 0 || o.bench_mib <= 0)
		vg_usage_exit("--timeout-ms and --bench-mib must be positive");
	gm_hugepages = o.no_huge ? 0 : o.hugepages;

	int plan = 0, card = 0;
	for (size_t g = 0; g < NGROUPS; g++) {
		if (!(groups[g]->bit & want))
			continue;
		plan += ntests(groups[g]);
		card |= groups[g]->needs_card;
		if (o.channel >= 0 && groups[g]->chan)
			*groups[g]->chan = (int)o.channel;
	}
	plan += card; /* find-device */
	ktap_plan(plan);

	int found = 0;
	if (card) {
		found = open_card();
		ktap_result(found, "find-device");
	}
	for (size_t g = 0; g < NGROUPS; g++) {
		const struct dma_group *gr = groups[g];
		if (!(gr->bit & want))
			continue;
		for (const struct dma_test *t = gr->tests; t->name; t++)
			ktap_result((found || !gr->needs_card) && t->fn(), t->name);
		if (!gr->late_teardown)
			gr->teardown();
	}
	for (size_t g = 0; g < NGROUPS; g++)
		groups[g]->teardown();
	return ktap_done();
}
