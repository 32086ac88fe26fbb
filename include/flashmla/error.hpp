// Exceptions thrown by flashmla. Every message names the call or argument, the value
// found and the value expected; only the CLI turns them into exit codes, and the C ABI
// into status codes (flashmla.h).
#pragma once

#include <stdexcept>
#include <string>

namespace flashmla {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad user input: shape, dtype, stride, null pointer, config out of range.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// Valid input that this build or this GPU cannot run (GPU older than sm_80, ...).
class Unsupported : public Error {
 public:
  using Error::Error;
};

// libcuda.so.1 or libnvrtc could not be loaded, or no GPU is present.
class NoDriver : public Error {
 public:
  using Error::Error;
};

// A CUDA Driver API call failed: "cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE (...) at file:line".
class CudaError : public Error {
 public:
  CudaError(const std::string& message, int result) : Error(message), result_(result) {}
  int result() const { return result_; }

 private:
  int result_;
};

// NVRTC rejected a generated unit; carries the log, the options and the config id.
class CompileError : public Error {
 public:
  CompileError(const std::string& message, std::string log, std::string options, std::string config_id)
      : Error(message), log_(std::move(log)), options_(std::move(options)), config_id_(std::move(config_id)) {}
  const std::string& log() const { return log_; }
  const std::string& options() const { return options_; }
  const std::string& config_id() const { return config_id_; }

 private:
  std::string log_, options_, config_id_;
};

}  // namespace flashmla
