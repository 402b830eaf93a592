// The vfio-user socket below libvfio-user: what the binding reads and sends
// on the connection itself (poll.cc's fast paths and filters, dma.cc).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <sys/types.h>

#include <cstddef>
#include <cstring>

#include "lvu.h"

namespace vphi {

// Room for as many fds as one message can carry (SCM_MAX_FD).
constexpr size_t kMaxFds = 253;

// Calls fn(fd) for each fd that came with `mh`.
template <typename F>
void ForEachFd(struct msghdr* mh, F&& fn) {
  for (struct cmsghdr* c = CMSG_FIRSTHDR(mh); c != nullptr; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < nfds; i++) {
      int f;
      memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      fn(f);
    }
  }
}

// A msghdr for recvmsg() over one buffer, with room for every fd a
// message can carry.
struct FdMsghdr {
  struct iovec iov;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  struct msghdr mh = {};
  FdMsghdr(void* buf, size_t len) : iov{buf, len} {
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
  }
  FdMsghdr(const FdMsghdr&) = delete;
  FdMsghdr& operator=(const FdMsghdr&) = delete;
};

// Peeks at the next message (MSG_PEEK: the fds that come with it are
// installed as copies); fn(fd) sees each copy, which is closed after.
// False when nothing could be read.
template <typename F>
bool PeekFds(int sock, F&& fn);

// The header of the reply to `req` that carries `bodyLen` bytes.
struct vfio_user_header ReplyHeader(const struct vfio_user_header& req, size_t bodyLen);

// Answer request `req`: with `body` (len bytes), or an error reply carrying
// `err`. False if it could not be sent whole.
bool SendReply(int fd, const struct vfio_user_header& req, const void* body, size_t len, int flags = 0);
bool SendErrorReply(int fd, const struct vfio_user_header& req, int err, int flags = 0);

// Reads and drops the next message (`size` bytes) and closes its fds.
// False when it did not come whole (the receive timeout).
bool ConsumeMessage(int fd, size_t size);

// Ends a connection from our side so that the client reads the end of the
// stream: shutdown, then drop whatever it had sent that we had not read. A
// socket closed with unread bytes makes the client's next read fail with
// ECONNRESET instead, and QEMU 11.1's vfio_user_recv_hdr() then sets its
// Error twice and aborts (error_setv: Assertion '*errp == NULL').
void DropConnection(int fd);

template <typename F>
bool PeekFds(int sock, F&& fn) {
  uint8_t b[1];
  FdMsghdr m(b, sizeof b);
  if (recvmsg(sock, &m.mh, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC) < 0) return false;
  ForEachFd(&m.mh, [&](int f) {
    fn(f);
    close(f);
  });
  return true;
}

}  // namespace vphi
