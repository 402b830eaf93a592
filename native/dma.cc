// Guest memory the client maps for DMA: handed to JavaScript as external
// ArrayBuffers over libvfio-user's own mapping, detached before it is unmapped.
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "context.h"
#include "internal.h"

namespace vphi {

void DmaRegisterThunk(vfu_ctx_t* vfu, vfu_dma_info_t* info) { Context::From(vfu)->DmaRegister(info); }

void DmaUnregisterThunk(vfu_ctx_t* vfu, vfu_dma_info_t* info) {
  Context::From(vfu)->DmaUnregister(info);
}

namespace {
std::string Range(uint64_t iova, size_t length) {
  char buf[64];
  snprintf(buf, sizeof buf, "[%#" PRIx64 ", %#" PRIx64 ")", iova, iova + length);
  return buf;
}

// libvfio-user mmap()s a client's fd for any offset and size without
// looking at the file's size: a mapping past the end of the file (a memfd
// smaller than the region, or an offset beyond it) succeeds, and the
// card's first DMA there killed the server with SIGBUS (found by
// src/binding/fuzz.test.ts). The mapping is contiguous in the file, so
// its last page tells: MADV_POPULATE_READ fails with EFAULT where an
// access would fault. True unless that is so (or the kernel cannot tell).
bool BackedToTheEnd(void* vaddr, size_t length) {
  if (length == 0) return true;
  const uintptr_t page = static_cast<uintptr_t>(getpagesize());
  const uintptr_t last = (reinterpret_cast<uintptr_t>(vaddr) + length - 1) & ~(page - 1);
  return madvise(reinterpret_cast<void*>(last), page, MADV_POPULATE_READ) == 0 || errno != EFAULT;
}
}  // namespace

void Context::DmaRegister(vfu_dma_info_t* info) {
  const uint64_t iova = reinterpret_cast<uintptr_t>(info->iova.iov_base);
  const size_t length = info->iova.iov_len;
  for (const DmaEntry& e : dma_) {
    if (e.iova == iova && e.length == length) {
      // libvfio-user accepts an identical re-map and calls us again.
      Emit(LOG_DEBUG, "vphi: DMA region " + Range(iova, length) + " mapped again; ignored");
      return;
    }
  }
  DmaEntry entry;
  entry.iova = iova;
  entry.length = length;
  // A region without an fd (ROMs, VGA memory, BARs; guest RAM only if the
  // VM lacks shared memory) reaches JS with memory null: the policy of
  // what to say about it lives in TypeScript (src/server.ts).
  CallJs("onDmaMap", [&]() {
    Napi::Value memory = env_.Null();
    if (info->vaddr != nullptr && !BackedToTheEnd(info->vaddr, length)) {
      // A client's (not QEMU's) mistake; without memory the card cannot reach it.
      CallLog(LOG_ERR, ("vphi: DMA region " + Range(iova, length) +
                        " extends past the end of its file; the card cannot reach it")
                           .c_str());
    } else if (info->vaddr != nullptr) {
      // External and unowned: libvfio-user unmaps it after DmaUnregister.
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env_, info->vaddr, length);
      entry.vaddr = info->vaddr;
      entry.memory = Napi::Persistent(ab);
      memory = ab;
    }
    Napi::Object o = Napi::Object::New(env_);
    o.Set("iova", Napi::BigInt::New(env_, iova));
    o.Set("length", Napi::Number::New(env_, static_cast<double>(length)));
    o.Set("prot", Napi::Number::New(env_, info->prot));
    o.Set("memory", memory);
    dma_.push_back(std::move(entry));
    napi_value args[1] = {o};
    onDmaMap_.Call(callbacks_.Value(), 1, args);
  });
}

void Context::DmaUnregister(vfu_dma_info_t* info) {
  const uint64_t iova = reinterpret_cast<uintptr_t>(info->iova.iov_base);
  const size_t length = info->iova.iov_len;
  auto it = std::find_if(dma_.begin(), dma_.end(), [&](const DmaEntry& e) {
    return e.iova == iova && e.length == length;
  });

  // First tell JS, so it stops using the region...
  CallJs("onDmaUnmap", [&]() {
    napi_value args[2] = {Napi::BigInt::New(env_, iova),
                          Napi::Number::New(env_, static_cast<double>(length))};
    onDmaUnmap_.Call(callbacks_.Value(), 2, args);
  });
  if (it == dma_.end()) return;

  // ...then detach the ArrayBuffer: any view JS still holds now has length 0
  // and can never reach the mapping libvfio-user is about to unmap.
  const std::string error = DetachView(it->memory);
  if (!error.empty()) {
    CallLog(LOG_CRIT, ("vphi: cannot detach the ArrayBuffer of DMA region " + Range(iova, length) +
                       ": " + error)
                          .c_str());
  }
  dma_.erase(it);
}

}  // namespace vphi
