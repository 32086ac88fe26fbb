// decode_pair: split-KV MLA decode for sm_90a by a cluster of two CTAs per 64-row q tile, each
// holding half of d_qk and producing half of the output columns (pinned family, experimental).
//
// CTA rank r of the pair (blockIdx.x = 2 q_tile + r) owns latent columns [256r, 256r + 256) and
// the rope columns [512 + 32r, 512 + 32r + 32): 288 of the 576, 18 k16 steps.
//   S_r = Q_r K_r^T   warpgroup 0, wgmma m64n64k16 with Q_r from registers (72 per thread, loaded
//                     from global memory once per segment) and K from shared memory.
//   exchange          warpgroup 0 sends S_r (fp32, 16 KB) into the peer's shared memory by
//                     st.async, completing on the peer's xfull barrier; S = S_0 + S_1 in both.
//   softmax           warpgroup 0, on the whole S, in both CTAs (the same numbers in the same
//                     order: both get the same P, row max and sums).
//   O_r += P V_r      warpgroup 1: 4 x wgmma m64n256k16, V_r = the K tile's latent columns r,
//                     128 fp32 registers a thread.
// Pipelining (warpgroup 0, step t; two S accumulators, the loop unrolled by two so that ptxas
// sees them apart): add the peer's S(t) (sent a step earlier), wait for S(t + 1) and send it,
// softmax of tile t, store P(t), issue S(t + 2), then release P(t). S is thus queued on the
// tensor cores ahead of warpgroup 1's P V(t) and runs under the next softmax, and each partial
// has a whole step to cross to the peer. P is double-buffered. K/V: 4 stages of 40 KB (this
// rank's 4 latent column tiles, then the whole rope tile, of which this rank reads its half), TMA
// boxes completing on one mbarrier a stage; thread kLoader of warpgroup 1 issues tile t + 4 as
// soon as every warp of warpgroup 1 has finished P V(t).
// Each CTA writes its 256 columns of the output (fp32 partials when split; rank 0 writes lse).
// Measured on the H100 (bench/NOTES.md, eighth session): correct, but slower than decode_wgmma
// (b128 h_q128 s_k 4096: 359 against 268 us); the exchange costs ~50-90 us of it.
//
// Exchange protocol: tile x (counted over the CTA's segments, the same count in both CTAs) goes
// into x[x % 2] of the peer, completing phase x / 2 of the peer's xfull[x % 2]. A CTA arms phase
// k + 1 of a buffer (expect_tx, thread 0) right after reading phase k; the peer writes tile x + 2
// only after receiving this CTA's tile x + 1, which this CTA sends after reading tile x, and
// each thread reads exactly the 32 values its twin thread in the peer writes (data dependence:
// the read has returned before the send that releases the overwrite is issued).
#pragma once
#include "flashmla/cluster.cuh"
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/softmax_rows.cuh"
#include "flashmla/tma.cuh"
#include "flashmla/wgmma.cuh"
#include "flashmla/wgmma_store.cuh"

// Profiling only (wrong results on purpose), through FLASHMLA_NVRTC_DEFINES: FLASHMLA_PROFILE_SKIP
// bit 0 drops the S exchange (each CTA's softmax runs on its own partial), bit 1 the softmax (P =
// S, no mask, max or exp), bit 2 the P V wgmma, bit 3 the K/V loads (their barriers complete with
// no bytes), bit 4 the S wgmma, bit 5 S with A from shared memory (the K tile) instead of Q's
// registers (an RS against SS timing), bit 6 half of the S exchange's bytes.
#ifndef FLASHMLA_PROFILE_SKIP
#define FLASHMLA_PROFILE_SKIP 0
#endif


namespace flashmla {

template <int kPageSize_, dev::Elem kElem_>
struct DecodePairTraits {
  static constexpr int kBlockQ = 64, kBlockK = 64, kThreads = 256, kStages = 4, kPageSize = kPageSize_;
  static constexpr int kLatent = 512, kDqk = 576;
  static constexpr dev::Elem kElem = kElem_;
  static constexpr int kTileBytes = 64 * 128;                  // one swizzled [64 rows x 64] tile
  static constexpr int kStageTiles = 5;                        // 4 latent column tiles + rope
  static constexpr int kStageBytes = kStageTiles * kTileBytes;  // 40 KB
  static constexpr int kQSteps = 18;                           // k16 steps of this rank's d_qk
  static constexpr int kXParts = FLASHMLA_PROFILE_SKIP & 64 ? 4 : 8;  // 16-byte pieces a thread sends
  static constexpr int kXBytes = kXParts * 16 * 128;             // one S partial (fp32)
  static constexpr unsigned kVLeadingBytes = kTileBytes, kVStrideBytes = 1024;
  static_assert((kPageSize & (kPageSize - 1)) == 0, "page_size is a power of two");
  static constexpr int kBoxRows = kPageSize < 64 ? kPageSize : 64, kBoxes = 64 / kBoxRows;

  struct SharedPlan {
    alignas(1024) unsigned char kv[kStages][kStageBytes];
    alignas(1024) unsigned char p[2][kTileBytes];  // P of tiles t % 2: written while P V reads the other
    float4 x[2][8 * 128];  // the peer's S partials: [buffer][j * 128 + thread] = s[4j .. 4j + 3]
    float row_scale[2][kBlockQ];
    float row_sum[kBlockQ];
    float row_m[kBlockQ];
    unsigned long long full[kStages];  // TMA: the stage's tile has landed
    unsigned long long xfull[2];       // the peer's S partial has landed in x[b]
  };
};

template <class T>
struct DecodePair {
  using u32 = dev::u32;
  using u16 = dev::u16;
  using Plan = typename T::SharedPlan;
  // Named barriers; kPReady + b and kPFree + b belong to P buffer b = t % 2.
  static constexpr int kPReady = 1;  // P(t), row_scale(t) written (warpgroup 0 -> 1): 1, 2
  static constexpr int kPFree = 3;   // P V(t) done: buffer t % 2 may be overwritten (1 -> 0): 3, 4
  static constexpr int kStats = 5;   // row sums and maxima of the segment written (0 -> 1)
  static constexpr int kStageDone = 6;  // warpgroup 1's P V(t) done, its stage may be reloaded (1 only)
  static constexpr int kLoader = 128;

  const DecodeParams& p;
  Plan& sm;
  const int tid, lane, warp, wg, kv_head, row0, hpk, rows_total;
  const u32 rank, peer;
  u32 phase = 0;  // bit s: parity of stage s's next completion (each thread tracks its waits)
  u32 xseq = 0;   // S partials exchanged so far (warpgroup 0)
  u32 qa[T::kQSteps][4];  // warpgroup 0: this thread's A fragments of Q_r

  __device__ DecodePair(const DecodeParams& params, Plan& plan)
      : p(params),
        sm(plan),
        tid(threadIdx.x),
        lane(threadIdx.x % 32),
        warp((threadIdx.x / 32) % 4),
        wg(__shfl_sync(0xffffffffu, threadIdx.x / 128, 0)),
        kv_head(blockIdx.z),
        row0((blockIdx.x / 2) * T::kBlockQ),
        hpk(params.h_q / params.h_kv),
        rows_total(params.s_q * (params.h_q / params.h_kv)),
        rank(dev::cluster_rank()),
        peer(dev::cluster_rank() ^ 1u) {}

  // Thread kLoader: this rank's column tiles of the tile of keys at k0 into stage `stage`.
  __device__ void load_kv(int k0, int stage, const int (&pg)[T::kBoxes]) const {
    constexpr bool skip = FLASHMLA_PROFILE_SKIP & 8;
    int boxes = 0;
#pragma unroll
    for (int i = 0; i < T::kBoxes; ++i) boxes += pg[i] >= 0 && !skip;
    const u32 bar = dev::smem_u32(&sm.full[stage]);
    dev::mbarrier_arrive_expect_tx(bar, T::kStageTiles * boxes * T::kBoxRows * 128);
#pragma unroll
    for (int pos = 0; pos < T::kStageTiles; ++pos) {
      const int col = pos < 4 ? 256 * static_cast<int>(rank) + 64 * pos : 512;
#pragma unroll
      for (int i = 0; i < T::kBoxes; ++i)
        if (pg[i] >= 0 && !skip) {
          const u32 dst = dev::smem_u32(sm.kv[stage] + pos * T::kTileBytes + i * T::kBoxRows * 128);
          dev::tma_load_4d(dst, p.k_tmap, col, (k0 + i * T::kBoxRows) % T::kPageSize, kv_head, pg[i], bar);
        }
    }
  }
  __device__ void wait_kv(int stage) {
    dev::mbarrier_wait(dev::smem_u32(&sm.full[stage]), (phase >> stage) & 1u);
    phase ^= 1u << stage;
  }

  // Warpgroup 0: Q_r's fragments (rows r_lo, r_hi; a[0] row lo k 2c, a[1] row hi, a[2] k + 8,
  // a[3] both), zero for rows past rows_total.
  __device__ void load_q(int bi, int r_lo, int r_hi) {
    const int c = lane % 4;
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + (i ? r_hi : r_lo);
      const bool valid = row < rows_total;
      const int s = valid ? row / hpk : 0, h = kv_head * hpk + (valid ? row % hpk : 0);
      const u16* src = static_cast<const u16*>(p.q) + bi * p.q_stride_b + s * p.q_stride_s + h * p.q_stride_h;
#pragma unroll
      for (int ks = 0; ks < T::kQSteps; ++ks) {
        const int d0 = ks < 16 ? 256 * static_cast<int>(rank) + 16 * ks : 512 + 32 * static_cast<int>(rank) + 16 * (ks - 16);
        qa[ks][i] = valid ? *reinterpret_cast<const u32*>(src + d0 + 2 * c) : 0u;
        qa[ks][2 + i] = valid ? *reinterpret_cast<const u32*>(src + d0 + 8 + 2 * c) : 0u;
      }
    }
  }

  // Warpgroup 0: S_r of the tile in `stage` into sa (issued and committed, not waited for).
  __device__ void issue_s(float (&sa)[32], int stage) const {
    const dev::u64 base = dev::smem_desc_sw128(dev::smem_u32(sm.kv[stage]), 16, 1024);
    const u32 rope = 4 * T::kTileBytes + 64 * rank;  // this rank's two k16 steps of rope
    dev::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 16 ? 0 : T::kQSteps); ++ks) {
      const dev::u64 d =
          dev::desc_advance(base, ks < 16 ? (ks / 4) * T::kTileBytes + (ks % 4) * 32 : rope + (ks - 16) * 32);
      if (FLASHMLA_PROFILE_SKIP & 32)  // profiling: A from shared memory (the K tile itself) instead of Q's registers
        dev::wgmma_m64n64k16<T::kElem, 0>(sa, d, d, ks > 0);
      else
        dev::wgmma_m64n64k16_rs<T::kElem, 0>(sa, qa[ks], d, ks > 0);
    }
    dev::wgmma_commit();
  }

  // Warpgroup 0: this thread's 32 values of S_r into the peer's x[xseq % 2].
  __device__ void send_s(const float (&sa)[32]) const {
    if (FLASHMLA_PROFILE_SKIP & 1) return;
    const u32 b = xseq & 1u;
    const u32 dst = dev::map_shared(dev::smem_u32(&sm.x[b][tid]), peer);
    const u32 bar = dev::map_shared(dev::smem_u32(&sm.xfull[b]), peer);
#pragma unroll
    for (int j = 0; j < T::kXParts; ++j) dev::st_async_v4(dst + j * 128 * 16, sa[4 * j], sa[4 * j + 1], sa[4 * j + 2], sa[4 * j + 3], bar);
  }
  // Warpgroup 0: S = S_r + the peer's S, then arms the buffer's next phase.
  __device__ void receive_s(float (&sa)[32]) {
    if (FLASHMLA_PROFILE_SKIP & 1) return;
    const u32 b = xseq & 1u;
    const u32 bar = dev::smem_u32(&sm.xfull[b]);
    // The st.async bytes complete on this barrier like a TMA's, so the CTA-scope wait sees them
    // (a cluster-scope acquire compiles to an L1 invalidation and measured the same).
    dev::mbarrier_wait(bar, (xseq >> 1) & 1u);
#pragma unroll
    for (int j = 0; j < T::kXParts; ++j) {
      const float4 v = sm.x[b][j * 128 + tid];
      sa[4 * j] += v.x, sa[4 * j + 1] += v.y, sa[4 * j + 2] += v.z, sa[4 * j + 3] += v.w;
    }
    if (tid == 0) dev::mbarrier_arrive_expect_tx(bar, T::kXBytes);
    ++xseq;
  }

  // Rows [valid, 64) of the stage's V tiles hold keys past the end (or an older tile): zeroed
  // so that P V, whose P is 0 there, reads finite values (warpgroup 0).
  __device__ void zero_tail_rows(int stage, int valid) const {
    for (int e = tid; e < 4 * 64 * 8; e += 128) {
      const int tile = e / 512, r = (e / 8) % 64, chunk = e % 8;
      if (r >= valid) dev::st_shared_zero16(dev::smem_u32(sm.kv[stage] + tile * T::kTileBytes + r * 128 + chunk * 16));
    }
  }

  struct RowState {
    float m_run[2], l_part[2];
    int key_limit[2];
  };

  // Warpgroup 0, tile t of the segment. On entry S(t) (this rank's part, already sent) is
  // complete in `cur` and S(t + 1) is in flight into `nxt`. The step adds the peer's part of
  // S(t) (sent a whole step ago), sends S(t + 1), runs the softmax of tile t and stores P(t),
  // then issues S(t + 2) into `cur` before releasing P(t), so that S is queued on the tensor
  // cores ahead of warpgroup 1's P V(t) and runs under the next softmax. Past the segment's end
  // a dummy S on tile t is issued (discarded), so that every path has the same S in flight: a
  // conditional one made ptxas serialize the wgmmas (C7515).
  __device__ void s_step(float (&cur)[32], float (&nxt)[32], int t, int n_tiles, int k_begin, int k_end,
                         RowState& rs, int r_lo, int r_hi) {
    constexpr int S = T::kStages;
    const int c = lane % 4;
    receive_s(cur);
    dev::wgmma_wait<0>();  // S(t + 1)
    if (t + 1 < n_tiles) send_s(nxt);
    const int k0 = k_begin + t * T::kBlockK;
    if (!(FLASHMLA_PROFILE_SKIP & 2)) mask_rows(cur, k0, rs.key_limit, c);
    float m_raw[2] = {0.f, 0.f};
    if (!(FLASHMLA_PROFILE_SKIP & 2)) row_max(cur, m_raw);
    float neg_m[2], scale[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float m_new = fmaxf(rs.m_run[i], m_raw[i] * p.scale_log2);
      const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
      scale[i] = dev::exp2_approx(rs.m_run[i] - m_use);
      rs.l_part[i] *= scale[i];
      rs.m_run[i] = m_new;
      neg_m[i] = -m_use;
    }
    if (k_end - k0 < T::kBlockK) zero_tail_rows(t % S, k_end - k0);
    const int b = t & 1;
    if (t >= 2) dev::named_barrier_sync(kPFree + b, T::kThreads);  // P V(t - 2) has read buffer b
    if (c == 0) sm.row_scale[b][r_lo] = scale[0], sm.row_scale[b][r_hi] = scale[1];
    store_p_rows<T::kElem, (FLASHMLA_PROFILE_SKIP & 2) != 0>(cur, p.scale_log2, neg_m, rs.l_part,
                                                            dev::smem_u32(sm.p[b]), warp, lane);
    dev::fence_proxy_async_smem();
    const bool more2 = t + 2 < n_tiles;
    if (more2) wait_kv((t + 2) % S);
    issue_s(cur, (more2 ? t + 2 : t) % S);
    dev::named_barrier_arrive(kPReady + b, T::kThreads);
  }

  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    constexpr int S = T::kStages;
    const int k_begin = tile_lo * T::kBlockK;
    const int k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n_tiles = tile_hi - tile_lo;
    const int g = lane / 4;
    const int r_lo = 16 * warp + g, r_hi = r_lo + 8;

    __syncthreads();  // the previous segment no longer reads shared memory
    if (wg == 0) {
      RowState rs;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int row = row0 + (i ? r_hi : r_lo);
        const int s = min(row / hpk, p.s_q - 1);
        rs.key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
        rs.m_run[i] = dev::neg_inf();
        rs.l_part[i] = 0.f;
      }
      load_q(bi, r_lo, r_hi);
      float sa0[32], sa1[32];
#pragma unroll
      for (int j = 0; j < 32; ++j) sa0[j] = 0.f, sa1[j] = 0.f;
      wait_kv(0);
      issue_s(sa0, 0);
      if (n_tiles > 1) wait_kv(1);
      issue_s(sa1, n_tiles > 1 ? 1 : 0);
      dev::wgmma_wait<1>();
      send_s(sa0);
      // Unrolled by two so that ptxas sees the buffers apart; every exit leaves the loop directly
      // (an exit through the back edge would carry another buffer in flight into the first step,
      // and ptxas then serializes the wgmmas: C7514).
      for (int t = 0;; t += 2) {
        s_step(sa0, sa1, t, n_tiles, k_begin, k_end, rs, r_lo, r_hi);
        if (t + 1 >= n_tiles) break;
        s_step(sa1, sa0, t + 1, n_tiles, k_begin, k_end, rs, r_lo, r_hi);
        if (t + 2 >= n_tiles) break;
      }
      dev::wgmma_wait<0>();  // the dummy S past the end
      const int c = lane % 4;
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float l = dev::warp_sum_xor<2>(rs.l_part[i]);
        if (c == 0) sm.row_sum[i ? r_hi : r_lo] = l, sm.row_m[i ? r_hi : r_lo] = rs.m_run[i];
      }
      dev::named_barrier_arrive(kStats, T::kThreads);
    } else {
      int pages[T::kBoxes];
      if (tid == kLoader) {
        for (int t = 0; t < min(S, n_tiles); ++t) {
          tile_pages<T::kBoxes, T::kBoxRows, T::kPageSize>(p, bi, k_begin + t * T::kBlockK, k_end, pages);
          load_kv(k_begin + t * T::kBlockK, t, pages);
        }
        tile_pages<T::kBoxes, T::kBoxRows, T::kPageSize>(p, bi, k_begin + S * T::kBlockK, k_end, pages);
      }
      float o[128];
#pragma unroll
      for (int j = 0; j < 128; ++j) o[j] = 0.f;
      for (int t = 0; t < n_tiles; ++t) {
        const int b = t & 1;
        const u32 p_base = dev::smem_u32(sm.p[b]);
        dev::named_barrier_sync(kPReady + b, T::kThreads);
        wait_kv(t % S);  // complete (warpgroup 0 waited before S): acquires the tile
        const float s_lo = sm.row_scale[b][r_lo], s_hi = sm.row_scale[b][r_hi];
        if (__any_sync(0xffffffffu, s_lo != 1.f || s_hi != 1.f)) {
#pragma unroll
          for (int j = 0; j < 32; ++j) o[4 * j] *= s_lo, o[4 * j + 1] *= s_lo, o[4 * j + 2] *= s_hi, o[4 * j + 3] *= s_hi;
        }
        const dev::u64 p_desc = dev::smem_desc_sw128(p_base, 16, 1024),
                       v_desc = dev::smem_desc_sw128(dev::smem_u32(sm.kv[t % S]), T::kVLeadingBytes, T::kVStrideBytes);
        dev::wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 4 ? 0 : 4); ++ks)
          dev::wgmma_m64n256k16<T::kElem, 1>(o, dev::desc_advance(p_desc, ks * 32), dev::desc_advance(v_desc, ks * 16 * 128));
        dev::wgmma_commit();
        dev::wgmma_wait<0>();
        if (t + 2 < n_tiles) dev::named_barrier_arrive(kPFree + b, T::kThreads);
        // Stage t % 4 is free once every warp of this warpgroup has finished P V(t) (S(t) was
        // waited for long before): tile t + 4 goes there, two steps before its S is issued.
        if (t + S < n_tiles) {
          dev::named_barrier_sync(kStageDone, 128);
          if (tid == kLoader) {
            load_kv(k_begin + (t + S) * T::kBlockK, t % S, pages);
            tile_pages<T::kBoxes, T::kBoxRows, T::kPageSize>(p, bi, k_begin + (t + S + 1) * T::kBlockK, k_end, pages);
          }
        }
      }
      dev::grid_launch_dependents();
      dev::named_barrier_sync(kStats, T::kThreads);
      wgmma_store<T::kElem, T::kLatent>(p, {sm.row_sum[r_lo], sm.row_sum[r_hi]}, {sm.row_m[r_lo], sm.row_m[r_hi]}, row0,
                                        rows_total, hpk, kv_head, static_cast<int>(rank), lane, bi, split_idx, n_splits,
                                        o, r_lo, r_hi);
    }
  }
};

template <class T>
__device__ __forceinline__ void decode_pair_kernel(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  DecodePair<T> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  if (threadIdx.x == 0) {
    dev::prefetch_tensormap(p.k_tmap);
    for (int s = 0; s < T::kStages; ++s) dev::mbarrier_init(dev::smem_u32(&cta.sm.full[s]), 1);
    for (int b = 0; b < 2; ++b) dev::mbarrier_init(dev::smem_u32(&cta.sm.xfull[b]), 1);
    dev::fence_mbarrier_init();
    for (int b = 0; b < 2; ++b) dev::mbarrier_arrive_expect_tx(dev::smem_u32(&cta.sm.xfull[b]), T::kXBytes);
  }
  dev::cluster_sync();  // both CTAs' barriers exist before either sends
  for_each_segment<T::kBlockK>(p, cta);
  dev::cluster_sync();  // neither leaves while the other may still address its shared memory
}

}  // namespace flashmla
