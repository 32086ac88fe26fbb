// The epilogue of decode_wgmma and decode_seesaw: this thread's rows r_lo and r_hi of O (warpgroup
// wg's 256 columns, in the wgmma accumulator layout), divided by their row sums (row_sum[0] for
// r_lo, [1] for r_hi; row_m likewise, log2 units), with the
// log-sum-exp: into out and lse when the sequence has one split, else into the partials that
// the combine merges (fp32 from wgmma_store; from wgmma_store_staged, the input's 16-bit type
// unless FLASHMLA_WGMMA_PARTIAL16=0, decode_wgmma.cuh). An empty row gives out 0 and lse +inf (partials: -inf).
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/tma.cuh"

// Profiling only (decode_wgmma.cuh lists the bits): bit 9 leaves out the output's bulk copies.
#ifndef FLASHMLA_PROFILE_SKIP
#define FLASHMLA_PROFILE_SKIP 0
#endif

namespace flashmla {

// One output row: 1 / l, its natural-log lse (an empty row: 0, and +inf for the output or -inf
// for a partial, which the combine then weighs 0) and where it goes (s, h).
struct OutRow {
  float inv_l, lse;
  int s, h;
};
__device__ __forceinline__ OutRow out_row(float l, float m_log2, int row, int hpk, int kv_head, bool direct) {
  constexpr float kLn2 = 0.6931471805599453f;
  const bool empty = l == 0.f;
  return {empty ? 0.f : 1.f / l,
          empty ? (direct ? dev::pos_inf() : dev::neg_inf()) : (m_log2 + dev::log2_approx(l)) * kLn2, row / hpk,
          kv_head * hpk + row % hpk};
}

template <dev::Elem kElem, int kLatent>
__device__ __forceinline__ void wgmma_store(const DecodeParams& p, const float (&row_sum)[2], const float (&row_m)[2], int row0,
                                            int rows_total, int hpk, int kv_head, int wg, int lane, int bi,
                                            int split_idx, int n_splits, const float (&o)[128], int r_lo, int r_hi) {
  using u16 = dev::u16;
  using u32 = dev::u32;
  const int c = lane % 4;
  const bool direct = n_splits == 1;
  const int acc_idx = p.split_offsets[bi] + split_idx;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int row = row0 + (half ? r_hi : r_lo);
    if (row >= rows_total) continue;
    const auto [inv_l, lse, s, h] = out_row(row_sum[half], row_m[half], row, hpk, kv_head, direct);
    const int col0 = 256 * wg + 2 * c;
    if (direct) {
      u32* out = reinterpret_cast<u32*>(static_cast<u16*>(p.out) + bi * p.o_stride_b + s * p.o_stride_s +
                                        h * p.o_stride_h + col0);
#pragma unroll
      for (int j = 0; j < 32; ++j)
        out[4 * j] = dev::pack2<kElem>(o[4 * j + 2 * half] * inv_l, o[4 * j + 2 * half + 1] * inv_l);
      if (wg == 0 && c == 0) p.lse[(static_cast<long long>(bi) * p.h_q + h) * p.s_q + s] = lse;
    } else {
      const long long acc_row = (static_cast<long long>(acc_idx) * p.s_q + s) * p.h_q + h;
      float* out = p.o_accum + acc_row * kLatent + col0;
#pragma unroll
      for (int j = 0; j < 32; ++j) {
        float2 v;
        v.x = o[4 * j + 2 * half] * inv_l;
        v.y = o[4 * j + 2 * half + 1] * inv_l;
        *reinterpret_cast<float2*>(out + 8 * j) = v;
      }
      if (wg == 0 && c == 0) p.lse_accum[acc_row] = lse;
    }
  }
}

// The same output, staged through shared memory and written by bulk copies, one per row (a
// thread per row; 1 KB of 16-bit output or partial, or 2 KB of fp32 partial each), instead of
// each thread storing its scattered pieces (512 warp stores per CTA): 2-3 % faster at b 128; the
// write burst of all CTAs finishing at once stays (bench/NOTES.md). Requires the whole of stage
// (kStagedBytes) free: the caller's tiles are no longer read. Rows sit kLatent x 2 + 16 (16-bit)
// or kLatent x 4 + 32 (fp32) bytes apart, so a warp's stores (8 rows x one quad's bytes) hit
// distinct banks. Every thread of the CTA calls it (it contains a __syncthreads); threads 0-63
// return once their copy has read the stage, so it may be overwritten after a later barrier.
// A row whose output address is not 16-byte aligned is copied 4 bytes at a time.
template <int kLatent>
inline constexpr int kStagedBytes = 64 * (kLatent * 4 + 32);

template <dev::Elem kElem, int kLatent, bool kPartial16>
__device__ __forceinline__ void wgmma_store_staged(const DecodeParams& p, unsigned char* stage, const float (&row_sum)[2],
                                                   const float (&row_m)[2], int row0, int rows_total, int hpk,
                                                   int kv_head, int wg, int tid, int bi, int split_idx, int n_splits,
                                                   const float (&o)[128], int r_lo, int r_hi) {
  using u16 = dev::u16;
  using u32 = dev::u32;
  const int c = tid % 4;
  const bool direct = n_splits == 1;
  // Rows of kLatent 16-bit values: the output, or (kPartial16) a partial in the input's type
  // (combine.cuh), half the bytes of an fp32 partial: at b <= 8 all CTAs write theirs at once and
  // that burst cost ~4 us of the decode (bench/NOTES.md).
  const bool wide = !direct && !kPartial16;  // an fp32 partial
  const int stride = wide ? kLatent * 4 + 32 : kLatent * 2 + 16;
  const int acc_idx = p.split_offsets[bi] + split_idx;
  auto row_address = [&](int row) -> void* {  // where row (of rows_total) goes
    const int s = row / hpk, h = kv_head * hpk + row % hpk;
    if (direct) return static_cast<u16*>(p.out) + bi * p.o_stride_b + s * p.o_stride_s + h * p.o_stride_h;
    const long long index = ((static_cast<long long>(acc_idx) * p.s_q + s) * p.h_q + h) * kLatent;
    return kPartial16 ? static_cast<void*>(reinterpret_cast<u16*>(p.o_accum) + index) : p.o_accum + index;
  };
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int r = half ? r_hi : r_lo;
    const int row = row0 + r;
    if (row >= rows_total) continue;
    const auto [inv_l, lse, s, h] = out_row(row_sum[half], row_m[half], row, hpk, kv_head, direct);
    const int col0 = 256 * wg + 2 * c;
    unsigned char* dst = stage + r * stride;
    if (wide) {
#pragma unroll
      for (int j = 0; j < 32; ++j)
        *reinterpret_cast<float2*>(dst + 4 * (col0 + 8 * j)) =
            make_float2(o[4 * j + 2 * half] * inv_l, o[4 * j + 2 * half + 1] * inv_l);
    } else {
#pragma unroll
      for (int j = 0; j < 32; ++j)
        *reinterpret_cast<u32*>(dst + 2 * (col0 + 8 * j)) =
            dev::pack2<kElem>(o[4 * j + 2 * half] * inv_l, o[4 * j + 2 * half + 1] * inv_l);
    }
    if (wg == 0 && c == 0) {
      if (direct)
        p.lse[(static_cast<long long>(bi) * p.h_q + h) * p.s_q + s] = lse;
      else
        p.lse_accum[(static_cast<long long>(acc_idx) * p.s_q + s) * p.h_q + h] = lse;
    }
  }
  dev::fence_proxy_async_smem();  // the bulk copies read the stage through the async proxy
  __syncthreads();
  if (tid < 64) {
    if (row0 + tid < rows_total) {
      void* dst = row_address(row0 + tid);
      const unsigned char* src = stage + tid * stride;
      const int bytes = wide ? kLatent * 4 : kLatent * 2;
      if (FLASHMLA_PROFILE_SKIP & 512) {
        // profiling: the copies left out (wrong results)
      } else if (reinterpret_cast<unsigned long long>(dst) % 16 == 0) {
        dev::bulk_store(dst, dev::smem_u32(src), bytes);
      } else {
        for (int k = 0; k < bytes / 4; ++k) static_cast<u32*>(dst)[k] = reinterpret_cast<const u32*>(src)[k];
      }
    }
    dev::bulk_commit();
    dev::bulk_wait_read();
  }
}

}  // namespace flashmla
