// One random MLA decode problem: host inputs (fresh random values, rounded to the dtype,
// in optionally padded layouts), its fp64 reference, a run on the device and the
// comparison. Shared by the GPU tests and `flashmla demo`.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "flashmla/flashmla.hpp"
#include "tools/device_buffer.hpp"
#include "tools/reference.hpp"

namespace flashmla {

struct MlaCase {
  std::string name;  // also seeds the random inputs
  int b = 1, s_q = 1, h_q = 16, h_kv = 1;
  int latent_dim = 512, page_size = 64;
  DType dtype = DType::bf16;
  bool causal = false;
  std::vector<int> s_k{1};   // cache_seqlens; a single value is used for every sequence
  float softmax_scale = 0.f; // 0: d_qk^-0.5
  int pad = 0;               // extra elements in the q/out head strides, the k row stride and
                             // the block table stride (0: all contiguous, strides passed as 0)
  bool own_stream = false;   // a created stream and caller-provided workspaces
  std::string describe() const;
};

// Host data, strides and reference answer of one case.
struct MlaProblem {
  MlaCase c;
  DecodeShape shape;
  std::array<int64_t, 3> q_strides{}, k_strides{}, out_strides{};  // the layouts actually used
  int64_t block_table_stride = 0;
  std::vector<uint16_t> q, k_cache;  // bf16/fp16 bits
  std::vector<int32_t> block_table, seqlens;
  std::size_t out_elems = 0;  // of the strided out buffer, padding included
  reference::ReferenceOutputs ref;
};
MlaProblem make_problem(const MlaCase& c);

// The problem's inputs on the device, uploaded once and reused by every config.
struct DeviceProblem {
  explicit DeviceProblem(const MlaProblem& p);
  // Uploads another problem of the same sizes into these buffers (CUDA-graph replay).
  void upload(const MlaProblem& p);
  DeviceBuffer q, k_cache, block_table, seqlens, out, lse;
};

// Errors of one run against the reference.
struct MlaCheck {
  std::string config_id;  // the config that ran
  double out_rel_l2 = 0, out_max_abs = 0, lse_max_abs = 0;
  int64_t out_nan = 0, padding_written = 0;
  int64_t lse_nan = 0, lse_inf_mismatch = 0, lse_out_of_tol = 0;
  double out_rel_l2_tol = 0, out_max_abs_tol = 0;
  bool passed() const;
  std::string summary() const;
};

// Poisons the outputs, runs get_mla_metadata + mla_decode with `pin` (or the dispatcher's
// choice) and compares out and lse with the reference. Tolerances: out relative L2 error
// < 1e-2 (bf16) / 3e-3 (fp16) and max abs error < 5e-2 / 1e-2 (|V| <= 1); lse within
// max(2e-3, 1e-3 |ref|) (one key of 128 missing moves lse by ~1e-2); +inf exactly where no
// key is visible; no NaN; padding between rows untouched.
MlaCheck run_and_check(const MlaProblem& p, DeviceProblem& d, const std::optional<KernelConfig>& pin);
// The comparison alone, of whatever the device buffers hold now.
MlaCheck check_outputs(const MlaProblem& p, const DeviceProblem& d, const std::string& config_id);

}  // namespace flashmla
