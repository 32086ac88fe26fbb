#include "jit/driver.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <mutex>

#include "flashmla/error.hpp"

namespace flashmla::jit {
namespace {

#define FLASHMLA_STR2(x) #x
#define FLASHMLA_STR(x) FLASHMLA_STR2(x)

struct Loaded {
  Driver table;
  std::string error;  // empty when usable
};

Loaded load() {
  Loaded out;
  void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char* why = dlerror();
    out.error = fmt::format("no CUDA driver: dlopen(\"libcuda.so.1\") failed: {}", why ? why : "unknown error");
    return out;
  }
  // FLASHMLA_STR expands the macro first, so cuMemAlloc resolves as "cuMemAlloc_v2".
#define FLASHMLA_RESOLVE(name)                                                                      \
  out.table.name = reinterpret_cast<decltype(&::name)>(dlsym(lib, FLASHMLA_STR(name)));            \
  if (!out.table.name) {                                                                            \
    out.error = fmt::format("CUDA driver too old: libcuda.so.1 lacks {}", FLASHMLA_STR(name));     \
    return out;                                                                                     \
  }
  FLASHMLA_DRIVER_FUNCTIONS(FLASHMLA_RESOLVE)
#undef FLASHMLA_RESOLVE
  CUresult r = out.table.cuInit(0);
  if (r != CUDA_SUCCESS) {
    const char* name = nullptr;
    out.table.cuGetErrorName(r, &name);
    out.error = fmt::format("CUDA driver present but cuInit failed: {} (no usable GPU?)", name ? name : "?");
    return out;
  }
  int count = 0;
  out.table.cuDeviceGetCount(&count);
  if (count == 0) out.error = "CUDA driver present but no GPU was found";
  return out;
}

const Loaded& loaded() {
  static const Loaded instance = load();
  return instance;
}

}  // namespace

const Driver& driver() {
  const Loaded& l = loaded();
  if (!l.error.empty()) throw NoDriver(l.error);
  return l.table;
}

bool driver_available(std::string* why_not) {
  const Loaded& l = loaded();
  if (why_not) *why_not = l.error;
  return l.error.empty();
}

void check(CUresult result, const char* call, const char* file, int line) {
  if (result == CUDA_SUCCESS) return;
  const char* name = "?";
  const char* text = "?";
  const Driver& d = loaded().table;
  if (d.cuGetErrorName) d.cuGetErrorName(result, &name);
  if (d.cuGetErrorString) d.cuGetErrorString(result, &text);
  throw CudaError(fmt::format("{} failed: {} ({}) at {}:{}", call, name, text, file, line), static_cast<int>(result));
}

int driver_version() {
  int v = 0;
  FLASHMLA_CU(driver().cuDriverGetVersion(&v));
  return v;
}

namespace {
DeviceInfo describe(int ordinal) {
  const Driver& d = driver();
  CUdevice dev;
  FLASHMLA_CU(d.cuDeviceGet(&dev, ordinal));
  DeviceInfo info;
  info.ordinal = ordinal;
  char name[256] = {};
  FLASHMLA_CU(d.cuDeviceGetName(name, sizeof(name), dev));
  info.name = name;
  FLASHMLA_CU(d.cuDeviceGetAttribute(&info.cc_major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
  FLASHMLA_CU(d.cuDeviceGetAttribute(&info.cc_minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
  FLASHMLA_CU(d.cuDeviceGetAttribute(&info.sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
  int smem = 0;
  FLASHMLA_CU(d.cuDeviceGetAttribute(&smem, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev));
  info.max_shared_optin = static_cast<size_t>(smem);
  int l2 = 0;
  FLASHMLA_CU(d.cuDeviceGetAttribute(&l2, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev));
  info.l2_bytes = static_cast<size_t>(l2);
  FLASHMLA_CU(d.cuDeviceTotalMem(&info.total_memory, dev));
  return info;
}
}  // namespace

std::vector<DeviceInfo> list_devices() {
  const Driver& d = driver();
  int count = 0;
  FLASHMLA_CU(d.cuDeviceGetCount(&count));
  std::vector<DeviceInfo> out;
  for (int i = 0; i < count; ++i) out.push_back(describe(i));
  return out;
}

CUdevice ensure_context() {
  const Driver& d = driver();
  CUcontext ctx = nullptr;
  FLASHMLA_CU(d.cuCtxGetCurrent(&ctx));
  if (!ctx) {
    CUdevice dev;
    FLASHMLA_CU(d.cuDeviceGet(&dev, 0));
    FLASHMLA_CU(d.cuDevicePrimaryCtxRetain(&ctx, dev));
    FLASHMLA_CU(d.cuCtxSetCurrent(ctx));
  }
  CUdevice dev;
  FLASHMLA_CU(d.cuCtxGetDevice(&dev));
  return dev;
}

DeviceInfo current_device_info() {
  static std::mutex mutex;
  static std::vector<DeviceInfo> cache;
  const CUdevice dev = ensure_context();
  std::lock_guard lock(mutex);
  for (const auto& info : cache)
    if (info.ordinal == static_cast<int>(dev)) return info;
  cache.push_back(describe(static_cast<int>(dev)));
  return cache.back();
}

}  // namespace flashmla::jit
