// Driving libvfio-user from the libuv loop without ever blocking it.
//
// Two polls: the listening socket (always, so that a second client can be
// refused while one is attached) and the connection (while attached).
// libvfio-user's vfu_get_poll_fd() returns the listening fd before attach and
// the connection fd after; it keeps the listening fd open until destroy, and
// after a disconnect (vfu_run_ctx: ENOTCONN) vfu_attach_ctx accepts anew.
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "context.h"
#include "internal.h"
#include "wire.h"

namespace vphi {

namespace {

// Requests served per wakeup before yielding to the loop (the poll is
// level-triggered, so the rest follows on the next iteration).
constexpr int kMaxRequestsPerWakeup = 256;
// How long a refused client may take to send its first message header.
constexpr uint64_t kRefusalTimeoutMs = 1000;
// Larger messages libvfio-user refuses by their header alone (SERVER_MAX_MSG_SIZE);
// RejectBadRequest() leaves them to it.
constexpr uint32_t kMaxFilteredMessage = 2 << 20;

uv_loop_t* LoopOf(napi_env env) {
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  return loop;
}

// Reads what a refused client sent first; if it is a message header, answers
// it with an EBUSY error reply. True once done (then EndRefused()).
bool AnswerRefused(int fd) {
  struct vfio_user_header hdr;
  ssize_t n = recv(fd, &hdr, sizeof hdr, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return false;
  if (n != static_cast<ssize_t>(sizeof hdr)) return true;  // EOF, error or junk
  SendErrorReply(fd, hdr, EBUSY, MSG_DONTWAIT);
  return true;
}

// Closes a refused connection so that the client reads our reply and then
// the end of the stream (the rest of its message is read and dropped).
void EndRefused(int fd) {
  DropConnection(fd);
  close(fd);
}

}  // namespace

struct Poll {
  uv_poll_t handle;
  Context* owner;
};

// A refused connection waiting (briefly) for its first message header.
struct Refusal {
  uv_poll_t poll;
  uv_timer_t timer;
  int fd = -1;
  int openHandles = 0;
  Context* owner = nullptr;
  bool done = false;
};

namespace {

void FreePoll(uv_handle_t* h) { delete static_cast<Poll*>(h->data); }

// At environment teardown (worker exit) the addon may be unloaded before the
// loop runs close callbacks, so none may point into it: the few bytes of the
// handles are leaked instead.
void ClosePoll(Poll* p, bool teardown) {
  if (p == nullptr) return;
  p->owner = nullptr;
  uv_poll_stop(&p->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), teardown ? nullptr : FreePoll);
}

void RefusalHandleClosed(uv_handle_t* h) {
  Refusal* r = static_cast<Refusal*>(h->data);
  if (--r->openHandles == 0) delete r;
}

// Closes the connection and both handles; the struct frees itself (except at
// teardown, see ClosePoll).
void FinishRefusal(Refusal* r, bool teardown = false) {
  if (r->done) return;
  r->done = true;
  uv_poll_stop(&r->poll);
  uv_timer_stop(&r->timer);
  if (r->fd >= 0) EndRefused(r->fd);
  r->fd = -1;
  uv_close_cb cb = teardown ? nullptr : RefusalHandleClosed;
  uv_close(reinterpret_cast<uv_handle_t*>(&r->poll), cb);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->timer), cb);
  if (r->owner != nullptr) r->owner->OnRefusalDone(r);
}

void OnListenEvent(uv_poll_t* h, int, int) {
  Poll* p = static_cast<Poll*>(h->data);
  if (p->owner != nullptr) p->owner->OnListenReadable();
}

void OnConnEvent(uv_poll_t* h, int, int) {
  // Errors and hang-ups too: vfu_run_ctx then sees the disconnect.
  Poll* p = static_cast<Poll*>(h->data);
  if (p->owner != nullptr) p->owner->OnConnReadable();
}

void OnRefusalReadable(uv_poll_t* h, int status, int) {
  Refusal* r = static_cast<Refusal*>(h->data);
  if (status < 0 || AnswerRefused(r->fd)) FinishRefusal(r);
}

void OnRefusalTimeout(uv_timer_t* t) { FinishRefusal(static_cast<Refusal*>(t->data)); }

}  // namespace

template <typename F>
void Context::Dispatch(F&& fn) {
  try {
    if (!jsAlive_) {
      fn();
      return;
    }
    Napi::HandleScope handles(env_);
    napi_callback_scope scope = nullptr;
    napi_open_callback_scope(env_, Value(), asyncContext_, &scope);
    fn();
    // Runs nextTicks and promise jobs queued by the callbacks.
    if (scope != nullptr) napi_close_callback_scope(env_, scope);
  } catch (...) {
    // Nothing may unwind into libuv.
  }
}

// ---- the attach watchdog
//
// vfu_attach_ctx accepts the connection and then reads the client's VERSION
// message with a blocking recv(), all in one call: a client that connects
// and says nothing would block the loop for good. Socket timeouts cannot
// help (an accepted AF_UNIX socket does not inherit SO_RCVTIMEO, and the
// fd only exists inside the call), so a one-shot timer signals this thread
// after kSocketTimeoutMs: the handler does nothing, but it is installed
// without SA_RESTART, so the recv() fails with EINTR and the attach fails.
// The timer is armed only around vfu_attach_ctx, during which no JavaScript
// runs (its log lines are deferred), so no other syscall can see the EINTR.

namespace {

int WatchdogSignal() { return SIGRTMAX - 3; }

void WatchdogHandler(int) {}

bool InstallWatchdogHandler() {
  static const bool installed = [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = WatchdogHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: interrupt the blocked recv()
    return sigaction(WatchdogSignal(), &sa, nullptr) == 0;
  }();
  return installed;
}

}  // namespace

void Context::CreateWatchdog() {
  if (!InstallWatchdogHandler()) throw std::runtime_error("sigaction: " + ErrnoText(errno));
  struct sigevent sev;
  memset(&sev, 0, sizeof sev);
  sev.sigev_notify = SIGEV_THREAD_ID;
  sev.sigev_signo = WatchdogSignal();
  sev._sigev_un._tid = gettid();  // this (the loop's) thread only
  if (timer_create(CLOCK_MONOTONIC, &sev, &watchdog_) != 0) {
    throw std::runtime_error("timer_create: " + ErrnoText(errno));
  }
  watchdogCreated_ = true;
}

void Context::DeleteWatchdog() {
  if (watchdogCreated_) timer_delete(watchdog_);
  watchdogCreated_ = false;
}

int Context::AttachWithDeadline(int* err) {
  sigset_t sig, old;
  sigemptyset(&sig);
  sigaddset(&sig, WatchdogSignal());
  pthread_sigmask(SIG_UNBLOCK, &sig, &old);
  struct itimerspec arm;
  memset(&arm, 0, sizeof arm);
  arm.it_value.tv_sec = kSocketTimeoutMs / 1000;
  arm.it_value.tv_nsec = (kSocketTimeoutMs % 1000) * 1000000L;
  timer_settime(watchdog_, 0, &arm, nullptr);

  // No VfuGuard: no JavaScript runs in here, so nothing can ask to close.
  deferLogs_ = true;
  const int rc = vfu_attach_ctx(vfu_);
  *err = errno;
  deferLogs_ = false;

  // Disarm. A signal that fired meanwhile is delivered no later than on the
  // return from this call, into the no-op handler.
  struct itimerspec disarm;
  memset(&disarm, 0, sizeof disarm);
  timer_settime(watchdog_, 0, &disarm, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  std::vector<std::pair<int, std::string>> logs;
  logs.swap(deferredLogs_);
  for (const auto& l : logs) CallLog(l.first, l.second.c_str());
  return rc;
}

// ---- polls

void Context::StartListening() {
  CreateWatchdog();
  listenFd_ = vfu_get_poll_fd(vfu_);
  if (listenFd_ < 0) throw std::runtime_error("vfu_get_poll_fd: " + ErrnoText(errno));
  Poll* p = new Poll{};
  p->owner = this;
  p->handle.data = p;
  int rc = uv_poll_init(LoopOf(env_), &p->handle, listenFd_);
  if (rc != 0) {
    delete p;
    throw std::runtime_error(std::string("uv_poll_init: ") + uv_strerror(rc));
  }
  listenPoll_ = p;
  rc = uv_poll_start(&p->handle, UV_READABLE, OnListenEvent);
  if (rc != 0) throw std::runtime_error(std::string("uv_poll_start: ") + uv_strerror(rc));
}

void Context::StartConnPoll() {
  int fd = vfu_get_poll_fd(vfu_);
  Poll* p = new Poll{};
  p->owner = this;
  p->handle.data = p;
  int rc = uv_poll_init(LoopOf(env_), &p->handle, fd);
  // uv_poll_init made the socket non-blocking; libvfio-user needs it
  // blocking (it reads message bodies and sends replies in one call, and
  // treats a short send as a reset). Header reads use MSG_DONTWAIT anyway.
  if (rc == 0) {
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    // A client that stalls mid-message cannot hold the loop for longer.
    struct timeval tv = {kSocketTimeoutMs / 1000, (kSocketTimeoutMs % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    rc = uv_poll_start(&p->handle, UV_READABLE | UV_DISCONNECT, OnConnEvent);
  }
  if (rc != 0) {
    Emit(LOG_ERR, std::string("vphi: cannot poll the vfio-user connection: ") + uv_strerror(rc));
    ClosePoll(p, !jsAlive_);
    return;
  }
  connPoll_ = p;
}

void Context::StopConnPoll() {
  ClosePoll(connPoll_, !jsAlive_);
  connPoll_ = nullptr;
}

void Context::StopAllPolls() {
  StopConnPoll();
  ClosePoll(listenPoll_, !jsAlive_);
  listenPoll_ = nullptr;
  for (Refusal* r : std::vector<Refusal*>(refusals_)) {
    r->owner = nullptr;
    FinishRefusal(r, !jsAlive_);
  }
  refusals_.clear();
}

void Context::OnListenReadable() {
  if (closed_ || closeRequested_) return;
  Dispatch([&]() {
    if (attached_) {
      Refuse();
      return;
    }
    int err = 0;
    const int rc = AttachWithDeadline(&err);
    if (closed_) return;
    if (rc == 0) {
      attached_ = true;
      StartConnPoll();
      EmitConnection(true);
      return;
    }
    if (err == EAGAIN || err == EWOULDBLOCK) return;  // it left before accept
    if (err == EINTR) {
      Emit(LOG_ERR, "vphi: a client connected to " + endpoint_ +
                        " but did not send its vfio-user version within " +
                        std::to_string(kSocketTimeoutMs) + " ms; dropped");
      return;
    }
    Emit(LOG_ERR, "vphi: a client connected to " + endpoint_ +
                      " but attaching it failed: " + ErrnoText(err));
  });
}

void Context::OnConnReadable() {
  if (closed_ || closeRequested_ || !attached_) return;
  // Reads that directReads() serves need no JavaScript: no callback scope,
  // no onPoll, unless something else comes in the same batch.
  Peeked next;
  if (ServeDirectReads(&next) == Batch::Done) return;
  Dispatch([&]() {
    RunRequests(&next);
    // One batch served: the caller may retry what waited for the client.
    if (closed_ || closeRequested_ || onPoll_.IsEmpty()) return;
    CallJs("onPoll", [&]() { onPoll_.Call(callbacks_.Value(), 0, nullptr); });
  });
}

namespace {

// Peeks at the next request; false when there is nothing to read yet.
bool PeekNext(int fd, Peeked* next) {
  next->got = recv(fd, next->bytes, sizeof next->bytes, MSG_PEEK | MSG_DONTWAIT);
  return !(next->got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

}  // namespace

// Serves requests while they are direct reads. NeedsJs leaves the first
// other request's peek in *next for RunRequests().
Context::Batch Context::ServeDirectReads(Peeked* next) {
  for (int i = 0; i < kMaxRequestsPerWakeup; i++) {
    const int fd = vfu_get_poll_fd(vfu_);
    if (fd < 0 || !PeekNext(fd, next)) return Batch::Done;
    switch (ServeTrappedAccess(fd, *next, true)) {
      case Served::More: continue;
      case Served::Yield: return Batch::Done;
      case Served::No: return Batch::NeedsJs;
    }
  }
  return Batch::Done;  // level-triggered: the rest on the next wake-up
}

// *next holds the peek of the batch's first request (ServeDirectReads());
// each later one is peeked into it in turn.
void Context::RunRequests(Peeked* next) {
  for (int i = 0; i < kMaxRequestsPerWakeup; i++) {
    if (closed_ || closeRequested_ || !attached_) return;
    const int fd = vfu_get_poll_fd(vfu_);
    if (fd < 0) return;
    // Nothing to read yet: return to the poll rather than let libvfio-user
    // read a request that arrives meanwhile unchecked.
    if (i > 0 && !PeekNext(fd, next)) return;
    if (RejectBadRequest(fd, next)) continue;
    if (ServeFdlessDma(fd, *next)) continue;
    switch (ServeTrappedAccess(fd, *next, false)) {
      case Served::More: continue;
      case Served::Yield: return;
      case Served::No: break;
    }
    int rc, err;
    {
      VfuGuard guard(this);
      rc = vfu_run_ctx(vfu_);
      err = errno;
    }
    if (closed_) return;
    if (rc > 0) continue;  // one request served; there may be more
    if (rc == 0) return;   // nothing pending
    if (err == EAGAIN || err == EWOULDBLOCK) return;
    if (err == ENOTCONN || err == ECONNRESET) {
      Disconnected();
      return;
    }
    Emit(LOG_ERR, "vphi: serving a vfio-user request failed: " + ErrnoText(err));
    return;
  }
}

// An aligned read of whole dwords that directReads() covers, into `out`:
// the stored values, with SpinWatch.read()'s bookkeeping. False (nothing
// changed) when a dword has no slot, or when a read would bring a slot to
// the spin threshold: onAccess then serves it and warns.
bool Context::DirectRead(uint32_t region, uint64_t offset, uint32_t count, uint8_t* out) {
  const DirectTable& t = direct_[region];
  constexpr uint32_t kMaxDwords = (sizeof(Peeked::bytes) - sizeof(struct vfio_user_header) - sizeof(struct vfio_user_region_access)) / 4;
  if (t.slot == nullptr || (offset & 3) != 0 || (count & 3) != 0 || count == 0 || count / 4 > kMaxDwords) return false;
  const uint64_t first = offset / 4;
  const uint32_t n = count / 4;
  if (first + n > t.dwords) return false;
  const uint32_t threshold = *t.spinThreshold;
  uint32_t slot[kMaxDwords];
  for (uint32_t i = 0; i < n; i++) {
    const int32_t s = t.slot[first + i];
    if (s < 0 || static_cast<size_t>(s) >= t.slots) return false;
    const uint32_t reads = t.spinReads[s];
    if (threshold != 0 && reads != 0 && t.spinValue[s] == t.value[s] && reads + 1 == threshold) return false;
    slot[i] = static_cast<uint32_t>(s);
  }
  for (uint32_t i = 0; i < n; i++) {
    const uint32_t s = slot[i];
    const uint32_t v = t.value[s];
    memcpy(out + 4 * i, &v, sizeof v);  // little-endian, as the wire
    if (threshold == 0) continue;
    if (t.spinReads[s] == 0 || t.spinValue[s] != v) {
      t.spinValue[s] = v;
      t.spinReads[s] = 1;
    } else if (t.spinReads[s] < threshold) {
      t.spinReads[s]++;
    }
  }
  return true;
}

// A REGION_READ or REGION_WRITE of a trapped BAR that the peek holds whole
// is served here, with handle_region_access()'s checks and reply, in one
// recv() and one send() instead of vfu_run_ctx()'s recvmsg(), recv(),
// sendmsg() and three allocations. Anything else (config space, the memfd
// BARs, an access that libvfio-user would refuse, a larger one) is left to
// libvfio-user. A read that DirectRead() serves calls no JavaScript;
// directOnly serves nothing else. Yield when the peek saw nothing after
// this request and the client waits for our reply: it cannot have sent
// more yet.
Context::Served Context::ServeTrappedAccess(int fd, const Peeked& next, bool directOnly) {
  struct vfio_user_header hdr;
  struct vfio_user_region_access ra;
  if (next.got < static_cast<ssize_t>(sizeof hdr + sizeof ra)) return Served::No;
  memcpy(&hdr, next.bytes, sizeof hdr);
  memcpy(&ra, next.bytes + sizeof hdr, sizeof ra);
  if (hdr.flags.type != VFIO_USER_F_TYPE_COMMAND) return Served::No;
  if (hdr.cmd != VFIO_USER_REGION_READ && hdr.cmd != VFIO_USER_REGION_WRITE) return Served::No;
  if (hdr.msg_size < sizeof hdr + sizeof ra || hdr.msg_size > static_cast<size_t>(next.got)) return Served::No;
  if (ra.region >= kMaxRegions || opt_.regions[ra.region].kind != RegionSpec::Kind::Trapped) return Served::No;
  const bool isWrite = hdr.cmd == VFIO_USER_REGION_WRITE;
  const size_t data = hdr.msg_size - sizeof hdr - sizeof ra;
  if (ra.count == 0 || data != (isWrite ? ra.count : 0)) return Served::No;
  if (ra.count > sizeof next.bytes - sizeof hdr - sizeof ra) return Served::No;  // a read's reply must fit `out`
  const size_t size = opt_.regions[ra.region].size;
  if (ra.offset > size || ra.count > size - ra.offset) return Served::No;

  uint8_t out[sizeof next.bytes];
  uint8_t* const readData = out + sizeof hdr + sizeof ra;
  const bool direct = !isWrite && DirectRead(ra.region, ra.offset, ra.count, readData);
  if (directOnly && !direct) return Served::No;
  uint8_t in[sizeof next.bytes];
  if (recv(fd, in, hdr.msg_size, MSG_DONTWAIT) != static_cast<ssize_t>(hdr.msg_size)) {
    DropConnection(fd);  // cannot be (it was peeked): out of step, vfu_run_ctx sees the end
    return Served::More;
  }
  const struct vfio_user_header reply = ReplyHeader(hdr, sizeof ra + (isWrite ? 0 : ra.count));
  {
    VfuGuard guard(this);  // a close() from the callback waits for the reply, as in vfu_run_ctx
    uint8_t* buf = isWrite ? in + sizeof hdr + sizeof ra : readData;
    if (!direct && TrappedAccess(static_cast<int>(ra.region), reinterpret_cast<char*>(buf), ra.count, ra.offset, isWrite) !=
        static_cast<ssize_t>(ra.count)) {
      const int err = errno;
      Emit(LOG_ERR, "msg" + std::to_string(hdr.msg_id) + ": cmd " + std::to_string(hdr.cmd) + " failed: " + ErrnoText(err));
      if (!hdr.flags.no_reply && !SendErrorReply(fd, hdr, err, 0)) DropConnection(fd);
      return Served::More;
    }
    if (!hdr.flags.no_reply) {
      memcpy(out, &reply, sizeof reply);
      memcpy(out + sizeof reply, &ra, sizeof ra);
      if (send(fd, out, reply.msg_size, MSG_NOSIGNAL) != static_cast<ssize_t>(reply.msg_size)) {
        DropConnection(fd);  // the next vfu_run_ctx() sees the disconnect
        return Served::More;
      }
    }
  }
  return next.got > static_cast<ssize_t>(hdr.msg_size) || hdr.flags.no_reply ? Served::More : Served::Yield;
}

namespace {

// False when an fd that comes with the next message is not an eventfd.
// Unknown (no /proc) is true.
bool FdsAreEventfds(int sock) {
  bool all = true;
  PeekFds(sock, [&](int f) {
    char link[64];
    const ssize_t n = readlink(("/proc/self/fd/" + std::to_string(f)).c_str(), link, sizeof link);
    if (n > 0 && std::string(link, static_cast<size_t>(n)) != "anon_inode:[eventfd]") all = false;
  });
  return all;
}

}  // namespace

// The upper half of a 64-bit BAR: libvfio-user's handle_bar_write() drops
// a write to a BAR whose region has size 0, so config space would keep 0
// there and the device would not know where the guest put a BAR above
// 4 GiB. Kept as written (all its bits are address bits for BARs below
// 4 GiB); QEMU emulates the BAR registers for the guest itself.
void Context::NoteUpperBarWrite(uint64_t offset, uint32_t count, const uint8_t* data, size_t have) {
  for (int i = 1; i < PCI_BARS_NR; i++) {
    if (!opt_.barFlags[i - 1].is64) continue;
    const uint64_t at = PCI_BASE_ADDRESS_0 + 4 * i;
    if (offset > at || offset + count < at + 4 || at + 4 - offset > have) continue;
    uint32_t v;
    memcpy(&v, data + (at - offset), sizeof v);
    vfu_pci_get_config_space(vfu_)->hdr.bars[i].raw = v;
  }
}

// addr + size past 2^64, or a size of 2^63 or more (dma_controller_add_region()'s pointer arithmetic).
static bool RangeOverflows(uint64_t addr, uint64_t size) {
  uint64_t end;
  return __builtin_add_overflow(addr, size, &end) || size > INT64_MAX;
}

// Requests that libvfio-user mishandles badly enough to take the server
// down, found by src/binding/fuzz.test.ts (under ASan, npm run fuzz):
// - VFIO_USER_DEVICE_SET_IRQS: device_set_irqs_validate() checks start +
//   count in 32 bits, so start 1, count 0xffffffff wraps to 0 and passes,
//   and irqs_disable() then walks (and writes -1 into) its eventfd array
//   for 4 billion entries.
// - VFIO_USER_DMA_UNMAP with VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP:
//   is_valid_unmap() reads the bitmap's size before it checks that the
//   message holds a bitmap, and its flags before it checks that the
//   message is that long (heap reads past the message); handle_dma_map()
//   logs the argsz of a message too short to hold one.
// - VFIO_USER_DMA_MAP / DMA_UNMAP whose addr + size passes 2^64, or whose
//   size is 2^63 or more: dma_controller_add_region() computes the end as
//   a pointer that overflows (undefined behaviour; the overlap checks wrap
//   with it). No region that large can be mapped anyway.
// - VFIO_USER_REGION_WRITE to config space that starts inside a
//   capability and runs past its end: pci_config_space_next_segment()
//   hands the capability's handler MIN(count, cap size) bytes from the
//   access's offset, and cap_write_msix() copies them into a struct on
//   its stack (a stack buffer overflow).
// - VFIO_USER_DEVICE_SET_IRQS with an "eventfd" that is none (a pipe):
//   libvfio-user takes any fd, and an interrupt write()s to it; a pipe
//   that nobody reads fills up and the next interrupt blocks the server
//   for good.
// Such a request is read here, its fds closed, and answered EINVAL before
// libvfio-user sees it. True when a message was consumed. *next is the
// peek at it; the fields checked are waited for (and *next updated).
bool Context::RejectBadRequest(int fd, Peeked* next) {
  struct vfio_user_header hdr;
  uint8_t* const peek = next->bytes;
  ssize_t& got = next->got;
  if (got > 0 && got < static_cast<ssize_t>(sizeof hdr)) {
    // A partial header: libvfio-user drops the connection for it (get_msg:
    // ECONNRESET); do so for certain, before the rest can arrive unchecked.
    DropConnection(fd);
    return false;
  }
  if (got < static_cast<ssize_t>(sizeof hdr)) return false;
  memcpy(&hdr, peek, sizeof hdr);
  if (hdr.flags.type != VFIO_USER_F_TYPE_COMMAND || hdr.msg_size > kMaxFilteredMessage) return false;
  const size_t bodySize = hdr.msg_size > sizeof hdr ? hdr.msg_size - sizeof hdr : 0;
  const bool checked = hdr.cmd == VFIO_USER_DEVICE_SET_IRQS || hdr.cmd == VFIO_USER_REGION_WRITE ||
                       hdr.cmd == VFIO_USER_DMA_MAP || hdr.cmd == VFIO_USER_DMA_UNMAP;
  const size_t want = sizeof hdr + std::min(bodySize, sizeof next->bytes - sizeof hdr);
  if (checked && static_cast<size_t>(got) < want) {
    // The fields checked below are still on their way: wait for them (the
    // socket's 1 s receive timeout bounds it).
    const ssize_t more = recv(fd, peek, want, MSG_PEEK | MSG_WAITALL);
    if (more > got) got = more;
  }
  const size_t peeked = std::min(static_cast<size_t>(got) - sizeof hdr, bodySize);  // not the next message's bytes
  std::string why;
  if (hdr.cmd == VFIO_USER_DEVICE_SET_IRQS && bodySize >= sizeof(struct vfio_irq_set) &&
      peeked >= sizeof(struct vfio_irq_set)) {
    struct vfio_irq_set irq;
    memcpy(&irq, peek + sizeof hdr, sizeof irq);
    if (static_cast<uint64_t>(irq.start) + irq.count > UINT32_MAX) {
      why = "VFIO_USER_DEVICE_SET_IRQS start " + std::to_string(irq.start) + " + count " +
            std::to_string(irq.count) + " overflows";
    } else if ((irq.flags & VFIO_IRQ_SET_DATA_EVENTFD) && !FdsAreEventfds(fd)) {
      why = "VFIO_USER_DEVICE_SET_IRQS passes an fd that is not an eventfd";
    }
  } else if (hdr.cmd == VFIO_USER_REGION_WRITE && bodySize >= sizeof(struct vfio_user_region_access) &&
             peeked >= sizeof(struct vfio_user_region_access)) {
    struct vfio_user_region_access ra;
    memcpy(&ra, peek + sizeof hdr, sizeof ra);
    if (ra.region == VFU_PCI_DEV_CFG_REGION_IDX) NoteUpperBarWrite(ra.offset, ra.count, peek + sizeof hdr + sizeof ra, peeked - sizeof ra);
    if (ra.region == VFU_PCI_DEV_CFG_REGION_IDX) {
      for (const auto& [off, size] : caps_) {
        if (ra.offset >= off && ra.offset < off + size && ra.offset + ra.count > off + size) {
          char text[96];
          snprintf(text, sizeof text, "config write at %#llx (%u bytes) runs past the capability at %#x",
                   static_cast<unsigned long long>(ra.offset), ra.count, off);
          why = text;
        }
      }
    }
  } else if (hdr.cmd == VFIO_USER_DMA_UNMAP && bodySize > 0 && bodySize < sizeof(struct vfio_user_dma_unmap)) {
    why = "VFIO_USER_DMA_UNMAP is too short";
  } else if (hdr.cmd == VFIO_USER_DMA_UNMAP && bodySize >= sizeof(struct vfio_user_dma_unmap) &&
             peeked >= sizeof(struct vfio_user_dma_unmap)) {
    struct vfio_user_dma_unmap unmap;
    memcpy(&unmap, peek + sizeof hdr, sizeof unmap);
    if (unmap.flags == VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP &&
        bodySize < sizeof(struct vfio_user_dma_unmap) + sizeof(struct vfio_user_bitmap)) {
      why = "VFIO_USER_DMA_UNMAP asks for a dirty bitmap but has none";
    } else if (RangeOverflows(unmap.addr, unmap.size)) {
      why = "VFIO_USER_DMA_UNMAP addr + size overflows";
    }
  } else if (hdr.cmd == VFIO_USER_DMA_MAP && bodySize > 0 && bodySize < sizeof(struct vfio_user_dma_map)) {
    why = "VFIO_USER_DMA_MAP is too short";
  } else if (hdr.cmd == VFIO_USER_DMA_MAP && bodySize >= sizeof(struct vfio_user_dma_map) &&
             peeked >= sizeof(struct vfio_user_dma_map)) {
    struct vfio_user_dma_map map;
    memcpy(&map, peek + sizeof hdr, sizeof map);
    if (RangeOverflows(map.addr, map.size)) {
      why = "VFIO_USER_DMA_MAP addr + size overflows";
    }
  }
  if (why.empty()) return false;
  const bool whole = ConsumeMessage(fd, hdr.msg_size);
  Emit(LOG_ERR, "vphi: msg" + std::to_string(hdr.msg_id) + ": " + why + "; refused");
  if (!whole) {
    // The rest never came (1 s receive timeout): the stream is out of step.
    DropConnection(fd);
    return true;
  }
  if (!hdr.flags.no_reply && !SendErrorReply(fd, hdr, EINVAL, 0)) DropConnection(fd);
  return true;
}

// callbacks.onConnection(attached), reporting a JS exception instead of throwing.
void Context::EmitConnection(bool attached) {
  CallJs("onConnection", [&]() {
    napi_value args[1] = {Napi::Boolean::New(env_, attached)};
    onConnection_.Call(callbacks_.Value(), 1, args);
  });
}

// The client went away; libvfio-user has already unregistered its DMA
// regions, reset the device (LOST_CONN), dropped the eventfds and closed the
// connection. Back to listening (the listen poll never stopped).
void Context::Disconnected() {
  attached_ = false;
  StopConnPoll();
  EmitConnection(false);
}

// A second client while one is attached: accept it ourselves, answer its
// first message with EBUSY if it comes quickly, and close it.
void Context::Refuse() {
  int fd = accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
      Emit(LOG_ERR, "vphi: accept on " + endpoint_ + ": " + ErrnoText(errno));
    }
    return;
  }
  const std::string reason = "a client is already attached to " + endpoint_;
  CallJs("onRefused", [&]() {
    napi_value args[1] = {Napi::String::New(env_, reason)};
    onRefused_.Call(callbacks_.Value(), 1, args);
  });
  if (AnswerRefused(fd)) {
    EndRefused(fd);
    return;
  }
  Refusal* r = new Refusal();
  r->fd = fd;
  r->owner = this;
  r->poll.data = r;
  r->timer.data = r;
  uv_loop_t* loop = LoopOf(env_);
  if (uv_poll_init(loop, &r->poll, fd) != 0) {
    close(fd);
    delete r;
    return;
  }
  uv_timer_init(loop, &r->timer);
  r->openHandles = 2;
  refusals_.push_back(r);
  uv_poll_start(&r->poll, UV_READABLE | UV_DISCONNECT, OnRefusalReadable);
  uv_timer_start(&r->timer, OnRefusalTimeout, kRefusalTimeoutMs, 0);
}

void Context::OnRefusalDone(Refusal* r) {
  refusals_.erase(std::remove(refusals_.begin(), refusals_.end(), r), refusals_.end());
}

}  // namespace vphi
