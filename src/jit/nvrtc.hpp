// NVRTC, opened at run time with dlopen, and the compile of one generated unit to a
// cubin with its resource report: registers and stack frame read from the cubin, spill
// figures from the ptxas log when NVRTC returns it.
#pragma once

#include <string>
#include <vector>

#include "flashmla/config.hpp"

namespace flashmla::jit {

// True when libnvrtc loads; why_not says which paths were tried.
bool nvrtc_available(std::string* why_not = nullptr);
// "13.0"; throws NoDriver when NVRTC is missing.
std::string nvrtc_version();

// ptxas figures of one kernel entry point.
struct KernelResources {
  std::string symbol;
  int registers = -1;
  int stack_bytes = 0;
  int spill_store_bytes = 0;
  int spill_load_bytes = 0;
};

struct CompileOutput {
  std::string cubin;
  std::string log;  // NVRTC + ptxas log
  std::vector<KernelResources> kernels;
  int max_spill_bytes() const;
  const KernelResources* find(const std::string& symbol) const;
};

std::vector<std::string> nvrtc_options(const KernelConfig& config);
// Parses "ptxas info : Used N registers" / "spill stores" lines per entry function.
std::vector<KernelResources> parse_ptxas_log(const std::string& log);

// Compiles `source` (named unit_name) against the embedded templates for config.arch.
// Throws CompileError with the log, the options and the config id.
CompileOutput compile(const KernelConfig& config, const std::string& unit_name, const std::string& source);

}  // namespace flashmla::jit
