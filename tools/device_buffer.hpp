// RAII device memory through the dlopen'ed driver, for the CLI and the GPU tests.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <vector>

#include "jit/driver.hpp"

namespace flashmla {

class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
    jit::ensure_context();
    FLASHMLA_CU(jit::driver().cuMemAlloc(&ptr_, bytes_ ? bytes_ : 1));
  }
  ~DeviceBuffer() {
    if (ptr_) jit::driver().cuMemFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  CUdeviceptr ptr() const { return ptr_; }
  template <class T = void>
  T* get() const {
    return reinterpret_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  void upload(const void* host, std::size_t bytes, std::size_t offset = 0) {
    FLASHMLA_CU(jit::driver().cuMemcpyHtoD(ptr_ + offset, host, bytes));
  }
  void download(void* host, std::size_t bytes, std::size_t offset = 0) const {
    FLASHMLA_CU(jit::driver().cuMemcpyDtoH(host, ptr_ + offset, bytes));
  }
  template <class T>
  void upload(const std::vector<T>& host) {
    upload(host.data(), host.size() * sizeof(T));
  }
  template <class T>
  void download(std::vector<T>& host) const {
    download(host.data(), host.size() * sizeof(T));
  }
  void fill_bytes(unsigned char value) { FLASHMLA_CU(jit::driver().cuMemsetD8(ptr_, value, bytes_)); }
  // 0xFF bytes: NaN in bf16, fp16 and fp32, so unwritten outputs cannot pass a check.
  void poison() { fill_bytes(0xff); }

 private:
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_;
};

}  // namespace flashmla
