/*
 * vphi-scif: a host program on /dev/scif (include/uapi/linux/scif_ioctl.h)
 * talking to a peer on the card's SCIF node.
 *
 *   vphi-scif connect NODE PORT TEXT   connect, send TEXT, receive as many
 *                                      bytes back; prints "got TEXT", or
 *                                      "connect errno N"
 *   vphi-scif stream NODE PORT BYTES   connect to an echo, send BYTES of a
 *                                      pattern from a child process while the
 *                                      parent receives them back; prints
 *                                      "stream BYTES ok" or where they differ
 *   vphi-scif nodeids                  SCIF_GET_NODEIDS: prints "len L self S"
 *   vphi-scif accept PORT LEN          bind, listen, accept one connection,
 *                                      receive LEN bytes, send them back;
 *                                      prints "from node N port P: TEXT"
 *
 * Blocking SCIF_SEND / SCIF_RECV throughout. Errors print "<step> errno N"
 * and exit 1 (connect's errno is a result, exit 0).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

struct scif_port_id { uint16_t node, port; };
struct scifioctl_connect { struct scif_port_id self, peer; };
struct scifioctl_accept { int32_t flags; struct scif_port_id peer; uint64_t endpt; };
struct scifioctl_msg { uint64_t msg; int32_t len, flags, out_len; };
struct scifioctl_node_ids { uint64_t nodes, self; int32_t len; };
#define SCIF_BIND _IOWR('s', 1, uint64_t)
#define SCIF_LISTEN _IOW('s', 2, int32_t)
#define SCIF_CONNECT _IOWR('s', 3, struct scifioctl_connect)
#define SCIF_ACCEPTREQ _IOWR('s', 4, struct scifioctl_accept)
#define SCIF_ACCEPTREG _IOWR('s', 5, uint64_t)
#define SCIF_SEND _IOWR('s', 6, struct scifioctl_msg)
#define SCIF_RECV _IOWR('s', 7, struct scifioctl_msg)
#define SCIF_GET_NODEIDS _IOWR('s', 14, struct scifioctl_node_ids)
#define SCIF_ACCEPT_SYNC 1
#define SCIF_BLOCK 1

static void die(const char *what)
{
	printf("%s errno %d\n", what, errno);
	exit(1);
}

static void xfer(int fd, unsigned long cmd, char *buf, int len)
{
	struct scifioctl_msg m = { (uintptr_t)buf, len, SCIF_BLOCK, 0 };

	if (ioctl(fd, cmd, &m) < 0)
		die(cmd == SCIF_SEND ? "send" : "recv");
	if (m.out_len != len) {
		printf("%s %d of %d bytes\n", cmd == SCIF_SEND ? "send" : "recv", m.out_len, len);
		exit(1);
	}
}

static int do_connect(int fd, int node, int port, char *text)
{
	/* Linux 5.8's __scif_connect() returns the new port number, without
	 * connecting, for an UNBOUND endpoint: bind to any port first. */
	int any = 0;
	struct scifioctl_connect c = { { 0, 0 }, { node, port } };
	char buf[256] = { 0 };
	int n = strlen(text);

	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	if (ioctl(fd, SCIF_BIND, &any) < 0)
		die("bind");
	if (ioctl(fd, SCIF_CONNECT, &c) < 0) {
		printf("connect errno %d\n", errno);
		return 0;
	}
	xfer(fd, SCIF_SEND, text, n);
	xfer(fd, SCIF_RECV, buf, n);
	printf("got %s\n", buf);
	return 0;
}

static int connect_to(int fd, int node, int port)
{
	int any = 0;
	struct scifioctl_connect c = { { 0, 0 }, { node, port } };

	if (ioctl(fd, SCIF_BIND, &any) < 0)
		die("bind");
	if (ioctl(fd, SCIF_CONNECT, &c) < 0)
		die("connect");
	return 0;
}

static unsigned char pattern_at(long i)
{
	return (unsigned char)((i * 7 + (i >> 8)) & 0xff);
}

static int do_stream(int fd, int node, int port, long bytes)
{
	static unsigned char buf[65536];
	long done = 0, i;
	pid_t child;
	int status;

	connect_to(fd, node, port);
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		while (done < bytes) {
			int n = bytes - done > (long)sizeof(buf) ? (int)sizeof(buf) : (int)(bytes - done);

			for (i = 0; i < n; i++)
				buf[i] = pattern_at(done + i);
			xfer(fd, SCIF_SEND, (char *)buf, n);
			done += n;
		}
		_exit(0);
	}
	while (done < bytes) {
		int n = bytes - done > (long)sizeof(buf) ? (int)sizeof(buf) : (int)(bytes - done);

		xfer(fd, SCIF_RECV, (char *)buf, n);
		for (i = 0; i < n; i++) {
			if (buf[i] != pattern_at(done + i)) {
				printf("stream byte %ld is 0x%02x, expected 0x%02x\n", done + i, buf[i], pattern_at(done + i));
				return 1;
			}
		}
		done += n;
	}
	if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("stream sender failed\n");
		return 1;
	}
	printf("stream %ld ok\n", bytes);
	return 0;
}

static int do_accept(int fd, int port, int len)
{
	struct scifioctl_accept a = { SCIF_ACCEPT_SYNC, { 0, 0 }, 0 };
	char buf[256] = { 0 };
	int cfd;

	if (len <= 0 || len >= (int)sizeof(buf))
		len = sizeof(buf) - 1;
	if (ioctl(fd, SCIF_BIND, &port) < 0)
		die("bind");
	if (ioctl(fd, SCIF_LISTEN, 4) < 0)
		die("listen");
	if (ioctl(fd, SCIF_ACCEPTREQ, &a) < 0)
		die("acceptreq");
	cfd = open("/dev/scif", O_RDWR);
	if (cfd < 0)
		die("open");
	if (ioctl(cfd, SCIF_ACCEPTREG, &a.endpt) < 0)
		die("acceptreg");
	xfer(cfd, SCIF_RECV, buf, len);
	printf("from node %d port %d: %s\n", a.peer.node, a.peer.port, buf);
	xfer(cfd, SCIF_SEND, buf, len);
	/* Let the peer read the echo before the DISCNCT. */
	sleep(1);
	close(cfd);
	return 0;
}

int main(int argc, char **argv)
{
	int fd;

	if (argc == 5 && !strcmp(argv[1], "connect")) {
		fd = open("/dev/scif", O_RDWR);
		if (fd < 0)
			die("open");
		return do_connect(fd, atoi(argv[2]), atoi(argv[3]), argv[4]);
	}
	if (argc == 5 && !strcmp(argv[1], "stream")) {
		fd = open("/dev/scif", O_RDWR);
		if (fd < 0)
			die("open");
		return do_stream(fd, atoi(argv[2]), atoi(argv[3]), atol(argv[4]));
	}
	if (argc == 2 && !strcmp(argv[1], "nodeids")) {
		uint16_t ids[8] = { 0 }, self = 0xffff;
		struct scifioctl_node_ids ni = { (uintptr_t)ids, (uintptr_t)&self, 8 };

		fd = open("/dev/scif", O_RDWR);
		if (fd < 0)
			die("open");
		if (ioctl(fd, SCIF_GET_NODEIDS, &ni) < 0)
			die("nodeids");
		printf("len %d self %d\n", ni.len, self);
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "accept")) {
		fd = open("/dev/scif", O_RDWR);
		if (fd < 0)
			die("open");
		return do_accept(fd, atoi(argv[2]), atoi(argv[3]));
	}
	fprintf(stderr, "usage: vphi-scif connect NODE PORT TEXT | stream NODE PORT BYTES | nodeids | accept PORT LEN\n");
	return 2;
}
