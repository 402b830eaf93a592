/*
 * vfu-rtt: a minimal vfio-user client that measures the round trip of a
 * trapped region read. It negotiates the protocol version, then issues N
 * VFIO_USER_REGION_READ messages of COUNT bytes at REGION:OFFSET and
 * prints the mean round trip in nanoseconds as JSON.
 *
 *   vfu-rtt SOCKET REGION OFFSET COUNT N
 *
 * The same client, the same access pattern, against any vfio-user server:
 * that is what makes the figures of two servers comparable.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <vfio-user/vfio-user.h>

static void die(const char *what) {
    fprintf(stderr, "vfu-rtt: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void xfer(int fd, void *req, size_t len, void *rep, size_t replen) {
    if (send(fd, req, len, 0) != (ssize_t)len) die("send");
    size_t got = 0;
    while (got < sizeof(struct vfio_user_header)) {
        ssize_t n = recv(fd, (char *)rep + got, replen - got, 0);
        if (n <= 0) die("recv");
        got += n;
    }
    struct vfio_user_header *h = rep;
    while (got < h->msg_size && got < replen) {
        ssize_t n = recv(fd, (char *)rep + got, replen - got, 0);
        if (n <= 0) die("recv");
        got += n;
    }
    if (h->flags.error) {
        errno = h->error_no;
        die("server replied with an error");
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: vfu-rtt SOCKET REGION OFFSET COUNT N\n");
        return 2;
    }
    uint32_t region = strtoul(argv[2], NULL, 0);
    uint64_t offset = strtoull(argv[3], NULL, 0);
    uint32_t count = strtoul(argv[4], NULL, 0);
    long n = strtol(argv[5], NULL, 0);

    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    strncpy(sa.sun_path, argv[1], sizeof(sa.sun_path) - 1);
    for (int i = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0; i++) {
        if (i > 200) die("connect");
        usleep(10000);
    }

    char buf[4096];
    const char *json = "{\"capabilities\":{\"max_msg_fds\":8,\"max_data_xfer_size\":1048576}}";
    struct {
        struct vfio_user_header h;
        struct vfio_user_version v;
        char json[128];
    } __attribute__((packed)) ver = { 0 };
    size_t vlen = sizeof(ver.h) + sizeof(ver.v) + strlen(json) + 1;
    ver.h.msg_id = 0;
    ver.h.cmd = VFIO_USER_VERSION;
    ver.h.msg_size = vlen;
    ver.v.major = 0;
    ver.v.minor = 2;
    strcpy(ver.json, json);
    xfer(fd, &ver, vlen, buf, sizeof(buf));

    struct {
        struct vfio_user_header h;
        struct vfio_user_region_access a;
    } __attribute__((packed)) rd = { 0 };
    rd.h.cmd = VFIO_USER_REGION_READ;
    rd.h.msg_size = sizeof(rd);
    rd.a.offset = offset;
    rd.a.region = region;
    rd.a.count = count;

    /* Warm up, then measure. */
    for (int i = 0; i < 100; i++) {
        rd.h.msg_id = i + 1;
        xfer(fd, &rd, sizeof(rd), buf, sizeof(buf));
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 0; i < n; i++) {
        rd.h.msg_id = (uint16_t)(i + 200);
        xfer(fd, &rd, sizeof(rd), buf, sizeof(buf));
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = (t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec);
    printf("{\"reads\":%ld,\"mean_ns\":%.0f}\n", n, ns / n);
    close(fd);
    return 0;
}
