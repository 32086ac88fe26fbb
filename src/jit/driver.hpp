// The CUDA Driver API, opened at run time with dlopen("libcuda.so.1"), so that the
// library and its tests start on machines with no driver and say so instead.
#pragma once

#include <cuda.h>

#include <string>
#include <vector>

namespace flashmla::jit {

// Driver entry points used by flashmla. cuda.h maps some names to versioned symbols
// (cuMemAlloc -> cuMemAlloc_v2); the table resolves those same symbols.
#define FLASHMLA_DRIVER_FUNCTIONS(X)                                                                          \
  X(cuInit) X(cuDriverGetVersion) X(cuDeviceGetCount) X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceGetAttribute) \
  X(cuDeviceTotalMem) X(cuDevicePrimaryCtxRetain) X(cuCtxGetCurrent) X(cuCtxSetCurrent) X(cuCtxGetDevice)      \
  X(cuCtxSynchronize) X(cuModuleLoadData) X(cuModuleUnload) X(cuModuleGetFunction) X(cuFuncSetAttribute)      \
  X(cuFuncGetAttribute) X(cuLaunchKernel) X(cuLaunchKernelEx) X(cuMemAlloc) X(cuMemFree) X(cuMemcpyHtoD) X(cuMemcpyDtoH)          \
  X(cuMemcpyDtoHAsync) X(cuMemsetD8) X(cuMemsetD32Async) X(cuStreamSynchronize) X(cuStreamIsCapturing)       \
  X(cuStreamCreate) X(cuStreamDestroy) X(cuEventCreate) X(cuEventDestroy) X(cuEventRecord)                   \
  X(cuEventSynchronize) X(cuEventElapsedTime) X(cuGetErrorName) X(cuGetErrorString) X(cuStreamBeginCapture)  \
  X(cuStreamEndCapture) X(cuGraphInstantiate) X(cuGraphLaunch) X(cuGraphDestroy) X(cuGraphExecDestroy)        \
  X(cuTensorMapEncodeTiled)

struct Driver {
#define FLASHMLA_DECLARE(name) decltype(&::name) name = nullptr;
  FLASHMLA_DRIVER_FUNCTIONS(FLASHMLA_DECLARE)
#undef FLASHMLA_DECLARE
};

// The loaded driver with cuInit(0) done; throws NoDriver naming what failed.
const Driver& driver();
// True when libcuda.so.1 loads, cuInit succeeds and at least one GPU is present.
bool driver_available(std::string* why_not = nullptr);

// Throws CudaError "<call> failed: <NAME> (<description>) at <file>:<line>" unless CUDA_SUCCESS.
void check(CUresult result, const char* call, const char* file, int line);
#define FLASHMLA_CU(call) ::flashmla::jit::check((call), #call, __FILE__, __LINE__)

struct DeviceInfo {
  int ordinal = 0;
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;
  size_t max_shared_optin = 0;
  size_t l2_bytes = 0;
};
std::vector<DeviceInfo> list_devices();
int driver_version();

// Makes a context current on this thread: the caller's if one is current, else device 0's
// primary context (what the CUDA runtime and PyTorch use). Returns the current device.
CUdevice ensure_context();
DeviceInfo current_device_info();

}  // namespace flashmla::jit
