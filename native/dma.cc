// Guest memory the client maps for DMA: handed to JavaScript as external
// ArrayBuffers over libvfio-user's own mapping, detached before it is unmapped.
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include "context.h"
#include "internal.h"
#include "wire.h"

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
  ReportDmaMap(std::move(entry), info->vaddr, info->prot);
}

// Records `entry` and hands it to JS. A region without memory (ROMs, VGA
// memory, BARs; guest RAM only if the VM lacks shared memory) reaches JS
// with memory null: the policy of what to say about it lives in TypeScript
// (src/server.ts).
void Context::ReportDmaMap(DmaEntry entry, void* vaddr, uint32_t prot) {
  const uint64_t iova = entry.iova;
  const size_t length = entry.length;
  entry.prot = prot;
  CallJs("onDmaMap", [&]() {
    Napi::Value memory = env_.Null();
    if (vaddr != nullptr && !BackedToTheEnd(vaddr, length)) {
      // A client's (not QEMU's) mistake; without memory the card cannot reach it.
      CallLog(LOG_ERR, ("vphi: DMA region " + Range(iova, length) +
                        " extends past the end of its file; the card cannot reach it")
                           .c_str());
    } else if (vaddr != nullptr) {
      // External and unowned: libvfio-user unmaps it after DmaUnregister.
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env_, vaddr, length);
      entry.vaddr = vaddr;
      entry.memory = Napi::Persistent(ab);
      memory = ab;
    }
    Napi::Object o = Napi::Object::New(env_);
    o.Set("iova", Napi::BigInt::New(env_, iova));
    o.Set("length", Napi::Number::New(env_, static_cast<double>(length)));
    o.Set("prot", Napi::Number::New(env_, prot));
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
    return !e.ours && e.iova == iova && e.length == length;
  });
  ReportDmaUnmap(it, iova, length);
}

// Tells JS that [iova, iova + length) is gone, then forgets `it` (end(): none).
void Context::ReportDmaUnmap(std::vector<DmaEntry>::iterator it, uint64_t iova, size_t length) {
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

// Our regions go as libvfio-user's do: on DMA_UNMAP_FLAG_ALL, when the
// client goes away (before the reset) and when the context closes.
void Context::DropOurDma() {
  for (;;) {
    auto it = std::find_if(dma_.begin(), dma_.end(), [](const DmaEntry& e) { return e.ours; });
    if (it == dma_.end()) return;
    ReportDmaUnmap(it, it->iova, it->length);
  }
}

// libvfio-user keeps at most MAX_DMA_REGIONS (16) DMA regions and refuses
// the next with EINVAL ("hit max regions"), and QEMU's vfio listener offers
// a device every RAM section of the VM, every vfio device's mmap()ed BARs
// among them (ram_device). With 8 cards each card was offered 8 BAR0s and
// the ROMs besides guest RAM, and guest RAM offered later was refused: the
// card could not read its device page. A region without an fd is nothing
// libvfio-user could map, and the card reaches a peer card's BARs through
// the fabric, not through the client: such regions are kept here instead,
// as dma_controller_add_region() and _remove_region() would keep them
// (exact unmap, identical re-map accepted, overlaps refused), and the
// replies are handle_dma_map()'s and handle_dma_unmap()'s. True when the
// message was consumed.
bool Context::ServeFdlessDma(int fd, const Peeked& next) {
  struct vfio_user_header hdr;
  if (next.got < static_cast<ssize_t>(sizeof hdr)) return false;
  memcpy(&hdr, next.bytes, sizeof hdr);
  if (hdr.flags.type != VFIO_USER_F_TYPE_COMMAND) return false;
  const size_t body = hdr.msg_size > sizeof hdr ? hdr.msg_size - sizeof hdr : 0;
  const size_t have = static_cast<size_t>(next.got) - sizeof hdr;
  // Read the message, then answer it (handle_dma_map() calls dma_register
  // before its reply, so JS hears of a new region first).
  auto consume = [&]() {
    if (ConsumeMessage(fd, hdr.msg_size)) return true;
    DropConnection(fd);  // cannot be (it was peeked whole)
    return false;
  };
  auto reply = [&](int err, const void* data, size_t len) {
    if (hdr.flags.no_reply) return;
    if (!(err != 0 ? SendErrorReply(fd, hdr, err) : SendReply(fd, hdr, data, len))) DropConnection(fd);
  };
  auto overlaps = [](const DmaEntry& e, uint64_t addr, uint64_t size) {
    return addr < e.iova + e.length && e.iova < addr + size;
  };

  if (hdr.cmd == VFIO_USER_DMA_MAP) {
    struct vfio_user_dma_map map;
    if (body != sizeof map || have < sizeof map) return false;  // libvfio-user's to judge
    memcpy(&map, next.bytes + sizeof hdr, sizeof map);
    constexpr uint32_t kProtFlags = VFIO_USER_F_DMA_REGION_READ | VFIO_USER_F_DMA_REGION_WRITE;
    constexpr uint64_t kMaxDmaSize = 8ULL << 40;  // libvfio-user's MAX_DMA_SIZE
    if (map.argsz < sizeof map || (map.flags & ~kProtFlags) != 0 || map.size == 0 || map.size > kMaxDmaSize) return false;
    uint32_t prot = 0;
    if (map.flags & VFIO_USER_F_DMA_REGION_READ) prot |= PROT_READ;
    if (map.flags & VFIO_USER_F_DMA_REGION_WRITE) prot |= PROT_WRITE;
    int fds = 0;
    if (!PeekFds(fd, [&](int) { fds++; })) return false;
    for (const DmaEntry& e : dma_) {
      if (!overlaps(e, map.addr, map.size)) continue;
      if (!e.ours) return false;  // libvfio-user's region: its rules
      // One of ours: an identical re-map without an fd is accepted, as
      // dma_controller_add_region() accepts one; anything else overlaps.
      const bool same = e.iova == map.addr && e.length == map.size && fds == 0 && e.prot == prot;
      if (consume()) reply(same ? 0 : EINVAL, nullptr, 0);
      return true;
    }
    if (fds > 0) return false;
    if (!consume()) return true;
    DmaEntry entry;
    entry.iova = map.addr;
    entry.length = map.size;
    entry.ours = true;
    ReportDmaMap(std::move(entry), nullptr, prot);
    reply(0, nullptr, 0);
    return true;
  }

  if (hdr.cmd == VFIO_USER_DMA_UNMAP) {
    struct vfio_user_dma_unmap unmap;
    if (body != sizeof unmap || have < sizeof unmap) return false;
    memcpy(&unmap, next.bytes + sizeof hdr, sizeof unmap);
    if (unmap.argsz < sizeof unmap || unmap.argsz > VFIO_USER_DEFAULT_MAX_DATA_XFER_SIZE) return false;
    if (unmap.flags == VFIO_DMA_UNMAP_FLAG_ALL && unmap.addr == 0 && unmap.size == 0) {
      DropOurDma();
      return false;  // libvfio-user drops its own and replies
    }
    if (unmap.flags != 0) return false;
    auto it = std::find_if(dma_.begin(), dma_.end(), [&](const DmaEntry& e) {
      return e.ours && e.iova == unmap.addr && e.length == unmap.size;
    });
    if (it == dma_.end()) return false;  // libvfio-user's, or none (ENOENT)
    if (!consume()) return true;
    ReportDmaUnmap(it, unmap.addr, unmap.size);
    reply(0, &unmap, sizeof unmap);  // the reply echoes the request, as handle_dma_unmap()'s
    return true;
  }
  return false;
}

}  // namespace vphi
