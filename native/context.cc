// Building the vfio-user device (PCI identity, regions, capabilities, IRQs)
// from the options, and tearing it down.
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <endian.h>

#include <stdexcept>
#include <string>

#include "context.h"
#include "internal.h"
#include "wire.h"

namespace vphi {

namespace {

void Check(int rc, const std::string& what) {
  if (rc < 0) throw std::runtime_error(what + ": " + ErrnoText(errno));
}

}  // namespace

void Context::Setup() {
  for (int i = 0; i < kMaxRegions; i++) {
    if (opt_.regions[i].kind == RegionSpec::Kind::Memfd) CreateMemfd(i);
  }
  CreateVfuContext();
  Check(vfu_setup_log(vfu_, LogThunk, logLevel_), "vfu_setup_log");

  Check(vfu_pci_init(vfu_, opt_.pcie ? VFU_PCI_TYPE_EXPRESS : VFU_PCI_TYPE_CONVENTIONAL,
                     PCI_HEADER_TYPE_NORMAL, 0),
        "vfu_pci_init");
  configSize_ = opt_.pcie ? PCI_CFG_SPACE_EXP_SIZE : PCI_CFG_SPACE_SIZE;
  vfu_pci_set_id(vfu_, opt_.vendorId, opt_.deviceId, opt_.subsystemVendorId, opt_.subsystemId);
  vfu_pci_set_class(vfu_, (opt_.classCode >> 16) & 0xff, (opt_.classCode >> 8) & 0xff,
                    opt_.classCode & 0xff);
  vfu_pci_get_config_space(vfu_)->hdr.rid = opt_.revision;

  SetupRegions();

  Check(vfu_setup_device_nr_irqs(vfu_, VFU_DEV_MSIX_IRQ, opt_.msixVectors),
        "vfu_setup_device_nr_irqs(MSI-X)");
  Check(vfu_setup_irq_state_callback(vfu_, VFU_DEV_MSIX_IRQ, IrqStateThunk(VFU_DEV_MSIX_IRQ)),
        "vfu_setup_irq_state_callback(MSI-X)");
  if (opt_.intx) {
    Check(vfu_setup_device_nr_irqs(vfu_, VFU_DEV_INTX_IRQ, 1), "vfu_setup_device_nr_irqs(INTx)");
    Check(vfu_setup_irq_state_callback(vfu_, VFU_DEV_INTX_IRQ, IrqStateThunk(VFU_DEV_INTX_IRQ)),
          "vfu_setup_irq_state_callback(INTx)");
  }

  SetupCapabilities();

  Check(vfu_setup_device_dma(vfu_, DmaRegisterThunk, DmaUnregisterThunk), "vfu_setup_device_dma");
  Check(vfu_setup_device_reset_cb(vfu_, ResetThunk), "vfu_setup_device_reset_cb");
  Check(vfu_realize_ctx(vfu_), "vfu_realize_ctx");
  FixConfigSpace();
  const uint8_t* cfg = reinterpret_cast<const uint8_t*>(vfu_pci_get_config_space(vfu_));
  pristineConfig_.assign(cfg, cfg + configSize_);

  StartListening();
}

// The vfio-user context and its listening socket: bound at socketPath, or
// (listenFd) bound at a private placeholder and then replaced by the
// inherited socket.
void Context::CreateVfuContext() {
  if (opt_.listenFd >= 0) {
    const std::string path = CheckListeningSocket(opt_.listenFd);
    endpoint_ = path.empty() ? "fd " + std::to_string(opt_.listenFd) : path;
    char dir[] = "/tmp/vphi-listenfd-XXXXXX";
    if (mkdtemp(dir) == nullptr) throw std::runtime_error(std::string("mkdtemp: ") + ErrnoText(errno));
    const std::string placeholder = std::string(dir) + "/unused.sock";
    vfu_ = vfu_create_ctx(VFU_TRANS_SOCK, placeholder.c_str(), LIBVFIO_USER_FLAG_ATTACH_NB, this,
                          VFU_DEV_TYPE_PCI);
    const int err = errno;
    unlink(placeholder.c_str());
    rmdir(dir);
    if (vfu_ == nullptr) throw std::runtime_error("vfu_create_ctx: " + ErrnoText(err));
    AdoptListenFd();
    return;
  }

  endpoint_ = opt_.socketPath;
  PrepareSocketPath(opt_.socketPath);
  vfu_ = vfu_create_ctx(VFU_TRANS_SOCK, opt_.socketPath.c_str(), LIBVFIO_USER_FLAG_ATTACH_NB,
                        this, VFU_DEV_TYPE_PCI);
  if (vfu_ == nullptr) {
    throw std::runtime_error("vfu_create_ctx(" + opt_.socketPath + "): " + ErrnoText(errno));
  }
  // The socket is bound now; only our user may connect (the directory is 0700 too).
  struct stat st;
  if (chmod(opt_.socketPath.c_str(), 0600) != 0 || stat(opt_.socketPath.c_str(), &st) != 0) {
    throw std::runtime_error("socket " + opt_.socketPath + ": " + ErrnoText(errno));
  }
  socketDev_ = st.st_dev;
  socketIno_ = st.st_ino;
  socketCreated_ = true;
}

// libvfio-user has no way to take a listening socket, but it only keeps the
// fd number: make that number refer to the inherited socket (dup2 closes
// its own placeholder socket). We own listenFd from here on; its path, if
// any, stays the parent's business.
void Context::AdoptListenFd() {
  const int lvuFd = vfu_get_poll_fd(vfu_);
  if (lvuFd < 0) throw std::runtime_error("vfu_get_poll_fd: " + ErrnoText(errno));
  if (dup3(opt_.listenFd, lvuFd, O_CLOEXEC) < 0) {
    throw std::runtime_error("dup3(listenFd): " + ErrnoText(errno));
  }
  close(opt_.listenFd);
  opt_.listenFd = -1;
  // accept() must not block (libvfio-user set this on its own socket).
  const int fl = fcntl(lvuFd, F_GETFL);
  if (fl < 0 || fcntl(lvuFd, F_SETFL, fl | O_NONBLOCK) != 0) {
    throw std::runtime_error("fcntl(listenFd, O_NONBLOCK): " + ErrnoText(errno));
  }
}

void Context::CreateMemfd(int index) {
  const RegionSpec& spec = opt_.regions[index];
  Region& r = regions_[index];
  r.fd = memfd_create(spec.name.c_str(), MFD_CLOEXEC);
  if (r.fd < 0) throw std::runtime_error("memfd_create(" + spec.name + "): " + ErrnoText(errno));
  if (ftruncate(r.fd, static_cast<off_t>(spec.size)) != 0) {
    throw std::runtime_error("ftruncate(" + spec.name + ", " + std::to_string(spec.size) +
                             "): " + ErrnoText(errno));
  }
  void* map = mmap(nullptr, spec.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0);
  if (map == MAP_FAILED) throw std::runtime_error("mmap(" + spec.name + "): " + ErrnoText(errno));
  r.map = static_cast<uint8_t*>(map);
  r.size = spec.size;
  r.kind = RegionSpec::Kind::Memfd;
}

void Context::SetupRegions() {
  // Config space: handled entirely by libvfio-user (no callback).
  Check(vfu_setup_region(vfu_, VFU_PCI_DEV_CFG_REGION_IDX, configSize_, nullptr,
                         VFU_REGION_FLAG_RW, nullptr, 0, -1, 0),
        "vfu_setup_region(config)");

  // The MSI-X BAR must exist; QEMU emulates table and PBA itself, so when the
  // options do not declare it, it is a trapped 8 KiB BAR (table page + PBA page).
  RegionSpec& msix = opt_.regions[opt_.msixBar];
  if (msix.kind == RegionSpec::Kind::None) {
    msix.kind = RegionSpec::Kind::Trapped;
    msix.size = 2 * kMsixPbaOffset;
  }

  for (int i = 0; i < kMaxRegions; i++) {
    const RegionSpec& spec = opt_.regions[i];
    if (spec.kind == RegionSpec::Kind::None) continue;
    // BARs are memory BARs (libvfio-user then leaves the I/O bit clear).
    const int flags = VFU_REGION_FLAG_RW | (i < PCI_BARS_NR ? VFU_REGION_FLAG_MEM : 0);
    const std::string what = "vfu_setup_region(" + std::to_string(i) + ")";
    if (spec.kind == RegionSpec::Kind::Trapped) {
      regions_[i].kind = RegionSpec::Kind::Trapped;
      regions_[i].size = spec.size;
      Check(vfu_setup_region(vfu_, i, spec.size, TrappedAccessThunk(i), flags, nullptr, 0, -1, 0),
            what);
    } else {
      // Exactly one mmap area covering the whole BAR.
      struct iovec area = {nullptr, spec.size};
      Check(vfu_setup_region(vfu_, i, spec.size, MemfdAccessThunk(i), flags, &area, 1,
                             regions_[i].fd, 0),
            what);
    }
  }
}

void Context::SetupCapabilities() {
  struct msixcap msix;
  memset(&msix, 0, sizeof msix);
  msix.hdr.id = PCI_CAP_ID_MSIX;
  msix.mxc.ts = opt_.msixVectors - 1;
  msix.mtab.tbir = opt_.msixBar;
  msix.mtab.to = 0;
  msix.mpba.pbir = opt_.msixBar;
  msix.mpba.pbao = kMsixPbaOffset >> 3;  // the field holds offset bits 31:3
  ssize_t off = vfu_pci_add_capability(vfu_, 0, 0, &msix);
  Check(static_cast<int>(off < 0 ? -1 : 0), "vfu_pci_add_capability(MSI-X)");
  msixCapOffset_ = static_cast<size_t>(off);
  caps_.emplace_back(static_cast<uint32_t>(off), sizeof(struct msixcap));

  if (opt_.pcie) {
    struct pxcap px;
    memset(&px, 0, sizeof px);
    px.hdr.id = PCI_CAP_ID_EXP;
    px.pxcaps.ver = 2;
    px.pxcaps.dpt = PCI_EXP_TYPE_ENDPOINT;
    off = vfu_pci_add_capability(vfu_, 0, 0, &px);
    Check(static_cast<int>(off < 0 ? -1 : 0), "vfu_pci_add_capability(PCI Express)");
    caps_.emplace_back(static_cast<uint32_t>(off), sizeof(struct pxcap));
  }
}

// After vfu_realize_ctx: it sets the I/O bit in every BAR register that is
// not a memory region, including unused ones and the upper halves of 64-bit
// BARs. Write the memory-type bits ourselves. libvfio-user keeps the low 4
// bits of a BAR across guest writes (sizing included), and QEMU takes a BAR's
// type from these bits when it sets the device up.
void Context::FixConfigSpace() {
  vfu_pci_config_space_t* cfg = vfu_pci_get_config_space(vfu_);
  for (int i = 0; i < PCI_BARS_NR; i++) {
    uint32_t bits = 0;
    if (regions_[i].kind != RegionSpec::Kind::None) {
      if (opt_.barFlags[i].is64) bits |= PCI_BASE_ADDRESS_MEM_TYPE_64;
      if (opt_.barFlags[i].prefetchable) bits |= PCI_BASE_ADDRESS_MEM_PREFETCH;
    }
    cfg->hdr.bars[i].raw = htole32(bits);
  }
  cfg->hdr.intr.ipin = opt_.interruptPin;
}

void Context::RequestClose() {
  if (closed_) return;
  if (vfuDepth_ > 0) {
    // Called from a JS callback inside libvfio-user: finish that first.
    closeRequested_ = true;
    StopAllPolls();
    return;
  }
  DoClose();
}

void Context::DoClose() noexcept {
  if (closed_) return;
  closed_ = true;
  const bool wasAttached = attached_;
  try {
    StopAllPolls();
    DeleteWatchdog();
    if (vfu_ != nullptr) {
      // The device is going away: no reset callback. DMA regions are still
      // unregistered through DmaUnregister (onDmaUnmap, then detach).
      vfu_setup_device_reset_cb(vfu_, nullptr);
      DropOurDma();
      // A client still attached reads the end of the stream, not a reset.
      const int conn = attached_ ? vfu_get_poll_fd(vfu_) : -1;
      if (conn >= 0) DropConnection(conn);
      vfuDepth_++;
      vfu_destroy_ctx(vfu_);  // also closes the listening and connection fds
      vfuDepth_--;
      vfu_ = nullptr;
    }
    attached_ = false;
    ReleaseMemory();
    if (socketCreated_) {
      struct stat st;
      if (lstat(opt_.socketPath.c_str(), &st) == 0 && st.st_dev == socketDev_ &&
          st.st_ino == socketIno_) {
        unlink(opt_.socketPath.c_str());
      }
      socketCreated_ = false;
    }
    if (hookInstalled_) {
      napi_remove_env_cleanup_hook(env_, CleanupHook, this);
      hookInstalled_ = false;
    }
    if (wasAttached) {
      EmitConnection(false);
    }
    if (refed_) {
      refed_ = false;
      Unref();
    }
  } catch (...) {
    // Teardown is best effort; nothing may escape into C or libuv frames.
  }
}

// Detach a JS view (napi_detach_arraybuffer) so that it can never reach the
// memory about to be unmapped, and drop our reference. Empty: nothing to do.
// Returns what went wrong, or "".
std::string Context::DetachView(Napi::Reference<Napi::ArrayBuffer>& memory) {
  if (memory.IsEmpty()) return "";
  std::string error;
  try {
    Napi::HandleScope scope(env_);
    memory.Value().Detach();
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown C++ exception";
  }
  memory.Reset();
  return error;
}

// Detach the JS views of our memfd mappings, then unmap and close them.
void Context::ReleaseMemory() {
  for (DirectTable& t : direct_) t.Release();
  for (Region& r : regions_) {
    DetachView(r.memory);
    if (r.map != nullptr) munmap(r.map, r.size);
    if (r.fd >= 0) close(r.fd);
    r.map = nullptr;
    r.fd = -1;
  }
  // libvfio-user unregisters every DMA region on destroy; anything left here
  // would be a bookkeeping error, but never leave a view on freed memory.
  for (DmaEntry& e : dma_) DetachView(e.memory);
  dma_.clear();
}

// The Node environment is going away (process exit, worker end) while the
// context is open: close without calling into JS.
void Context::CleanupHook(void* arg) {
  Context* c = static_cast<Context*>(arg);
  c->hookInstalled_ = false;  // hooks are removed as they run
  c->jsAlive_ = false;
  c->DoClose();
}

}  // namespace vphi
