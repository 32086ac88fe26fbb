#include "runtime/workspace.hpp"

#include <fmt/format.h>

#include <map>
#include <mutex>
#include <tuple>

#include "flashmla/error.hpp"
#include "jit/driver.hpp"

namespace flashmla::runtime {
namespace {
struct Buffer {
  CUdeviceptr ptr = 0;
  std::size_t bytes = 0;
};
}  // namespace

void* library_workspace(CUstream stream, Purpose purpose, std::size_t bytes) {
  static std::mutex mutex;
  static std::map<std::tuple<CUcontext, CUstream, Purpose>, Buffer> buffers;
  const auto& d = jit::driver();
  CUcontext ctx = nullptr;
  FLASHMLA_CU(d.cuCtxGetCurrent(&ctx));
  std::lock_guard lock(mutex);
  Buffer& buf = buffers[{ctx, stream, purpose}];
  if (buf.bytes >= bytes && buf.ptr) return reinterpret_cast<void*>(buf.ptr);
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  FLASHMLA_CU(d.cuStreamIsCapturing(stream, &capture));
  if (capture != CU_STREAM_CAPTURE_STATUS_NONE)
    throw InvalidArgument(fmt::format(
        "the library workspace must grow to {} bytes while the stream is being captured; pass a workspace "
        "(metadata_workspace_size / decode_workspace_size) or run the step once before capturing",
        bytes));
  if (buf.ptr) {
    FLASHMLA_CU(d.cuStreamSynchronize(stream));
    FLASHMLA_CU(d.cuMemFree(buf.ptr));
    buf = {};
  }
  const std::size_t grown = std::max(bytes, buf.bytes * 3 / 2);
  FLASHMLA_CU(d.cuMemAlloc(&buf.ptr, grown));
  buf.bytes = grown;
  return reinterpret_cast<void*>(buf.ptr);
}

}  // namespace flashmla::runtime
