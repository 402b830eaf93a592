// The listening socket's path: directory creation and stale-socket handling.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cstddef>
#include <unistd.h>

#include <stdexcept>
#include <string>

#include "context.h"

namespace vphi {

std::string ErrnoText(int err) {
  // Everything runs on the main thread, so strerror() is fine.
  return strerror(err);
}

namespace {

// mkdir -p, each directory we create gets mode 0700.
void MakeDirs(const std::string& dir) {
  if (dir.empty() || dir == "/" || dir == ".") return;
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) {
      throw std::runtime_error("socket directory " + dir + " is not a directory");
    }
    return;
  }
  if (errno != ENOENT) {
    throw std::runtime_error("cannot stat " + dir + ": " + ErrnoText(errno));
  }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0) MakeDirs(dir.substr(0, slash));
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create socket directory " + dir + ": " +
                             ErrnoText(errno));
  }
  chmod(dir.c_str(), 0700);  // in spite of the umask
}

// True when a server accepts connections on `path`.
bool SocketIsLive(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error("socket(): " + ErrnoText(errno));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int rc = connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  int err = errno;
  close(fd);
  if (rc == 0) return true;
  // EAGAIN: the listener's backlog is full, so somebody is listening.
  if (err == EAGAIN || err == EINPROGRESS) return true;
  if (err == ECONNREFUSED || err == ENOENT) return false;
  throw std::runtime_error("cannot probe socket " + path + ": " + ErrnoText(err));
}

}  // namespace

std::string CheckListeningSocket(int fd) {
  int v = 0;
  socklen_t len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) != 0) {
    throw std::runtime_error("listenFd " + std::to_string(fd) + " is not a socket: " +
                             ErrnoText(errno));
  }
  if (v != AF_UNIX) {
    throw std::runtime_error("listenFd " + std::to_string(fd) + " is not a UNIX socket");
  }
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) != 0 || v != SOCK_STREAM) {
    throw std::runtime_error("listenFd " + std::to_string(fd) + " is not a stream socket");
  }
  len = sizeof v;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) != 0 || v == 0) {
    throw std::runtime_error("listenFd " + std::to_string(fd) + " is not listening");
  }
  struct sockaddr_un addr = {};
  socklen_t alen = sizeof addr;
  if (getsockname(fd, reinterpret_cast<struct sockaddr*>(&addr), &alen) != 0 ||
      alen <= offsetof(struct sockaddr_un, sun_path) || addr.sun_path[0] == '\0') {
    return "";
  }
  return std::string(addr.sun_path, strnlen(addr.sun_path, sizeof addr.sun_path));
}

void PrepareSocketPath(const std::string& path) {
  if (path.empty()) throw std::runtime_error("socketPath is empty");
  if (path.size() >= sizeof(((struct sockaddr_un*)nullptr)->sun_path)) {
    throw std::runtime_error("socket path " + path + " is too long (a UNIX socket path has at most " +
                             std::to_string(sizeof(((struct sockaddr_un*)nullptr)->sun_path) - 1) +
                             " bytes)");
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) MakeDirs(path.substr(0, slash));

  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    throw std::runtime_error("cannot stat " + path + ": " + ErrnoText(errno));
  }
  if (!S_ISSOCK(st.st_mode)) {
    throw std::runtime_error(path + " exists and is not a socket; not replacing it");
  }
  if (SocketIsLive(path)) {
    throw std::runtime_error("socket " + path + " is in use by a live server");
  }
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    throw std::runtime_error("cannot remove stale socket " + path + ": " + ErrnoText(errno));
  }
}

}  // namespace vphi
