// RAII device memory through the dlopen'ed driver, for the CLI and the GPU tests.
#pragma once

#include <cuda.h>

#include <cstddef>

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
  void* get() const { return reinterpret_cast<void*>(ptr_); }
  template <class T>
  T* as() const {
    return reinterpret_cast<T*>(ptr_);
  }
  std::size_t bytes() const { return bytes_; }

  void upload(const void* host, std::size_t bytes, std::size_t offset = 0) {
    FLASHMLA_CU(jit::driver().cuMemcpyHtoD(ptr_ + offset, host, bytes));
  }
  void download(void* host, std::size_t bytes, std::size_t offset = 0) const {
    FLASHMLA_CU(jit::driver().cuMemcpyDtoH(host, ptr_ + offset, bytes));
  }
  void fill_bytes(unsigned char value) { FLASHMLA_CU(jit::driver().cuMemsetD8(ptr_, value, bytes_)); }

 private:
  CUdeviceptr ptr_ = 0;
  std::size_t bytes_;
};

}  // namespace flashmla
