// One random MLA decode problem run on the device and checked against an fp64 CPU
// reference computed from the same rounded inputs. Shared by `flashmla demo` and the
// GPU tests.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flashmla/flashmla.hpp"

namespace flashmla {

struct MlaProblemSpec {
  int b = 1, s_q = 1, h_q = 16, h_kv = 1, latent_dim = 512, page_size = 64;
  DType dtype = DType::bf16;
  bool causal = false;
  std::vector<int> seqlens;  // size b; empty: every sequence 256 long
  float softmax_scale = 0.f;
  std::optional<KernelConfig> config;  // pin; else dispatcher
  int q_head_pad = 0;   // extra elements between q heads (non-contiguous q), multiple of 8
  int out_head_pad = 0; // extra elements between out heads, even
};

struct ProblemCheck {
  std::string config_id;
  double out_rel_error = 0;   // ||out - ref||_2 / ||ref||_2
  double out_max_error = 0;   // max |out - ref|
  double lse_max_error = 0;   // max |lse - ref| / max(1, |ref|) over rows with keys
  int64_t bad_values = 0;     // NaN, or inf where a finite value was expected (and vice versa)
  bool passed = false;        // within the tolerances below
  // Tolerances (bf16 operands, fp32 accumulation, P rounded to the input dtype).
  static double out_rel_tolerance(DType t) { return t == DType::bf16 ? 1e-2 : 3e-3; }
  static double out_max_tolerance(DType t) { return t == DType::bf16 ? 5e-2 : 1e-2; }
  static constexpr double kLseTolerance = 2e-3;
};

// Builds random inputs (fresh per seed, never zeros), poisons the outputs, runs
// get_mla_metadata + mla_decode on the current context's default stream and compares.
ProblemCheck run_and_check(const MlaProblemSpec& spec, uint64_t seed);

}  // namespace flashmla
