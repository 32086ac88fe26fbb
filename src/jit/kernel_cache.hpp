// config -> compiled binary -> loaded module, cached in memory and on disk.
// Binary lookup: memory, then disk (DiskCache), then NVRTC. Modules are per CUDA context.
#pragma once

#include <cuda.h>

#include <string>
#include <vector>

#include "flashmla/config.hpp"
#include "jit/nvrtc.hpp"

namespace flashmla::jit {

struct Binary {
  std::string cubin;
  std::vector<KernelResources> kernels;  // ptxas report of every entry
  enum class Source { memory, bundle, disk, compiled } source = Source::compiled;
  double compile_seconds = 0;  // when compiled now
};

// Where this process's kernel binaries came from (for `flashmla first-call` and diagnostics).
struct LookupStats {
  int bundle = 0, memory = 0, disk = 0, compiled = 0;
  double compile_seconds = 0;  // NVRTC time of the compiled ones
  double lookup_seconds = 0;   // get_module: finding the binary (bundle, memory, disk or NVRTC)
  double load_seconds = 0;     // get_module: cuModuleLoadData, functions and their attributes
};
LookupStats lookup_stats();

// sha256 over everything that changes the binary: rendered unit, every embedded header
// (name and text), NVRTC options, NVRTC version, target arch and library version.
std::string cache_key(const KernelConfig& config, const std::string& rendered_source);

// Lookup: loaded bundles, memory, disk, NVRTC. Needs NVRTC (and loads it) only when no
// bundle holds the kernel; with FLASHMLA_JIT=0 that case throws, naming the config and the
// bundles searched. Needs no GPU.
Binary get_binary(const KernelConfig& config);

struct Module {
  KernelConfig config;
  CUmodule module = nullptr;
  CUfunction decode = nullptr, combine = nullptr, metadata = nullptr;
};
// Loads (once per context) the module of config into the current context.
const Module& get_module(const KernelConfig& config);

}  // namespace flashmla::jit
