// libvfio-user callbacks that reach JavaScript: region accesses, log lines,
// IRQ mask state and device reset. All run on the main thread, either inside
// a poll callback (Dispatch) or inside a JS call into the addon.
#include <errno.h>
#include <string.h>

#include <algorithm>

#include "context.h"
#include "internal.h"

namespace vphi {

// ---- thunks: libvfio-user does not pass the region index, so one per region

namespace {

template <int I>
ssize_t TrappedThunk(vfu_ctx_t* vfu, char* buf, size_t count, loff_t offset, bool isWrite) {
  return Context::From(vfu)->TrappedAccess(I, buf, count, offset, isWrite);
}

template <int I>
ssize_t MemfdThunk(vfu_ctx_t* vfu, char* buf, size_t count, loff_t offset, bool isWrite) {
  return Context::From(vfu)->MemfdAccess(I, buf, count, offset, isWrite);
}

template <int Type>
void IrqStateThunk(vfu_ctx_t* vfu, uint32_t start, uint32_t count, bool mask) {
  Context::From(vfu)->IrqState(Type, start, count, mask);
}

}  // namespace

static_assert(kMaxRegions == 7, "one thunk per region below");

vfu_region_access_cb_t* TrappedAccessThunk(int index) {
  static vfu_region_access_cb_t* const table[kMaxRegions] = {
      TrappedThunk<0>, TrappedThunk<1>, TrappedThunk<2>, TrappedThunk<3>,
      TrappedThunk<4>, TrappedThunk<5>, TrappedThunk<6>};
  return table[index];
}

vfu_region_access_cb_t* MemfdAccessThunk(int index) {
  static vfu_region_access_cb_t* const table[kMaxRegions] = {
      MemfdThunk<0>, MemfdThunk<1>, MemfdThunk<2>, MemfdThunk<3>,
      MemfdThunk<4>, MemfdThunk<5>, MemfdThunk<6>};
  return table[index];
}

vfu_dev_irq_state_cb_t* IrqStateThunk(int type) {
  return type == VFU_DEV_MSIX_IRQ ? IrqStateThunk<VFU_DEV_MSIX_IRQ>
                                  : IrqStateThunk<VFU_DEV_INTX_IRQ>;
}

void LogThunk(vfu_ctx_t* vfu, int level, const char* msg) { Context::From(vfu)->Log(level, msg); }

int ResetThunk(vfu_ctx_t* vfu, vfu_reset_type_t type) {
  return Context::From(vfu)->Reset(static_cast<int>(type));
}

// ---- calling JavaScript

std::string Context::Describe(const Napi::Error& e) {
  try {
    Napi::Value v = e.Value();
    if (v.IsObject()) {
      Napi::Value stack = v.As<Napi::Object>().Get("stack");
      if (stack.IsString()) return stack.As<Napi::String>().Utf8Value();
    }
    return e.Message();
  } catch (...) {
    return "(exception without a readable message)";
  }
}

void Context::CallLog(int level, const char* message) {
  if (!jsAlive_) return;
  try {
    Napi::HandleScope scope(env_);
    napi_value args[2] = {Napi::Number::New(env_, level), Napi::String::New(env_, message)};
    onLog_.Call(callbacks_.Value(), 2, args);
  } catch (...) {
    // A throwing logger has nowhere to report to.
  }
}

void Context::Emit(int level, const std::string& message) {
  if (level <= logLevel_) CallLog(level, message.c_str());
}

void Context::ReportJsError(const std::string& what, const std::string& error) {
  CallLog(LOG_ERR, ("vphi: " + what + " threw: " + error).c_str());
}

// ---- region accesses

ssize_t Context::TrappedAccess(int index, char* buf, size_t count, loff_t offset, bool isWrite) {
  size_t done = 0;
  while (done < count) {
    const size_t n = std::min(kScratchSize, count - done);
    const double at = static_cast<double>(offset) + static_cast<double>(done);
    if (isWrite) memcpy(scratch_, buf + done, n);
    const auto what = [&]() {
      char text[128];
      snprintf(text, sizeof text, "onAccess(region %d, offset %#llx, %zu bytes, %s)", index,
               static_cast<unsigned long long>(offset + done), n, isWrite ? "write" : "read");
      return std::string(text);
    };
    if (!CallJs(what, [&]() {
          napi_value args[4] = {Napi::Number::New(env_, index), Napi::Number::New(env_, at),
                                Napi::Number::New(env_, static_cast<double>(n)),
                                Napi::Boolean::New(env_, isWrite)};
          onAccess_.Call(callbacks_.Value(), 4, args);
        })) {
      errno = EIO;
      return -1;
    }
    if (!isWrite) memcpy(buf + done, scratch_, n);
    done += n;
  }
  return static_cast<ssize_t>(count);
}

ssize_t Context::MemfdAccess(int index, char* buf, size_t count, loff_t offset, bool isWrite) {
  Region& r = regions_[index];
  if (r.map == nullptr || offset < 0 || static_cast<size_t>(offset) > r.size ||
      count > r.size - static_cast<size_t>(offset)) {
    errno = EINVAL;
    return -1;
  }
  if (isWrite) {
    memcpy(r.map + offset, buf, count);
  } else {
    memcpy(buf, r.map + offset, count);
  }
  return static_cast<ssize_t>(count);
}

// ---- log, irq state, reset

// libvfio-user's prefix of a config-space access line (region index 7).
static_assert(VFU_PCI_DEV_CFG_REGION_IDX == 7, "the config-space region index");
static const char kCfgRegionPrefix[] = "region7: ";

void Context::Log(int level, const char* msg) {
  // A trigger without an eventfd is a normal condition (trigger() returns
  // false); libvfio-user logs it as an error, which we drop.
  if (inTrigger_ && strncmp(msg, "no fd for interrupt", 19) == 0) return;
  // At LOG_DEBUG (tracing on) libvfio-user logs every region access; only
  // config space's are wanted (the trace's cfg events): the BARs' are
  // traced by the register files. Dropping the rest here spares each
  // trapped BAR access a call into JavaScript.
  if (level >= LOG_DEBUG && strncmp(msg, "region", 6) == 0 && strncmp(msg, kCfgRegionPrefix, sizeof(kCfgRegionPrefix) - 1) != 0) return;
  if (deferLogs_) {
    deferredLogs_.emplace_back(level, msg);
    return;
  }
  CallLog(level, msg);
}

void Context::IrqState(int type, uint32_t start, uint32_t count, bool masked) {
  CallJs("onIrqState", [&]() {
    napi_value args[4] = {Napi::Number::New(env_, type), Napi::Number::New(env_, start),
                          Napi::Number::New(env_, count), Napi::Boolean::New(env_, masked)};
    onIrqState_.Call(callbacks_.Value(), 4, args);
  });
}

int Context::Reset(int type) {
  // libvfio-user resets nothing in config space, neither when the client
  // resets the device nor when it goes away: a new client would find the
  // previous guest's command register, BAR addresses and MSI-X Enable. Do
  // what a function reset does and go back to the state we set up.
  if (!pristineConfig_.empty()) {
    memcpy(vfu_pci_get_config_space(vfu_), pristineConfig_.data(), pristineConfig_.size());
  }
  // libvfio-user dropped its DMA regions just before (vfu_reset_ctx()): ours go too.
  if (type == VFU_RESET_LOST_CONN) DropOurDma();
  CallJs("onReset", [&]() {
    napi_value args[1] = {Napi::Number::New(env_, type)};
    onReset_.Call(callbacks_.Value(), 1, args);
  });
  return 0;
}

}  // namespace vphi
