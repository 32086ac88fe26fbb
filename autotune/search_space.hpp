// Search spaces: every combination of a family's tunables for one problem class,
// pruned by KernelConfig::invalid_reason() (shared memory, registers, divisibility).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "flashmla/config.hpp"

namespace flashmla::autotune {

struct SearchSpace {
  std::vector<KernelConfig> valid;
  std::vector<std::pair<KernelConfig, std::string>> pruned;  // config and why it cannot run
};

// decode_mma: block_size_q {16,32,64} x block_size_k {32,64,128} x num_warps {4,8}
// x num_stages {1..4}, with the problem fields (dtype, latent, rope, page, arch) of `base`.
SearchSpace decode_mma_space(const KernelConfig& base);
// The Hopper warpgroup layouts at their fixed q64-k64-w8 (valid on sm_90a, latent 512):
// decode_wgmma with num_stages {1, 2}, and decode_seesaw (s2).
SearchSpace decode_wgmma_space(const KernelConfig& base);

}  // namespace flashmla::autotune
