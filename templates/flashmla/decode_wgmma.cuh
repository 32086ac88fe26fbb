// decode_wgmma: split-KV MLA decode for sm_90a with warpgroup MMA (wgmma) from shared memory.
// Dispatch picks it on sm_90a (runtime/dispatch.cpp); the GPU tests run the foundation's matrix
// through it.
//
// One CTA = (tile of 64 query rows, partition, kv head), two warpgroups (256 threads):
//   S = Q K^T     warpgroup 0: 36 x wgmma m64n64k16 (d_qk 576 = 9 tiles of 64), fp32 in
//                 registers; warp w of the warpgroup owns rows 16w..16w+15 entirely, so the
//                 row max and sum need only quad shuffles.
//   softmax       warpgroup 0: P = exp2(S - m) -> shared memory (swizzled, the A operand of
//                 P V), per-row rescale factors -> shared memory.
//   loads         warpgroup 1 issues the K/V tile loads (cp.async), so warpgroup 0 spends no
//                 issue slots on them.
//   O += P V      both: warpgroup h owns output columns [256h, 256h + 256) in 128 fp32
//                 registers; 4 x wgmma m64n256k16 with V read from the K tile (MN-major B).
// Per tile (2 stages): one CTA barrier (tile t resident, the other stage free: warpgroup 1
// starts loading tile t + 1 into it), then warpgroup 0 computes S and P, and both meet at a
// named barrier before their halves of P V.
// Shared memory holds Q and num_stages K/V tiles of 64 keys as 9 swizzled tiles of
// [64 rows x 64 elements] (wgmma.cuh), loaded by cp.async (16-byte chunks placed at the
// swizzled offset), and the P tile.
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/sw128_rows.cuh"
#include "flashmla/tma.cuh"
#include "flashmla/wgmma.cuh"
#include "flashmla/wgmma_store.cuh"

// Profiling only (wrong results on purpose): FLASHMLA_PROFILE_SKIP, set through
// FLASHMLA_NVRTC_DEFINES, drops parts of the tile loop to time the rest: bit 0 the S wgmma,
// bit 1 the softmax (P = S, no mask, max or exp), bit 2 the P V wgmma, bit 3 the K/V loads,
// bit 5 the K/V loads of odd q tiles only (half the L2 -> SM traffic at h_q 128).
#ifndef FLASHMLA_PROFILE_SKIP
#define FLASHMLA_PROFILE_SKIP 0
#endif
// Profiling only: FLASHMLA_TIMELINE=1 makes thread 0 of q tile 0 of the first, middle and last
// partition printf, per segment, its SM clock at phases of the segment (counted from kernel
// entry) and the global timer at entry and exit, so that CTA start skew and fixed costs show.
#ifndef FLASHMLA_TIMELINE
#define FLASHMLA_TIMELINE 0
#endif

namespace flashmla {

template <int kStages_, int kPageSize_, dev::Elem kElem_>
struct DecodeWgmmaTraits {
  static constexpr int kBlockQ = 64, kBlockK = 64, kThreads = 256, kStages = kStages_, kPageSize = kPageSize_;
  static constexpr int kLatent = 512, kRope = 64, kDqk = 576;
  static constexpr dev::Elem kElem = kElem_;
  static constexpr int kTiles = kDqk / 64;     // 64-element column tiles of a row
  static constexpr int kTileBytes = 64 * 128;  // one swizzled [64 rows x 64] tile
  static constexpr int kRowsBytes = kTiles * kTileBytes;
  // MN-major descriptor of V (rows = keys): offset between 64-column tiles and between groups
  // of 8 keys, in the field order gpu_test_wgmma_probe checks (established on the H100).
  static constexpr unsigned kVLeadingBytes = kTileBytes, kVStrideBytes = 1024;
  static_assert(kStages >= 1 && kStages <= 2, "1 or 2 stages fit in 227 KB");
  static_assert((kPageSize & (kPageSize - 1)) == 0, "page_size is a power of two");

  struct SharedPlan {
    alignas(1024) unsigned char q[kRowsBytes];
    alignas(1024) unsigned char kv[kStages][kRowsBytes];
    alignas(1024) unsigned char p[kTileBytes];
    float row_scale[kBlockQ];
    float row_sum[kBlockQ];
    float row_m[kBlockQ];
  };
};

template <class T>
struct DecodeWgmma {
  using u32 = dev::u32;
  using u16 = dev::u16;
  using Plan = typename T::SharedPlan;
  static constexpr int kPReady = 1;  // named barrier: P and row_scale of the tile written

  const DecodeParams& p;
  Plan& sm;
  const int tid, lane, warp, wg, kv_head, row0, hpk, rows_total;

  __device__ DecodeWgmma(const DecodeParams& params, Plan& plan)
      : p(params),
        sm(plan),
        tid(threadIdx.x),
        lane(threadIdx.x % 32),
        warp((threadIdx.x / 32) % 4),
        wg(__shfl_sync(0xffffffffu, threadIdx.x / 128, 0)),  // warp-uniform, visibly to ptxas
        kv_head(blockIdx.z),
        row0(blockIdx.x * T::kBlockQ),
        hpk(params.h_q / params.h_kv),
        rows_total(params.s_q * (params.h_q / params.h_kv)) {}

  // K/V loads are issued by warpgroup 1 only (128 threads, 8 per row, kPasses rows each).
  static constexpr int kLoaders = 128, kPasses = T::kBlockK / (kLoaders / 8);

  // The cache block of each of this thread's rows of the tile at k0 (-1 past k_end). Fetched a
  // tile ahead of load_kv, so the table's global-memory latency stays off the load's path.
  __device__ void fetch_pages(int bi, int k0, int k_end, int (&page)[kPasses]) const {
    const int lt = tid - 128;
    const int* table = p.block_table + bi * p.block_table_stride;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int pos = k0 + lt / 8 + i * (kLoaders / 8);
      page[i] = pos < k_end ? table[pos / T::kPageSize] : -1;
    }
  }

  __device__ void load_kv(int k0, int stage, const int (&page)[kPasses]) {
    if (FLASHMLA_PROFILE_SKIP & 8) return;
    if ((FLASHMLA_PROFILE_SKIP & 32) && blockIdx.x % 2 == 1) return;
    const int lt = tid - 128;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = lt / 8 + i * (kLoaders / 8);
      const u16* src = static_cast<const u16*>(p.k_cache) + static_cast<long long>(max(page[i], 0)) * p.k_stride_block +
                       ((k0 + r) % T::kPageSize) * p.k_stride_row + kv_head * p.k_stride_head;
      copy_row_sw128<T::kTiles>(sm.kv[stage], r, src, page[i] >= 0, tid % 8);
    }
  }

#if FLASHMLA_TIMELINE
  long long clock0 = 0;
  unsigned long long gtime0 = 0;
  __device__ bool timeline_cta() const {
    return tid == 0 && blockIdx.x == 0 && (blockIdx.y == 0 || blockIdx.y == gridDim.y / 2 || blockIdx.y == gridDim.y - 1);
  }
#endif

  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    constexpr int S = T::kStages;
#if FLASHMLA_TIMELINE
    long long tl[4] = {clock64(), 0, 0, 0};  // segment start, tile 0 resident, loop end, stored
#endif
    const int k_begin = tile_lo * T::kBlockK;
    const int k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n_tiles = tile_hi - tile_lo;
    const int g = lane / 4, c = lane % 4;
    const int r_lo = 16 * warp + g, r_hi = r_lo + 8;  // this thread's rows of S and O

    int key_limit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + (i ? r_hi : r_lo);
      const int s = min(row / hpk, p.s_q - 1);
      key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
    }

    __syncthreads();  // the previous segment no longer reads shared memory
    load_q_sw128<T::kThreads, T::kTiles>(p, sm.q, bi, row0, rows_total, hpk, kv_head, tid);
    int pages[kPasses];  // warpgroup 1: the blocks of the next tile to load
    if (wg == 1) {
      fetch_pages(bi, k_begin, k_end, pages);
      if (S > 1 && n_tiles > 0) {
        load_kv(k_begin, 0, pages);
        fetch_pages(bi, k_begin + T::kBlockK, k_end, pages);
      }
    }
    dev::cp_async_commit();

    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.f;
    float m_run[2] = {dev::neg_inf(), dev::neg_inf()};
    float l_part[2] = {0.f, 0.f};
    const u32 q_base = dev::smem_u32(sm.q), p_base = dev::smem_u32(sm.p);

    for (int t = 0; t < n_tiles; ++t) {
      if constexpr (S == 1) {
        __syncthreads();  // the single stage is free
        if (wg == 1) {
          load_kv(k_begin + t * T::kBlockK, 0, pages);
          fetch_pages(bi, k_begin + (t + 1) * T::kBlockK, k_end, pages);
        }
        dev::cp_async_commit();
      }
      // Tile t (and Q) resident. cp.async wrote through the generic proxy; wgmma reads through
      // the async proxy. After the barrier both warpgroups are done with tile t - 1, so its
      // stage takes tile t + 1.
      dev::cp_async_wait<0>();
      dev::fence_proxy_async_smem();
      __syncthreads();
#if FLASHMLA_TIMELINE
      if (t == 0) tl[1] = clock64();
#endif
      if (S > 1 && wg == 1 && t + 1 < n_tiles) {
        load_kv(k_begin + (t + 1) * T::kBlockK, (t + 1) % S, pages);
        dev::cp_async_commit();
        fetch_pages(bi, k_begin + (t + 2) * T::kBlockK, k_end, pages);  // used next iteration
      }
      const u32 kv_base = dev::smem_u32(sm.kv[t % S]);
      const int k0 = k_begin + t * T::kBlockK;

      // This thread's rows' O rescale factors: warpgroup 0 computes them (each lane of a quad the
      // same value) and keeps them in registers; warpgroup 1 reads them from shared memory after
      // the named barrier. (Re-reading them in warpgroup 0 would race with the quad's writer lane.)
      float s_lo = 1.f, s_hi = 1.f;
      if (wg == 0) {
        float s_acc[32];
#pragma unroll
        for (int j = 0; j < 32; ++j) s_acc[j] = 0.f;
        dev::wgmma_fence();
#pragma unroll
        for (int tile = 0; tile < (FLASHMLA_PROFILE_SKIP & 1 ? 0 : T::kTiles); ++tile)
#pragma unroll
          for (int ks = 0; ks < 4; ++ks)
            dev::wgmma_m64n64k16<T::kElem, 0>(
                s_acc, dev::smem_desc_sw128(q_base + tile * T::kTileBytes + ks * 32, 16, 1024),
                dev::smem_desc_sw128(kv_base + tile * T::kTileBytes + ks * 32, 16, 1024), 1);
        dev::wgmma_commit();
        dev::wgmma_wait<0>();

        if (FLASHMLA_PROFILE_SKIP & 2) {  // profiling: P = S as is, no rescale
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            if (c == 0) sm.row_scale[i ? r_hi : r_lo] = 1.f;
#pragma unroll
            for (int j = 0; j < 8; ++j)
              *reinterpret_cast<u32*>(sm.p + dev::swizzle128_offset(i ? r_hi : r_lo, 8 * j + 2 * c)) =
                  dev::pack2<T::kElem>(s_acc[4 * j + 2 * i], s_acc[4 * j + 2 * i + 1]);
          }
        } else {
          // Online softmax (log2 domain); this warp holds whole rows r_lo and r_hi.
          float m_tile[2] = {dev::neg_inf(), dev::neg_inf()};
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int pos = k0 + 8 * j + 2 * c + (e & 1);
              const float v = pos <= key_limit[e >> 1] ? s_acc[4 * j + e] * p.scale_log2 : dev::neg_inf();
              s_acc[4 * j + e] = v;
              m_tile[e >> 1] = fmaxf(m_tile[e >> 1], v);
            }
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const int r = i ? r_hi : r_lo;
            const float m_new = fmaxf(m_run[i], dev::warp_max_xor<2>(m_tile[i]));
            const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
            const float scale = dev::exp2_approx(m_run[i] - m_use);
            if (c == 0) sm.row_scale[r] = scale;
            (i ? s_hi : s_lo) = scale;
            l_part[i] *= scale;
            m_run[i] = m_new;
#pragma unroll
            for (int j = 0; j < 8; ++j) {
              const float p0 = dev::exp2_approx(s_acc[4 * j + 2 * i] - m_use);
              const float p1 = dev::exp2_approx(s_acc[4 * j + 2 * i + 1] - m_use);
              l_part[i] += p0 + p1;
              const int col = 8 * j + 2 * c;
              *reinterpret_cast<u32*>(sm.p + dev::swizzle128_offset(r, col)) = dev::pack2<T::kElem>(p0, p1);
            }
          }
        }
        // P is read by wgmma next, through the async proxy, by both warpgroups. A full sync (not
        // an arrive) also orders warpgroup 0's own warps; warpgroup 1 is normally waiting here.
        dev::fence_proxy_async_smem();
        dev::named_barrier_sync(kPReady, T::kThreads);
      } else {
        dev::named_barrier_sync(kPReady, T::kThreads);
        s_lo = sm.row_scale[r_lo], s_hi = sm.row_scale[r_hi];
      }

      // O = O * row_scale + P V for this warpgroup's 256 columns.
      // Once the running maxima settle most tiles leave every scale at 1: the warp then skips the
      // 128 multiplies (a warp-uniform branch).
      if (__any_sync(0xffffffffu, s_lo != 1.f || s_hi != 1.f)) {
#pragma unroll
        for (int j = 0; j < 32; ++j) {
          o[4 * j] *= s_lo, o[4 * j + 1] *= s_lo, o[4 * j + 2] *= s_hi, o[4 * j + 3] *= s_hi;
        }
      }
      dev::wgmma_fence();
#pragma unroll
      for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 4 ? 0 : 4); ++ks)
        dev::wgmma_m64n256k16<T::kElem, 1>(o, dev::smem_desc_sw128(p_base + ks * 32, 16, 1024),
                                           dev::smem_desc_sw128(kv_base + 4 * wg * T::kTileBytes + ks * 16 * 128,
                                                                T::kVLeadingBytes, T::kVStrideBytes));
      dev::wgmma_commit();
      dev::wgmma_wait<0>();
    }
    dev::cp_async_wait<0>();  // a segment with no tiles still has Q in flight
    dev::grid_launch_dependents();  // the combine may launch while this CTA stores its output
#if FLASHMLA_TIMELINE
    tl[2] = clock64();
#endif

    if (wg == 0) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float l = dev::warp_sum_xor<2>(l_part[i]);
        if (c == 0) sm.row_sum[i ? r_hi : r_lo] = l, sm.row_m[i ? r_hi : r_lo] = m_run[i];
      }
    }
    __syncthreads();
    // Q and the K/V stages (contiguous in the plan) are no longer read: they stage the output.
    static_assert(T::kRowsBytes * (1 + T::kStages) >= kStagedBytes<T::kLatent>, "the stage fits in Q + K/V");
    wgmma_store_staged<T::kElem, T::kLatent>(p, sm.q, {sm.row_sum[r_lo], sm.row_sum[r_hi]},
                                             {sm.row_m[r_lo], sm.row_m[r_hi]}, row0, rows_total, hpk, kv_head, wg, tid,
                                             bi, split_idx, n_splits, o, r_lo, r_hi);
#if FLASHMLA_TIMELINE
    tl[3] = clock64();
    if (timeline_cta())
      printf("timeline part %d batch %d tiles %d: clocks start %lld tile0 %lld loop %lld stored %lld\n", blockIdx.y, bi,
             n_tiles, tl[0] - clock0, tl[1] - clock0, tl[2] - clock0, tl[3] - clock0);
#endif
  }
};

template <class T>
__device__ __forceinline__ void decode_wgmma_kernel(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  DecodeWgmma<T> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
#if FLASHMLA_TIMELINE
  cta.clock0 = clock64();
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(cta.gtime0));
#endif
  for_each_segment<T::kBlockK>(p, cta);
  if (threadIdx.x < 64) dev::bulk_wait();  // the epilogue's bulk copies have written the output
#if FLASHMLA_TIMELINE
  unsigned long long gtime1;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(gtime1));
  if (cta.timeline_cta())
    printf("timeline part %d: globaltimer entry %llu exit %llu (ns), clocks %lld\n", blockIdx.y, cta.gtime0, gtime1,
           clock64() - cta.clock0);
#endif
}

}  // namespace flashmla
