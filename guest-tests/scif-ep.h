/*
 * The /dev/scif endpoint calls shared by the guest programs (vphi-scif,
 * vphi-scif-rma): each is one scif_fdioctl() (drivers/misc/mic/scif/
 * scif_fd.c) returning 0 or -errno, and the little-endian helpers of the
 * card services' wire formats. Include after vphi-guest.h (ktap_diag).
 */
#ifndef VPHI_SCIF_EP_H
#define VPHI_SCIF_EP_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include "scif.h"

static inline void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* malloc or exit(1) (reported). */
static inline void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		ktap_diag("out of memory (%zu bytes)", n);
		exit(1);
	}
	return p;
}

static inline int ep_open(void)
{
	int fd = open("/dev/scif", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		ktap_diag("open /dev/scif: %s", strerror(errno));
	return fd;
}

static inline int ep_ioctl(int fd, unsigned long cmd, void *arg) { return ioctl(fd, cmd, arg) < 0 ? -errno : 0; }

/* The bound port, or -errno. */
static inline int ep_bind(int fd, int port)
{
	int p = port;
	int r = ep_ioctl(fd, SCIF_BIND, &p);
	return r < 0 ? r : p;
}

static inline int ep_listen(int fd, int backlog) { return ioctl(fd, SCIF_LISTEN, backlog) < 0 ? -errno : 0; }

static inline int ep_connect(int fd, int node, int port, struct scif_port_id *self)
{
	struct scifioctl_connect c = { .peer = { (uint16_t)node, (uint16_t)port } };
	int r = ep_ioctl(fd, SCIF_CONNECT, &c);
	if (!r && self)
		*self = c.self;
	return r;
}

/*
 * Binds to any port first: Linux 5.8's __scif_connect() keeps the port
 * scif_get_new_port() returned for an UNBOUND endpoint in `err`, returns
 * it as success and never sends CNCT_REQ (4.9 connects). So an unbound
 * connect "succeeds" with nothing connected there.
 */
static inline int ep_connect_bound(int fd, int node, int port, struct scif_port_id *self)
{
	int r = ep_bind(fd, 0);
	return r < 0 ? r : ep_connect(fd, node, port, self);
}

/* A new endpoint connected to node:port, or -1 (reported). */
static inline int ep_dial(int node, int port)
{
	int fd = ep_open();
	if (fd < 0)
		return -1;
	int r = ep_connect_bound(fd, node, port, NULL);
	if (r) {
		ktap_diag("connect to %d:%d: %s", node, port, strerror(-r));
		close(fd);
		return -1;
	}
	return fd;
}

/* ACCEPTREQ then ACCEPTREG on a new fd (scif_fdioctl()); the new fd or -errno. */
static inline int ep_accept(int lfd, int flags, struct scif_port_id *peer)
{
	struct scifioctl_accept a = { .flags = flags };
	int r = ep_ioctl(lfd, SCIF_ACCEPTREQ, &a);
	if (r)
		return r;
	if (peer)
		*peer = a.peer;
	int fd = open("/dev/scif", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	r = ep_ioctl(fd, SCIF_ACCEPTREG, &a.endpt);
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

/* Bytes moved (0 when a non-blocking call could not), or -errno. */
static inline long ep_msg(int fd, unsigned long cmd, const void *buf, size_t len, int flags)
{
	struct scifioctl_msg m = { (uintptr_t)buf, (int32_t)len, flags, 0 };
	int r = ep_ioctl(fd, cmd, &m);
	return r < 0 ? r : m.out_len;
}

static inline long ep_send(int fd, const void *buf, size_t len, int flags) { return ep_msg(fd, SCIF_SEND, buf, len, flags); }
static inline long ep_recv(int fd, void *buf, size_t len, int flags) { return ep_msg(fd, SCIF_RECV, buf, len, flags); }

/* Blocking, whole buffers in calls of at most 4 MiB: 0 or -errno. */
static inline int send_all(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done > (4u << 20) ? (4u << 20) : len - done;
		long r = ep_send(fd, (const uint8_t *)buf + done, n, SCIF_SEND_BLOCK);
		if (r < 0)
			return (int)r;
		done += (size_t)r;
	}
	return 0;
}

/* -ECONNRESET when the peer closed first. */
static inline int recv_all(int fd, void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		size_t n = len - done > (4u << 20) ? (4u << 20) : len - done;
		long r = ep_recv(fd, (uint8_t *)buf + done, n, SCIF_RECV_BLOCK);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -ECONNRESET;
		done += (size_t)r;
	}
	return 0;
}

#endif
