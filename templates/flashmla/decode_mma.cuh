// decode_mma: split-KV MLA decode over a paged latent cache, sm_80 and later.
// mma.sync m16n8k16 (fp32 accumulation), cp.async pipeline kStages buffers deep.
//
// One CTA = (partition of the split-KV schedule, tile of kBlockQ query rows, kv head).
// Query rows of one (batch, kv head) are flattened as r = s * hpk + j, where hpk = h_q / h_kv
// and head h = kv_head * hpk + j, so all s_q * hpk rows share every K/V tile.
//
// Per K tile (kBlockK keys), three phases separated by __syncthreads:
//   1. S = Q K^T     warps tile S as kWarpsM x kWarpsN blocks of 16 rows x kSN*8 keys;
//                    row maxima meet in smem (red_max).
//   2. softmax       every thread derives the same new row max; P = exp2(S - m) -> smem
//                    (input dtype); the rescale factor of each row -> smem (row_scale).
//   3. O += P V      warps split the latent_dim output columns; every warp holds all
//                    kBlockQ rows of its columns in registers.
// Invariant: all threads holding a row agree on its running max m (same inputs, same order).
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"

namespace flashmla {

template <int kBlockQ_, int kBlockK_, int kWarps_, int kStages_, int kLatent_, int kRope_, int kPageSize_,
          dev::Elem kElem_>
struct DecodeMmaTraits {
  static constexpr int kBlockQ = kBlockQ_, kBlockK = kBlockK_, kWarps = kWarps_, kStages = kStages_;
  static constexpr int kLatent = kLatent_, kRope = kRope_, kPageSize = kPageSize_;
  static constexpr dev::Elem kElem = kElem_;
  static constexpr int kDqk = kLatent + kRope;
  static constexpr int kThreads = kWarps * 32;

  // S layout: kWarpsM row blocks of 16, kWarpsN column blocks of kSN n8-tiles.
  static constexpr int kWarpsM = (kBlockQ / 16) < kWarps ? (kBlockQ / 16) : kWarps;
  static constexpr int kWarpsN = kWarps / kWarpsM;
  static constexpr int kSN = kBlockK / (8 * kWarpsN);
  // O layout: warp w owns columns [w * kDvW, (w + 1) * kDvW) for all kBlockQ rows.
  static constexpr int kDvW = kLatent / kWarps;
  static constexpr int kOM = kBlockQ / 16, kON = kDvW / 8;

  // Shared-memory rows are padded by 16 bytes so that the 8 row addresses of one
  // ldmatrix fall in distinct 16-byte bank groups (row pitch = 16 mod 128 bytes).
  static constexpr int kQkPitch = kDqk + 8;
  static constexpr int kPPitch = kBlockK + 8;
  static constexpr int kChunksPerRow = kDqk / 8;  // 16-byte chunks

  static_assert(kBlockQ % 16 == 0 && kBlockQ >= 16, "block_size_q is a multiple of 16");
  static_assert(kWarps % kWarpsM == 0, "num_warps is a multiple of block_size_q / 16");
  static_assert(kSN >= 1 && kBlockK % (8 * kWarpsN) == 0, "each warp needs whole n8 tiles of S");
  static_assert(kLatent % (16 * kWarps) == 0, "each warp needs whole pairs of n8 tiles of O");
  static_assert(kDqk % 32 == 0, "d_qk is a multiple of 32 (two k16 steps per ldmatrix.x4)");
  static_assert(kBlockK % 16 == 0, "block_size_k is a multiple of 16");
  static_assert((kPageSize & (kPageSize - 1)) == 0, "page_size is a power of two");
  static_assert(kStages >= 1 && kStages <= 4, "1 to 4 pipeline stages");

  // Shared-memory plan, in bytes; sizeof(SharedPlan) is the launch's dynamic shared memory.
  struct SharedPlan {
    dev::u16 q[kBlockQ * kQkPitch];
    dev::u16 kv[kStages][kBlockK * kQkPitch];
    dev::u16 p[kBlockQ * kPPitch];
    float red[kWarpsN][kBlockQ];  // per-column-block row max, then row sum
    float row_scale[kBlockQ];     // exp2(m_old - m_new) of the current tile
    float row_m[kBlockQ];         // final running max (log2 domain)
  };
};

template <class T>
struct DecodeMma {
  using u32 = dev::u32;
  using u16 = dev::u16;
  using Plan = typename T::SharedPlan;

  const DecodeParams& p;
  Plan& sm;
  const int tid, lane, warp;
  const int kv_head, row0, hpk, rows_total;

  __device__ DecodeMma(const DecodeParams& params, Plan& plan)
      : p(params),
        sm(plan),
        tid(threadIdx.x),
        lane(threadIdx.x % 32),
        warp(threadIdx.x / 32),
        kv_head(blockIdx.z),
        row0(blockIdx.x * T::kBlockQ),
        hpk(params.h_q / params.h_kv),
        rows_total(params.s_q * (params.h_q / params.h_kv)) {}

  // Copies: 8 threads per row, each taking 16-byte chunks c0, c0 + 8, ... of it, so that one
  // warp instruction reads four whole 128-byte segments; a row's source address (a block
  // table lookup for K/V) is computed once per row, and all of a thread's lookups are
  // issued before its first copy.
  static constexpr int kRowThreads = 8;
  static constexpr int kRowsPerPass = T::kThreads / kRowThreads;
  static_assert(T::kChunksPerRow % kRowThreads == 0, "d_qk is a multiple of 64");

  // One pass: row r of dst <- 16-byte chunks c0, c0 + 8, ... of src (zeros when !valid).
  __device__ void copy_row(u16* dst, int r, const u16* src, bool valid) {
    const u32 base = dev::smem_u32(&dst[r * T::kQkPitch + (tid % kRowThreads) * 8]);
    src += (tid % kRowThreads) * 8;
#pragma unroll 3
    for (int j = 0; j < T::kChunksPerRow / kRowThreads; ++j)
      dev::cp_async_16(base + j * kRowThreads * 16, src + j * kRowThreads * 8, valid ? 16 : 0);
  }

  // Q rows [row0, row0 + kBlockQ) of batch bi; rows past rows_total are zero-filled.
  __device__ void load_q(int bi) {
#pragma unroll
    for (int r = tid / kRowThreads; r < T::kBlockQ; r += kRowsPerPass) {
      const int row = row0 + r;
      const bool valid = row < rows_total;
      const int s = valid ? row / hpk : 0, h = kv_head * hpk + (valid ? row % hpk : 0);
      copy_row(sm.q, r, static_cast<const u16*>(p.q) + bi * p.q_stride_b + s * p.q_stride_s + h * p.q_stride_h,
               valid);
    }
  }

  // Keys [k0, k0 + kBlockK) of batch bi into stage; keys at or past k_end are zero-filled.
  // The block-table lookups of all passes are issued before the first copy.
  __device__ void load_kv(int bi, int k0, int k_end, int stage) {
    constexpr int kPasses = T::kBlockK / kRowsPerPass;
    static_assert(T::kBlockK % kRowsPerPass == 0, "block_size_k is a multiple of num_warps * 4");
    const int* table = p.block_table + bi * p.block_table_stride;
    int page[kPasses];
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int pos = k0 + tid / kRowThreads + i * kRowsPerPass;
      page[i] = pos < k_end ? table[pos / T::kPageSize] : -1;
    }
#pragma unroll
    for (int i = 0; i < kPasses; ++i) {
      const int r = tid / kRowThreads + i * kRowsPerPass;
      const u16* src = static_cast<const u16*>(p.k_cache) + static_cast<long long>(max(page[i], 0)) * p.k_stride_block +
                       ((k0 + r) % T::kPageSize) * p.k_stride_row + kv_head * p.k_stride_head;
      copy_row(sm.kv[stage], r, src, page[i] >= 0);
    }
  }

  // Processes keys [tile_lo, tile_hi) * kBlockK of batch bi and writes the result: final
  // output when the batch has one split, else partial number split_idx.
  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    constexpr int S = T::kStages;
    const int k_begin = tile_lo * T::kBlockK;
    const int k_end = min(tile_hi * T::kBlockK, seqlen);
    const int n_tiles = tile_hi - tile_lo;

    const int g = lane / 4, c = lane % 4;
    const int wm = warp % T::kWarpsM, wn = warp / T::kWarpsM;

    // Largest visible key position of this thread's two S rows (wm*16 + g, +8).
    int key_limit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int row = row0 + wm * 16 + g + 8 * i;
      const int s = min(row / hpk, p.s_q - 1);
      key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
    }

    __syncthreads();  // shared memory of the previous segment is no longer read
    load_q(bi);
#pragma unroll
    for (int st = 0; st < S - 1; ++st) {
      if (st < n_tiles) load_kv(bi, k_begin + st * T::kBlockK, k_end, st);
      dev::cp_async_commit();
    }

    float o[T::kOM][T::kON][4];
#pragma unroll
    for (int i = 0; i < T::kOM; ++i)
#pragma unroll
      for (int n = 0; n < T::kON; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e) o[i][n][e] = 0.f;
    float m_run[2] = {dev::neg_inf(), dev::neg_inf()};
    float l_part[2] = {0.f, 0.f};

    for (int t = 0; t < n_tiles; ++t) {
      if constexpr (S == 1) {
        __syncthreads();  // the single buffer is free
        load_kv(bi, k_begin + t * T::kBlockK, k_end, 0);
        dev::cp_async_commit();
        dev::cp_async_wait<0>();
        __syncthreads();
      } else {
        dev::cp_async_wait<S - 2>();  // tile t has landed (S-1 groups were ahead of it)
        __syncthreads();              // ... for every thread; stage (t-1)%S is free
        const int next = t + S - 1;
        if (next < n_tiles) load_kv(bi, k_begin + next * T::kBlockK, k_end, next % S);
        dev::cp_async_commit();
      }
      const u16* kv = sm.kv[t % S];
      const int k0 = k_begin + t * T::kBlockK;

      // Phase 1: S = Q K^T for rows wm*16 + [0,16), keys wn*kSN*8 + [0, kSN*8).
      float s_acc[T::kSN][4];
#pragma unroll
      for (int j = 0; j < T::kSN; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) s_acc[j][e] = 0.f;
      const u32 q_base = dev::smem_u32(&sm.q[(wm * 16 + lane % 16) * T::kQkPitch + (lane / 16) * 8]);
      const u32 k_base = dev::smem_u32(&kv[(wn * T::kSN * 8 + lane % 8) * T::kQkPitch + (lane / 8) * 8]);
#pragma unroll 1
      for (int kk = 0; kk < T::kDqk; kk += 32) {
        u32 a0[4], a1[4];
        dev::ldmatrix_x4(a0, q_base + kk * 2);
        dev::ldmatrix_x4(a1, q_base + (kk + 16) * 2);
#pragma unroll
        for (int j = 0; j < T::kSN; ++j) {
          u32 b[4];
          dev::ldmatrix_x4(b, k_base + (j * 8 * T::kQkPitch + kk) * 2);
          dev::mma_16816<T::kElem>(s_acc[j], a0, b[0], b[1]);
          dev::mma_16816<T::kElem>(s_acc[j], a1, b[2], b[3]);
        }
      }

      // Phase 2: online softmax in the log2 domain.
      float m_tile[2] = {dev::neg_inf(), dev::neg_inf()};
#pragma unroll
      for (int j = 0; j < T::kSN; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int pos = k0 + wn * T::kSN * 8 + j * 8 + 2 * c + (e & 1);
          const float v = pos <= key_limit[e >> 1] ? s_acc[j][e] * p.scale_log2 : dev::neg_inf();
          s_acc[j][e] = v;
          m_tile[e >> 1] = fmaxf(m_tile[e >> 1], v);
        }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        m_tile[i] = dev::warp_max_xor<2>(m_tile[i]);
        if (c == 0) sm.red[wn][wm * 16 + g + 8 * i] = m_tile[i];
      }
      __syncthreads();
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = wm * 16 + g + 8 * i;
        float m_new = m_run[i];
#pragma unroll
        for (int w = 0; w < T::kWarpsN; ++w) m_new = fmaxf(m_new, sm.red[w][r]);
        // A row with no visible key yet keeps m = -inf; subtract 0 then, so exp2 gives 0, not NaN.
        const float m_use = m_new == dev::neg_inf() ? 0.f : m_new;
        const float scale = dev::exp2_approx(m_run[i] - m_use);
        if (wn == 0 && c == 0) sm.row_scale[r] = scale;
        l_part[i] *= scale;
        m_run[i] = m_new;
#pragma unroll
        for (int j = 0; j < T::kSN; ++j) {
          const float p0 = dev::exp2_approx(s_acc[j][2 * i] - m_use);
          const float p1 = dev::exp2_approx(s_acc[j][2 * i + 1] - m_use);
          l_part[i] += p0 + p1;
          const int col = wn * T::kSN * 8 + j * 8 + 2 * c;
          *reinterpret_cast<u32*>(&sm.p[r * T::kPPitch + col]) = dev::pack2<T::kElem>(p0, p1);
        }
      }
      __syncthreads();

      // Phase 3: O = O * row_scale + P V for this warp's columns.
#pragma unroll
      for (int i = 0; i < T::kOM; ++i) {
        const float s_lo = sm.row_scale[i * 16 + g], s_hi = sm.row_scale[i * 16 + g + 8];
#pragma unroll
        for (int n = 0; n < T::kON; ++n) {
          o[i][n][0] *= s_lo;
          o[i][n][1] *= s_lo;
          o[i][n][2] *= s_hi;
          o[i][n][3] *= s_hi;
        }
      }
      const u32 p_base = dev::smem_u32(&sm.p[(lane % 16) * T::kPPitch + (lane / 16) * 8]);
      const u32 v_base = dev::smem_u32(
          &kv[(lane % 8 + ((lane / 8) % 2) * 8) * T::kQkPitch + warp * T::kDvW + (lane / 16) * 8]);
#pragma unroll
      for (int ks = 0; ks < T::kBlockK; ks += 16) {
        u32 a[T::kOM][4];
#pragma unroll
        for (int i = 0; i < T::kOM; ++i) dev::ldmatrix_x4(a[i], p_base + (i * 16 * T::kPPitch + ks) * 2);
#pragma unroll
        for (int n2 = 0; n2 < T::kON / 2; ++n2) {
          u32 b[4];
          dev::ldmatrix_x4_trans(b, v_base + (ks * T::kQkPitch + n2 * 16) * 2);
#pragma unroll
          for (int i = 0; i < T::kOM; ++i) {
            dev::mma_16816<T::kElem>(o[i][2 * n2], a[i], b[0], b[1]);
            dev::mma_16816<T::kElem>(o[i][2 * n2 + 1], a[i], b[2], b[3]);
          }
        }
      }
    }
    dev::cp_async_wait<0>();

    // Epilogue: row sums meet in smem; normalise and store.
    float l_row[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) l_row[i] = dev::warp_sum_xor<2>(l_part[i]);
    __syncthreads();  // red (row maxima of the last tile) is no longer read
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int r = wm * 16 + g + 8 * i;
      if (c == 0) sm.red[wn][r] = l_row[i];
      if (wn == 0 && c == 0) sm.row_m[r] = m_run[i];
    }
    __syncthreads();
    store(bi, split_idx, n_splits, o);
  }

  __device__ void store(int bi, int split_idx, int n_splits, const float (&o)[T::kOM][T::kON][4]) {
    constexpr float kLn2 = 0.6931471805599453f;
    const int g = lane / 4, c = lane % 4;
    const bool direct = n_splits == 1;
    const int acc_idx = p.split_offsets[bi] + split_idx;
#pragma unroll
    for (int i = 0; i < T::kOM; ++i)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = i * 16 + g + 8 * half;
        const int row = row0 + r;
        if (row >= rows_total) continue;
        float l = 0.f;
#pragma unroll
        for (int w = 0; w < T::kWarpsN; ++w) l += sm.red[w][r];
        const bool empty = l == 0.f;
        const float inv_l = empty ? 0.f : 1.f / l;
        const float lse = empty ? (direct ? dev::pos_inf() : dev::neg_inf())
                                : (sm.row_m[r] + dev::log2_approx(l)) * kLn2;
        const int s = row / hpk, h = kv_head * hpk + row % hpk;
        const int col0 = warp * T::kDvW + 2 * c;
        if (direct) {
          u32* out = reinterpret_cast<u32*>(static_cast<u16*>(p.out) + bi * p.o_stride_b + s * p.o_stride_s +
                                            h * p.o_stride_h + col0);
#pragma unroll
          for (int n = 0; n < T::kON; ++n)
            out[n * 4] = dev::pack2<T::kElem>(o[i][n][2 * half] * inv_l, o[i][n][2 * half + 1] * inv_l);
          if (warp == 0 && c == 0) p.lse[(static_cast<long long>(bi) * p.h_q + h) * p.s_q + s] = lse;
        } else {
          const long long acc_row = (static_cast<long long>(acc_idx) * p.s_q + s) * p.h_q + h;
          float* out = p.o_accum + acc_row * T::kLatent + col0;
#pragma unroll
          for (int n = 0; n < T::kON; ++n) {
            float2 v;
            v.x = o[i][n][2 * half] * inv_l;
            v.y = o[i][n][2 * half + 1] * inv_l;
            *reinterpret_cast<float2*>(out + n * 8) = v;
          }
          if (warp == 0 && c == 0) p.lse_accum[acc_row] = lse;
        }
      }
  }
};

// Entry: the segments of this CTA's partition.
template <class T>
__device__ __forceinline__ void decode_mma_kernel(const DecodeParams& p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  DecodeMma<T> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  for_each_segment<T::kBlockK>(p, cta);
}

}  // namespace flashmla
