/*
 * vphi-scif: talk SCIF to the card's services through /dev/scif (the ioctls
 * of drivers/misc/mic/scif/scif_fd.c, no library) and print KTAP.
 *
 *   vphi-scif [all|nodeids|echo|sink|source|refused|dial|many|close-host|
 *              close-card|bench|rtt|stream|selftest ...] [options]
 *   vphi-scif cycle [--how reset|shutdown] [--cycles N] [--no-hold] [options]
 *   vphi-scif serve [PORT | echo=PORT | sink=PORT | source=PORT | agent=PORT ...]
 *
 * Client subtests, one KTAP result each, against --node (1: the card):
 *   nodeids     SCIF_GET_NODEIDS: self 0, --nodes nodes online (scif_fdioctl()
 *               copies min(maxid, len) entries, so only nodes[0] is checked)
 *   echo        --rounds random sizes 1 B..--max-size through echo (2000),
 *               sent and received interleaved; bytes and CRC32 checked
 *   sink        8-byte length + data -> the CRC32 back (2001)
 *   source      8-byte length + 4-byte seed -> pattern(seed) + CRC32 (2002)
 *   refused     a connect to an unbound port (--refused-port) -> ECONNREFUSED
 *   dial        the RMA agent (2003) DIALs a port this program listens on:
 *               accept, receive pattern(seed, n), close; reply status 0,
 *               value 0 (nothing came back)
 *   dial-peer   (not in all; several cards) the agent on --node DIALs the
 *               echo port of card --peer: value = CRC32 of pattern(seed, n),
 *               echoed back card to card
 *   many        --conns echo connections at once, all streaming together
 *   close-host  close echo, sink, source and agent connections mid-stream;
 *               the services keep working for new connections
 *   close-card  a DIAL whose bytes this program echoes: the agent closes once
 *               they are back; poll shows POLLHUP, recv and send give
 *               ECONNRESET (_scif_recv(), _scif_send()); value = CRC32
 *   bench       rtt and stream (not in all):
 *   rtt         64-byte round trips through echo: "# rtt_us=MEDIAN ..."
 *   stream      4 KiB..1 MiB messages to sink and from source:
 *               "# stream_h2c_bytes=4096 MBps=..." and stream_c2h
 *   selftest    pattern() and crc32() against known values (no SCIF; not
 *               in all; runs on the build host too)
 *
 * cycle: --cycles times, from `online`: [shutdown: write `shutdown`, wait for
 * shutdown_status to leave `nop` and the state to leave `online`], write
 * `reset`, wait `ready`, write `boot`, wait `online`; one result per cycle.
 * Unless --no-hold, each cycle holds an echo connection across it, which
 * must see the disconnect (POLLHUP, ECONNRESET), never hang.
 *
 * With --node 1 or more, the card's /sys/class/mic/micN/state must be
 * `online`; else the program prints "card SCIF node not online" and exits 4
 * (SKIP), unless --scif-strict (vphi.scif_strict=1), when the tests run and
 * fail.
 *
 * serve: the card's services on this node (0), for the loopback mode
 * (--node 0): echo, sink, source, and an agent that knows only DIAL (other
 * ops get -EINVAL). A bare PORT takes the card's service for it (2000 echo,
 * 2001 sink, 2002 source, 2003 agent); none: all four. One process per
 * connection; SIGTERM ends them all.
 *
 * Options (NUM is C syntax; each also from VPHI_<NAME>, e.g. VPHI_NODE):
 *   --node N --peer N --nodes N --seed N --rounds N --max-size NUM --conns N
 *   --conn-size NUM --echo-port P --sink-port P --source-port P --rma-port P
 *   --refused-port P --listen-port P --dial-size NUM --timeout-ms N
 *   --rtt-iters N --stream-kib N --cycles N --how reset|shutdown --no-hold
 *   --state-timeout S --scif-strict
 *
 * Exit status: 0 if every test passed, 1 otherwise, 2 for usage errors, 4 skipped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "scif.h"
#include "pattern.h"

#define VG_PROG "vphi-scif"
#define VG_USAGE                                                                                                      \
	"usage: vphi-scif [all|nodeids|echo|sink|source|refused|dial|many|close-host|close-card|bench|rtt|stream|selftest ...]\n" \
	"       vphi-scif cycle [--how reset|shutdown] [--cycles N]; vphi-scif serve [PORT|SERVICE=PORT ...]\n"         \
	"(see the comment at the top of guest-tests/vphi-scif.c)\n"
#include "vphi-guest.h"
#include "scif-ep.h"

#define KiB 1024UL
#define MiB (1024UL * 1024UL)
#define SEND_CHUNK (16 * KiB) /* per non-blocking send: the ring holds 4095 bytes anyway */
#define RECV_CHUNK (64 * KiB)

static struct {
	int node, peer, nodes, rounds, conns, timeout_ms, rtt_iters, cycles, hold, state_timeout, strict;
	unsigned long seed, max_size, conn_size, dial_size, stream_kib;
	int echo_port, sink_port, source_port, rma_port, refused_port, listen_port;
	char how[VG_STR_LEN];
} o = {
	.node = 1,
	.peer = 2,
	.rounds = 10,
	.conns = 32,
	.timeout_ms = 20000,
	.rtt_iters = 200,
	.cycles = 20,
	.hold = 1,
	.state_timeout = 30,
	.seed = 1,
	.max_size = MiB,
	.conn_size = 32 * KiB,
	.dial_size = 64 * KiB + 3,
	.stream_kib = 2048,
	.echo_port = 2000,
	.sink_port = 2001,
	.source_port = 2002,
	.rma_port = 2003,
	.refused_port = 2999,
	.listen_port = 3001,
	.how = "reset",
};

static const struct vg_opt optdefs[] = {
	{ "node", VG_INT, &o.node },
	{ "peer", VG_INT, &o.peer },
	{ "nodes", VG_INT, &o.nodes },
	{ "seed", VG_ULONG, &o.seed },
	{ "rounds", VG_INT, &o.rounds },
	{ "max-size", VG_ULONG, &o.max_size },
	{ "conns", VG_INT, &o.conns },
	{ "conn-size", VG_ULONG, &o.conn_size },
	{ "dial-size", VG_ULONG, &o.dial_size },
	{ "echo-port", VG_INT, &o.echo_port },
	{ "sink-port", VG_INT, &o.sink_port },
	{ "source-port", VG_INT, &o.source_port },
	{ "rma-port", VG_INT, &o.rma_port },
	{ "refused-port", VG_INT, &o.refused_port },
	{ "listen-port", VG_INT, &o.listen_port },
	{ "timeout-ms", VG_INT, &o.timeout_ms },
	{ "rtt-iters", VG_INT, &o.rtt_iters },
	{ "stream-kib", VG_ULONG, &o.stream_kib },
	{ "cycles", VG_INT, &o.cycles },
	{ "how", VG_STR, o.how },
	{ "hold", VG_SET, &o.hold },
	{ "no-hold", VG_CLEAR, &o.hold },
	{ "state-timeout", VG_INT, &o.state_timeout },
	{ "scif-strict", VG_SET, &o.strict },
	{ 0 },
};

static void help(void)
{
	printf(VG_USAGE);
	exit(0);
}

static uint64_t now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

/* A size in [1, max], log-uniform, so that small and large both come up. */
static size_t rand_size(size_t max)
{
	int bits = 0;
	while ((1UL << bits) < max)
		bits++;
	size_t top = 1UL << (rng() % (unsigned)(bits + 1));
	size_t n = top / 2 + 1 + rng() % (top - top / 2);
	return n > max ? max : n;
}

/* The sizes of a random-size subtest: 1 B, --rounds - 2 random ones, --max-size. */
static size_t round_size(int i)
{
	if (i == 0)
		return 1;
	if (i == o.rounds - 1)
		return o.max_size;
	return rand_size(o.max_size);
}

/*
 * One connection's traffic: out[0..nout) to send, in[0..nin) to fill.
 * xfer() moves several at once, non-blocking, so neither side's 4 KiB ring
 * can stall the other; echo_back makes a stream send what it received.
 */
struct stream {
	int fd;
	const uint8_t *out;
	size_t nout, sent;
	uint8_t *in;
	size_t nin, got;
	int echo_back; /* out is in: send in[sent..got) */
	int err;       /* -errno that ended it */
	int done;
};

static void stream_init(struct stream *s, int fd, const void *out, size_t nout, void *in, size_t nin)
{
	*s = (struct stream){ .fd = fd, .out = out, .nout = nout, .in = in, .nin = nin };
}

/* Until every stream is done or failed: 0, or -ETIMEDOUT when nothing moved for timeout_ms. */
static int xfer(struct stream *s, int n, int timeout_ms)
{
	struct pollfd *p = xmalloc(sizeof(*p) * (size_t)n);
	int *idx = xmalloc(sizeof(int) * (size_t)n);
	uint64_t last = now_us();
	int rc = 0;
	for (;;) {
		int active = 0, moved = 0;
		for (int i = 0; i < n; i++) {
			struct stream *t = &s[i];
			if (t->done)
				continue;
			size_t can_send = t->echo_back ? t->got - t->sent : t->nout - t->sent;
			if (can_send) {
				long r = ep_send(t->fd, (t->echo_back ? t->in : t->out) + t->sent,
						 can_send > SEND_CHUNK ? SEND_CHUNK : can_send, 0);
				if (r < 0) {
					t->err = (int)r;
					t->done = 1;
					continue;
				}
				t->sent += (size_t)r;
				moved |= r > 0;
			}
			if (t->got < t->nin) {
				size_t want = t->nin - t->got;
				long r = ep_recv(t->fd, t->in + t->got, want > RECV_CHUNK ? RECV_CHUNK : want, 0);
				if (r < 0) {
					t->err = (int)r;
					t->done = 1;
					continue;
				}
				t->got += (size_t)r;
				moved |= r > 0;
			}
			size_t total_out = t->echo_back ? t->nin : t->nout;
			if (t->sent == total_out && t->got == t->nin)
				t->done = 1;
			else
				active++;
		}
		if (!active)
			break;
		uint64_t now = now_us();
		if (moved) {
			last = now;
			continue;
		}
		long left = (long)timeout_ms - (long)((now - last) / 1000);
		if (left <= 0) {
			rc = -ETIMEDOUT;
			break;
		}
		int k = 0;
		for (int i = 0; i < n; i++) {
			struct stream *t = &s[i];
			if (t->done)
				continue;
			size_t can_send = t->echo_back ? t->got - t->sent : t->nout - t->sent;
			p[k] = (struct pollfd){ .fd = t->fd, .events = (short)((can_send ? POLLOUT : 0) | (t->got < t->nin ? POLLIN : 0)) };
			idx[k++] = i;
		}
		if (poll(p, (nfds_t)k, (int)left) < 0 && errno != EINTR) {
			rc = -errno;
			break;
		}
	}
	free(p);
	free(idx);
	return rc;
}

/* One stream; reports what went wrong as "what: ...". 1 if all bytes moved. */
static int xfer1(int fd, const void *out, size_t nout, void *in, size_t nin, const char *what)
{
	struct stream s;
	stream_init(&s, fd, out, nout, in, nin);
	int r = xfer(&s, 1, o.timeout_ms);
	if (r || s.err) {
		ktap_diag("%s: %s after %zu of %zu bytes sent, %zu of %zu received", what, strerror(-(r ? r : s.err)), s.sent,
			  nout, s.got, nin);
		return 0;
	}
	return 1;
}

/* 1 if equal, else the first differing offset is reported. */
static int same_bytes(const uint8_t *got, const uint8_t *want, size_t n, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i]) {
			ktap_diag("%s: first difference at offset %zu of %zu: 0x%02x, expected 0x%02x", what, i, n, got[i],
				  want[i]);
			return 0;
		}
	return 1;
}

/* Waits up to timeout_ms for any of `events` (POLLHUP and POLLERR always count): revents, 0 on timeout. */
static int wait_fd(int fd, short events, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	return r > 0 ? p.revents : 0;
}

/*
 * The watchdog of blocking code: a SIGALRM after secs ends a blocking SCIF
 * call with EINTR (wait_event_interruptible()). A child sends it: the guest
 * kernel has no POSIX timers, so no alarm().
 */
static pid_t watchdog_pid;
static void on_alarm(int sig) { (void)sig; }
static void watchdog(int secs)
{
	struct sigaction sa = { .sa_handler = on_alarm }; /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	pid_t parent = getpid();
	watchdog_pid = fork();
	if (watchdog_pid == 0) {
		sleep((unsigned)secs);
		kill(parent, SIGALRM);
		_exit(0);
	}
}

static void watchdog_off(void)
{
	if (watchdog_pid > 0) {
		kill(watchdog_pid, SIGKILL);
		waitpid(watchdog_pid, NULL, 0);
	}
	watchdog_pid = 0;
}

/* ------------------------------------------------------------ sysfs (COSM) */

static char mic_dir[64];

static void mic_attr(const char *name, char *buf, size_t len)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", mic_dir, name);
	if (vg_read_file(path, buf, len) < 0)
		snprintf(buf, len, "(%s)", strerror(errno));
	buf[strcspn(buf, "\n")] = 0;
}

static int mic_write(const char *name, const char *val)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s", mic_dir, name);
	if (vg_write_file(path, val)) {
		ktap_diag("echo %s > %s: %s", val, path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Polls `attr` every 0.1 s until it reads (want_eq) or leaves (!want_eq) `val`: seconds taken, -1 on timeout. */
static double mic_wait(const char *attr, const char *val, int want_eq, int secs)
{
	uint64_t t0 = now_us();
	char s[64];
	for (;;) {
		mic_attr(attr, s, sizeof(s));
		double took = (double)(now_us() - t0) / 1e6;
		if ((strcmp(s, val) == 0) == want_eq)
			return took;
		if (took >= secs) {
			ktap_diag("%s still '%s' after %d s (waiting for it to %s '%s')", attr, s, secs,
				  want_eq ? "read" : "leave", val);
			return -1;
		}
		usleep(100000);
	}
}

/* ------------------------------------------------------------ subtests */

static int t_nodeids(void)
{
	int fd = ep_open();
	if (fd < 0)
		return 0;
	uint16_t ids[8], self = 0xffff;
	memset(ids, 0xff, sizeof(ids));
	struct scifioctl_node_ids ni = { (uintptr_t)ids, (uintptr_t)&self, 8 };
	int r = ep_ioctl(fd, SCIF_GET_NODEIDS, &ni);
	close(fd);
	if (r) {
		ktap_diag("SCIF_GET_NODEIDS: %s", strerror(-r));
		return 0;
	}
	ktap_diag("len %d, self %u, nodes[0..3] %d %d %d %d", ni.len, self, (int16_t)ids[0], (int16_t)ids[1],
		  (int16_t)ids[2], (int16_t)ids[3]);
	int want = o.nodes ? o.nodes : o.node ? o.node + 1 : 0;
	int ok = self == 0;
	if (want ? ni.len != want : ni.len < 1) {
		ktap_diag("%d nodes online, expected %s%d", ni.len, want ? "" : "at least ", want ? want : 1);
		ok = 0;
	}
	/* Only min(scif_info.maxid, len) entries are copied out: with maxid >= 1, nodes[0] is the host. */
	if (ni.len >= 2 && ids[0] != 0) {
		ktap_diag("nodes[0] = %u, expected 0", ids[0]);
		ok = 0;
	}
	return ok;
}

static int t_echo(void)
{
	int fd = ep_dial(o.node, o.echo_port);
	if (fd < 0)
		return 0;
	uint8_t *out = xmalloc(o.max_size), *in = xmalloc(o.max_size);
	int ok = 1;
	for (int i = 0; i < o.rounds && ok; i++) {
		size_t n = round_size(i);
		uint32_t seed = (uint32_t)rng();
		pattern_fill(seed, out, n);
		memset(in, 0, n);
		uint64_t t0 = now_us();
		char what[64];
		snprintf(what, sizeof(what), "echo %zu B", n);
		ok = xfer1(fd, out, n, in, n, what) && same_bytes(in, out, n, what);
		ktap_diag("echo %zu B: crc 0x%08x %s (%.1f ms)", n, crc32_update(0, in, n), ok ? "ok" : "BAD",
			  (double)(now_us() - t0) / 1000.0);
	}
	close(fd);
	free(out);
	free(in);
	return ok;
}

/* Sends an 8-byte length and n bytes of pattern(seed) to a sink; 1 if its CRC32 reply is right. */
static int sink_once(int fd, uint8_t *buf, size_t n, uint32_t seed, int verbose)
{
	put_le(buf, n, 8);
	pattern_fill(seed, buf + 8, n);
	uint32_t want = crc32_update(0, buf + 8, n);
	uint8_t reply[4];
	char what[64];
	snprintf(what, sizeof(what), "sink %zu B", n);
	uint64_t t0 = now_us();
	if (!xfer1(fd, buf, n + 8, reply, 4, what))
		return 0;
	uint32_t got = (uint32_t)get_le(reply, 4);
	if (verbose || got != want)
		ktap_diag("sink %zu B: crc 0x%08x, expected 0x%08x (%.1f ms)", n, got, want, (double)(now_us() - t0) / 1000.0);
	return got == want;
}

static int t_sink(void)
{
	int fd = ep_dial(o.node, o.sink_port);
	if (fd < 0)
		return 0;
	uint8_t *buf = xmalloc(o.max_size + 8);
	int ok = 1;
	for (int i = 0; i < o.rounds && ok; i++)
		ok = sink_once(fd, buf, round_size(i), (uint32_t)rng(), 1);
	close(fd);
	free(buf);
	return ok;
}

/* Asks a source for pattern(seed, n) + CRC32; 1 if both are right. */
static int source_once(int fd, uint8_t *in, uint8_t *want, size_t n, uint32_t seed, int verbose)
{
	uint8_t req[12];
	put_le(req, n, 8);
	put_le(req + 8, seed, 4);
	pattern_fill(seed, want, n);
	memset(in, 0, n + 4);
	char what[64];
	snprintf(what, sizeof(what), "source %zu B seed 0x%08x", n, seed);
	uint64_t t0 = now_us();
	if (!xfer1(fd, req, sizeof(req), in, n + 4, what) || !same_bytes(in, want, n, what))
		return 0;
	uint32_t got = (uint32_t)get_le(in + n, 4), crc = crc32_update(0, want, n);
	if (verbose || got != crc)
		ktap_diag("source %zu B: crc 0x%08x, expected 0x%08x (%.1f ms)", n, got, crc, (double)(now_us() - t0) / 1000.0);
	return got == crc;
}

static int t_source(void)
{
	int fd = ep_dial(o.node, o.source_port);
	if (fd < 0)
		return 0;
	uint8_t *in = xmalloc(o.max_size + 4), *want = xmalloc(o.max_size);
	int ok = 1;
	for (int i = 0; i < o.rounds && ok; i++)
		ok = source_once(fd, in, want, round_size(i), (uint32_t)rng(), 1);
	close(fd);
	free(in);
	free(want);
	return ok;
}

static int t_refused(void)
{
	int ok = 1;
	for (int k = 0; k < 2; k++) { /* twice: a rejected connect leaves nothing behind */
		int fd = ep_open();
		if (fd < 0)
			return 0;
		int r = ep_connect_bound(fd, o.node, o.refused_port, NULL);
		close(fd);
		if (r != -ECONNREFUSED) {
			ktap_diag("connect to %d:%d: %s, expected ECONNREFUSED", o.node, o.refused_port, r ? strerror(-r) : "connected");
			ok = 0;
		}
	}
	return ok;
}

/* ---- the RMA agent's DIAL */

enum { AGENT_REQ = 48, AGENT_REPLY = 24, OP_DIAL = 11 };

static void agent_req(uint8_t *req, uint32_t op, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
		      uint64_t tag)
{
	put_le(req, op, 4);
	put_le(req + 4, flags, 4);
	put_le(req + 8, a, 8);
	put_le(req + 16, b, 8);
	put_le(req + 24, c, 8);
	put_le(req + 32, d, 8);
	put_le(req + 40, tag, 8);
}

/* Receives the agent's reply: 1 if it carries `tag`, status 0 and value `want`. */
static int agent_reply(int afd, uint64_t tag, uint64_t want)
{
	uint8_t rep[AGENT_REPLY];
	if (!xfer1(afd, NULL, 0, rep, sizeof(rep), "agent reply"))
		return 0;
	int64_t status = (int64_t)get_le(rep, 8);
	uint64_t value = get_le(rep + 8, 8), t = get_le(rep + 16, 8);
	ktap_diag("agent reply: status %" PRId64 ", value 0x%" PRIx64 ", tag 0x%" PRIx64, status, value, t);
	if (status || value != want || t != tag) {
		ktap_diag("expected status 0, value 0x%" PRIx64 ", tag 0x%" PRIx64, want, tag);
		return 0;
	}
	return 1;
}

/*
 * Listens on --listen-port, asks the agent to DIAL it with n bytes of
 * pattern(seed), accepts: the accepted fd, or -1. *lfd and *afd are left
 * open for the caller.
 */
static int dial_setup(int *lfd, int *afd, size_t n, uint32_t seed, uint64_t tag)
{
	*afd = -1;
	*lfd = ep_open();
	if (*lfd < 0)
		return -1;
	int port = ep_bind(*lfd, o.listen_port);
	int r = port < 0 ? port : ep_listen(*lfd, 4);
	if (r < 0) {
		ktap_diag("bind/listen on port %d: %s", o.listen_port, strerror(-r));
		return -1;
	}
	*afd = ep_dial(o.node, o.rma_port);
	if (*afd < 0)
		return -1;
	uint8_t req[AGENT_REQ];
	agent_req(req, OP_DIAL, 0, (uint64_t)port, n, seed, 0, tag);
	if (!xfer1(*afd, req, sizeof(req), NULL, 0, "DIAL request"))
		return -1;
	if (!(wait_fd(*lfd, POLLIN, o.timeout_ms) & POLLIN)) {
		ktap_diag("no connection request on port %d within %d ms", port, o.timeout_ms);
		return -1;
	}
	struct scif_port_id peer = { 0 };
	int cfd = ep_accept(*lfd, SCIF_ACCEPT_SYNC, &peer);
	if (cfd < 0) {
		ktap_diag("accept: %s", strerror(-cfd));
		return -1;
	}
	ktap_diag("accepted a connection from %u:%u on port %d", peer.node, peer.port, port);
	if (peer.node != o.node) {
		ktap_diag("the peer is node %u, expected %d", peer.node, o.node);
		close(cfd);
		return -1;
	}
	return cfd;
}

static void close_fd(int fd)
{
	if (fd >= 0)
		close(fd);
}

static int t_dial(void)
{
	size_t n = o.dial_size;
	uint32_t seed = (uint32_t)rng();
	uint64_t tag = 0x5eed0000 | (rng() & 0xffff);
	int lfd, afd, ok = 0;
	int cfd = dial_setup(&lfd, &afd, n, seed, tag);
	if (cfd >= 0) {
		uint8_t *in = xmalloc(n), *want = xmalloc(n);
		pattern_fill(seed, want, n);
		ok = xfer1(cfd, NULL, 0, in, n, "DIAL data") && same_bytes(in, want, n, "DIAL data");
		close(cfd);             /* the agent stops receiving at the disconnect */
		ok = agent_reply(afd, tag, 0) && ok; /* nothing came back: CRC32 0 */
		free(in);
		free(want);
	}
	close_fd(afd);
	close_fd(lfd);
	return ok;
}

/* The agent on --node connects to card --peer's echo and sends it pattern(seed, n): all must come back. */
static int t_dial_peer(void)
{
	size_t n = o.dial_size;
	uint32_t seed = (uint32_t)rng();
	uint64_t tag = 0xd1a10000 | (rng() & 0xffff);
	int afd = ep_dial(o.node, o.rma_port);
	if (afd < 0)
		return 0;
	uint8_t req[AGENT_REQ];
	agent_req(req, OP_DIAL, 0, (uint64_t)o.echo_port, n, seed, (uint64_t)o.peer, tag);
	uint8_t *want = xmalloc(n);
	pattern_fill(seed, want, n);
	uint32_t crc = crc32(want, n);
	free(want);
	ktap_diag("node %d DIALs node %d port %d with %zu bytes, seed %u: expecting CRC32 0x%08x back", o.node, o.peer,
		  o.echo_port, n, seed, crc);
	int ok = xfer1(afd, req, sizeof(req), NULL, 0, "DIAL request") && agent_reply(afd, tag, crc);
	close(afd);
	return ok;
}

static int t_close_card(void)
{
	size_t n = o.dial_size;
	uint32_t seed = (uint32_t)rng();
	uint64_t tag = 0xc105e000 | (rng() & 0xfff);
	int lfd, afd, ok = 0;
	int cfd = dial_setup(&lfd, &afd, n, seed, tag);
	if (cfd >= 0) {
		uint8_t *in = xmalloc(n), *want = xmalloc(n);
		pattern_fill(seed, want, n);
		struct stream s;
		stream_init(&s, cfd, NULL, 0, in, n);
		s.echo_back = 1;
		int r = xfer(&s, 1, o.timeout_ms);
		ok = !r && !s.err && same_bytes(in, want, n, "DIAL data");
		if (!ok)
			ktap_diag("echoing the DIAL: %s, %zu received, %zu sent back", strerror(-(r ? r : s.err)), s.got, s.sent);
		/* The agent closes once all came back: DISCNCT from the card, the endpoint DISCONNECTED. */
		int ev = wait_fd(cfd, POLLIN, o.timeout_ms);
		uint8_t b;
		long rr = ep_recv(cfd, &b, 1, 0); /* non-blocking: a card that never closes gives 0, not a hang */
		long rs = ep_send(cfd, &b, 1, 0);
		ktap_diag("after the card's close: poll 0x%x, recv %s, send %s", ev, rr < 0 ? strerror((int)-rr) : "data",
			  rs < 0 ? strerror((int)-rs) : "sent");
		if (!(ev & POLLHUP) || rr != -ECONNRESET || rs != -ECONNRESET) {
			ktap_diag("expected POLLHUP and ECONNRESET from both");
			ok = 0;
		}
		close(cfd);
		ok = agent_reply(afd, tag, crc32_update(0, want, n)) && ok;
		free(in);
		free(want);
	}
	close_fd(afd);
	close_fd(lfd);
	return ok;
}

static int t_many(void)
{
	int n = o.conns;
	struct stream *s = xmalloc(sizeof(*s) * (size_t)n);
	uint8_t **out = xmalloc(sizeof(*out) * (size_t)n), **in = xmalloc(sizeof(*in) * (size_t)n);
	int ok = 1, opened = 0;
	for (int i = 0; i < n; i++) {
		int fd = ep_dial(o.node, o.echo_port);
		if (fd < 0) {
			ktap_diag("connection %d of %d failed", i + 1, n);
			ok = 0;
			break;
		}
		size_t len = o.conn_size / 2 + rng() % (o.conn_size / 2 + 1);
		out[i] = xmalloc(len);
		in[i] = xmalloc(len);
		pattern_fill((uint32_t)rng(), out[i], len);
		stream_init(&s[i], fd, out[i], len, in[i], len);
		opened++;
	}
	if (ok) {
		uint64_t t0 = now_us();
		int r = xfer(s, n, o.timeout_ms);
		size_t total = 0;
		for (int i = 0; i < n; i++) {
			char what[64];
			snprintf(what, sizeof(what), "connection %d", i + 1);
			if (s[i].err || s[i].got != s[i].nin) {
				ktap_diag("%s: %s, %zu of %zu back", what, s[i].err ? strerror(-s[i].err) : "unfinished", s[i].got,
					  s[i].nin);
				ok = 0;
			} else if (!same_bytes(in[i], out[i], s[i].nin, what))
				ok = 0;
			total += s[i].nin;
		}
		if (r) {
			ktap_diag("%s", strerror(-r));
			ok = 0;
		}
		ktap_diag("%d connections, %zu bytes echoed in %.1f ms", n, total, (double)(now_us() - t0) / 1000.0);
	}
	for (int i = 0; i < opened; i++) {
		close(s[i].fd);
		free(out[i]);
		free(in[i]);
	}
	free(s);
	free(out);
	free(in);
	return ok;
}

/* Node --node's COSM state is still `online` (for a card node). */
static int card_still_online(void)
{
	if (o.node == 0)
		return 1;
	char s[64];
	mic_attr("state", s, sizeof(s));
	if (strcmp(s, "online")) {
		ktap_diag("the card is '%s', no longer online", s);
		return 0;
	}
	return 1;
}

static int t_close_host(void)
{
	int ok = 1;
	uint8_t *buf = xmalloc(64 * KiB), *in = xmalloc(64 * KiB);
	pattern_fill(7, buf, 64 * KiB);
	/* echo: 16 KiB out, a little read back, then gone with bytes in flight both ways */
	int fd = ep_dial(o.node, o.echo_port);
	if (fd >= 0) {
		size_t sent = 0, got = 0;
		uint64_t t0 = now_us();
		while ((sent < 16 * KiB || got == 0) && now_us() - t0 < (uint64_t)o.timeout_ms * 1000) {
			long r = sent < 16 * KiB ? ep_send(fd, buf + sent, 16 * KiB - sent, 0) : 0;
			long q = ep_recv(fd, in, 512, 0);
			if (r < 0 || q < 0)
				break;
			sent += (size_t)r;
			got += (size_t)q;
			if (!r && !q)
				wait_fd(fd, POLLIN | (sent < 16 * KiB ? POLLOUT : 0), 100);
		}
		ktap_diag("echo: closed after %zu bytes sent, %zu received", sent, got);
		close(fd);
	} else
		ok = 0;
	/* sink: a length of 1 MiB, 10 KiB of it, close */
	fd = ep_dial(o.node, o.sink_port);
	if (fd >= 0) {
		put_le(buf, MiB, 8);
		ok = xfer1(fd, buf, 10 * KiB, NULL, 0, "sink, partial") && ok;
		close(fd);
	} else
		ok = 0;
	/* source: ask for 1 MiB, read 10 KiB, close */
	fd = ep_dial(o.node, o.source_port);
	if (fd >= 0) {
		uint8_t req[12];
		put_le(req, MiB, 8);
		put_le(req + 8, 99, 4);
		ok = xfer1(fd, req, sizeof(req), in, 10 * KiB, "source, partial") && ok;
		close(fd);
	} else
		ok = 0;
	/* agent: 20 of a request's 48 bytes, close (that ends the agent) */
	fd = ep_dial(o.node, o.rma_port);
	if (fd >= 0) {
		uint8_t req[AGENT_REQ];
		agent_req(req, OP_DIAL, 0, 1, 2, 3, 4, 5);
		ok = xfer1(fd, req, 20, NULL, 0, "agent, partial") && ok;
		close(fd);
	} else
		ok = 0;
	usleep(200000);
	ok = card_still_online() && ok;
	/* Each service still answers a new connection. */
	uint8_t *big = xmalloc(4 * KiB + 8), *want = xmalloc(4 * KiB);
	fd = ep_dial(o.node, o.echo_port);
	ok = fd >= 0 && xfer1(fd, buf, 4 * KiB, in, 4 * KiB, "echo afterwards") &&
	     same_bytes(in, buf, 4 * KiB, "echo afterwards") && ok;
	close_fd(fd);
	fd = ep_dial(o.node, o.sink_port);
	ok = fd >= 0 && sink_once(fd, big, 4 * KiB, 11, 0) && ok;
	close_fd(fd);
	fd = ep_dial(o.node, o.source_port);
	ok = fd >= 0 && source_once(fd, in, want, 4 * KiB, 12, 0) && ok;
	close_fd(fd);
	free(big);
	free(want);
	free(buf);
	free(in);
	return ok;
}

/* pattern() and crc32_update() against card-services' example and zlib's check value; needs no SCIF. */
static int t_selftest(void)
{
	static const uint8_t want[8] = { 0x6c, 0x59, 0x88, 0x3c, 0xdb, 0x85, 0x88, 0x5e };
	uint8_t b[8];
	pattern_fill(1, b, sizeof(b));
	int ok = same_bytes(b, want, sizeof(b), "pattern(1, 8)");
	if (crc32_update(0, b, sizeof(b)) != 0xab3b8c88u || crc32_update(0, "123456789", 9) != 0xcbf43926u) {
		ktap_diag("crc32: pattern(1, 8) 0x%08x (want 0xab3b8c88), \"123456789\" 0x%08x (want 0xcbf43926)",
			  crc32_update(0, b, sizeof(b)), crc32_update(0, "123456789", 9));
		ok = 0;
	}
	/* In pieces of any length (the source service), and CRC32 continued across them, as in one go. */
	enum { N = 10007 };
	static uint8_t whole[N], parts[N];
	pattern_fill(0xdeadbeef, whole, N);
	struct pattern_stream p;
	pattern_stream_init(&p, 0xdeadbeef);
	uint32_t crc = 0;
	for (size_t off = 0, k = 1; off < N; off += k, k = k * 3 % 97 + 1) {
		size_t n = N - off < k ? N - off : k;
		pattern_stream_next(&p, parts + off, n);
		crc = crc32_update(crc, parts + off, n);
	}
	ok = same_bytes(parts, whole, N, "pattern in pieces") && ok;
	if (crc != crc32_update(0, whole, N)) {
		ktap_diag("crc32 in pieces 0x%08x, in one go 0x%08x", crc, crc32_update(0, whole, N));
		ok = 0;
	}
	return ok;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int t_rtt(void)
{
	int fd = ep_dial(o.node, o.echo_port);
	if (fd < 0)
		return 0;
	int n = o.rtt_iters > 0 ? o.rtt_iters : 1;
	uint64_t *us = xmalloc(sizeof(uint64_t) * (size_t)n);
	uint8_t out[64], in[64];
	pattern_fill(64, out, sizeof(out));
	int ok = 1;
	watchdog(o.timeout_ms / 1000 + 1);
	for (int i = -10; i < n && ok; i++) { /* 10 warm-up rounds */
		uint64_t t0 = now_us();
		int r = send_all(fd, out, sizeof(out));
		if (!r)
			r = recv_all(fd, in, sizeof(in));
		uint64_t t = now_us() - t0;
		if (r || memcmp(in, out, sizeof(in))) {
			ktap_diag("round trip %d: %s", i, r ? strerror(-r) : "wrong bytes back");
			ok = 0;
		} else if (i >= 0)
			us[i] = t;
	}
	watchdog_off();
	if (ok) {
		qsort(us, (size_t)n, sizeof(*us), cmp_u64);
		ktap_diag("rtt_us=%" PRIu64 " (median of %d 64-byte round trips to %d:%d; min %" PRIu64 ", p90 %" PRIu64
			  ", max %" PRIu64 ")",
			  us[n / 2], n, o.node, o.echo_port, us[0], us[n * 9 / 10], us[n - 1]);
	}
	free(us);
	close(fd);
	return ok;
}

static int t_stream(void)
{
	static const size_t sizes[] = { 4 * KiB, 16 * KiB, 64 * KiB, 256 * KiB, MiB };
	size_t total = o.stream_kib * KiB;
	if (total < MiB)
		total = MiB;
	uint8_t *buf = xmalloc(total + 8);
	pattern_fill(5, buf, total);
	uint32_t crc = crc32_update(0, buf, total);
	int ok = 1;
	watchdog(o.timeout_ms / 1000 * 4 + 1);
	int sink = ep_dial(o.node, o.sink_port), source = ep_dial(o.node, o.source_port);
	ok = sink >= 0 && source >= 0;
	for (size_t k = 0; ok && k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t sz = sizes[k];
		/* host -> card: one sink request, its data in sz-byte sends */
		uint8_t hdr[12], rep[4];
		put_le(hdr, total, 8);
		uint64_t t0 = now_us();
		int r = send_all(sink, hdr, 8);
		for (size_t off = 0; !r && off < total; off += sz)
			r = send_all(sink, buf + off, total - off < sz ? total - off : sz);
		if (!r)
			r = recv_all(sink, rep, 4);
		uint64_t t = now_us() - t0;
		if (r || get_le(rep, 4) != crc) {
			ktap_diag("sink, %zu-byte sends: %s", sz, r ? strerror(-r) : "wrong CRC32");
			ok = 0;
			break;
		}
		ktap_diag("stream_h2c_bytes=%zu MBps=%.1f (%zu bytes to %d:%d)", sz, (double)total / (double)t, total, o.node,
			  o.sink_port);
		/* card -> host: one source request, received in sz-byte recvs */
		put_le(hdr, total, 8);
		put_le(hdr + 8, 5, 4);
		uint8_t *in = xmalloc(total);
		t0 = now_us();
		r = send_all(source, hdr, 12);
		for (size_t off = 0; !r && off < total; off += sz)
			r = recv_all(source, in + off, total - off < sz ? total - off : sz);
		if (!r)
			r = recv_all(source, rep, 4);
		t = now_us() - t0;
		if (r || get_le(rep, 4) != crc || !same_bytes(in, buf, total, "source stream")) {
			ktap_diag("source, %zu-byte recvs: %s", sz, r ? strerror(-r) : "wrong data or CRC32");
			ok = 0;
		} else
			ktap_diag("stream_c2h_bytes=%zu MBps=%.1f (%zu bytes from %d:%d)", sz, (double)total / (double)t, total,
				  o.node, o.source_port);
		free(in);
	}
	watchdog_off();
	close_fd(sink);
	close_fd(source);
	free(buf);
	return ok;
}

/* ------------------------------------------------------------ cycle */

/* An echo connection with one round trip done, or -1 (reported). */
static int hold_open(void)
{
	int fd = ep_dial(o.node, o.echo_port);
	uint8_t b[64], in[64];
	pattern_fill(3, b, sizeof(b));
	if (fd >= 0 && !(xfer1(fd, b, sizeof(b), in, sizeof(in), "held connection") && same_bytes(in, b, sizeof(b), "held"))) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/* The held connection after its node went away: POLLHUP, recv and send ECONNRESET (scif_invalidate_ep()). */
static int hold_check(int fd)
{
	int ev = wait_fd(fd, POLLIN, o.timeout_ms);
	uint8_t b = 0;
	long rr = ep_recv(fd, &b, 1, 0), rs = ep_send(fd, &b, 1, 0);
	close(fd);
	if ((ev & POLLHUP) && rr == -ECONNRESET && (rs == -ECONNRESET || rs == -ENOTCONN))
		return 1;
	ktap_diag("held connection: poll 0x%x, recv %s, send %s; expected POLLHUP, ECONNRESET", ev,
		  rr < 0 ? strerror((int)-rr) : "ok", rs < 0 ? strerror((int)-rs) : "ok");
	return 0;
}

static int one_cycle(int k, int shutdown)
{
	int ok = 1, fd = -1;
	if (o.hold && (fd = hold_open()) < 0)
		ok = 0;
	uint64_t t0 = now_us();
	if (shutdown) {
		char st[64], ss[64];
		if (mic_write("state", "shutdown") || mic_wait("shutdown_status", "nop", 0, o.state_timeout) < 0 ||
		    mic_wait("state", "online", 0, o.state_timeout) < 0)
			ok = 0;
		mic_attr("state", st, sizeof(st));
		mic_attr("shutdown_status", ss, sizeof(ss));
		ktap_diag("cycle %d: shutdown -> state '%s', shutdown_status '%s' after %.1f s", k, st, ss,
			  (double)(now_us() - t0) / 1e6);
		/* cosm_shutdown() -> SHUTTING_DOWN; `crashed` is the host's heartbeat watchdog (cosm_scif_server()). */
		if (strcmp(st, "shutting_down") || strcmp(ss, "crashed") == 0) {
			ktap_diag("expected state 'shutting_down' and a shutdown_status the card sent (halted, poweroff, restart)");
			ok = 0;
		}
	}
	/* mic-lib.sh: the host gives a reset up to ~46 s (cosm_hw_reset(), MIC_RESET_TO) */
	double took;
	if (mic_write("state", "reset") || (took = mic_wait("state", "ready", 1, 50)) < 0)
		return 0;
	if (fd >= 0)
		ok = hold_check(fd) && ok;
	double up;
	if (mic_write("state", "boot") || (up = mic_wait("state", "online", 1, o.state_timeout)) < 0)
		return 0;
	ktap_diag("cycle %d: ready %.1f s after reset, online %.1f s after boot", k, took, up);
	return ok;
}

static int run_cycles(void)
{
	int shutdown = strcmp(o.how, "shutdown") == 0;
	if (!shutdown && strcmp(o.how, "reset"))
		vg_usage_exit("--how must be reset or shutdown");
	ktap_plan(o.cycles);
	int stuck = 0; /* a cycle that left the card other than online ends the run */
	char st[64] = "";
	for (int k = 1; k <= o.cycles; k++) {
		char name[32];
		snprintf(name, sizeof(name), "%s-%d", shutdown ? "shutdown" : "reset", k);
		if (stuck) {
			ktap_diag("not run: cycle %d left the card '%s'", stuck, st);
			ktap_result(0, name);
			continue;
		}
		ktap_result(one_cycle(k, shutdown), name);
		mic_attr("state", st, sizeof(st));
		if (strcmp(st, "online"))
			stuck = k;
	}
	return ktap_done();
}

/* ------------------------------------------------------------ serve */

static void svc_echo(int fd)
{
	uint8_t *buf = xmalloc(RECV_CHUNK);
	for (;;) {
		wait_fd(fd, POLLIN, -1);
		long n = ep_recv(fd, buf, RECV_CHUNK, 0);
		if (n < 0 || (n > 0 && send_all(fd, buf, (size_t)n)))
			break;
	}
}

static void svc_sink(int fd)
{
	uint8_t *buf = xmalloc(RECV_CHUNK), hdr[8];
	while (!recv_all(fd, hdr, 8)) {
		uint64_t n = get_le(hdr, 8);
		uint32_t crc = 0;
		int r = 0;
		while (n && !r) {
			size_t k = n > RECV_CHUNK ? RECV_CHUNK : (size_t)n;
			r = recv_all(fd, buf, k);
			crc = crc32_update(crc, buf, k);
			n -= k;
		}
		uint8_t rep[4];
		put_le(rep, crc, 4);
		if (r || send_all(fd, rep, 4))
			break;
	}
}

static void svc_source(int fd)
{
	uint8_t *buf = xmalloc(RECV_CHUNK), req[12];
	while (!recv_all(fd, req, 12)) {
		uint64_t n = get_le(req, 8);
		struct pattern_stream p;
		pattern_stream_init(&p, (uint32_t)get_le(req + 8, 4));
		uint32_t crc = 0;
		int r = 0;
		while (n && !r) {
			size_t k = n > RECV_CHUNK ? RECV_CHUNK : (size_t)n;
			pattern_stream_next(&p, buf, k);
			crc = crc32_update(crc, buf, k);
			r = send_all(fd, buf, k);
			n -= k;
		}
		uint8_t rep[4];
		put_le(rep, crc, 4);
		if (r || send_all(fd, rep, 4))
			break;
	}
}

/* The agent's DIAL: connect to node d port a, send pattern(c, b) while receiving; value: CRC32 of what came back. */
static int64_t agent_dial(uint64_t port, uint64_t len, uint32_t seed, uint64_t node, uint64_t *value)
{
	if (len > 64 * MiB)
		return -ENOMEM;
	int fd = open("/dev/scif", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = ep_connect_bound(fd, (int)node, (int)port, NULL);
	if (r) {
		close(fd);
		return r;
	}
	uint8_t *out = xmalloc(len), *in = xmalloc(len);
	pattern_fill(seed, out, len);
	struct stream s;
	stream_init(&s, fd, out, len, in, len);
	xfer(&s, 1, 60000); /* a disconnect ends the receiving, as in the agent */
	*value = crc32_update(0, in, s.got);
	close(fd);
	free(out);
	free(in);
	return 0;
}

static void svc_agent(int fd)
{
	uint8_t req[AGENT_REQ], rep[AGENT_REPLY];
	while (!recv_all(fd, req, sizeof(req))) {
		uint32_t op = (uint32_t)get_le(req, 4);
		uint64_t value = 0;
		int64_t status = op == OP_DIAL ? agent_dial(get_le(req + 8, 8), get_le(req + 16, 8), (uint32_t)get_le(req + 24, 8),
							     get_le(req + 32, 8), &value)
					       : -EINVAL;
		put_le(rep, (uint64_t)status, 8);
		put_le(rep + 8, value, 8);
		memcpy(rep + 16, req + 40, 8);
		if (send_all(fd, rep, sizeof(rep)))
			break;
	}
}

static const struct {
	const char *name;
	int port;
	void (*fn)(int fd);
} services[] = {
	{ "echo", 2000, svc_echo },
	{ "sink", 2001, svc_sink },
	{ "source", 2002, svc_source },
	{ "agent", 2003, svc_agent },
};
#define NSERVICES (int)(sizeof(services) / sizeof(services[0]))
#define MAX_LISTEN 16

static void on_term(int sig)
{
	signal(sig, SIG_IGN);
	kill(0, SIGTERM); /* the connection processes: our process group */
	_exit(0);
}

static int serve(int argc, char **argv)
{
	int lfd[MAX_LISTEN], svc[MAX_LISTEN], port[MAX_LISTEN], n = 0;
	for (int i = 0; i < argc || (argc == 0 && n < NSERVICES); i++) {
		if (n == MAX_LISTEN)
			vg_usage_exit("serve: at most %d ports", MAX_LISTEN);
		int s = -1, p;
		if (argc == 0) {
			s = i;
			p = services[i].port;
		} else {
			const char *eq = strchr(argv[i], '=');
			p = (int)vg_parse_num("port", eq ? eq + 1 : argv[i]);
			size_t len = eq ? (size_t)(eq - argv[i]) : 0;
			for (int k = 0; k < NSERVICES; k++)
				if (eq ? len == strlen(services[k].name) && !strncmp(argv[i], services[k].name, len)
				       : services[k].port == p)
					s = k;
			if (s < 0)
				vg_usage_exit("serve: '%s': give SERVICE=PORT (echo, sink, source, agent) or one of 2000..2003", argv[i]);
		}
		int fd = open("/dev/scif", O_RDWR | O_CLOEXEC);
		int r = fd < 0 ? -errno : ep_bind(fd, p);
		if (r >= 0)
			r = ep_listen(fd, 64);
		if (r < 0) {
			fprintf(stderr, VG_PROG " serve: %s on port %d: %s\n", services[s].name, p, strerror(-r));
			return 1;
		}
		lfd[n] = fd;
		svc[n] = s;
		port[n++] = p;
	}
	setpgid(0, 0);
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	signal(SIGTERM, on_term);
	printf("# " VG_PROG " serve: node 0");
	for (int i = 0; i < n; i++)
		printf(" %s %d", services[svc[i]].name, port[i]);
	printf(" ready\n");
	fflush(stdout);
	struct pollfd p[MAX_LISTEN];
	for (;;) {
		for (int i = 0; i < n; i++)
			p[i] = (struct pollfd){ .fd = lfd[i], .events = POLLIN };
		if (poll(p, (nfds_t)n, -1) < 0)
			continue;
		for (int i = 0; i < n; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			struct scif_port_id peer;
			int cfd = ep_accept(lfd[i], 0, &peer);
			if (cfd < 0)
				continue; /* EAGAIN: taken already */
			pid_t pid = fork();
			if (pid == 0) {
				signal(SIGTERM, SIG_DFL);
				for (int k = 0; k < n; k++)
					close(lfd[k]);
				services[svc[i]].fn(cfd);
				_exit(0);
			}
			close(cfd);
		}
	}
}

/* ------------------------------------------------------------ main */

enum {
	G_NODEIDS = 1 << 0,
	G_ECHO = 1 << 1,
	G_SINK = 1 << 2,
	G_SOURCE = 1 << 3,
	G_REFUSED = 1 << 4,
	G_DIAL = 1 << 5,
	G_MANY = 1 << 6,
	G_CLOSE_HOST = 1 << 7,
	G_CLOSE_CARD = 1 << 8,
	G_RTT = 1 << 9,
	G_STREAM = 1 << 10,
	G_SELFTEST = 1 << 11,
	G_DIAL_PEER = 1 << 12,
	G_ALL = (1 << 9) - 1,
	G_BENCH = G_RTT | G_STREAM,
};

static const struct vg_group words[] = {
	{ "all", G_ALL },		{ "nodeids", G_NODEIDS }, { "echo", G_ECHO },	  { "sink", G_SINK },
	{ "source", G_SOURCE },		{ "refused", G_REFUSED }, { "dial", G_DIAL },	  { "many", G_MANY },
	{ "close-host", G_CLOSE_HOST }, { "close-card", G_CLOSE_CARD }, { "bench", G_BENCH }, { "rtt", G_RTT },
	{ "stream", G_STREAM },		{ "selftest", G_SELFTEST }, { "dial-peer", G_DIAL_PEER }, { 0 },
};

static const struct {
	int group;
	const char *name;
	int (*fn)(void);
} tests[] = {
	{ G_NODEIDS, "nodeids", t_nodeids },	 { G_ECHO, "echo", t_echo },
	{ G_SINK, "sink", t_sink },		 { G_SOURCE, "source", t_source },
	{ G_REFUSED, "refused", t_refused },	 { G_DIAL, "dial", t_dial },
	{ G_MANY, "many", t_many },		 { G_CLOSE_HOST, "close-host", t_close_host },
	{ G_CLOSE_CARD, "close-card", t_close_card }, { G_RTT, "rtt", t_rtt },
	{ G_STREAM, "stream", t_stream },	 { G_SELFTEST, "selftest", t_selftest },
	{ G_DIAL_PEER, "dial-peer", t_dial_peer },
};
#define NTESTS (sizeof(tests) / sizeof(tests[0]))

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	if (argc > 1 && strcmp(argv[1], "serve") == 0)
		return serve(argc - 2, argv + 2);
	int cycle = argc > 1 && strcmp(argv[1], "cycle") == 0;
	if (cycle) {
		argv[1] = argv[0];
		argv++;
		argc--;
	}
	int groups = vg_options(optdefs, words, help, argc, argv);
	if (o.node < 0 || o.node > 128 || o.peer < 1 || o.peer > 128 || o.rounds < 2 || o.max_size < 1 || o.max_size > 64 * MiB || o.conns < 1 ||
	    o.conns > 512 || o.conn_size < 2 || o.dial_size < 1 || o.timeout_ms < 1)
		vg_usage_exit("an option is out of range (--node 0..128, --rounds >= 2, --max-size 1..64 MiB, --conns 1..512)");
	rng_state = o.seed * 0x9e3779b97f4a7c15ULL + 1;
	snprintf(mic_dir, sizeof(mic_dir), "/sys/class/mic/mic%d", o.node > 0 ? o.node - 1 : 0);
	if ((o.node > 0 && groups != G_SELFTEST) || cycle) {
		char s[64];
		mic_attr("state", s, sizeof(s));
		if (strcmp(s, "online") && !o.strict) {
			printf("KTAP version 1\n1..0 # SKIP card SCIF node not online\n");
			ktap_diag("card SCIF node not online: %s/state is '%s'", mic_dir, s);
			return 4;
		}
	}
	if (cycle)
		return run_cycles();
	int plan = 0;
	for (size_t k = 0; k < NTESTS; k++)
		plan += (tests[k].group & groups) != 0;
	ktap_plan(plan);
	ktap_diag("node %d, seed %lu", o.node, o.seed);
	for (size_t k = 0; k < NTESTS; k++)
		if (tests[k].group & groups)
			ktap_result(tests[k].fn(), tests[k].name);
	return ktap_done();
}
