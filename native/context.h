// The native side of vphi: one vfio-user server context (libvfio-user) with
// its memfd mappings and its libuv polls. It makes no device decisions: every
// access, interrupt state change and DMA mapping is handed to JavaScript.
//
// Threading: everything runs on the JS thread that created the context (its
// libuv loop drives libvfio-user), so libvfio-user's callbacks call
// JavaScript directly.
#pragma once

#include <napi.h>
#include <uv.h>

#include <sys/types.h>
#include <time.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "lvu.h"

namespace vphi {

// Size of the shared scratch buffer; larger accesses are split into chunks.
constexpr size_t kScratchSize = 4096;
// Regions a spec may name: BAR0..BAR5 and the expansion ROM.
constexpr int kMaxRegions = VFU_PCI_DEV_ROM_REGION_IDX + 1;
// MSI-X: table at offset 0 of its BAR, PBA at this offset.
constexpr uint32_t kMsixPbaOffset = 0x1000;
// Bound on how long libvfio-user may block the loop on the socket: version
// negotiation after accept (a client that connects and says nothing), and
// message bodies / replies of an attached client that stalls mid-message.
constexpr int kSocketTimeoutMs = 1000;

struct RegionSpec {
  enum class Kind { None, Trapped, Memfd };
  Kind kind = Kind::None;
  size_t size = 0;
  std::string name;  // memfd name
};

struct BarFlag {
  bool is64 = false;
  bool prefetchable = false;
};

struct Options {
  std::string socketPath;
  int listenFd = -1;  // an inherited listening socket to serve on instead
  uint16_t vendorId = 0, deviceId = 0, subsystemVendorId = 0, subsystemId = 0;
  uint8_t revision = 0;
  uint32_t classCode = 0;
  uint8_t interruptPin = 0;
  RegionSpec regions[kMaxRegions];
  BarFlag barFlags[PCI_BARS_NR];
  uint32_t msixVectors = 0;
  int msixBar = 0;
  bool pcie = false;
  bool intx = false;
};

// A memfd-backed region's mapping in this process.
struct Region {
  RegionSpec::Kind kind = RegionSpec::Kind::None;
  size_t size = 0;
  int fd = -1;
  uint8_t* map = nullptr;
  Napi::Reference<Napi::ArrayBuffer> memory;  // external view, detached on close
};

// A guest memory region the client mapped for DMA.
struct DmaEntry {
  uint64_t iova = 0;
  size_t length = 0;
  void* vaddr = nullptr;  // libvfio-user's MAP_SHARED mapping of the client's fd, or null
  Napi::Reference<Napi::ArrayBuffer> memory;  // empty for message-based DMA
  uint32_t prot = 0;
  bool ours = false;  // no fd: kept here, not in libvfio-user's table (dma.cc ServeFdlessDma)
};

// A trapped region's DirectReads (types.ts): the register file's arrays,
// referenced while set. Entries are bounds-checked at every read (JS may
// change them at any time).
struct DirectTable {
  Napi::Reference<Napi::TypedArray> keep[5];
  const int32_t* slot = nullptr;  // null: not set
  size_t dwords = 0;
  const uint32_t* value = nullptr;
  uint32_t* spinValue = nullptr;
  uint32_t* spinReads = nullptr;
  const uint32_t* spinThreshold = nullptr;
  size_t slots = 0;
  void Release() {
    for (auto& k : keep) k.Reset();
    slot = nullptr;
    dwords = slots = 0;
  }
};

// The start of the next request, peeked (poll.cc): its header, and the whole
// of a region access of up to 64 bytes.
struct Peeked {
  ssize_t got = 0;
  uint8_t bytes[sizeof(struct vfio_user_header) + sizeof(struct vfio_user_region_access) + 64];
};

struct Poll;  // poll.cc
struct Refusal;

class Context : public Napi::ObjectWrap<Context> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit Context(const Napi::CallbackInfo& info);
  ~Context() override;

  static Context* From(vfu_ctx_t* vfu) {
    return static_cast<Context*>(vfu_get_private(vfu));
  }

  // ---- libvfio-user callbacks (callbacks.cc, dma.cc) ----
  ssize_t TrappedAccess(int index, char* buf, size_t count, loff_t offset,
                        bool isWrite);
  ssize_t MemfdAccess(int index, char* buf, size_t count, loff_t offset,
                      bool isWrite);
  void Log(int level, const char* msg);
  void IrqState(int type, uint32_t start, uint32_t count, bool masked);
  int Reset(int type);
  void DmaRegister(vfu_dma_info_t* info);
  void DmaUnregister(vfu_dma_info_t* info);

  // ---- libuv poll callbacks (poll.cc) ----
  void OnListenReadable();
  void OnConnReadable();
  void OnRefusalDone(Refusal* r);

 private:
  // JS methods
  Napi::Value Scratch(const Napi::CallbackInfo& info);
  Napi::Value RegionMemory(const Napi::CallbackInfo& info);
  Napi::Value RegionFd(const Napi::CallbackInfo& info);
  Napi::Value Trigger(const Napi::CallbackInfo& info);
  Napi::Value ActiveIrqType(const Napi::CallbackInfo& info);
  Napi::Value ReadConfig(const Napi::CallbackInfo& info);
  Napi::Value SetLogLevel(const Napi::CallbackInfo& info);
  Napi::Value Attached(const Napi::CallbackInfo& info);
  Napi::Value SetDirectReads(const Napi::CallbackInfo& info);
  Napi::Value DropResidentPages(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  int ActiveType() const;

  // setup (context.cc)
  void Setup();
  void SetupRegions();
  void SetupCapabilities();
  void FixConfigSpace();
  void CreateMemfd(int index);
  void CreateVfuContext();
  void AdoptListenFd();
  // teardown
  class VfuGuard;  // internal.h
  void RequestClose();
  void DoClose() noexcept;
  void ReleaseMemory();
  Region& MemfdRegion(const Napi::CallbackInfo& info);
  std::string DetachView(Napi::Reference<Napi::ArrayBuffer>& memory);
  static void CleanupHook(void* arg);

  // polls (poll.cc)
  void StartListening();
  void CreateWatchdog();
  void DeleteWatchdog();
  int AttachWithDeadline(int* err);
  void StartConnPoll();
  void StopConnPoll();
  void StopAllPolls();
  void Refuse();
  void RunRequests(Peeked* next);
  bool RejectBadRequest(int fd, Peeked* next);
  bool ServeFdlessDma(int fd, const Peeked& next);
  void ReportDmaMap(DmaEntry entry, void* vaddr, uint32_t prot);
  void ReportDmaUnmap(std::vector<DmaEntry>::iterator it, uint64_t iova, size_t length);
  void DropOurDma();
  enum class Served { No, More, Yield };
  Served ServeTrappedAccess(int fd, const Peeked& next, bool directOnly);
  bool DirectRead(uint32_t region, uint64_t offset, uint32_t count, uint8_t* out);
  enum class Batch { Done, NeedsJs };
  Batch ServeDirectReads(Peeked* next);
  void NoteUpperBarWrite(uint64_t offset, uint32_t count, const uint8_t* data, size_t have);
  void Disconnected();
  void EmitConnection(bool attached);
  // Runs fn inside a handle scope and a callback scope, so that promise jobs
  // and nextTicks queued by the JS callbacks run when it returns.
  template <typename F>
  void Dispatch(F&& fn);

  // calling JavaScript (callbacks.cc, internal.h)
  // Runs body (which calls one JS callback) in a handle scope. False when
  // JS cannot run or the callback threw; then *error describes the throw.
  template <typename F>
  bool Invoke(std::string* error, F&& body);
  // Invoke, and report a throw through onLog(LOG_ERR, "vphi: WHAT threw: ...").
  // `what` is a string, or a function returning one (built only on a throw).
  template <typename W, typename F>
  bool CallJs(W&& what, F&& body);
  std::string Describe(const Napi::Error& e);
  void CallLog(int level, const char* message);
  void ReportJsError(const std::string& what, const std::string& error);
  void Emit(int level, const std::string& message);  // our own log lines

  Napi::Env env_;
  Options opt_;
  vfu_ctx_t* vfu_ = nullptr;

  Napi::ObjectReference callbacks_;
  Napi::FunctionReference onAccess_, onDmaMap_, onDmaUnmap_, onReset_,
      onIrqState_, onConnection_, onLog_, onRefused_;
  Napi::FunctionReference onPoll_;  // optional
  Napi::Reference<Napi::Buffer<uint8_t>> scratchRef_;
  uint8_t* scratch_ = nullptr;
  napi_async_context asyncContext_ = nullptr;

  Region regions_[kMaxRegions];
  DirectTable direct_[kMaxRegions];
  std::vector<DmaEntry> dma_;
  size_t configSize_ = 0;
  std::vector<uint8_t> pristineConfig_;  // config space as set up, restored on reset
  size_t msixCapOffset_ = 0;
  // Our capabilities in config space: offset, size (poll.cc RejectBadRequest).
  std::vector<std::pair<uint32_t, uint32_t>> caps_;
  int logLevel_ = LOG_ERR;

  // Where clients connect, for messages: socketPath, or with listenFd the
  // inherited socket's path (or "fd N").
  std::string endpoint_;
  // socket file we created (unlinked on close if it is still ours)
  dev_t socketDev_ = 0;
  ino_t socketIno_ = 0;
  bool socketCreated_ = false;

  // Interrupts a vfu_attach_ctx that blocks too long (poll.cc).
  timer_t watchdog_ = nullptr;
  bool watchdogCreated_ = false;
  bool deferLogs_ = false;  // during attach: no JS inside the watchdog window
  std::vector<std::pair<int, std::string>> deferredLogs_;

  Poll* listenPoll_ = nullptr;
  Poll* connPoll_ = nullptr;
  int listenFd_ = -1;
  std::vector<Refusal*> refusals_;

  bool attached_ = false;
  bool closed_ = false;
  bool closeRequested_ = false;
  bool jsAlive_ = true;          // false during environment teardown
  bool hookInstalled_ = false;
  bool refed_ = false;
  bool inTrigger_ = false;       // suppress libvfio-user's "no fd" error log
  int vfuDepth_ = 0;             // nesting of calls into libvfio-user
};

// callbacks.cc: the vfu_log_fn_t we register.
void LogThunk(vfu_ctx_t* vfu, int level, const char* msg);

// socket.cc
// Creates the parent directory (0700) if missing, refuses a live socket and
// removes a stale one. Throws std::runtime_error with a readable message.
void PrepareSocketPath(const std::string& path);

// Checks that fd is a listening AF_UNIX stream socket; returns its path
// (empty if unbound or abstract). Throws std::runtime_error otherwise.
std::string CheckListeningSocket(int fd);

// Error text for errno.
std::string ErrnoText(int err);

}  // namespace vphi
