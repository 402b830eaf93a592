/*
 * The /dev/scif calls of vphi-scif-rma (scif_fdioctl(), drivers/misc/mic/
 * scif/scif_fd.c), the RMA agent's request/reply, and small helpers.
 */
#include "vphi-scif-rma/rma.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

/* Non-blocking receives until len bytes came: 0, -ETIMEDOUT when nothing came for timeout_ms, or -errno. */
static int recv_timeout(int fd, void *buf, size_t len, int timeout_ms)
{
	for (size_t done = 0; done < len;) {
		long r = ep_msg(fd, SCIF_RECV, (uint8_t *)buf + done, len - done, 0);
		if (r < 0)
			return (int)r;
		if (r > 0) {
			done += (size_t)r;
			continue;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int k = poll(&p, 1, timeout_ms);
		if (k == 0)
			return -ETIMEDOUT;
		if (k < 0 && errno != EINTR)
			return -errno;
		if (k > 0 && (p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLIN))
			return -ECONNRESET;
	}
	return 0;
}

/* ---------------------------------------------------------------- RMA */

int64_t rma_reg(int fd, void *addr, size_t len, int64_t offset, int prot, int flags)
{
	struct scifioctl_reg r = { (uintptr_t)addr, len, offset, prot, flags, 0 };
	int e = ep_ioctl(fd, SCIF_REG, &r);
	return e ? e : r.out_offset;
}

int rma_unreg(int fd, int64_t offset, size_t len)
{
	struct scifioctl_unreg u = { offset, len };
	return ep_ioctl(fd, SCIF_UNREG, &u);
}

int rma_copy(int fd, unsigned long cmd, int64_t loffset, size_t len, int64_t roffset, void *addr, int flags)
{
	struct scifioctl_copy c = { loffset, len, roffset, (uintptr_t)addr, flags };
	return ep_ioctl(fd, cmd, &c);
}

const char *rma_cmd_name(unsigned long cmd)
{
	return cmd == SCIF_WRITETO ? "SCIF_WRITETO" : cmd == SCIF_READFROM ? "SCIF_READFROM" : cmd == SCIF_VWRITETO ? "SCIF_VWRITETO" : "SCIF_VREADFROM";
}

int rma_mark(int fd, int flags, int *mark)
{
	struct scifioctl_fence_mark m = { flags, (uintptr_t)mark };
	return ep_ioctl(fd, SCIF_FENCE_MARK, &m);
}

/* SCIF_FENCE_WAIT takes the mark itself as the argument. */
int rma_wait(int fd, int mark) { return ioctl(fd, SCIF_FENCE_WAIT, mark) < 0 ? -errno : 0; }

int rma_signal(int fd, int64_t loff, uint64_t lval, int64_t roff, uint64_t rval, int flags)
{
	struct scifioctl_fence_signal s = { loff, lval, roff, rval, flags };
	return ep_ioctl(fd, SCIF_FENCE_SIGNAL, &s);
}

int rma_fence(int fd, int flags)
{
	int mark = -1;
	int r = rma_mark(fd, flags, &mark);
	if (r)
		ktap_diag("SCIF_FENCE_MARK 0x%x: %s", flags, strerror(-r));
	else if ((r = rma_wait(fd, mark)))
		ktap_diag("SCIF_FENCE_WAIT 0x%x: %s", mark, strerror(-r));
	return r;
}

/* ---------------------------------------------------------------- agent */

static const char *const op_names[] = { "?", "REGISTER", "UNREGISTER", "FILL", "CRC", "WRITETO", "READFROM",
					"FENCE_MARK", "FENCE_WAIT", "FENCE_SIGNAL", "PEEK", "DIAL" };

int64_t agent(int fd, uint32_t op, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t *value)
{
	static uint64_t tag;
	uint8_t req[AGENT_REQ], rep[AGENT_REPLY];
	put_le(req, op, 4);
	put_le(req + 4, flags, 4);
	put_le(req + 8, a, 8);
	put_le(req + 16, b, 8);
	put_le(req + 24, c, 8);
	put_le(req + 32, d, 8);
	put_le(req + 40, ++tag, 8);
	int r = send_all(fd, req, sizeof(req));
	if (!r)
		r = recv_timeout(fd, rep, sizeof(rep), o.timeout_ms);
	if (r) {
		ktap_diag("agent op %u: %s", op, strerror(-r));
		return AGENT_LOST;
	}
	if (get_le(rep + 16, 8) != tag) {
		ktap_diag("agent op %u: reply tag %llu, sent %llu", op, (unsigned long long)get_le(rep + 16, 8),
			  (unsigned long long)tag);
		return AGENT_LOST;
	}
	if (value)
		*value = get_le(rep + 8, 8);
	return (int64_t)get_le(rep, 8);
}

int agent_ok(int fd, const char *what, uint32_t op, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
	     uint64_t *value)
{
	int64_t st = agent(fd, op, flags, a, b, c, d, value);
	if (st == 0)
		return 0;
	if (st != AGENT_LOST)
		ktap_diag("%s: agent %s(0x%llx, 0x%llx, 0x%llx, 0x%llx, flags 0x%x): %s", what,
			  op < sizeof(op_names) / sizeof(op_names[0]) ? op_names[op] : "?", (unsigned long long)a,
			  (unsigned long long)b, (unsigned long long)c, (unsigned long long)d, flags, strerror((int)-st));
	return -1;
}

/* ---------------------------------------------------------------- helpers */

static uint64_t rng_state = 1;
void rng_seed(uint64_t s) { rng_state = s * 0x9e3779b97f4a7c15ULL + 1; }
uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dULL;
}

size_t rand_size(size_t max)
{
	int bits = 0;
	while ((1UL << bits) < max)
		bits++;
	size_t top = 1UL << (rng() % (unsigned)(bits + 1));
	size_t n = top / 2 + 1 + rng() % (top - top / 2);
	return n > max ? max : n;
}

size_t page_up(size_t n) { return (n + PAGE - 1) & ~(PAGE - 1); }

void *map_anon(size_t n)
{
	void *p = mmap(NULL, page_up(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		ktap_diag("mmap %zu bytes: %s", n, strerror(errno));
		return NULL;
	}
	return p;
}

void unmap_anon(void *p, size_t n)
{
	if (p)
		munmap(p, page_up(n));
}

/* A child sends the SIGALRM: the guest kernel has no POSIX timers (no alarm()). */
static pid_t watchdog_pid;
static void on_alarm(int sig) { (void)sig; }
void watchdog(int secs)
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

void watchdog_off(void)
{
	if (watchdog_pid > 0) {
		kill(watchdog_pid, SIGKILL);
		waitpid(watchdog_pid, NULL, 0);
	}
	watchdog_pid = 0;
}
