/*
 * rma.h: what the files of vphi-scif-rma share: its options, the /dev/scif
 * calls (scif.c), the RMA agent's request/reply (card-services: port 2003),
 * the node-0 agent (agent.c) and the subtests (tests.c, soak.c).
 */
#ifndef VPHI_SCIF_RMA_H
#define VPHI_SCIF_RMA_H

#define VG_PROG "vphi-scif-rma"
#define VG_USAGE                                                                                                     \
	"usage: vphi-scif-rma [all|SUBTEST...|soak|bench|selftest] [--node N] [--soak-bytes NUM] [options]\n"       \
	"       vphi-scif-rma serve [--rma-port P]   (the RMA agent on node 0, for --node 0)\n"                       \
	"(see the comment at the top of guest-tests/vphi-scif-rma.c)\n"
#include "vphi-guest.h"

#include <stdint.h>
#include "pattern.h"
#include "scif-ep.h"

#define KiB 1024UL
#define MiB (1024UL * 1024UL)
#define PAGE 4096UL

struct rma_opts {
	int node, rma_port, timeout_ms, rounds, strict;
	unsigned long seed, soak_bytes, soak_max, bench_max, bench_total;
};
VG_SHARED struct rma_opts o;

/* ---------------------------------------------------------------- scif.c */

/* SCIF_REG: the registered offset (>= 0) or -errno. */
int64_t rma_reg(int fd, void *addr, size_t len, int64_t offset, int prot, int flags);
int rma_unreg(int fd, int64_t offset, size_t len);
/* SCIF_WRITETO/READFROM (addr 0) and SCIF_VWRITETO/VREADFROM: 0 or -errno. */
int rma_copy(int fd, unsigned long cmd, int64_t loffset, size_t len, int64_t roffset, void *addr, int flags);
/* SCIF_FENCE_MARK: 0 or -errno, the mark in *mark. */
int rma_mark(int fd, int flags, int *mark);
int rma_wait(int fd, int mark);
int rma_signal(int fd, int64_t loff, uint64_t lval, int64_t roff, uint64_t rval, int flags);
/* FENCE_MARK(flags) + FENCE_WAIT on this endpoint: 0 or -errno (reported). */
int rma_fence(int fd, int flags);
const char *rma_cmd_name(unsigned long cmd);

/* ---------------------------------------------------------------- the RMA agent */

enum agent_op {
	OP_REGISTER = 1, /* a len, b offset, c prot, flags (SCIF_MAP_FIXED): value = offset */
	OP_UNREGISTER,   /* a offset, b len */
	OP_FILL,         /* a offset, b len, c seed: pattern(seed, len) into its window */
	OP_CRC,          /* a offset, b len: value = CRC32 */
	OP_WRITETO,      /* a loffset, b len, c roffset, flags */
	OP_READFROM,     /* same */
	OP_FENCE_MARK,   /* flags: value = mark */
	OP_FENCE_WAIT,   /* a mark */
	OP_FENCE_SIGNAL, /* a loff, b lval, c roff, d rval, flags */
	OP_PEEK,         /* a offset: value = the 8-byte word there */
	OP_DIAL,         /* a port, b len, c seed, d node */
};
#define AGENT_REQ 48
#define AGENT_REPLY 24
/* agent()'s status when the connection itself failed (reported): no errno is this large. */
#define AGENT_LOST (-100000)

/* One request, its reply: the status (0 or -errno as the agent's SCIF call gave it), *value. */
int64_t agent(int fd, uint32_t op, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t *value);
/* agent() that must succeed: 0, or -1 with "what: op status" reported. */
int agent_ok(int fd, const char *what, uint32_t op, uint32_t flags, uint64_t a, uint64_t b, uint64_t c, uint64_t d,
	     uint64_t *value);
/* `vphi-scif-rma serve`: the agent on node 0, one process per connection (agent.c). */
int agent_serve(void);

/* ---------------------------------------------------------------- helpers (scif.c) */

uint64_t rng(void);
void rng_seed(uint64_t s);
/* A size in [1, max], log-uniform. */
size_t rand_size(size_t max);
/* n bytes (rounded up to pages) of fresh anonymous memory, or NULL (reported). */
void *map_anon(size_t n);
void unmap_anon(void *p, size_t n);
size_t page_up(size_t n);
/* The watchdog of blocking calls: SIGALRM after secs (EINTR ends a blocking SCIF call). */
void watchdog(int secs);
void watchdog_off(void);

/* ---------------------------------------------------------------- subtests */

struct rma_test {
	const char *name;
	int (*fn)(void);
	int in_all; /* 0: only when named (bench, selftest) */
};
extern const struct rma_test rma_tests[];
extern const int rma_ntests;

int t_soak(void);
int t_bench(void);

/*
 * A connection to the agent with one window on each side: host memory
 * `hbuf` registered at `loff`, `len` bytes; the agent's window at `roff`.
 */
struct pair {
	int fd;
	uint8_t *hbuf; /* registered */
	uint8_t *vbuf; /* the same size, never registered: the v-variants */
	size_t len;
	int64_t loff, roff;
};
/*
 * Dial the agent, map and register len bytes on the host, REGISTER len bytes
 * on the agent. 0, or -1 (reported; nothing is left open).
 */
int pair_open(struct pair *p, size_t len);
void pair_close(struct pair *p);

/* The four copies of a pair; what they check, see tests.c. 1 if right. */
enum xdir { X_WRITETO, X_READFROM, X_VWRITETO, X_VREADFROM, X_CARD_WRITETO, X_CARD_READFROM, X_NDIRS };
extern const char *const xdir_name[X_NDIRS];
/*
 * One checked transfer of n bytes at host window offset hoff (or, for the
 * v-variants, at hbuf + hoff unregistered memory of the same size) and agent
 * window offset coff, with SCIF flags; without SCIF_RMA_SYNC a fence
 * (mark + wait on the initiating side) before the check. guard: also check
 * that no byte outside the range changed. *bad counts mismatching bytes
 * (or 1 for a CRC mismatch). Returns 1 if right.
 */
int xfer_check(struct pair *p, enum xdir dir, size_t hoff, size_t coff, size_t n, int flags, uint32_t seed, int guard,
	       int quiet, unsigned long *bad);
const char *flag_names(int flags);

#endif
