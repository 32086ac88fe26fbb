#include "autotune/search_space.hpp"

namespace flashmla::autotune {

SearchSpace decode_mma_space(const KernelConfig& base) {
  SearchSpace space;
  for (int q : {16, 32, 64})
    for (int k : {32, 64, 128})
      for (int w : {4, 8})
        for (int s = 1; s <= 4; ++s) {
          KernelConfig c = base;
          c.family = Family::decode_mma;
          c.block_size_q = q, c.block_size_k = k, c.num_warps = w, c.num_stages = s;
          if (auto reason = c.invalid_reason())
            space.pruned.emplace_back(c, *reason);
          else
            space.valid.push_back(c);
        }
  return space;
}

SearchSpace decode_wgmma_space(const KernelConfig& base) {
  SearchSpace space;
  // The warpgroup layouts: decode_wgmma (warpgroup 0 S + softmax, both P V) with 1 or 2 stages,
  // decode_seesaw (S of alternate blocks per warpgroup); both load K/V by TMA.
  for (int s = 1; s <= 3; ++s) {
    KernelConfig c = base;
    c.family = s <= 2 ? Family::decode_wgmma : Family::decode_seesaw;
    c.block_size_q = 64, c.block_size_k = 64, c.num_warps = 8, c.num_stages = s <= 2 ? s : 2;
    if (auto reason = c.invalid_reason())
      space.pruned.emplace_back(c, *reason);
    else
      space.valid.push_back(c);
  }
  return space;
}

}  // namespace flashmla::autotune
