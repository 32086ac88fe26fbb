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
//   loads         one thread of warpgroup 1 issues each K/V tile as TMA boxes (tensor map
//                 p.k_tmap) completing on the stage's mbarrier; Q comes by TMA too (p.q_tmap,
//                 an mbarrier per column tile, which S(0) waits for one by one) where the host
//                 set p.q_tma, else by cp.async.
//   O += P V      both: warpgroup h owns output columns [256h, 256h + 256) in 128 fp32
//                 registers; 4 x wgmma m64n256k16 with V read from the K tile (MN-major B).
// Per tile t (2 stages), no CTA barrier: warpgroup 1 waits until warpgroup 0's P V(t - 1) is
// done (kStageFree) and issues tile t + 1 into the stage it frees; warpgroup 0 computes S(t),
// waiting for each 64-column tile's mbarrier just before its wgmmas (so S starts when the first
// column tile lands, and runs under warpgroup 1's P V(t - 1)), waits until P(t - 1) is no longer
// read (kPFree), writes P(t), and both meet at kPReady before their halves of P V(t).
// Shared memory holds Q and num_stages K/V tiles of 64 keys as 9 swizzled tiles of
// [64 rows x 64 elements] (wgmma.cuh; Q's 16-byte chunks placed at the swizzled offset by
// cp.async, K/V's by TMA's 128B swizzle), the P tile, and an mbarrier per column tile and stage.
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/softmax_rows.cuh"
#include "flashmla/sw128_rows.cuh"
#include "flashmla/tma.cuh"
#include "flashmla/wgmma.cuh"
#include "flashmla/wgmma_store.cuh"

// Profiling only (wrong results on purpose): FLASHMLA_PROFILE_SKIP, set through
// FLASHMLA_NVRTC_DEFINES, drops parts of the tile loop to time the rest: bit 0 the S wgmma,
// bit 1 the softmax (P = S, no mask, max or exp), bit 2 the P V wgmma, bit 3 the K/V loads,
// bit 5 the K/V loads of odd q tiles only (half the L2 -> SM traffic at h_q 128), bit 6 the proxy
// fence before kPReady, bit 7 the block-table reads in the loop, bit 8 (with bit 1) the P stores,
// bit 9 the output's bulk copies (wgmma_store.cuh), bit 10 S's per-column-tile waits, which move
// to after S (the loads and their traffic stay; their latency leaves S's path: a variant that
// tells latency from traffic, bench/NOTES.md), bit 12 Q's load and bit 13 tile 0's in every
// segment but a partition's first (what prefetching them across the boundary could save at most).
#ifndef FLASHMLA_PROFILE_SKIP
#define FLASHMLA_PROFILE_SKIP 0
#endif
// Profiling only: FLASHMLA_TIMELINE=1 makes thread 0 of q tile 0 of the first, middle and last
// partition printf, per segment, its SM clock at phases of the segment (counted from kernel
// entry) and the global timer at entry and exit, so that CTA start skew and fixed costs show.
#ifndef FLASHMLA_TIMELINE
#define FLASHMLA_TIMELINE 0
#endif

// Split partials in the input's 16-bit type (1, the default) or fp32 (0): FLASHMLA_NVRTC_DEFINES=
// "FLASHMLA_WGMMA_PARTIAL16=0" trades the small-batch speed back for the last bits of accuracy
// (README, bench/NOTES.md). The combine of the unit reads the same form (codegen.cpp).
#ifndef FLASHMLA_WGMMA_PARTIAL16
#define FLASHMLA_WGMMA_PARTIAL16 1
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
  // TMA boxes: 64 columns x kBoxRows rows (one page, or 64 rows of a longer one); a 64-key tile
  // of one column tile is kBoxes boxes.
  static constexpr int kBoxRows = kPageSize < 64 ? kPageSize : 64, kBoxes = 64 / kBoxRows;

  struct SharedPlan {
    alignas(1024) unsigned char q[kRowsBytes];
    alignas(1024) unsigned char kv[kStages][kRowsBytes];
    alignas(1024) unsigned char p[kTileBytes];
    float row_scale[kBlockQ];
    float row_sum[kBlockQ];
    float row_m[kBlockQ];
    unsigned long long full[kStages][kTiles];  // mbarriers: column tile j of a stage has landed
    unsigned long long qfull[kTiles];          // mbarriers: column tile j of Q has landed (p.q_tma)
  };
};

// kEvictFirst: the K/V loads carry the L2 evict_first policy (decode_wgmma_kernel picks the
// instantiation per launch from schedule word 5, so the loop holds no flag: a flag read per tile
// cost 3-4 % at h_q 128, bench/NOTES.md).
template <class T, bool kEvictFirst>
struct DecodeWgmma {
  using u32 = dev::u32;
  using u16 = dev::u16;
  using Plan = typename T::SharedPlan;
  // Named barriers (256 threads). With 2 stages the tile loop has no CTA barrier: warpgroup 0
  // starts S(t + 1) as soon as its own P V(t) is done, under warpgroup 1's P V(t).
  static constexpr int kPReady = 1;     // P(t) and row_scale(t) written (warpgroup 0 -> both)
  static constexpr int kPFree = 2;      // warpgroup 1's P V(t) done: P may be overwritten
  static constexpr int kStageFree = 3;  // warpgroup 0's P V(t) done: stage t % 2 may be reloaded

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

  // K/V tiles come by TMA (p.k_tmap: boxes of 64 columns x kBoxRows rows with the 128B swizzle
  // that the wgmma descriptors read), issued by one thread of warpgroup 1 and completing on the
  // stage's mbarrier. (cp.async, 4608 16-byte copies per tile, kept one tile in flight per SM
  // from landing in time: bench/NOTES.md.)
  static constexpr int kLoader = 128;
  bool later_segment = false;  // profiling bits 4096 / 8192: not the partition's first segment
  u32 q_phase = 0;             // the parity Q's barriers complete next (p.q_tma; flips per segment)

  // Thread kLoader: the segment's Q tile by TMA (p.q_tmap), column tile j completing on qfull[j], so
  // that S(0) starts on Q's first column tile instead of after all of Q and a CTA barrier.
  __device__ void load_q_tma(int bi) const {
    const int c1 = kv_head * hpk + row0 % hpk, c2 = row0 / hpk;  // first head and token of the tile
#pragma unroll
    for (int tile = 0; tile < T::kTiles; ++tile) {
      const u32 bar = dev::smem_u32(&sm.qfull[tile]);
      dev::mbarrier_arrive_expect_tx(bar, T::kTileBytes);
      dev::tma_load_4d(dev::smem_u32(sm.q + tile * T::kTileBytes), p.q_tmap, tile * 64, c1, c2, bi, bar);
    }
  }
  u32 phase = 0;  // bit s: the parity stage s's barriers complete next (next_load flips it per load)

  // Thread kLoader: the cache blocks of the boxes of the tile at k0 (-1: past k_end, not loaded),
  // fetched a tile ahead of load_kv, so the table's latency stays off the load's path.
  __device__ void fetch_pages(int bi, int k0, int k_end, int (&pg)[T::kBoxes]) const {
    tile_pages<T::kBoxes, T::kBoxRows, T::kPageSize>(p, bi, k0, k_end, pg);
  }

  // Thread kLoader: the tile at k0 into stage `stage`; the barrier expects the bytes of the boxes
  // loaded (profiling variants load none and expect none). kEvictFirst: with the L2 evict_first
  // policy, so that the lines already in L2 (often dirty: written back if evicted) stay.
  __device__ void load_kv(int k0, int stage, const int (&pg)[T::kBoxes]) const {
    const unsigned long long policy = kEvictFirst ? dev::l2_policy_evict_first() : 0ull;
    const bool skip = (FLASHMLA_PROFILE_SKIP & 8) || ((FLASHMLA_PROFILE_SKIP & 32) && blockIdx.x % 2 == 1);
    int boxes = 0;
#pragma unroll
    for (int i = 0; i < T::kBoxes; ++i) boxes += pg[i] >= 0 && !skip;
#pragma unroll
    for (int tile = 0; tile < T::kTiles; ++tile) {
      const u32 bar = dev::smem_u32(&sm.full[stage][tile]);
      dev::mbarrier_arrive_expect_tx(bar, boxes * T::kBoxRows * 128);
#pragma unroll
      for (int i = 0; i < T::kBoxes; ++i)
        if (pg[i] >= 0 && !skip) {
          const u32 dst = dev::smem_u32(sm.kv[stage] + tile * T::kTileBytes + i * T::kBoxRows * 128);
          const int row = (k0 + i * T::kBoxRows) % T::kPageSize;
          if constexpr (kEvictFirst)
            dev::tma_load_4d_hint(dst, p.k_tmap, tile * 64, row, kv_head, pg[i], bar, policy);
          else
            dev::tma_load_4d(dst, p.k_tmap, tile * 64, row, kv_head, pg[i], bar);
        }
    }
  }

  // Waits for column tile `tile` of the stage's current load (every thread tracks every load's
  // parity through next_load, whether or not it waits on a given tile).
  __device__ void wait_kv(int stage, int tile) const {
    dev::mbarrier_wait(dev::smem_u32(&sm.full[stage][tile]), (phase >> stage) & 1u);
  }
  __device__ void next_load(int stage) { phase ^= 1u << stage; }

  // Rows [valid, 64) of the stage's V column tiles hold data past the sequence end (the rest of a
  // loaded page) or an older tile (a page not loaded): zeroed, so that P V, whose P is 0 there,
  // reads finite values. Warpgroup 0, after S has waited for every tile and read it; the P
  // barrier's fence and sync publish the zeroes.
  __device__ void zero_tail_rows(int stage, int valid) {
    for (int e = tid; e < 8 * 64 * 8; e += 128) {
      const int tile = e / 512, r = (e / 8) % 64, chunk = e % 8;
      if (r >= valid) dev::st_shared_zero16(dev::smem_u32(sm.kv[stage] + tile * T::kTileBytes + r * 128 + chunk * 16));
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
    if ((FLASHMLA_PROFILE_SKIP & 4096) && later_segment) {
      // profiling: no Q load (the staged output's bytes stand in for it)
    } else if (p.q_tma) {
      // S(0) waits for it: a segment always has tiles (for_each_segment skips empty ranges).
      if (tid == kLoader) load_q_tma(bi);
    } else {
      load_q_sw128<T::kThreads, T::kTiles>(p, sm.q, bi, row0, rows_total, hpk, kv_head, tid);
    }
    dev::cp_async_commit();
    int pages[T::kBoxes];  // thread kLoader: the blocks of the next tile to load
    if (tid == kLoader) {
      fetch_pages(bi, k_begin, k_end, pages);
      if ((FLASHMLA_PROFILE_SKIP & 8192) && later_segment) pages[0] = -1;
      if (S > 1 && n_tiles > 0) {
        load_kv(k_begin, 0, pages);
        fetch_pages(bi, k_begin + T::kBlockK, k_end, pages);
      }
    }

    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.f;
    float m_run[2] = {dev::neg_inf(), dev::neg_inf()};
    float l_part[2] = {0.f, 0.f};
    const u32 q_base = dev::smem_u32(sm.q), p_base = dev::smem_u32(sm.p);
    const dev::u64 q_desc = dev::smem_desc_sw128(q_base, 16, 1024), p_desc = dev::smem_desc_sw128(p_base, 16, 1024);

    for (int t = 0; t < n_tiles; ++t) {
      if constexpr (S == 1) {
        __syncthreads();  // the single stage is free
        if (tid == kLoader) {
          load_kv(k_begin + t * T::kBlockK, 0, pages);
          fetch_pages(bi, k_begin + (t + 1) * T::kBlockK, k_end, pages);
        }
      }
      // Q resident (its cp.async is a generic-proxy write that wgmma reads through the async
      // proxy: fenced). Tile t's column tiles are waited for one by one as S reaches them.
      const int k0 = k_begin + t * T::kBlockK;
      if (t == 0 && !p.q_tma) {
        dev::cp_async_wait<0>();
        dev::fence_proxy_async_smem();
        if constexpr (S > 1) __syncthreads();
      }
      if constexpr (S == 1) __syncthreads();
#if FLASHMLA_TIMELINE
      if (t == 0) tl[1] = clock64();
#endif
      if (S > 1 && wg == 1) {
        // Stage (t + 1) % 2 held tile t - 1: free once both warpgroups' P V(t - 1) are done
        // (this warpgroup's, in order; warpgroup 0's, by kStageFree).
        if (t > 0) dev::named_barrier_sync(kStageFree, T::kThreads);
        if (tid == kLoader && t + 1 < n_tiles) {
          load_kv(k_begin + (t + 1) * T::kBlockK, (t + 1) % S, pages);
          if (!(FLASHMLA_PROFILE_SKIP & 128))
            fetch_pages(bi, k_begin + (t + 2) * T::kBlockK, k_end, pages);  // used next iteration
        }
      }
      const u32 kv_base = dev::smem_u32(sm.kv[t % S]);
      const dev::u64 k_desc = dev::smem_desc_sw128(kv_base, 16, 1024);  // S: K, K-major
      const dev::u64 v_desc =  // P V: this warpgroup's 256 columns of V, MN-major
          dev::smem_desc_sw128(kv_base + 4 * wg * T::kTileBytes, T::kVLeadingBytes, T::kVStrideBytes);

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
        for (int tile = 0; tile < T::kTiles; ++tile) {
          if (!(FLASHMLA_PROFILE_SKIP & 1024)) wait_kv(t % S, tile);
          if (t == 0 && p.q_tma && !((FLASHMLA_PROFILE_SKIP & 4096) && later_segment))
            dev::mbarrier_wait(dev::smem_u32(&sm.qfull[tile]), q_phase);
#pragma unroll
          for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 1 ? 0 : 4); ++ks)
            dev::wgmma_m64n64k16<T::kElem, 0>(s_acc, dev::desc_advance(q_desc, tile * T::kTileBytes + ks * 32),
                                              dev::desc_advance(k_desc, tile * T::kTileBytes + ks * 32), 1);
        }
        dev::wgmma_commit();
        dev::wgmma_wait<0>();
        if (FLASHMLA_PROFILE_SKIP & 1024)  // profiling: S read the tiles unsynchronized
#pragma unroll
          for (int tile = 0; tile < T::kTiles; ++tile) wait_kv(t % S, tile);
        if (k_end - k0 < T::kBlockK) zero_tail_rows(t % S, k_end - k0);
        if (S > 1 && t > 0) dev::named_barrier_sync(kPFree, T::kThreads);  // P(t - 1) read by both

        if (FLASHMLA_PROFILE_SKIP & 2) {  // profiling: P = S as is, no rescale
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            if (c == 0) sm.row_scale[i ? r_hi : r_lo] = 1.f;
#pragma unroll
            for (int j = 0; j < (FLASHMLA_PROFILE_SKIP & 256 ? 0 : 8); ++j)
              *reinterpret_cast<u32*>(sm.p + dev::swizzle128_offset(i ? r_hi : r_lo, 8 * j + 2 * c)) =
                  dev::pack2<T::kElem>(s_acc[4 * j + 2 * i], s_acc[4 * j + 2 * i + 1]);
          }
        } else {
          // Online softmax (log2 domain); this warp holds whole rows r_lo and r_hi. scale_log2 > 0
          // (decode.cpp): the row maximum is taken over the raw scores and scaled once, and each
          // p is one FFMA and one MUFU (softmax_rows.cuh).
          mask_rows(s_acc, k0, key_limit, c);
          float m_raw[2];
          row_max(s_acc, m_raw);
          float neg_m[2];
#pragma unroll
          for (int i = 0; i < 2; ++i) {
            const float m_new = fmaxf(m_run[i], m_raw[i] * p.scale_log2);
            const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
            const float scale = dev::exp2_approx(m_run[i] - m_use);
            if (c == 0) sm.row_scale[i ? r_hi : r_lo] = scale;
            (i ? s_hi : s_lo) = scale;
            l_part[i] *= scale;
            m_run[i] = m_new;
            neg_m[i] = -m_use;
          }
          store_p_rows<T::kElem>(s_acc, p.scale_log2, neg_m, l_part, p_base, warp, lane);
        }
        // P is read by wgmma next, through the async proxy, by both warpgroups. A full sync (not
        // an arrive) also orders warpgroup 0's own warps; warpgroup 1 is normally waiting here.
        if (!(FLASHMLA_PROFILE_SKIP & 64)) dev::fence_proxy_async_smem();
        dev::named_barrier_sync(kPReady, T::kThreads);
      } else {
        dev::named_barrier_sync(kPReady, T::kThreads);
        s_lo = sm.row_scale[r_lo], s_hi = sm.row_scale[r_hi];
#pragma unroll
        for (int tile = 4; tile < 8; ++tile) wait_kv(t % S, tile);  // complete (S waited): acquires them
      }
      next_load(t % S);

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
        dev::wgmma_m64n256k16<T::kElem, 1>(o, dev::desc_advance(p_desc, ks * 32),
                                           dev::desc_advance(v_desc, ks * 16 * 128));
      dev::wgmma_commit();
      dev::wgmma_wait<0>();
      // Arrivals matched by the other warpgroup's sync in iteration t + 1 (none after the last).
      if (S > 1 && t + 1 < n_tiles) {
        if (wg == 0)
          dev::named_barrier_arrive(kStageFree, T::kThreads);
        else
          dev::named_barrier_arrive(kPFree, T::kThreads);
      }
    }
    q_phase ^= p.q_tma && !((FLASHMLA_PROFILE_SKIP & 4096) && later_segment) ? 1u : 0u;  // Q was loaded and waited
    later_segment = true;
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
    wgmma_store_staged<T::kElem, T::kLatent, FLASHMLA_WGMMA_PARTIAL16 != 0>(
        p, sm.q, {sm.row_sum[r_lo], sm.row_sum[r_hi]}, {sm.row_m[r_lo], sm.row_m[r_hi]}, row0, rows_total, hpk,
        kv_head, wg, tid, bi, split_idx, n_splits, o, r_lo, r_hi);
#if FLASHMLA_TIMELINE
    tl[3] = clock64();
    if (timeline_cta())
      printf("timeline part %d batch %d tiles %d: clocks start %lld tile0 %lld loop %lld stored %lld\n", blockIdx.y, bi,
             n_tiles, tl[0] - clock0, tl[1] - clock0, tl[2] - clock0, tl[3] - clock0);
#endif
  }
};

template <class T, bool kEvictFirst>
__device__ __forceinline__ void decode_wgmma_body(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  DecodeWgmma<T, kEvictFirst> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  if (threadIdx.x == cta.kLoader) {
    dev::prefetch_tensormap(p.k_tmap);
    for (int s = 0; s < T::kStages; ++s)
      for (int j = 0; j < T::kTiles; ++j) dev::mbarrier_init(dev::smem_u32(&cta.sm.full[s][j]), 1);
    for (int j = 0; j < T::kTiles; ++j) dev::mbarrier_init(dev::smem_u32(&cta.sm.qfull[j]), 1);
    dev::fence_mbarrier_init();
  }
  __syncthreads();
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

// Schedule word 5 (metadata.cuh: the launch reads few K/V bytes) selects the instantiation with
// evict_first K/V loads: a launch-wide choice made from the real lengths. The two copies take the
// kernel from 229 to 242 registers (no spills), measured 0.3-1.3 % slower on the large launches.
template <class T>
__device__ __forceinline__ void decode_wgmma_kernel(const DecodeParams& p) {
  if (p.sched[blockIdx.y * kSchedWords + 5] != 0)
    decode_wgmma_body<T, true>(p);
  else
    decode_wgmma_body<T, false>(p);
}

}  // namespace flashmla
