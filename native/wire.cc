#include "wire.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <vector>

namespace vphi {

struct vfio_user_header ReplyHeader(const struct vfio_user_header& req, size_t bodyLen) {
  struct vfio_user_header reply;
  memset(&reply, 0, sizeof reply);
  reply.msg_id = req.msg_id;
  reply.cmd = req.cmd;
  reply.msg_size = static_cast<uint32_t>(sizeof reply + bodyLen);
  reply.flags.type = VFIO_USER_F_TYPE_REPLY;
  return reply;
}

bool SendReply(int fd, const struct vfio_user_header& req, const void* body, size_t len, int flags) {
  struct vfio_user_header reply = ReplyHeader(req, len);
  struct iovec iov[2] = {{&reply, sizeof reply}, {const_cast<void*>(body), len}};
  struct msghdr mh = {};
  mh.msg_iov = iov;
  mh.msg_iovlen = len > 0 ? 2 : 1;
  return sendmsg(fd, &mh, flags | MSG_NOSIGNAL) == static_cast<ssize_t>(reply.msg_size);
}

bool SendErrorReply(int fd, const struct vfio_user_header& req, int err, int flags) {
  struct vfio_user_header reply = ReplyHeader(req, 0);
  reply.flags.error = 1;
  reply.error_no = err;
  return send(fd, &reply, sizeof reply, flags | MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof reply);
}

bool ConsumeMessage(int fd, size_t size) {
  std::vector<uint8_t> body(size);
  FdMsghdr m(body.data(), body.size());
  const ssize_t n = recvmsg(fd, &m.mh, MSG_WAITALL | MSG_CMSG_CLOEXEC);
  ForEachFd(&m.mh, [](int f) { close(f); });
  return n == static_cast<ssize_t>(size);
}

void DropConnection(int fd) {
  shutdown(fd, SHUT_RDWR);
  // After SHUT_RD the client's sends fail (EPIPE) and what it had queued
  // still reads: empty the queue, so the close libvfio-user does next is
  // an end of stream to the client, not a reset.
  char sink[4096];
  for (int i = 0; i < 4096; i++) {
    const ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n <= 0) break;
  }
}

}  // namespace vphi
