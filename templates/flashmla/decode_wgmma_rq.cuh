// decode_wgmma, layout w12-s3: Q in registers, three warpgroups, three K/V stages.
//
// decode_wgmma's w8 layout keeps Q in shared memory (72 KB), which leaves room for two 72 KB
// K/V stages only: one tile in flight per SM, and the loads cost ~20 us of 264 at b128 h_q128
// s_k 4096 (bench/NOTES.md). Here Q lives in the registers of the warpgroup that computes S
// (the A operand of wgmma, 144 registers a thread), which frees a third stage, and the two P V
// halves move to warpgroups of their own, so that S(t + 1) and the softmax run while P V(t) does:
//   warpgroup 0 (softmax)  S(t) = Q K(t)^T: 36 x wgmma m64n64k16 with A = Q from registers;
//                          online softmax; P(t) and the rows' rescale factors -> shared memory.
//   warpgroup 1 + h        O[:, 256h, 256h + 256) = O * scale + P(t) V(t): 4 x m64n256k16, O in
//   (h = 0, 1)             128 fp32 registers; thread kLoader (warpgroup 1) issues the TMA loads.
// Registers (setmaxnreg): 208 for warpgroup 0, 152 for the others (512 x 128 = the register file).
// Stage t % 3 holds tile t; tile t + 2 is issued into stage (t - 1) % 3 once both P V(t - 1) are
// done (kStageFree), so two tiles are in flight while one is computed.
// Named barriers per tile:
//   kPReady    warpgroup 0 arrives when P(t) and the scales are written; warpgroups 1, 2 wait.
//   kPFree     warpgroups 1, 2 arrive when P V(t) has read P; warpgroup 0 waits before P(t + 1).
//   kStageFree warpgroup 2 arrives when its P V(t) is done; warpgroup 1 waits before loading.
// The loads, the block-table lookups, the tail-row zeroing and the shared-memory layout of the
// tiles are decode_wgmma's (DecodeWgmma<T>, decode_wgmma.cuh).
#pragma once
#include "flashmla/decode_wgmma.cuh"

namespace flashmla {

// decode_wgmma's traits with 384 threads, three stages and no Q in shared memory.
template <int kPageSize_, dev::Elem kElem_>
struct DecodeWgmmaRqTraits : DecodeWgmmaTraits<2, kPageSize_, kElem_> {
  using Base = DecodeWgmmaTraits<2, kPageSize_, kElem_>;
  static constexpr int kThreads = 384, kStages = 3;
  struct SharedPlan {
    // Stage s: tile t (t % 3 = s) as 9 column tiles; once S(t) has read its rope (tile 8), that
    // tile holds P(t) until P V(t) is done, after which tile t + 3 is loaded over it.
    alignas(1024) unsigned char kv[kStages][Base::kRowsBytes];
    alignas(1024) unsigned char q_rope[Base::kTileBytes];  // Q columns 512-575 (the A of S's rope part)
    float row_scale[kStages][Base::kBlockQ];  // O rescale factors of tile t, in [t % 3]
    float row_sum[Base::kBlockQ];
    unsigned long long full[kStages][Base::kTiles];  // mbarriers: column tile j of a stage has landed
    int segment[3];  // batch, split index, splits: read back after the tile loop, not kept live
  };
};

template <class T>
struct DecodeWgmmaRq : DecodeWgmma<T> {
  using Base = DecodeWgmma<T>;
  using u32 = dev::u32;
  using Base::hpk;
  using Base::kv_head;
  using Base::lane;
  using Base::p;
  using Base::row0;
  using Base::rows_total;
  using Base::sm;
  using Base::tid;
  using Base::warp;
  using Base::wg;
  static_assert(T::kThreads == 384 && T::kStages == 3, "the w12-s3 layout");
  static constexpr int kStages = 3;
  // Named barriers: kPReady + s (s = t % 3: P(t) and its scales written; warpgroup 0 arrives,
  // 1 and 2 wait), kStageFree (warpgroup 2's P V(t) done; warpgroup 1 waits before it loads),
  // kQRope (warpgroup 0's Q rope copies landed), kTailZeroed + h (warpgroup 1 + h's zeroed rows).
  static constexpr int kPReady = 1, kStageFree = 4, kQRope = 5, kTailZeroed = 6;
  static constexpr int kSoftmaxRegs = 184, kPvRegs = 160;
  // setmaxnreg.inc takes registers only from those the other warpgroups released (the CTA was
  // launched with 168 a thread, the most 384 threads get): 184 - 168 = 2 x (168 - 160).
  static_assert(kSoftmaxRegs - 168 <= 2 * (168 - kPvRegs), "registers taken = registers released");
  static constexpr bool kPartial16 = FLASHMLA_WGMMA_PARTIAL16 != 0;
  static constexpr int kLatentTiles = T::kLatent / 64;  // column tiles of S from registers (8)

  __device__ DecodeWgmmaRq(const DecodeParams& params, typename T::SharedPlan& plan) : Base(params, plan) {}

  // Q rows r_lo, r_hi of this thread, latent columns, as the A fragments of S's first 32 k-steps
  // (wgmma.cuh's register-A layout: q[ks][0] row r_lo, columns 16 ks + 2c, +1; [1] row r_hi; [2],
  // [3] the same 8 columns on). The rope columns go to sm.q_rope by cp.async (this warpgroup's
  // 128 threads, 4 of a row's 8 chunks each). Rows past rows_total are 0.
  __device__ void load_q(int bi, int r_lo, int r_hi, u32 (&q)[4 * kLatentTiles][4]) const {
    const int c = lane % 4;
    auto row_src = [&](int row) {
      const int s = row / hpk, h = kv_head * hpk + row % hpk;
      return static_cast<const dev::u16*>(p.q) + bi * p.q_stride_b + s * p.q_stride_s + h * p.q_stride_h;
    };
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + (i ? r_hi : r_lo);
      const bool valid = row < rows_total;
      const u32* src = reinterpret_cast<const u32*>(row_src(valid ? row : 0)) + c;
#pragma unroll
      for (int ks = 0; ks < 4 * kLatentTiles; ++ks) {
        q[ks][i] = valid ? __ldg(src + 8 * ks) : 0u;
        q[ks][2 + i] = valid ? __ldg(src + 8 * ks + 4) : 0u;
      }
    }
#pragma unroll
    for (int e = tid; e < 64 * 8; e += 128) {
      const int r = e / 8, row = row0 + r;
      const bool valid = row < rows_total;
      copy_row_sw128<1>(sm.q_rope, r, row_src(valid ? row : 0) + T::kLatent, valid, e % 8);
    }
    dev::cp_async_commit();
  }

  // Warpgroup 0: S, the softmax and P for every tile of the segment; then the lse and the copies.
  __device__ void softmax_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    const int k_begin = tile_lo * T::kBlockK, k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n_tiles = tile_hi - tile_lo;
    const int c = lane % 4, r_lo = 16 * warp + lane / 4, r_hi = r_lo + 8;
    int key_limit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int s = min((row0 + (i ? r_hi : r_lo)) / hpk, p.s_q - 1);
      key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
    }
    if (tid == 0) sm.segment[0] = bi, sm.segment[1] = split_idx, sm.segment[2] = n_splits;
    u32 q[4 * kLatentTiles][4];
    load_q(bi, r_lo, r_hi, q);
    dev::cp_async_wait<0>();
    dev::fence_proxy_async_smem();  // Q's rope: cp.async (generic proxy) -> wgmma (async proxy)
    dev::named_barrier_sync(kQRope, 128);
    float m_run[2] = {dev::neg_inf(), dev::neg_inf()};
    float l_part[2] = {0.f, 0.f};

    for (int t = 0; t < n_tiles; ++t) {
      const int k0 = k_begin + t * T::kBlockK, stage = t % kStages;
      const u32 kv_base = dev::smem_u32(sm.kv[stage]);
      float s_acc[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) s_acc[j] = 0.f;
      dev::wgmma_fence();
#pragma unroll
      for (int tile = 0; tile < kLatentTiles; ++tile) {
        this->wait_kv(stage, tile);
#pragma unroll
        for (int ks = 0; ks < 4; ++ks)
          dev::wgmma_m64n64k16_rs<T::kElem, 0>(s_acc, q[4 * tile + ks],
                                               dev::smem_desc_sw128(kv_base + tile * T::kTileBytes + ks * 32, 16, 1024), 1);
      }
      this->wait_kv(stage, kLatentTiles);
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        dev::wgmma_m64n64k16<T::kElem, 0>(
            s_acc, dev::smem_desc_sw128(dev::smem_u32(sm.q_rope) + ks * 32, 16, 1024),
            dev::smem_desc_sw128(kv_base + kLatentTiles * T::kTileBytes + ks * 32, 16, 1024), 1);
      dev::wgmma_commit();
      dev::wgmma_wait<0>();
      this->next_load(stage);

      mask_rows(s_acc, k0, key_limit, c);
      float m_raw[2], neg_m[2];
      row_max(s_acc, m_raw);
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float m_new = fmaxf(m_run[i], m_raw[i] * p.scale_log2);
        const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
        const float scale = dev::exp2_approx(m_run[i] - m_use);
        if (c == 0) sm.row_scale[stage][i ? r_hi : r_lo] = scale;
        l_part[i] *= scale;
        m_run[i] = m_new;
        neg_m[i] = -m_use;
      }
      // P(t) over the rope tile S(t) has read (decode_wgmma's stmatrix layout): the four warps'
      // wgmma reads of that tile are complete (each waited for its own before this point, and a
      // warp writes only its own 16 rows, which only its own wgmma rows read).
      const u32 p_base = kv_base + kLatentTiles * T::kTileBytes;
      const int st_row = 16 * warp + 8 * ((lane >> 3) & 1) + (lane & 7), st_blk = lane >> 4;
#pragma unroll
      for (int j = 0; j < 8; j += 2) {
        u32 packed[4];
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const float* s2 = s_acc + 4 * (j + h) + 2 * i;
            const float p0 = exp2_scaled(s2[0], p.scale_log2, neg_m[i]);
            const float p1 = exp2_scaled(s2[1], p.scale_log2, neg_m[i]);
            l_part[i] += p0 + p1;
            packed[2 * h + i] = dev::pack2<T::kElem>(p0, p1);
          }
        dev::stmatrix_x4(p_base + dev::swizzle128_offset(st_row, 8 * (j + st_blk)), packed);
      }
      dev::fence_proxy_async_smem();  // P is read by wgmma (async proxy)
      dev::named_barrier_arrive(kPReady + stage, T::kThreads);
    }
    dev::grid_launch_dependents();  // the combine may launch while this CTA stores its output
    // The row sums to shared memory for warpgroups 1 and 2, which scale their rows of O into the
    // stages; this warpgroup (Q no longer live) writes the lse and copies the rows out.
    float l_row[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      l_row[i] = dev::warp_sum_xor<2>(l_part[i]);
      if (c == 0) sm.row_sum[i ? r_hi : r_lo] = l_row[i];
    }
    __syncthreads();  // row sums written; every tile read (the stages become the output's stage)
    const StagedRows<T::kLatent, kPartial16> rows = staged_rows();
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + (i ? r_hi : r_lo);
      if (c != 0 || row >= rows_total) continue;
      const OutRow out = out_row(l_row[i], m_run[i], row, hpk, kv_head, rows.direct());
      if (rows.direct())
        p.lse[(static_cast<long long>(rows.bi) * p.h_q + out.h) * p.s_q + out.s] = out.lse;
      else
        p.lse_accum[(static_cast<long long>(rows.acc_idx()) * p.s_q + out.s) * p.h_q + out.h] = out.lse;
    }
    copy_staged_rows(rows, sm.kv[0], tid);
  }

  // Rows [valid, 64) of V column tiles 4 half .. 4 half + 3 of the stage hold data past the
  // sequence end (the rest of a loaded page) or an older tile (a page not loaded): zeroed by the
  // warpgroup that reads them, so that P V, whose P is 0 there, reads finite values.
  __device__ void zero_tail_half(int stage, int half, int valid) const {
    for (int e = tid % 128; e < 4 * 64 * 8; e += 128) {
      const int tile = 4 * half + e / 512, r = (e / 8) % 64, chunk = e % 8;
      if (r >= valid)
        dev::st_shared_zero16(dev::smem_u32(sm.kv[stage] + tile * T::kTileBytes + r * 128 + chunk * 16));
    }
  }

  // The current segment's output rows (sm.segment, written by warpgroup 0 at its start).
  __device__ StagedRows<T::kLatent, kPartial16> staged_rows() const {
    return {p, row0, rows_total, hpk, kv_head, sm.segment[0], sm.segment[1], sm.segment[2]};
  }

  // Warpgroups 1 and 2: O += P V over their 256 columns for every tile; thread kLoader loads.
  __device__ void pv_segment(int bi, int seqlen, int tile_lo, int tile_hi) {
    const int k_begin = tile_lo * T::kBlockK, k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n_tiles = tile_hi - tile_lo;
    const int half = wg - 1;  // output columns [256 half, 256 half + 256)
    const int r_lo = 16 * warp + lane / 4, r_hi = r_lo + 8;
    int pages[T::kBoxes];  // thread kLoader: the blocks of the next tile to load
    if (tid == Base::kLoader) {
      this->fetch_pages(bi, k_begin, k_end, pages);
#pragma unroll
      for (int t = 0; t < 2; ++t)
        if (t < n_tiles) {
          this->load_kv(k_begin + t * T::kBlockK, t, pages);
          this->fetch_pages(bi, k_begin + (t + 1) * T::kBlockK, k_end, pages);
        }
    }
    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.f;

    for (int t = 0; t < n_tiles; ++t) {
      const int stage = t % kStages;
      // Tile t + 2 goes into stage (t + 2) % 3, which held tile t - 1 (and P(t - 1)): free once
      // both P V(t - 1) are done (this warpgroup's, in order; warpgroup 2's, by kStageFree).
      if (half == 0) {
        if (t > 0) dev::named_barrier_sync(kStageFree, 256);
        if (tid == Base::kLoader && t + 2 < n_tiles) {
          this->load_kv(k_begin + (t + 2) * T::kBlockK, (t + 2) % kStages, pages);
          this->fetch_pages(bi, k_begin + (t + 3) * T::kBlockK, k_end, pages);
        }
      }
      dev::named_barrier_sync(kPReady + stage, T::kThreads);
      const float s_lo = sm.row_scale[stage][r_lo], s_hi = sm.row_scale[stage][r_hi];
#pragma unroll
      for (int tile = 0; tile < 4; ++tile) this->wait_kv(stage, 4 * half + tile);  // landed (S waited): acquire
      this->next_load(stage);
      const int valid = k_end - (k_begin + t * T::kBlockK);
      if (valid < T::kBlockK) {  // the last tile: zero this half's V rows past the end (S is done)
        zero_tail_half(stage, half, valid);
        dev::fence_proxy_async_smem();
        dev::named_barrier_sync(kTailZeroed + half, 128);
      }
      if (__any_sync(0xffffffffu, s_lo != 1.f || s_hi != 1.f)) {
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          o[4 * j] *= s_lo, o[4 * j + 1] *= s_lo, o[4 * j + 2] *= s_hi, o[4 * j + 3] *= s_hi;
        }
      }
      const u32 kv_base = dev::smem_u32(sm.kv[stage]), p_base = kv_base + kLatentTiles * T::kTileBytes;
      dev::wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        dev::wgmma_m64n256k16<T::kElem, 1>(o, dev::smem_desc_sw128(p_base + ks * 32, 16, 1024),
                                           dev::smem_desc_sw128(kv_base + 4 * half * T::kTileBytes + ks * 16 * 128,
                                                                T::kVLeadingBytes, T::kVStrideBytes));
      dev::wgmma_commit();
      dev::wgmma_wait<0>();
      if (half == 1 && t + 1 < n_tiles) dev::named_barrier_arrive(kStageFree, 256);  // matched at t + 1
    }
    dev::grid_launch_dependents();
    __syncthreads();  // warpgroup 0's row sums written; every tile read
    const StagedRows<T::kLatent, kPartial16> rows = staged_rows();
    static_assert(T::kRowsBytes * kStages >= kStagedBytes<T::kLatent>, "the output's stage fits in the K/V stages");
    stage_o<T::kElem>(rows, sm.kv[0], {sm.row_sum[r_lo], sm.row_sum[r_hi]}, half, lane, o, r_lo, r_hi);
    copy_staged_rows(rows, sm.kv[0], tid);
  }
};

// One role per warpgroup for the whole kernel, so that each role's code runs under its own
// register limit. Each role walks the same segments; the segment's first __syncthreads (below)
// keeps the previous segment's output copies and the next segment's loads apart.
template <class T, bool kSoftmax>
struct WgmmaRqRole {
  DecodeWgmmaRq<T>& cta;
  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    __syncthreads();  // the previous segment's output has left the stages
    if constexpr (kSoftmax)
      cta.softmax_segment(bi, seqlen, tile_lo, tile_hi, split_idx, n_splits);
    else
      cta.pv_segment(bi, seqlen, tile_lo, tile_hi);
  }
};

template <class T>
__device__ __forceinline__ void decode_wgmma_rq_kernel(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  using Cta = DecodeWgmmaRq<T>;
  Cta cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  if (threadIdx.x == Cta::kLoader) {
    dev::prefetch_tensormap(p.k_tmap);
    for (int s = 0; s < T::kStages; ++s)
      for (int j = 0; j < T::kTiles; ++j) dev::mbarrier_init(dev::smem_u32(&cta.sm.full[s][j]), 1);
    dev::fence_mbarrier_init();
  }
  __syncthreads();
  if (cta.wg == 0) {
    dev::setmaxnreg_inc<Cta::kSoftmaxRegs>();
    WgmmaRqRole<T, true> role{cta};
    for_each_segment<T::kBlockK>(p, role);
  } else {
    dev::setmaxnreg_dec<Cta::kPvRegs>();
    WgmmaRqRole<T, false> role{cta};
    for_each_segment<T::kBlockK>(p, role);
  }
  if (threadIdx.x < 64) dev::bulk_wait();  // the epilogue's bulk copies have written the output
}

}  // namespace flashmla
