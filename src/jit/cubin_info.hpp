// Resource figures read from a cubin itself (its ELF `.nv.info` section), so that they never
// depend on NVRTC returning the ptxas log: on the H100 machine (2026-11-26, NVRTC 13.0) many
// compiles returned an empty log although the cubin was complete.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace flashmla::jit {

struct CubinFunction {
  std::string symbol;
  int registers = -1;    // EIATTR_REGCOUNT
  int frame_bytes = -1;  // EIATTR_FRAME_SIZE: per-thread local memory; spills live there
  int min_stack_bytes = -1;
};

// The entry and device functions that carry a register count, in section order.
// Throws std::runtime_error naming what is malformed (not ELF64, a section past the end...).
std::vector<CubinFunction> read_cubin_functions(std::string_view cubin);

}  // namespace flashmla::jit
