/*
 * vphi-scif-rma: SCIF RMA through /dev/scif (the ioctls of drivers/misc/mic/
 * scif/scif_fd.c, no library) against the card's RMA agent (port 2003), KTAP.
 *
 *   vphi-scif-rma [all|SUBTEST ...] [--node N] [options]
 *   vphi-scif-rma serve [--rma-port P]
 *
 * Subtests, one KTAP result each, against the agent on --node (1: the card;
 * 0: the host's loopback node, served by `vphi-scif-rma serve`, which does
 * each op with the same SCIF call through /dev/scif). Data is pattern(seed)
 * with the agent's CRC32 or a byte compare; copies also check that no byte
 * outside their range changed.
 *   aligned        SCIF_WRITETO/READFROM between SCIF_REG'd windows, page
 *                  offsets, with and without SCIF_RMA_SYNC (then a fence)
 *   unaligned      head/body/tail on a shared cache-line offset, different
 *                  offsets (the bounce buffer), one over 1 MiB (chunked)
 *   ordered        SCIF_RMA_ORDERED, with and without SYNC
 *   usecpu         SCIF_RMA_USECPU, with and without SYNC
 *   span           three host and three agent windows (SCIF_MAP_FIXED,
 *                  different boundaries), copies across all; one SCIF_UNREG
 *   vcopy          SCIF_VWRITETO/VREADFROM on unregistered memory
 *   usecache       SCIF_RMA_USECACHE: copy twice, munmap, fresh memory at a
 *                  fresh address, then at the old one; vreadfrom
 *   card-writeto   the agent's WRITETO into a host window
 *   card-readfrom  the agent's READFROM from a host window
 *   fence          async writetos + FENCE_MARK/WAIT (host INIT_SELF, host
 *                  INIT_PEER after card writetos, the agent's own)
 *   signal         FENCE_SIGNAL INIT_SELF SIGNAL_REMOTE (PEEK) and
 *                  SIGNAL_LOCAL, INIT_PEER with both, after an async
 *                  writeto, and the agent's signal into a host window
 *   mmap           REGISTER + FILL, mmap the card window, check, write, CRC
 *   cleanup        --rounds (100) connect/register/copy/close; SCIF_UNREG
 *                  and UNREGISTER, then ENXIO; register again
 *   errors         ENXIO outside windows, EPERM against protection,
 *                  EINVAL for misaligned signals, bad flags, an unknown op
 *   soak           random transfers until --soak-bytes (16 MiB) moved,
 *                  sizes 1 B..--soak-max (4 MiB): "# soak: transfers=..."
 *   bench          (not in all) each direction 4 KiB..--bench-max
 *                  (16 MiB), SYNC: "# rma_writeto_bytes=4096 MBps=..."
 *   selftest       (not in all; no SCIF) pattern() and crc32()
 *
 * With --node 1 or more the card's /sys/class/mic/micN/state must be
 * `online`; else "card SCIF node not online" and exit 4 (SKIP), unless
 * --scif-strict (vphi.scif_strict=1).
 *
 * Options (NUM is C syntax; each also from VPHI_<NAME>, e.g. VPHI_NODE):
 *   --node N --rma-port P --seed N --rounds N --timeout-ms N
 *   --soak-bytes NUM --soak-max NUM --bench-max NUM --bench-total NUM
 *   --scif-strict
 *
 * Exit status: 0 if every test passed, 1 otherwise, 2 for usage errors, 4 skipped.
 */
#include "vphi-scif-rma/rma.h"

#include <signal.h>

static const struct vg_opt optdefs[] = {
	{ "node", VG_INT, &o.node },
	{ "rma-port", VG_INT, &o.rma_port },
	{ "seed", VG_ULONG, &o.seed },
	{ "rounds", VG_INT, &o.rounds },
	{ "timeout-ms", VG_INT, &o.timeout_ms },
	{ "soak-bytes", VG_ULONG, &o.soak_bytes },
	{ "soak-max", VG_ULONG, &o.soak_max },
	{ "bench-max", VG_ULONG, &o.bench_max },
	{ "bench-total", VG_ULONG, &o.bench_total },
	{ "scif-strict", VG_SET, &o.strict },
	{ 0 },
};

static void help(void)
{
	printf(VG_USAGE);
	exit(0);
}

#define MAX_GROUPS 32

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	o = (struct rma_opts){ .node = 1, .rma_port = 2003, .timeout_ms = 20000, .rounds = 100, .seed = 1,
			       .soak_bytes = 16 * MiB, .soak_max = 4 * MiB, .bench_max = 16 * MiB, .bench_total = 16 * MiB };
	int serve = argc > 1 && strcmp(argv[1], "serve") == 0;
	if (serve) {
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	/* one group bit per subtest; "all": those in_all */
	struct vg_group words[MAX_GROUPS + 2];
	int all = 0, n = 0;
	for (int k = 0; k < rma_ntests && k < MAX_GROUPS; k++) {
		if (rma_tests[k].in_all)
			all |= 1 << k;
		words[++n] = (struct vg_group){ rma_tests[k].name, 1 << k };
	}
	words[0] = (struct vg_group){ "all", all };
	words[n + 1] = (struct vg_group){ 0 };
	int groups = vg_options(optdefs, words, help, argc, argv);
	if (o.node < 0 || o.node > 128 || o.rounds < 1 || o.timeout_ms < 1 || o.soak_max < 1 || o.soak_max > 64 * MiB ||
	    o.bench_max < 4 * KiB || o.bench_max > 64 * MiB)
		vg_usage_exit("an option is out of range (--node 0..128, --rounds >= 1, --soak-max 1..64 MiB, --bench-max 4 KiB..64 MiB)");
	rng_seed(o.seed);
	if (serve)
		return agent_serve();
	int selftest_only = 1;
	for (int k = 0; k < rma_ntests; k++)
		if ((groups & (1 << k)) && strcmp(rma_tests[k].name, "selftest"))
			selftest_only = 0;
	if (o.node > 0 && !selftest_only) {
		char path[64], s[64] = "";
		snprintf(path, sizeof(path), "/sys/class/mic/mic%d/state", o.node - 1);
		if (vg_read_file(path, s, sizeof(s)) < 0)
			snprintf(s, sizeof(s), "(%s)", strerror(errno));
		s[strcspn(s, "\n")] = 0;
		if (strcmp(s, "online") && !o.strict) {
			printf("KTAP version 1\n1..0 # SKIP card SCIF node not online\n");
			ktap_diag("card SCIF node not online: %s is '%s'", path, s);
			return 4;
		}
	}
	int plan = 0;
	for (int k = 0; k < rma_ntests; k++)
		plan += (groups & (1 << k)) != 0;
	ktap_plan(plan);
	ktap_diag("node %d, rma port %d, seed %lu", o.node, o.rma_port, o.seed);
	for (int k = 0; k < rma_ntests; k++)
		if (groups & (1 << k)) {
			uint64_t t0 = vg_now_us();
			int ok = rma_tests[k].fn();
			ktap_diag("%s: %.1f s", rma_tests[k].name, (double)(vg_now_us() - t0) / 1e6);
			ktap_result(ok, rma_tests[k].name);
		}
	return ktap_done();
}
