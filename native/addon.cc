// Module entry point, the JS-facing class and argument checking.
#include <errno.h>
#include <string.h>

#include <stdexcept>
#include <string>

#include <sys/mman.h>

#include "context.h"
#include "internal.h"

namespace vphi {

namespace {

Napi::Value Get(const Napi::Object& obj, const char* key, const char* where) {
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined()) {
    throw Napi::TypeError::New(obj.Env(), std::string(where) + "." + key + " is required");
  }
  return v;
}

double GetNumber(const Napi::Object& obj, const char* key, const char* where, double min,
                 double max) {
  Napi::Value v = Get(obj, key, where);
  if (!v.IsNumber()) {
    throw Napi::TypeError::New(obj.Env(), std::string(where) + "." + key + " must be a number");
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw Napi::RangeError::New(obj.Env(), std::string(where) + "." + key + " = " +
                                               std::to_string(d) + " is out of range");
  }
  return d;
}

bool GetBool(const Napi::Object& obj, const char* key, const char* where) {
  Napi::Value v = Get(obj, key, where);
  if (!v.IsBoolean()) {
    throw Napi::TypeError::New(obj.Env(), std::string(where) + "." + key + " must be a boolean");
  }
  return v.As<Napi::Boolean>().Value();
}

std::string GetString(const Napi::Object& obj, const char* key, const char* where) {
  Napi::Value v = Get(obj, key, where);
  if (!v.IsString()) {
    throw Napi::TypeError::New(obj.Env(), std::string(where) + "." + key + " must be a string");
  }
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object GetObject(const Napi::Object& obj, const char* key, const char* where) {
  Napi::Value v = Get(obj, key, where);
  if (!v.IsObject()) {
    throw Napi::TypeError::New(obj.Env(), std::string(where) + "." + key + " must be an object");
  }
  return v.As<Napi::Object>();
}

// options[key] is an array of objects: fn(object, "options.key[]") for each.
template <typename F>
void ForEachObject(Napi::Env env, const Napi::Object& o, const char* key, F&& fn) {
  const std::string where = std::string("options.") + key;
  Napi::Value v = Get(o, key, "options");
  if (!v.IsArray()) throw Napi::TypeError::New(env, where + " must be an array");
  Napi::Array a = v.As<Napi::Array>();
  const std::string each = where + "[]";
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value ev = a.Get(i);
    if (!ev.IsObject()) throw Napi::TypeError::New(env, each + " must be objects");
    fn(ev.As<Napi::Object>(), each.c_str());
  }
}

bool IsPowerOfTwo(size_t v) { return v != 0 && (v & (v - 1)) == 0; }

Options ParseOptions(Napi::Env env, const Napi::Object& o) {
  Options opt;
  opt.socketPath = GetString(o, "socketPath", "options");
  if (!o.Get("listenFd").IsUndefined()) {
    opt.listenFd = GetNumber(o, "listenFd", "options", 0, INT32_MAX);
  }

  Napi::Object pci = GetObject(o, "pci", "options");
  opt.vendorId = GetNumber(pci, "vendorId", "options.pci", 0, 0xffff);
  opt.deviceId = GetNumber(pci, "deviceId", "options.pci", 0, 0xffff);
  opt.subsystemVendorId = GetNumber(pci, "subsystemVendorId", "options.pci", 0, 0xffff);
  opt.subsystemId = GetNumber(pci, "subsystemId", "options.pci", 0, 0xffff);
  opt.revision = GetNumber(pci, "revision", "options.pci", 0, 0xff);
  opt.classCode = GetNumber(pci, "classCode", "options.pci", 0, 0xffffff);
  opt.interruptPin = GetNumber(pci, "interruptPin", "options.pci", 0, 4);

  ForEachObject(env, o, "regions", [&](const Napi::Object& r, const char* where) {
    int index = GetNumber(r, "index", where, 0, kMaxRegions - 1);
    if (opt.regions[index].kind != RegionSpec::Kind::None) {
      throw Napi::Error::New(env, "region " + std::to_string(index) + " is declared twice");
    }
    std::string kind = GetString(r, "kind", where);
    RegionSpec& spec = opt.regions[index];
    spec.size = GetNumber(r, "size", where, 1, 1ull << 40);
    if (!IsPowerOfTwo(spec.size)) {
      throw Napi::RangeError::New(env, "region " + std::to_string(index) +
                                           ": size must be a power of two");
    }
    if (kind != "trapped" && kind != "memfd") {
      throw Napi::TypeError::New(env, "region " + std::to_string(index) + ": unknown kind '" +
                                          kind + "' (trapped or memfd)");
    }
    const bool memfd = kind == "memfd";
    spec.kind = memfd ? RegionSpec::Kind::Memfd : RegionSpec::Kind::Trapped;
    if (memfd) spec.name = GetString(r, "name", where);
    if (spec.size < (memfd ? 4096u : 16u)) {
      throw Napi::RangeError::New(env, "region " + std::to_string(index) +
                                           (memfd ? ": a memfd region is at least one page (4096 bytes)"
                                                  : ": a BAR is at least 16 bytes"));
    }
  });

  ForEachObject(env, o, "barFlags", [&](const Napi::Object& f, const char* where) {
    int index = GetNumber(f, "index", where, 0, PCI_BARS_NR - 1);
    opt.barFlags[index].is64 = GetBool(f, "is64", where);
    opt.barFlags[index].prefetchable = GetBool(f, "prefetchable", where);
  });

  Napi::Object msix = GetObject(o, "msix", "options");
  // The table (16 bytes a vector) must fit below the PBA at 0x1000.
  opt.msixVectors = GetNumber(msix, "vectors", "options.msix", 1, kMsixPbaOffset / 16);
  opt.msixBar = GetNumber(msix, "bar", "options.msix", 0, PCI_BARS_NR - 1);
  opt.pcie = GetBool(o, "pcie", "options");
  opt.intx = GetBool(o, "intx", "options");

  // Consistency of BARs: the upper half of a 64-bit BAR is not a region.
  for (int i = 0; i < PCI_BARS_NR; i++) {
    if (!opt.barFlags[i].is64) continue;
    if (i == PCI_BARS_NR - 1) {
      throw Napi::RangeError::New(env, "BAR5 cannot be 64-bit (no upper half)");
    }
    if (opt.regions[i + 1].kind != RegionSpec::Kind::None) {
      throw Napi::Error::New(env, "BAR" + std::to_string(i) + " is 64-bit, so BAR" +
                                      std::to_string(i + 1) +
                                      " is its upper half and cannot be a region");
    }
    if (opt.barFlags[i + 1].is64 || opt.barFlags[i + 1].prefetchable) {
      throw Napi::Error::New(env, "barFlags for BAR" + std::to_string(i + 1) +
                                      ", the upper half of 64-bit BAR" + std::to_string(i));
    }
    if (i > 0 && opt.barFlags[i - 1].is64) {
      throw Napi::Error::New(env, "BAR" + std::to_string(i) + " is the upper half of BAR" +
                                      std::to_string(i - 1));
    }
  }
  const int mb = opt.msixBar;
  if (mb > 0 && opt.barFlags[mb - 1].is64) {
    throw Napi::Error::New(env, "the MSI-X BAR" + std::to_string(mb) +
                                    " is the upper half of a 64-bit BAR");
  }
  const RegionSpec& msixRegion = opt.regions[mb];
  const size_t pbaEnd = kMsixPbaOffset + ((opt.msixVectors + 63) / 64) * 8;
  if (msixRegion.kind != RegionSpec::Kind::None && msixRegion.size < pbaEnd) {
    throw Napi::RangeError::New(env, "the MSI-X BAR" + std::to_string(mb) + " has " +
                                         std::to_string(msixRegion.size) +
                                         " bytes; table and PBA need " + std::to_string(pbaEnd));
  }
  return opt;
}

Napi::FunctionReference GetCallback(Napi::Env env, const Napi::Object& cbs, const char* name) {
  Napi::Value v = cbs.Get(name);
  if (!v.IsFunction()) {
    throw Napi::TypeError::New(env, std::string("callbacks.") + name + " must be a function");
  }
  return Napi::Persistent(v.As<Napi::Function>());
}

}  // namespace

Napi::Function Context::DefineClass(Napi::Env env) {
  return ObjectWrap<Context>::DefineClass(
      env, "Context",
      {
          InstanceAccessor<&Context::Scratch>("scratch"),
          InstanceMethod<&Context::RegionMemory>("regionMemory"),
          InstanceMethod<&Context::RegionFd>("regionFd"),
          InstanceMethod<&Context::Trigger>("trigger"),
          InstanceMethod<&Context::ActiveIrqType>("activeIrqType"),
          InstanceMethod<&Context::ReadConfig>("readConfig"),
          InstanceMethod<&Context::SetLogLevel>("setLogLevel"),
          InstanceMethod<&Context::Attached>("attached"),
          InstanceMethod<&Context::SetDirectReads>("directReads"),
          InstanceMethod<&Context::DropResidentPages>("dropResidentPages"),
          InstanceMethod<&Context::Close>("close"),
      });
}

// new Context(options, callbacks)
Context::Context(const Napi::CallbackInfo& info) : ObjectWrap<Context>(info), env_(info.Env()) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsObject()) {
    throw Napi::TypeError::New(env, "new Context(options, callbacks)");
  }
  opt_ = ParseOptions(env, info[0].As<Napi::Object>());
  Napi::Object cbs = info[1].As<Napi::Object>();
  onAccess_ = GetCallback(env, cbs, "onAccess");
  onDmaMap_ = GetCallback(env, cbs, "onDmaMap");
  onDmaUnmap_ = GetCallback(env, cbs, "onDmaUnmap");
  onReset_ = GetCallback(env, cbs, "onReset");
  onIrqState_ = GetCallback(env, cbs, "onIrqState");
  onConnection_ = GetCallback(env, cbs, "onConnection");
  onLog_ = GetCallback(env, cbs, "onLog");
  onRefused_ = GetCallback(env, cbs, "onRefused");
  if (!cbs.Get("onPoll").IsUndefined()) onPoll_ = GetCallback(env, cbs, "onPoll");
  callbacks_ = Napi::Persistent(cbs);

  Napi::Buffer<uint8_t> scratch = Napi::Buffer<uint8_t>::New(env, kScratchSize);
  memset(scratch.Data(), 0, kScratchSize);
  scratch_ = scratch.Data();
  scratchRef_ = Napi::Persistent(scratch);
  napi_value resourceName = Napi::String::New(env, "vphi:vfio-user");
  NAPI_THROW_IF_FAILED_VOID(env, napi_async_init(env, Value(), resourceName, &asyncContext_));

  try {
    Setup();
  } catch (const std::exception& e) {
    // Napi::Error is a std::exception too; keep its JS error as it is.
    std::string message = e.what();
    DoClose();
    napi_async_destroy(env, asyncContext_);
    asyncContext_ = nullptr;
    if (const auto* ne = dynamic_cast<const Napi::Error*>(&e)) throw *ne;
    throw Napi::Error::New(env, message);
  }
  // While open, the server must not be collected: the polls refer to it.
  Ref();
  refed_ = true;
  napi_add_env_cleanup_hook(env, CleanupHook, this);
  hookInstalled_ = true;
}

Context::~Context() {
  // Only reached when JS dropped a closed context (an open one holds a
  // reference to itself) or at environment teardown.
  if (!closed_) {
    jsAlive_ = false;
    DoClose();
  }
  // During environment teardown the async context goes with the environment.
  if (asyncContext_ != nullptr && jsAlive_) napi_async_destroy(env_, asyncContext_);
}

Napi::Value Context::Scratch(const Napi::CallbackInfo&) { return scratchRef_.Value(); }

// The memfd region named by info[0]; throws for any other and after close().
Region& Context::MemfdRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "context is closed");
  int index = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (index < 0 || index >= kMaxRegions || regions_[index].kind != RegionSpec::Kind::Memfd) {
    throw Napi::Error::New(env, "region " + std::to_string(index) + " is not memfd-backed");
  }
  return regions_[index];
}

Napi::Value Context::RegionMemory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Region& r = MemfdRegion(info);
  if (r.memory.IsEmpty()) {
    // External: no copy, no ownership (we munmap it ourselves, after detaching).
    r.memory = Napi::Persistent(Napi::ArrayBuffer::New(env, r.map, r.size));
  }
  return r.memory.Value();
}

Napi::Value Context::RegionFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), MemfdRegion(info).fd);
}

Napi::Value Context::Trigger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "trigger(type, vector)");
  }
  int type = info[0].As<Napi::Number>().Int32Value();
  int64_t vector = info[1].As<Napi::Number>().Int64Value();
  if (type == VFU_DEV_MSIX_IRQ) {
    if (vector < 0 || vector >= opt_.msixVectors) {
      throw Napi::RangeError::New(env, "MSI-X vector " + std::to_string(vector) +
                                           " out of range (0.." +
                                           std::to_string(opt_.msixVectors - 1) + ")");
    }
  } else if (type == VFU_DEV_INTX_IRQ) {
    if (!opt_.intx) throw Napi::Error::New(env, "INTx is not offered (options.intx)");
    if (vector != 0) throw Napi::RangeError::New(env, "INTx has only vector 0");
  } else {
    throw Napi::RangeError::New(env, "trigger: irq type " + std::to_string(type) +
                                         " is not supported (INTX or MSIX)");
  }
  if (closed_ || !attached_) return Napi::Boolean::New(env, false);
  // libvfio-user keeps ONE eventfd array for INTx/MSI/MSI-X and triggers by
  // index only, so vector 0 could be INTx's eventfd. Only raise the type the
  // client has enabled (see ActiveIrqType); otherwise there is no eventfd for
  // it yet, which is the same answer as ENOENT.
  if (type != ActiveType()) return Napi::Boolean::New(env, false);
  // libvfio-user keeps one eventfd array for INTx/MSI/MSI-X: the type only
  // tells which vectors are valid. It logs an error for a missing eventfd,
  // which is a normal condition here (the caller keeps the vector pending).
  int rc, err;
  {
    VfuGuard guard(this);  // its log callback may call close()
    inTrigger_ = true;
    rc = vfu_irq_trigger(vfu_, static_cast<uint32_t>(vector));
    err = errno;
    inTrigger_ = false;
  }
  if (rc == 0) return Napi::Boolean::New(env, true);
  if (err == ENOENT) return Napi::Boolean::New(env, false);
  throw Napi::Error::New(env, "vfu_irq_trigger(" + std::to_string(vector) + "): " + ErrnoText(err));
}

// libvfio-user does not say which IRQ type owns its eventfds, so derive it
// from what the client wrote into config space: MSI-X Enable wins; else INTx
// when offered. Nothing while no client is attached.
int Context::ActiveType() const {
  if (closed_ || !attached_) return -1;
  const uint8_t* cfg = reinterpret_cast<const uint8_t*>(vfu_pci_get_config_space(vfu_));
  uint16_t msgCtl = cfg[msixCapOffset_ + 2] | (cfg[msixCapOffset_ + 3] << 8);
  if (msgCtl & PCI_MSIX_FLAGS_ENABLE) return VFU_DEV_MSIX_IRQ;
  if (opt_.intx) return VFU_DEV_INTX_IRQ;
  return -1;
}

Napi::Value Context::ActiveIrqType(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ActiveType());
}

Napi::Value Context::ReadConfig(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "context is closed");
  if (!info[0].IsNumber() || !info[1].IsNumber()) {
    throw Napi::TypeError::New(env, "readConfig(offset, len)");
  }
  int64_t offset = info[0].As<Napi::Number>().Int64Value();
  int64_t len = info[1].As<Napi::Number>().Int64Value();
  if (len < 1 || len > 4 || offset < 0 || offset + len > static_cast<int64_t>(configSize_)) {
    throw Napi::RangeError::New(env, "readConfig(" + std::to_string(offset) + ", " +
                                         std::to_string(len) + "): len is 1..4 within " +
                                         std::to_string(configSize_) + " bytes");
  }
  const uint8_t* cfg = reinterpret_cast<const uint8_t*>(vfu_pci_get_config_space(vfu_));
  uint32_t v = 0;
  for (int64_t i = len - 1; i >= 0; i--) v = (v << 8) | cfg[offset + i];
  return Napi::Number::New(env, v);
}

namespace {

// table[name] as a typed array of `type` with at least `min` elements.
Napi::TypedArray TableArray(Napi::Env env, const Napi::Object& table, const char* name,
                            napi_typedarray_type type, size_t min) {
  Napi::Value v = table.Get(name);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type) {
    throw Napi::TypeError::New(env, std::string("directReads: ") + name + " must be a" +
                                        (type == napi_int32_array ? "n Int32Array" : " Uint32Array"));
  }
  Napi::TypedArray a = v.As<Napi::TypedArray>();
  if (a.ElementLength() < min) {
    throw Napi::RangeError::New(env, std::string("directReads: ") + name + " has " +
                                         std::to_string(a.ElementLength()) + " elements, needs " +
                                         std::to_string(min));
  }
  return a;
}

template <typename T>
T* ArrayData(Napi::TypedArray a) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(a.ArrayBuffer().Data()) + a.ByteOffset());
}

}  // namespace

// directReads(index, table | null)
Napi::Value Context::SetDirectReads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "context is closed");
  const int index = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (index < 0 || index >= kMaxRegions || opt_.regions[index].kind != RegionSpec::Kind::Trapped) {
    throw Napi::RangeError::New(env, "directReads: region " + std::to_string(index) + " is not trapped");
  }
  DirectTable& t = direct_[index];
  if (info[1].IsNull() || info[1].IsUndefined()) {
    t.Release();
    return env.Undefined();
  }
  if (!info[1].IsObject()) throw Napi::TypeError::New(env, "directReads(index, table | null)");
  Napi::Object table = info[1].As<Napi::Object>();
  const size_t dwords = opt_.regions[index].size / 4;
  Napi::TypedArray slot = TableArray(env, table, "slot", napi_int32_array, dwords);
  Napi::TypedArray value = TableArray(env, table, "value", napi_uint32_array, 0);
  const size_t slots = value.ElementLength();
  Napi::TypedArray spinValue = TableArray(env, table, "spinValue", napi_uint32_array, slots);
  Napi::TypedArray spinReads = TableArray(env, table, "spinReads", napi_uint32_array, slots);
  Napi::TypedArray spinThreshold = TableArray(env, table, "spinThreshold", napi_uint32_array, 1);
  const int32_t* s = ArrayData<int32_t>(slot);
  for (size_t d = 0; d < dwords; d++) {
    if (s[d] >= 0 && static_cast<size_t>(s[d]) >= slots) {
      throw Napi::RangeError::New(env, "directReads: slot[" + std::to_string(d) + "] is " +
                                           std::to_string(s[d]) + ", past the " +
                                           std::to_string(slots) + " values");
    }
  }
  t.Release();
  Napi::TypedArray arrays[5] = {slot, value, spinValue, spinReads, spinThreshold};
  for (int i = 0; i < 5; i++) t.keep[i] = Napi::Persistent(arrays[i]);
  t.slot = s;
  t.dwords = dwords;
  t.value = ArrayData<uint32_t>(value);
  t.spinValue = ArrayData<uint32_t>(spinValue);
  t.spinReads = ArrayData<uint32_t>(spinReads);
  t.spinThreshold = ArrayData<uint32_t>(spinThreshold);
  t.slots = slots;
  return env.Undefined();
}

// dropResidentPages(): this process's page-table entries for the memfd BARs
// and the client's DMA regions go (MADV_DONTNEED). Both are MAP_SHARED
// mappings of memfds, so their contents stay in the files and the next
// access faults the pages back in; only this process's RSS changes.
// Returns the bytes advised.
Napi::Value Context::DropResidentPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) throw Napi::Error::New(env, "context is closed");
  double bytes = 0;
  const auto drop = [&](void* addr, size_t length, const std::string& what) {
    if (addr == nullptr || length == 0) return;
    if (madvise(addr, length, MADV_DONTNEED) == 0) {
      bytes += static_cast<double>(length);
    } else {
      Emit(LOG_WARNING, "vphi: madvise(MADV_DONTNEED) of " + what + ": " + ErrnoText(errno));
    }
  };
  for (int i = 0; i < kMaxRegions; i++) {
    if (regions_[i].kind == RegionSpec::Kind::Memfd) drop(regions_[i].map, regions_[i].size, "BAR" + std::to_string(i));
  }
  for (const DmaEntry& e : dma_) drop(e.vaddr, e.length, "a DMA region");
  return Napi::Number::New(env, bytes);
}

Napi::Value Context::SetLogLevel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int level = info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : -1;
  if (level < LOG_EMERG || level > LOG_DEBUG) {
    throw Napi::RangeError::New(env, "log level is 0..7 (syslog)");
  }
  logLevel_ = level;
  if (!closed_ && vfu_setup_log(vfu_, LogThunk, level) != 0) {
    throw Napi::Error::New(env, "vfu_setup_log: " + ErrnoText(errno));
  }
  return env.Undefined();
}

Napi::Value Context::Attached(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), attached_ && !closed_);
}

Napi::Value Context::Close(const Napi::CallbackInfo& info) {
  RequestClose();
  return info.Env().Undefined();
}

namespace {
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Context", Context::DefineClass(env));
  exports.Set("scratchSize", Napi::Number::New(env, kScratchSize));
  return exports;
}
}  // namespace

NODE_API_MODULE(vphi_native, Init)

}  // namespace vphi
