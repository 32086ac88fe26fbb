// decode_wgmma with 32-key tiles and a num_stages-deep K/V pipeline (config q64-k32-w8-s3/s4),
// so that S of the next tile runs on the tensor cores while warpgroup 0 does the softmax of
// this one. With 64-key tiles only two stages fit beside Q, and a stage is free only after the
// P V that reads it, which leaves its next load no time to land (bench/NOTES.md).
//
// One CTA = (q tile of 64 rows, partition, kv head), 256 threads:
//   warpgroup 0  per tile t: S(t+1) = Q K(t+1)^T (36 x wgmma m64n32k16) issued before the
//                softmax of S(t); P(t) -> shared memory; O_left += P(t) V(t) (2 x m64n256k16).
//   warpgroup 1  issues the K/V loads (cp.async, num_stages tiles ahead) and O_right += P V.
// Shared memory: Q as 9 swizzled [64 x 64] tiles; num_stages K/V tiles as 9 swizzled
// [32 x 64] tiles each; one swizzled [64 x 64] P tile whose column halves alternate between
// tiles (P(t) in columns 32 (t % 2) ..); row scales per half; row sums and maxima.
//
// Named barriers (producer arrives, consumer syncs; 256 threads each unless noted), each used
// exactly once per tile it names, so every segment leaves them idle:
//   kFull + s   stage s holds tile t (warpgroup 1 -> 0)
//   kFree + s   warpgroup 0 is done reading stage s, tile t (0 -> 1; only if t + S < n)
//   kReady + h  P half h and its scales are written (0 -> 1)
//   kPFree + h  warpgroup 1 is done reading P half h (1 -> 0; only if t + 2 < n)
//   kWg0        warpgroup 0's own warps (128 threads), before wgmma reads their P rows
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/wgmma.cuh"
#include "flashmla/wgmma_store.cuh"

namespace flashmla {

template <int kStages_, int kPageSize_, dev::Elem kElem_>
struct DecodeWgmmaPipeTraits {
  static constexpr int kBlockQ = 64, kBlockK = 32, kThreads = 256, kStages = kStages_, kPageSize = kPageSize_;
  static constexpr int kLatent = 512, kRope = 64, kDqk = 576;
  static constexpr dev::Elem kElem = kElem_;
  static constexpr int kTiles = kDqk / 64;      // 64-element column tiles of a row
  static constexpr int kQTileBytes = 64 * 128;  // swizzled [64 rows x 64] (Q, P)
  static constexpr int kKTileBytes = 32 * 128;  // swizzled [32 rows x 64] (K/V)
  static constexpr int kKRowsBytes = kTiles * kKTileBytes;
  static_assert(kStages >= 3 && kStages <= 4, "3 or 4 stages of 32 keys (4 fill 227 KB)");
  static_assert((kPageSize & (kPageSize - 1)) == 0, "page_size is a power of two");

  struct SharedPlan {
    alignas(1024) unsigned char q[kTiles * kQTileBytes];
    alignas(1024) unsigned char kv[kStages][kKRowsBytes];
    alignas(1024) unsigned char p[kQTileBytes];
    float row_scale[2][kBlockQ];
    float row_sum[kBlockQ];
    float row_m[kBlockQ];
  };
};

template <class T>
struct DecodeWgmmaPipe {
  using u32 = dev::u32;
  using u16 = dev::u16;
  using Plan = typename T::SharedPlan;
  static constexpr int S = T::kStages;
  static constexpr int kFull = 1, kFree = kFull + S, kReady = kFree + S, kPFree = kReady + 2, kWg0 = kPFree + 2;
  static_assert(kWg0 <= 15, "16 hardware barriers");
  static constexpr int kPasses = T::kBlockK / 16;  // rows per loading thread (128 threads, 8 per row)

  const DecodeParams& p;
  Plan& sm;
  const int tid, lane, warp, wg, kv_head, row0, hpk, rows_total;

  __device__ DecodeWgmmaPipe(const DecodeParams& params, Plan& plan)
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

  static __device__ __forceinline__ void arrive(int id) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(T::kThreads) : "memory");
  }
  static __device__ __forceinline__ void sync(int id) { dev::named_barrier_sync(id, T::kThreads); }

  // Row r of a swizzled tile set (tiles `tile_bytes` apart) <- 16-byte chunks c0, c0 + 8, ...
  __device__ void copy_row(unsigned char* tiles, int tile_bytes, int r, const u16* src, bool valid) {
    const int c0 = tid % 8;
    const u32 base = dev::smem_u32(tiles + r * 128 + (((c0 ^ r) & 7) << 4));
#pragma unroll
    for (int t = 0; t < T::kTiles; ++t) dev::cp_async_16(base + t * tile_bytes, src + t * 64 + c0 * 8, valid ? 16 : 0);
  }

  __device__ void load_q(int bi) {
#pragma unroll
    for (int r = tid / 8; r < T::kBlockQ; r += T::kThreads / 8) {
      const int row = row0 + r;
      const bool valid = row < rows_total;
      const int s = valid ? row / hpk : 0, h = kv_head * hpk + (valid ? row % hpk : 0);
      copy_row(sm.q, T::kQTileBytes, r,
               static_cast<const u16*>(p.q) + bi * p.q_stride_b + s * p.q_stride_s + h * p.q_stride_h, valid);
    }
  }

  // Warpgroup 1: the tile at k0 into `stage` (rows past k_end zero-filled), one commit group.
  __device__ void load_kv(int bi, int k0, int k_end, int stage) {
    const int lt = tid - 128;
    const int* table = p.block_table + bi * p.block_table_stride;
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = lt / 8 + 16 * i, pos = k0 + r;
      const int page = pos < k_end ? table[pos / T::kPageSize] : -1;
      const u16* src = static_cast<const u16*>(p.k_cache) + static_cast<long long>(max(page, 0)) * p.k_stride_block +
                       (pos % T::kPageSize) * p.k_stride_row + kv_head * p.k_stride_head;
      copy_row(sm.kv[stage], T::kKTileBytes, r, src, page >= 0);
    }
    dev::cp_async_commit();
  }

  // cp.async.wait_group with a run-time count (0 .. S - 1).
  static __device__ __forceinline__ void cp_async_wait_upto(int pending) {
    if (pending <= 0)
      dev::cp_async_wait<0>();
    else if (pending == 1)
      dev::cp_async_wait<1>();
    else if (pending == 2)
      dev::cp_async_wait<2>();
    else
      dev::cp_async_wait<3>();
  }

  __device__ void s_tile(float (&s)[16], u32 q_base, u32 kv_base) {
#pragma unroll
    for (int j = 0; j < 16; ++j) s[j] = 0.f;
    dev::wgmma_fence();
#pragma unroll
    for (int tile = 0; tile < T::kTiles; ++tile)
#pragma unroll
      for (int ks = 0; ks < 4; ++ks)
        dev::wgmma_m64n32k16<T::kElem, 0>(s, dev::smem_desc_sw128(q_base + tile * T::kQTileBytes + ks * 32, 16, 1024),
                                          dev::smem_desc_sw128(kv_base + tile * T::kKTileBytes + ks * 32, 16, 1024), 1);
    dev::wgmma_commit();
  }

  // O (this warpgroup's 256 columns) += P(half) V(stage).
  __device__ void pv_tile(float (&o)[128], u32 p_half_base, u32 kv_base) {
    dev::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < 2; ++ks)
      dev::wgmma_m64n256k16<T::kElem, 1>(
          o, dev::smem_desc_sw128(p_half_base + ks * 32, 16, 1024),
          dev::smem_desc_sw128(kv_base + 4 * wg * T::kKTileBytes + ks * 16 * 128, T::kKTileBytes, 1024));
    dev::wgmma_commit();
  }

  static __device__ __forceinline__ void rescale(float (&o)[128], float s_lo, float s_hi) {
    if (__any_sync(0xffffffffu, s_lo != 1.f || s_hi != 1.f)) {
#pragma unroll
      for (int j = 0; j < 32; ++j) o[4 * j] *= s_lo, o[4 * j + 1] *= s_lo, o[4 * j + 2] *= s_hi, o[4 * j + 3] *= s_hi;
    }
  }

  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    const int k_begin = tile_lo * T::kBlockK;
    const int k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n = tile_hi - tile_lo;
    const int g = lane / 4, c = lane % 4;
    const int r_lo = 16 * warp + g, r_hi = r_lo + 8;  // this thread's rows of S and O

    __syncthreads();  // the previous segment no longer reads shared memory
    load_q(bi);
    dev::cp_async_commit();

    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.f;
    float m_run[2] = {dev::neg_inf(), dev::neg_inf()};
    float l_part[2] = {0.f, 0.f};
    const u32 q_base = dev::smem_u32(sm.q), p_base = dev::smem_u32(sm.p);
    auto kv_base = [&](int t) { return dev::smem_u32(sm.kv[t % S]); };

    if (wg == 1) {
      for (int t = 0; t < min(S, n); ++t) load_kv(bi, k_begin + t * T::kBlockK, k_end, t);
      for (int t = 0; t < n; ++t) {
        // Tile t landed (this thread's copies; the arrive publishes them). Loads issued after
        // it: the prologue's up to S - 1 (t = 0), else up to t + S - 2 (each iteration u + 1
        // issues tile u + S).
        cp_async_wait_upto(t == 0 ? min(S - 1, n - 1) : min(S - 2, n - 1 - t));
        dev::fence_proxy_async_smem();
        arrive(kFull + t % S);
        if (t > 0) {  // P V of tile t - 1 (its P was announced after warpgroup 0 saw tile t - 1)
          const int u = t - 1;
          sync(kReady + u % 2);
          rescale(o, sm.row_scale[u % 2][r_lo], sm.row_scale[u % 2][r_hi]);
          pv_tile(o, p_base + 64 * (u % 2), kv_base(u));
          dev::wgmma_wait<0>();
          if (u + 2 < n) arrive(kPFree + u % 2);
          if (u + S < n) {
            sync(kFree + u % S);
            load_kv(bi, k_begin + (u + S) * T::kBlockK, k_end, u % S);
          }
        }
      }
      if (n > 0) {
        const int u = n - 1;
        sync(kReady + u % 2);
        rescale(o, sm.row_scale[u % 2][r_lo], sm.row_scale[u % 2][r_hi]);
        pv_tile(o, p_base + 64 * (u % 2), kv_base(u));
        dev::wgmma_wait<0>();
      }
    } else if (n > 0) {
      int key_limit[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int row = row0 + (i ? r_hi : r_lo);
        const int s = min(row / hpk, p.s_q - 1);
        key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
      }
      dev::cp_async_wait<0>();  // this thread's part of Q
      dev::fence_proxy_async_smem();
      float s_cur[16], s_nxt[16];
      sync(kFull + 0);  // tile 0 and all of Q resident
      s_tile(s_cur, q_base, kv_base(0));
      dev::wgmma_wait<0>();
      for (int t = 0; t < n; ++t) {
        if (t + 1 < n) {
          sync(kFull + (t + 1) % S);
          s_tile(s_nxt, q_base, kv_base(t + 1));  // runs while this warpgroup does the softmax of t
        }
        // Online softmax of S(t) (log2 domain); this warp holds whole rows r_lo and r_hi.
        const int k0 = k_begin + t * T::kBlockK;
        float m_tile[2] = {dev::neg_inf(), dev::neg_inf()};
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int pos = k0 + 8 * j + 2 * c + (e & 1);
            const float v = pos <= key_limit[e >> 1] ? s_cur[4 * j + e] * p.scale_log2 : dev::neg_inf();
            s_cur[4 * j + e] = v;
            m_tile[e >> 1] = fmaxf(m_tile[e >> 1], v);
          }
        float scale[2];
        u32 packed[2][4];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const float m_new = fmaxf(m_run[i], dev::warp_max_xor<2>(m_tile[i]));
          const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
          scale[i] = dev::exp2_approx(m_run[i] - m_use);
          l_part[i] *= scale[i];
          m_run[i] = m_new;
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const float p0 = dev::exp2_approx(s_cur[4 * j + 2 * i] - m_use);
            const float p1 = dev::exp2_approx(s_cur[4 * j + 2 * i + 1] - m_use);
            l_part[i] += p0 + p1;
            packed[i][j] = dev::pack2<T::kElem>(p0, p1);
          }
        }
        const int h = t % 2;
        if (t >= 2) sync(kPFree + h);  // warpgroup 1 is done with P(t - 2)
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int r = i ? r_hi : r_lo;
          if (c == 0) sm.row_scale[h][r] = scale[i];
#pragma unroll
          for (int j = 0; j < 4; ++j)
            *reinterpret_cast<u32*>(sm.p + dev::swizzle128_offset(r, 32 * h + 8 * j + 2 * c)) = packed[i][j];
        }
        dev::fence_proxy_async_smem();
        dev::named_barrier_sync(kWg0, 128);
        arrive(kReady + h);
        rescale(o, scale[0], scale[1]);
        pv_tile(o, p_base + 64 * h, kv_base(t));
        dev::wgmma_wait<0>();  // P V(t) and S(t + 1)
        if (t + S < n) arrive(kFree + t % S);
#pragma unroll
        for (int j = 0; j < 16; ++j) s_cur[j] = s_nxt[j];
      }
    }
    dev::cp_async_wait<0>();  // a segment with no tiles still has Q in flight

    if (wg == 0) {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float l = dev::warp_sum_xor<2>(l_part[i]);
        if (c == 0) sm.row_sum[i ? r_hi : r_lo] = l, sm.row_m[i ? r_hi : r_lo] = m_run[i];
      }
    }
    __syncthreads();
    wgmma_store<T::kElem, T::kLatent>(p, sm.row_sum, sm.row_m, row0, rows_total, hpk, kv_head, wg, lane, bi, split_idx,
                                      n_splits, o, r_lo, r_hi);
  }
};

template <class T>
__device__ __forceinline__ void decode_wgmma_pipe_kernel(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  DecodeWgmmaPipe<T> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  for_each_segment<T::kBlockK>(p, cta);
}

}  // namespace flashmla
