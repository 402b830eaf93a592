/*
 * `vphi-scif-rma serve`: the card's RMA agent (card-services, port 2003) on
 * this node (0), for the loopback mode (--node 0): the same 48-byte
 * requests and 24-byte replies, each op the SCIF call the card makes, here
 * through /dev/scif. REGISTER maps fresh anonymous memory (read-only past
 * its first page when prot lacks SCIF_PROT_WRITE, so that
 * __scif_pin_pages() cannot upgrade it to read-write);
 * FILL, CRC and PEEK touch it with the CPU. DIAL is vphi-scif's and gets
 * -EINVAL here, like an unknown op. One process per connection; its windows
 * go with its endpoint (scif_fdclose() -> scif_close()).
 */
#include "vphi-scif-rma/rma.h"

#include <signal.h>
#include <sys/wait.h>

#define MAX_WIN 256
#define MAX_LEN (64 * MiB)

struct win {
	int64_t off;
	size_t len; /* registered bytes; the mapping is page_up(len) */
	uint8_t *mem;
	int prot;
};
static struct win wins[MAX_WIN];
static int nwins;

/*
 * Copies len bytes between buf and the windows covering [off, off + len)
 * (adjacent windows too, as SCIF_WINDOW_PARTIAL): 0, or -ENXIO if a byte is
 * not covered.
 */
static int win_io(int64_t off, uint8_t *buf, size_t len, int to_win)
{
	while (len) {
		struct win *w = NULL;
		for (int i = 0; i < nwins; i++)
			if (off >= wins[i].off && off < wins[i].off + (int64_t)wins[i].len)
				w = &wins[i];
		if (!w)
			return -ENXIO;
		size_t at = (size_t)(off - w->off), n = w->len - at < len ? w->len - at : len;
		if (to_win) {
			if (!(w->prot & SCIF_PROT_WRITE))
				mprotect(w->mem, page_up(w->len), PROT_READ | PROT_WRITE);
			memcpy(w->mem + at, buf, n);
			if (!(w->prot & SCIF_PROT_WRITE) && page_up(w->len) > PAGE)
				mprotect(w->mem + PAGE, page_up(w->len) - PAGE, PROT_READ);
		} else
			memcpy(buf, w->mem + at, n);
		off += (int64_t)n;
		buf += n;
		len -= n;
	}
	return 0;
}

static int64_t op_register(int fd, uint64_t len, int64_t offset, int prot, int flags, uint64_t *value)
{
	if (nwins == MAX_WIN)
		return -ENOMEM;
	if (!len || len > MAX_LEN)
		return -EINVAL;
	uint8_t *mem = mmap(NULL, page_up(len), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (mem == MAP_FAILED)
		return -ENOMEM;
	/*
	 * A read-only window: __scif_pin_pages() first pins with FOLL_WRITE
	 * ("try_upgrade") and on a partial pin retries read-only; on a pin of
	 * no page at all it passes the negative count to unpin_user_pages()
	 * and oopses. So the first page stays writable, the rest read-only.
	 */
	if (!(prot & SCIF_PROT_WRITE) && page_up(len) > PAGE)
		mprotect(mem + PAGE, page_up(len) - PAGE, PROT_READ);
	int64_t r = rma_reg(fd, mem, len, offset, prot, flags);
	if (r < 0) {
		munmap(mem, page_up(len));
		return r;
	}
	wins[nwins++] = (struct win){ r, len, mem, prot };
	*value = (uint64_t)r;
	return 0;
}

static int64_t op_unregister(int fd, int64_t off, uint64_t len)
{
	int r = rma_unreg(fd, off, len);
	if (r)
		return r;
	for (int i = 0; i < nwins;) {
		if (wins[i].off >= off && wins[i].off < off + (int64_t)len) {
			munmap(wins[i].mem, page_up(wins[i].len));
			wins[i] = wins[--nwins];
		} else
			i++;
	}
	return 0;
}

static int64_t op_fill_crc(int64_t off, uint64_t len, uint32_t seed, int fill, uint64_t *value)
{
	if (!len || len > MAX_LEN)
		return -EINVAL;
	uint8_t *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	int r;
	if (fill) {
		pattern_fill(seed, buf, len);
		r = win_io(off, buf, len, 1);
	} else {
		r = win_io(off, buf, len, 0);
		*value = crc32(buf, len);
	}
	free(buf);
	return r;
}

static int64_t handle(int fd, uint32_t op, uint32_t flags, const uint64_t *x, uint64_t *value)
{
	int mark = 0;
	int64_t r;
	uint8_t w[8];
	switch (op) {
	case OP_REGISTER:
		return op_register(fd, x[0], (int64_t)x[1], (int)x[2], (int)flags, value);
	case OP_UNREGISTER:
		return op_unregister(fd, (int64_t)x[0], x[1]);
	case OP_FILL:
		return op_fill_crc((int64_t)x[0], x[1], (uint32_t)x[2], 1, value);
	case OP_CRC:
		return op_fill_crc((int64_t)x[0], x[1], 0, 0, value);
	case OP_WRITETO:
		return rma_copy(fd, SCIF_WRITETO, (int64_t)x[0], x[1], (int64_t)x[2], NULL, (int)flags);
	case OP_READFROM:
		return rma_copy(fd, SCIF_READFROM, (int64_t)x[0], x[1], (int64_t)x[2], NULL, (int)flags);
	case OP_FENCE_MARK:
		r = rma_mark(fd, (int)flags, &mark);
		*value = (uint64_t)(uint32_t)mark;
		return r;
	case OP_FENCE_WAIT:
		return rma_wait(fd, (int)x[0]);
	case OP_FENCE_SIGNAL:
		return rma_signal(fd, (int64_t)x[0], x[1], (int64_t)x[2], x[3], (int)flags);
	case OP_PEEK:
		r = win_io((int64_t)x[0], w, 8, 0);
		*value = 0;
		for (int i = 0; i < 8; i++)
			*value |= (uint64_t)w[i] << (8 * i);
		return r;
	default:
		return -EINVAL;
	}
}

static void agent_conn(int fd)
{
	uint8_t req[AGENT_REQ], rep[AGENT_REPLY];
	while (!recv_all(fd, req, sizeof(req))) {
		uint64_t x[4], value = 0;
		for (int i = 0; i < 4; i++)
			x[i] = get_le(req + 8 + 8 * i, 8);
		int64_t st = handle(fd, (uint32_t)get_le(req, 4), (uint32_t)get_le(req + 4, 4), x, &value);
		put_le(rep, (uint64_t)st, 8);
		put_le(rep + 8, value, 8);
		memcpy(rep + 16, req + 40, 8);
		if (send_all(fd, rep, sizeof(rep)))
			break;
	}
}

static void on_term(int sig)
{
	signal(sig, SIG_IGN);
	kill(0, SIGTERM); /* the connection processes: our process group */
	_exit(0);
}

int agent_serve(void)
{
	int lfd = ep_open();
	int r = lfd < 0 ? -EBADF : ep_bind(lfd, o.rma_port);
	if (r >= 0)
		r = ep_listen(lfd, 64);
	if (r < 0) {
		fprintf(stderr, VG_PROG " serve: port %d: %s\n", o.rma_port, strerror(-r));
		return 1;
	}
	setpgid(0, 0);
	signal(SIGCHLD, SIG_IGN); /* no zombies */
	signal(SIGTERM, on_term);
	printf("# " VG_PROG " serve: node 0 rma agent %d ready\n", o.rma_port);
	fflush(stdout);
	for (;;) {
		int cfd = ep_accept(lfd, SCIF_ACCEPT_SYNC, NULL);
		if (cfd < 0) {
			if (cfd != -EINTR && cfd != -EAGAIN)
				vg_sleep_ms(10);
			continue;
		}
		pid_t pid = fork();
		if (pid == 0) {
			signal(SIGTERM, SIG_DFL);
			close(lfd);
			agent_conn(cfd);
			_exit(0);
		}
		close(cfd);
	}
}
