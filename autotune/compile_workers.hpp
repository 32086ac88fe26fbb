// Compiling candidates in worker processes: each config is compiled (into the disk cache)
// by a child process of its own, so that a compiler crash fails that candidate, not the run.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "flashmla/config.hpp"
#include "jit/nvrtc.hpp"

namespace flashmla::autotune {

struct CompileReport {
  KernelConfig config;
  bool ok = false;
  std::string failure;                     // why not: compile error, crash (signal), spills
  std::vector<jit::KernelResources> kernels;
  int spill_bytes() const;
};

// At most `jobs` children at a time (0: one per core). `progress` is called in the parent
// after each config; `child_hook` runs in the child before compiling (tests use it to crash
// a worker). A report is ok only if the child exited cleanly and nothing spilled.
std::vector<CompileReport> compile_in_workers(
    const std::vector<KernelConfig>& configs, int jobs,
    const std::function<void(std::size_t done, std::size_t total, const CompileReport&)>& progress = {},
    const std::function<void(const KernelConfig&)>& child_hook = {});

}  // namespace flashmla::autotune
