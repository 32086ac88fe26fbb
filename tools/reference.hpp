// fp64 CPU reference of paged MLA decode, parallelised over (batch, head) with std::thread.
// Used by the GPU tests and `flashmla demo`.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

namespace flashmla::reference {

// Inputs of one decode call as host floats (the already-rounded bf16/fp16 values), in the
// same strided layouts as on the device. The last dimension of q and k_cache is contiguous.
struct ReferenceInputs {
  int b = 1, s_q = 1, h_q = 1, h_kv = 1, latent_dim = 512, rope_dim = 64, page_size = 64;
  bool causal = false;
  double scale = 0;                      // softmax scale, already resolved
  const float* q = nullptr;              // [b, s_q, h_q, d_qk]
  std::array<int64_t, 3> q_strides{};    // b, s_q, h_q
  const float* k_cache = nullptr;        // [num_blocks, page_size, h_kv, d_qk]
  std::array<int64_t, 3> k_strides{};    // block, row, head
  const int32_t* block_table = nullptr;  // [b, block_table_stride]
  int64_t block_table_stride = 0;
  const int32_t* cache_seqlens = nullptr;  // [b]
};

struct ReferenceOutputs {
  std::vector<double> out;  // [b, s_q, h_q, latent_dim], dense
  std::vector<double> lse;  // [b, h_q, s_q]; +inf where no key is visible
};

// Keys [0, n) that query token s of a sequence of length L sees.
inline int visible_keys(int L, int s_q, int s, bool causal) {
  if (!causal || s_q == 1) return L;
  return std::clamp(L - s_q + s + 1, 0, L);
}

inline ReferenceOutputs mla_decode_reference(const ReferenceInputs& in) {
  const int d_qk = in.latent_dim + in.rope_dim, heads_per_kv = in.h_q / in.h_kv;
  ReferenceOutputs r;
  r.out.assign(static_cast<size_t>(in.b) * in.s_q * in.h_q * in.latent_dim, 0.0);
  r.lse.assign(static_cast<size_t>(in.b) * in.h_q * in.s_q, std::numeric_limits<double>::infinity());

  std::atomic<int> next_item{0};
  auto worker = [&] {
    std::vector<double> q(d_qk), scores, acc(in.latent_dim);
    std::vector<const float*> rows;
    for (int item; (item = next_item++) < in.b * in.h_q;) {
      const int bi = item / in.h_q, h = item % in.h_q, g = h / heads_per_kv;
      const int L = in.cache_seqlens[bi];
      rows.resize(L);
      for (int t = 0; t < L; ++t) {
        const int64_t block = in.block_table[bi * in.block_table_stride + t / in.page_size];
        rows[t] = in.k_cache + block * in.k_strides[0] + (t % in.page_size) * in.k_strides[1] + g * in.k_strides[2];
      }
      for (int s = 0; s < in.s_q; ++s) {
        const int n = visible_keys(L, in.s_q, s, in.causal);
        if (n == 0) continue;  // out = 0, lse = +inf
        const float* q_row = in.q + bi * in.q_strides[0] + s * in.q_strides[1] + h * in.q_strides[2];
        std::copy(q_row, q_row + d_qk, q.begin());
        scores.resize(n);
        double m = -std::numeric_limits<double>::infinity();
        for (int t = 0; t < n; ++t) {
          double dot = 0;
          for (int d = 0; d < d_qk; ++d) dot += q[d] * rows[t][d];
          scores[t] = dot * in.scale;
          m = std::max(m, scores[t]);
        }
        double sum = 0;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int t = 0; t < n; ++t) {
          const double p = std::exp(scores[t] - m);
          sum += p;
          for (int d = 0; d < in.latent_dim; ++d) acc[d] += p * rows[t][d];
        }
        double* out = &r.out[((static_cast<size_t>(bi) * in.s_q + s) * in.h_q + h) * in.latent_dim];
        for (int d = 0; d < in.latent_dim; ++d) out[d] = acc[d] / sum;
        r.lse[(static_cast<size_t>(bi) * in.h_q + h) * in.s_q + s] = m + std::log(sum);
      }
    }
  };
  const int num_threads =
      std::clamp(static_cast<int>(std::thread::hardware_concurrency()), 1, std::max(1, in.b * in.h_q));
  std::vector<std::thread> threads;
  for (int i = 1; i < num_threads; ++i) threads.emplace_back(worker);
  worker();
  for (auto& thread : threads) thread.join();
  return r;
}

}  // namespace flashmla::reference
