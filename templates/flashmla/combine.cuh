// combine: merges the split partials of each (batch, s, h) row by their lse.
//   lse = log(sum_i exp(lse_i)),  out = sum_i exp(lse_i - lse) * o_i
// Batches with exactly one split were written by the decode kernel and are skipped;
// an empty sequence (0 splits) or a row no key reached gives out = 0, lse = +inf.
// One warp per row; lane l owns columns [l * kPerLane, (l + 1) * kPerLane).
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/ptx.cuh"

namespace flashmla {

constexpr int kCombineWarps = 4;

template <int kLatent, dev::Elem kElem>
__device__ __forceinline__ void combine_kernel(const CombineParams& p) {
  constexpr int kPerLane = kLatent / 32;
  static_assert(kPerLane % 4 == 0, "latent_dim is a multiple of 128");
  const int bi = blockIdx.y;
  const int n = p.split_offsets[bi + 1] - p.split_offsets[bi];
  if (n == 1) return;
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * kCombineWarps + threadIdx.x / 32;  // row = s * h_q + h
  if (row >= p.s_q * p.h_q) return;
  const int s = row / p.h_q, h = row % p.h_q;
  const long long rows = static_cast<long long>(p.s_q) * p.h_q;
  const long long first = p.split_offsets[bi] * rows + row;

  float m = dev::neg_inf();
  for (int i = lane; i < n; i += 32) m = fmaxf(m, p.lse_accum[first + i * rows]);
  m = dev::warp_max_xor<16>(m);

  float acc[kPerLane];
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) acc[j] = 0.f;
  float lse = dev::pos_inf();
  if (m != dev::neg_inf()) {
    float sum = 0.f;
    for (int i = lane; i < n; i += 32) sum += __expf(p.lse_accum[first + i * rows] - m);
    sum = dev::warp_sum_xor<16>(sum);
    lse = m + __logf(sum);
    for (int i = 0; i < n; ++i) {
      const float w = __expf(p.lse_accum[first + i * rows] - lse);
      const float4* src = reinterpret_cast<const float4*>(p.o_accum + (first + i * rows) * kLatent + lane * kPerLane);
#pragma unroll
      for (int j = 0; j < kPerLane / 4; ++j) {
        const float4 v = src[j];
        acc[4 * j] += w * v.x, acc[4 * j + 1] += w * v.y, acc[4 * j + 2] += w * v.z, acc[4 * j + 3] += w * v.w;
      }
    }
  }
  dev::u32* out = reinterpret_cast<dev::u32*>(static_cast<dev::u16*>(p.out) + bi * p.o_stride_b +
                                              s * p.o_stride_s + h * p.o_stride_h + lane * kPerLane);
#pragma unroll
  for (int j = 0; j < kPerLane / 2; ++j) out[j] = dev::pack2<kElem>(acc[2 * j], acc[2 * j + 1]);
  if (lane == 0) p.lse[(static_cast<long long>(bi) * p.h_q + h) * p.s_q + s] = lse;
}

}  // namespace flashmla
