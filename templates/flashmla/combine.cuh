// combine: merges the split partials of each (batch, s, h) row by their lse.
//   lse = log(sum_i exp(lse_i)),  out = sum_i exp(lse_i - lse) * o_i
// Batches with exactly one split were written by the decode kernel and are skipped;
// an empty sequence (0 splits) or a row no key reached gives out = 0, lse = +inf.
//
// Partials are fp32, or (kPartial16: decode_wgmma's) the input's 16-bit type, each already
// divided by its own row sum, so |o_i| <= max |V| (no overflow) and its rounding is that of the
// output itself.
// The combine reads n x latent_dim values per row (n up to num_parts, 66 at b 1 on an H100):
// it is bound by how many loads are in flight, not by arithmetic. So a CTA works on one row
// at a time with all its threads: thread t owns the 4 columns [4 c, 4 c + 4), c = t %
// kThreadsPerRow, and sums the splits i = g, g + kGroups, ... (g = t / kThreadsPerRow),
// kUnroll of them loaded before any is used; the kGroups partial sums meet in shared memory.
// Grid (row blocks, batch); a CTA strides over the rows of its batch. A batch of at most kFew
// splits takes a shorter path: one row per thread group, every load of the row issued at once.
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/ptx.cuh"

namespace flashmla {

template <bool kPartial16>
struct PartialChunk {
  using type = float4;
};
template <>
struct PartialChunk<true> {
  using type = uint2;
};

// kThreads and kMaxSplits come from the host (codegen.hpp: kCombineThreads, kCombineMaxSplits);
// a batch has at most one split per partition, and decode.cpp keeps num_parts <= kMaxSplits.
template <int kLatent, dev::Elem kElem, int kThreads, int kMaxSplits, bool kPartial16>
__device__ __forceinline__ void combine_kernel(const CombineParams& p) {
  constexpr int kThreadsPerRow = kLatent / 4;
  constexpr int kGroups = kThreads / kThreadsPerRow;
  constexpr int kUnroll = 8;
  static_assert(kLatent % 4 == 0 && kThreads % kThreadsPerRow == 0, "whole float4 columns per row");
  __shared__ float lse_split[kMaxSplits];
  __shared__ float lse_row;
  __shared__ float4 partial[kGroups - 1][kThreadsPerRow];

  const int bi = blockIdx.y;
  const int n = p.split_offsets[bi + 1] - p.split_offsets[bi];
  if (n == 1) return;  // split_offsets come from the metadata kernel, complete before the decode
  dev::grid_dependency_wait();  // the decode's partials are complete and visible
  const int t = threadIdx.x, g = t / kThreadsPerRow, c = t % kThreadsPerRow;
  const long long rows = static_cast<long long>(p.s_q) * p.h_q;
  using Chunk = typename PartialChunk<kPartial16>::type;  // 4 columns: a float4 or 4 16-bit values
  auto unpack = [](const Chunk& v) {
    float4 f;
    if constexpr (kPartial16) {
      dev::unpack2<kElem>(v.x, f.x, f.y);
      dev::unpack2<kElem>(v.y, f.z, f.w);
    } else {
      f = v;
    }
    return f;
  };
  // This thread's 4 columns of split 0 of the row whose first partial is `first`.
  auto partials = [&](long long first) {
    return reinterpret_cast<const Chunk*>(reinterpret_cast<const char*>(p.o_accum) +
                                          first * kLatent * (kPartial16 ? 2 : 4)) +
           c;
  };
  // out[row][4c, 4c + 4) = o; the thread of column group 0 also writes lse[row].
  auto store_row = [&](long long row, const float4& o, float lse) {
    const int s = static_cast<int>(row / p.h_q), h = static_cast<int>(row % p.h_q);
    dev::u32* out = reinterpret_cast<dev::u32*>(static_cast<dev::u16*>(p.out) + bi * p.o_stride_b + s * p.o_stride_s +
                                                h * p.o_stride_h + 4 * c);
    out[0] = dev::pack2<kElem>(o.x, o.y);
    out[1] = dev::pack2<kElem>(o.z, o.w);
    if (c == 0) p.lse[(static_cast<long long>(bi) * p.h_q + h) * p.s_q + s] = lse;
  };

  // Few splits (n <= kFew: b 8 and up on an H100): the kGroups thread groups take a row each,
  // and every thread loads all n lse values and its n chunks at once, so a row costs one memory
  // round trip and no barrier (the general path below needs three per row).
  constexpr int kFew = kPartial16 ? 12 : 6;
  if (n <= kFew) {
    const long long split_stride = rows * (kLatent / 4);  // chunks from split i to i + 1
    for (long long row = static_cast<long long>(blockIdx.x) * kGroups + g; row < rows;
         row += static_cast<long long>(gridDim.x) * kGroups) {
      const long long first = p.split_offsets[bi] * rows + row;
      const Chunk* src = partials(first);
      float l[kFew];
      Chunk v[kFew];
#pragma unroll
      for (int i = 0; i < kFew; ++i)
        if (i < n) l[i] = p.lse_accum[first + i * rows], v[i] = __ldg(src + i * split_stride);
      float m = dev::neg_inf();
#pragma unroll
      for (int i = 0; i < kFew; ++i)
        if (i < n) m = fmaxf(m, l[i]);
      float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
      float sum = 0.f;
      if (m != dev::neg_inf()) {
#pragma unroll
        for (int i = 0; i < kFew; ++i)
          if (i < n) {
            const float w = __expf(l[i] - m);
            const float4 f = unpack(v[i]);
            sum += w;
            acc.x += w * f.x, acc.y += w * f.y, acc.z += w * f.z, acc.w += w * f.w;
          }
      }
      const float inv = sum > 0.f ? 1.f / sum : 0.f;  // a row no key reached: out 0, lse +inf
      const float lse = sum > 0.f ? m + __logf(sum) : dev::pos_inf();
      store_row(row, make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv), lse);
    }
    return;
  }

  for (int row = blockIdx.x; row < rows; row += gridDim.x) {  // row = s * h_q + h
    const long long first = p.split_offsets[bi] * rows + row;
    for (int i = t; i < n; i += kThreads) lse_split[i] = p.lse_accum[first + i * rows];
    __syncthreads();
    if (t < 32) {
      float m = dev::neg_inf();
      for (int i = t; i < n; i += 32) m = fmaxf(m, lse_split[i]);
      m = dev::warp_max_xor<16>(m);
      float sum = 0.f;
      if (m != dev::neg_inf())
        for (int i = t; i < n; i += 32) sum += __expf(lse_split[i] - m);
      sum = dev::warp_sum_xor<16>(sum);
      if (t == 0) lse_row = m == dev::neg_inf() ? dev::pos_inf() : m + __logf(sum);
    }
    __syncthreads();
    const float lse = lse_row;

    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    if (lse != dev::pos_inf()) {
      const Chunk* src = partials(first);
      const long long split_stride = rows * (kLatent / 4);  // chunks from split i to i + 1
      auto add = [&](float w, Chunk v) {
        const float4 f = unpack(v);
        acc.x += w * f.x, acc.y += w * f.y, acc.z += w * f.z, acc.w += w * f.w;
      };
      int i = g;
      for (; i + (kUnroll - 1) * kGroups < n; i += kUnroll * kGroups) {  // kUnroll loads in flight
        Chunk v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) v[u] = __ldg(src + (i + u * kGroups) * split_stride);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) add(__expf(lse_split[i + u * kGroups] - lse), v[u]);
      }
      for (; i < n; i += kGroups) add(__expf(lse_split[i] - lse), __ldg(src + i * split_stride));
    }
    if (g > 0) partial[g - 1][c] = acc;
    __syncthreads();
    if (g == 0) {
#pragma unroll
      for (int k = 0; k < kGroups - 1; ++k) {
        const float4 o = partial[k][c];
        acc.x += o.x, acc.y += o.y, acc.z += o.z, acc.w += o.w;
      }
      store_row(row, acc, lse);
    }
    __syncthreads();  // lse_split, lse_row and partial are reused by the next row
  }
}

}  // namespace flashmla
