// Declarations shared by the addon's .cc files only.
#pragma once

#include <type_traits>
#include <utility>

#include "context.h"

namespace vphi {

// One C callback per region index / irq type (callbacks.cc, dma.cc).
vfu_region_access_cb_t* TrappedAccessThunk(int index);
vfu_region_access_cb_t* MemfdAccessThunk(int index);
vfu_dev_irq_state_cb_t* IrqStateThunk(int type);
int ResetThunk(vfu_ctx_t* vfu, vfu_reset_type_t type);
void DmaRegisterThunk(vfu_ctx_t* vfu, vfu_dma_info_t* info);
void DmaUnregisterThunk(vfu_ctx_t* vfu, vfu_dma_info_t* info);

template <typename F>
bool Context::Invoke(std::string* error, F&& body) {
  if (!jsAlive_) return false;
  try {
    Napi::HandleScope scope(env_);
    body();
    return true;
  } catch (const Napi::Error& e) {
    Napi::HandleScope scope(env_);
    *error = Describe(e);
  } catch (const std::exception& e) {
    *error = e.what();
  } catch (...) {
    *error = "unknown C++ exception";
  }
  return false;
}

template <typename W, typename F>
bool Context::CallJs(W&& what, F&& body) {
  std::string error;
  if (Invoke(&error, std::forward<F>(body))) return true;
  if (!error.empty()) {
    if constexpr (std::is_invocable_v<W>) {
      ReportJsError(what(), error);
    } else {
      ReportJsError(what, error);
    }
  }
  return false;
}

// Counts nested entries into libvfio-user; a close() requested from a JS
// callback meanwhile is carried out once the outermost call has returned.
class Context::VfuGuard {
 public:
  explicit VfuGuard(Context* c) : c_(c) { c_->vfuDepth_++; }
  ~VfuGuard() {
    if (--c_->vfuDepth_ == 0 && c_->closeRequested_ && !c_->closed_) c_->DoClose();
  }
  VfuGuard(const VfuGuard&) = delete;
  VfuGuard& operator=(const VfuGuard&) = delete;

 private:
  Context* c_;
};

}  // namespace vphi
