// decode_seesaw: split-KV MLA decode for sm_90a, two warpgroups in a "seesaw" schedule
// (FlashMLA's later Hopper schedule, written here from its description), K/V by TMA.
//
// One CTA = (tile of 64 query rows, partition, kv head), 256 threads. Keys go in pairs of 64-key
// blocks: block b0 in buffer K0, b1 = b0 + 1 in K1. Warpgroup w computes S = Q K^T of the block in
// buffer w; both warpgroups apply both blocks' P to their half of the output: warpgroup h owns O
// columns [256h, 256h + 256) (128 fp32 registers). m is the running row max (log2 units). Per
// pair, in the order of FlashMLA's wg0_subroutine / wg1_subroutine:
//   WG0: softmax(S0): m0 = max(m, .), scale0;   | WG1: (waits for m0)
//        m0, scale0 -> smem (kScale0Ready)       |      softmax(S1): m1 = max(m0, .), scale1;
//        O_L = O_L scale0 + P0 V0_L (P0 in regs)|      P1 -> Q's rope tile, m1, scale1 (kP1Ready)
//        (waits for m1) P0 scale1 -> smem       |      O_R = O_R scale0 scale1 + P1 V1_R (regs)
//        (kP0Ready); O_L = O_L scale1 + P1 V1_L |      (waits for P0) O_R += P0 V0_R (smem)
//        S0' = Q K0'^T of the next pair        |      S1' = Q K1'^T of the next pair
// so warpgroup 1's softmax runs under warpgroup 0's P0 V0_L, and both P's reach the other
// warpgroup relative to m1. The two softmaxes stay in series (m1 needs m0).
// Loads: TMA boxes of 64 columns x min(page, 64) rows, one mbarrier per 64-column tile of each
// buffer. A tile is refilled with the block two ahead by the warpgroup that reads it last, once
// its wgmma on it has completed: the rope tile (8) by the buffer's S warpgroup at the start of
// the pair, V_L (tiles 0-3) by warpgroup 0, V_R (4-7) by warpgroup 1. S waits tile by tile and
// reads first the half its own warpgroup refilled earlier (qk_first).
// Shared memory: Q (9 tiles), K0, K1 (9 tiles each), P0 (one tile), row statistics, barriers:
// 231,424 bytes. P1 lives in Q's rope tile: each thread first copies its A fragment of that tile
// into registers (rq8) and S uses it from there.
// Keys past the sequence end: S is masked to -inf; V rows there are zeroed before P V reads
// them (a page past the end is not loaded, and 0 * garbage could be NaN).
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/partition.cuh"
#include "flashmla/ptx.cuh"
#include "flashmla/softmax_rows.cuh"
#include "flashmla/sw128_rows.cuh"
#include "flashmla/tma.cuh"
#include "flashmla/wgmma.cuh"
#include "flashmla/wgmma_store.cuh"

// Profiling only (wrong results on purpose), set through FLASHMLA_NVRTC_DEFINES:
// FLASHMLA_PROFILE_SKIP bit 0 drops the S wgmma after the prologue, bit 2 the P V wgmma,
// bit 3 the K/V loads after the prologue (their barriers complete with no bytes), bit 4 the
// block-table reads of the loop, bit 5 the softmax (P = S: no mask, max or exp).
#ifndef FLASHMLA_PROFILE_SKIP
#define FLASHMLA_PROFILE_SKIP 0
#endif
// Checking only: FLASHMLA_SEESAW_READY_SYNC=1 makes the writer of each hand-over (kScale0Ready,
// kP1Ready, kP0Ready) wait at the barrier (bar.sync) instead of arriving (bar.arrive). compute-
// sanitizer's racecheck does not model bar.arrive -> bar.sync, which the PTX memory model orders
// (bench/NOTES.md); with the writers syncing it sees the order and reports no hazard.
#ifndef FLASHMLA_SEESAW_READY_SYNC
#define FLASHMLA_SEESAW_READY_SYNC 0
#endif

namespace flashmla {

template <int kPageSize_, dev::Elem kElem_>
struct DecodeSeesawTraits {
  static constexpr int kBlockQ = 64, kBlockK = 64, kThreads = 256, kPageSize = kPageSize_;
  static constexpr int kLatent = 512, kDqk = 576, kTiles = 9;
  static constexpr dev::Elem kElem = kElem_;
  static constexpr int kTileBytes = kSw128TileBytes, kRowsBytes = kTiles * kTileBytes;
  static constexpr int kBoxRows = kPageSize < 64 ? kPageSize : 64;  // rows of one TMA box
  static constexpr int kBoxes = 64 / kBoxRows;                       // boxes per 64-key column tile
  static constexpr unsigned kVLeadingBytes = kTileBytes, kVStrideBytes = 1024;  // V as MN-major B
  static_assert((kPageSize & (kPageSize - 1)) == 0 && kPageSize >= 16, "page_size is a power of two >= 16");

  struct SharedPlan {
    alignas(1024) unsigned char q[kRowsBytes];  // tile 8 (rope) holds P1 once rq8 is loaded
    alignas(1024) unsigned char kv[2][kRowsBytes];
    alignas(1024) unsigned char p0[kTileBytes];
    float m[kBlockQ];       // running row max (log2 units; -inf: no key yet)
    float scale0[kBlockQ];  // this pair's rescale factors
    float scale1[kBlockQ];
    float l[2][kBlockQ];    // each warpgroup's row sums, for the epilogue
    unsigned long long bar[2][kTiles];  // TMA completion, per buffer and column tile
  };
};

template <class T>
struct DecodeSeesaw {
  using u32 = dev::u32;
  using Plan = typename T::SharedPlan;
  // Named barriers (256 threads: one warpgroup arrives, the other syncs), and one per warpgroup.
  static constexpr int kScale0Ready = 1, kP1Ready = 2, kP0Ready = 3, kWarpgroupBar = 4;

  const DecodeParams& p;
  Plan& sm;
  const int tid, idx, lane, warp, wg, c, r_lo, r_hi, kv_head, row0, hpk, rows_total;
  u32 phase = 0;  // parity of the next load of buffer wg to wait for

  __device__ DecodeSeesaw(const DecodeParams& params, Plan& plan)
      : p(params),
        sm(plan),
        tid(threadIdx.x),
        idx(threadIdx.x % 128),
        lane(threadIdx.x % 32),
        warp((threadIdx.x / 32) % 4),
        wg(__shfl_sync(0xffffffffu, threadIdx.x / 128, 0)),  // warp-uniform, visibly to ptxas
        c(threadIdx.x % 4),
        r_lo(16 * ((threadIdx.x / 32) % 4) + (threadIdx.x % 32) / 4),
        r_hi(16 * ((threadIdx.x / 32) % 4) + (threadIdx.x % 32) / 4 + 8),
        kv_head(blockIdx.z),
        row0(blockIdx.x * T::kBlockQ),
        hpk(params.h_q / params.h_kv),
        rows_total(params.s_q * (params.h_q / params.h_kv)) {
    if (tid == 0) {
      dev::prefetch_tensormap(p.k_tmap);
      for (int b = 0; b < 2; ++b)
        for (int t = 0; t < T::kTiles; ++t) dev::mbarrier_init(dev::smem_u32(&sm.bar[b][t]), 1);
      dev::fence_mbarrier_init();
    }
    __syncthreads();
  }

  // ---- loads ----------------------------------------------------------------------------------
  // Cache blocks of the boxes of the 64-key block at k0 (-1: past k_end, not loaded).
  __device__ void fetch_pages(int bi, int k0, int k_end, int (&pg)[T::kBoxes]) const {
    tile_pages<T::kBoxes, T::kBoxRows, T::kPageSize>(p, bi, k0, k_end, pg);
  }
  // The pages of the next pair, spread over warp 0's lanes (one register each, fetched early so
  // the block table's latency stays off the loads' path): lane j * kBoxes + i holds the cache
  // block of box i of block (j ? k0b : k0a).
  __device__ int fetch_pair_pages(int bi, int k0a, int k0b, int k_end) const {
    if (FLASHMLA_PROFILE_SKIP & 16) return 0;
    const int j = lane / T::kBoxes, i = lane % T::kBoxes;
    const int pos = (j ? k0b : k0a) + i * T::kBoxRows;
    return j < 2 && pos < k_end ? p.block_table[bi * p.block_table_stride + pos / T::kPageSize] : -1;
  }
  // Warp 0 of a warpgroup (all lanes): lane 0 loads tiles [t0, t1) of block j of the pair.
  __device__ void load_tiles_warp(int buf, int k0, int pages, int j, int t0, int t1) {
    int pg[T::kBoxes];
#pragma unroll
    for (int i = 0; i < T::kBoxes; ++i) pg[i] = __shfl_sync(0xffffffffu, pages, j * T::kBoxes + i);
    if (lane == 0) {
      if (FLASHMLA_PROFILE_SKIP & 8) {
        for (int t = t0; t < t1; ++t) dev::mbarrier_arrive_expect_tx(dev::smem_u32(&sm.bar[buf][t]), 0);
        return;
      }
      load_tiles(buf, k0, pg, t0, t1);
    }
  }
  // One thread: column tiles [t0, t1) of the block at k0 into buffer buf.
  __device__ void load_tiles(int buf, int k0, const int (&pg)[T::kBoxes], int t0, int t1) {
    int boxes = 0;
#pragma unroll
    for (int i = 0; i < T::kBoxes; ++i) boxes += pg[i] >= 0;
    for (int t = t0; t < t1; ++t) {
      const u32 bar = dev::smem_u32(&sm.bar[buf][t]);
      dev::mbarrier_arrive_expect_tx(bar, boxes * T::kBoxRows * 128);
#pragma unroll
      for (int i = 0; i < T::kBoxes; ++i)
        if (pg[i] >= 0)
          dev::tma_load_4d(dev::smem_u32(sm.kv[buf] + t * T::kTileBytes + i * T::kBoxRows * 128), p.k_tmap, t * 64,
                           (k0 + i * T::kBoxRows) % T::kPageSize, kv_head, pg[i], bar);
    }
  }
  // This warpgroup zeroes rows [valid, 64) of V column tiles [t0, t0 + 4) of buffer buf (the
  // block holding the sequence end), then makes the zeros visible to its wgmma.
  __device__ void zero_tail_rows(int buf, int t0, int valid) {
    for (int e = idx; e < 4 * 64 * 8; e += 128) {
      const int t = e / 512, r = (e / 8) % 64, chunk = e % 8;
      if (r >= valid) dev::st_shared_zero16(dev::smem_u32(sm.kv[buf] + (t0 + t) * T::kTileBytes + r * 128 + chunk * 16));
    }
    dev::fence_proxy_async_smem();
    dev::named_barrier_sync(kWarpgroupBar + wg, 128);
  }

  // ---- math -----------------------------------------------------------------------------------
  static __device__ dev::u64 desc_k(u32 addr) { return dev::smem_desc_sw128(addr, 16, 1024); }
  static __device__ dev::u64 desc_v(u32 addr) { return dev::smem_desc_sw128(addr, T::kVLeadingBytes, T::kVStrideBytes); }

  // s (+)= Q K^T over column tile t of buffer wg (its TMA has landed). zero: t is the rope tile
  // (8), which starts S (its first wgmma overwrites s) and takes Q from registers.
  __device__ void qk_tile(float (&s)[32], const u32 (&rq8)[4][4], int t, bool zero) {
    const dev::u64 q_desc = desc_k(dev::smem_u32(sm.q)), k_desc = desc_k(dev::smem_u32(sm.kv[wg]));
#pragma unroll
    for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 1 && !zero ? 0 : 4); ++ks) {
      const int acc = zero && ks == 0 ? 0 : 1;
      const dev::u64 kd = dev::desc_advance(k_desc, t * T::kTileBytes + ks * 32);
      if (zero)  // only the rope tile starts S
        dev::wgmma_m64n64k16_rs<T::kElem, 0>(s, rq8[ks], kd, acc);
      else
        dev::wgmma_m64n64k16<T::kElem, 0>(s, dev::desc_advance(q_desc, t * T::kTileBytes + ks * 32), kd, acc);
    }
  }
  __device__ void wait_tile(int t) { dev::mbarrier_wait(dev::smem_u32(&sm.bar[wg][t]), phase); }
  // The first part of S: the rope tile (refilled first) and the half of V this warpgroup's own
  // buffer has refilled earlier: V_L (tiles 0-3, warpgroup 0 refills them after its P0 V0_L) in
  // buffer 0, V_R (4-7, warpgroup 1 after its P1 V1_R) in buffer 1; the other half comes last.
  // The tiles' barriers are all waited for before the first wgmma: a wait loop between two
  // wgmmas makes ptxas fence (warpgroup.arrive) before the next one.
  __device__ void qk_first(float (&s)[32], const u32 (&rq8)[4][4]) {
    const int t0 = 4 * wg;
    wait_tile(8);
#pragma unroll
    for (int t = 0; t < 4; ++t) wait_tile(t0 + t);
    dev::wgmma_fence();
    qk_tile(s, rq8, 8, true);
#pragma unroll
    for (int t = 0; t < 4; ++t) qk_tile(s, rq8, t0 + t, false);
    dev::wgmma_commit();
  }
  // The rest: the other half; then the buffer's next load may be waited for.
  __device__ void qk_rest(float (&s)[32], const u32 (&rq8)[4][4]) {
    const int t0 = 4 - 4 * wg;
#pragma unroll
    for (int t = 0; t < 4; ++t) wait_tile(t0 + t);
    dev::wgmma_fence();
#pragma unroll
    for (int t = 0; t < 4; ++t) qk_tile(s, rq8, t0 + t, false);
    dev::wgmma_commit();
    phase ^= 1;
  }

  // o += P V over this warpgroup's 256 columns of buffer buf; P from registers or smem.
  __device__ void pv_rs(float (&o)[128], const u32 (&pb)[16], int buf) {
    const dev::u64 v_desc = desc_v(dev::smem_u32(sm.kv[buf]) + 4 * wg * T::kTileBytes);
    dev::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 4 ? 0 : 4); ++ks) {
      const u32 a[4] = {pb[4 * ks], pb[4 * ks + 1], pb[4 * ks + 2], pb[4 * ks + 3]};
      dev::wgmma_m64n256k16_rs<T::kElem, 1>(o, a, dev::desc_advance(v_desc, ks * 16 * 128));
    }
    dev::wgmma_commit();
  }
  __device__ void pv_ss(float (&o)[128], const unsigned char* p_tile, int buf) {
    const dev::u64 v_desc = desc_v(dev::smem_u32(sm.kv[buf]) + 4 * wg * T::kTileBytes), p_desc = desc_k(dev::smem_u32(p_tile));
    dev::wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < (FLASHMLA_PROFILE_SKIP & 4 ? 0 : 4); ++ks)
      dev::wgmma_m64n256k16<T::kElem, 1>(o, dev::desc_advance(p_desc, ks * 32), dev::desc_advance(v_desc, ks * 16 * 128));
    dev::wgmma_commit();
  }

  // Masks s (raw Q K^T of the block at k0) to the rows' key limits and returns each row's max
  // over the block in log2 units (softmax_rows.cuh: the raw max, scaled once).
  __device__ void mask_max(float (&s)[32], int k0, const int (&key_limit)[2], float (&mx)[2]) const {
    mask_rows(s, k0, key_limit, c);
    row_max(s, mx);
#pragma unroll
    for (int i = 0; i < 2; ++i) mx[i] *= p.scale_log2;
  }
  // s <- exp2(s * scale_log2 - m_use) per row; returns this thread's part of each row sum.
  __device__ void exp_rows(float (&s)[32], const float (&m_use)[2], float (&sum)[2]) const {
    sum[0] = sum[1] = 0.f;
#pragma unroll
    for (int j = 0; j < 32; ++j) {
      s[j] = exp2_scaled(s[j], p.scale_log2, -m_use[(j >> 1) & 1]);
      sum[(j >> 1) & 1] += s[j];
    }
  }
  // P as wgmma A fragments: fragment k of 16 keys is accumulator pairs 4k..4k+3 (see wgmma.cuh);
  // pair k is row r_lo (k even) or r_hi (k odd).
  static __device__ void pack_p(const float (&s)[32], u32 (&pb)[16]) {
#pragma unroll
    for (int k = 0; k < 16; ++k) pb[k] = dev::pack2<T::kElem>(s[2 * k], s[2 * k + 1]);
  }
  // pb *= scale per row, on the packed values (so the fp32 P need not stay live); usually every
  // scale of the warp is 1 and this is skipped.
  static __device__ void rescale_packed(u32 (&pb)[16], const float (&scale)[2]) {
    if (__any_sync(0xffffffffu, scale[0] != 1.f || scale[1] != 1.f)) {
#pragma unroll
      for (int k = 0; k < 16; ++k) {
        float lo, hi;
        dev::unpack2<T::kElem>(pb[k], lo, hi);
        pb[k] = dev::pack2<T::kElem>(lo * scale[k & 1], hi * scale[k & 1]);
      }
    }
  }
  __device__ void store_p(unsigned char* tile, const u32 (&pb)[16]) const {
#pragma unroll
    for (int k = 0; k < 16; ++k)
      *reinterpret_cast<u32*>(tile + dev::swizzle128_offset(k & 1 ? r_hi : r_lo, 8 * (k >> 1) + 2 * c)) = pb[k];
  }
  static __device__ void rescale(float (&o)[128], const float (&scale)[2]) {
    if (__any_sync(0xffffffffu, scale[0] != 1.f || scale[1] != 1.f)) {  // usually all 1: skip
#pragma unroll
      for (int j = 0; j < 32; ++j) o[4 * j] *= scale[0], o[4 * j + 1] *= scale[0], o[4 * j + 2] *= scale[1], o[4 * j + 3] *= scale[1];
    }
  }
  // This warpgroup's data for the other is written: it may go on (the reader syncs on `id`).
  static __device__ void hand_over(int id) {
    if (FLASHMLA_SEESAW_READY_SYNC)
      dev::named_barrier_sync(id, T::kThreads);
    else
      dev::named_barrier_arrive(id, T::kThreads);
  }
  static __device__ float use(float m) { return m == dev::neg_inf() ? 0.f : m; }

  // ---- one segment: tiles [tile_lo, tile_hi) of sequence bi -------------------------------------
  __device__ void run_segment(int bi, int seqlen, int tile_lo, int tile_hi, int split_idx, int n_splits) {
    const int n = tile_hi - tile_lo;
    const int k_begin = tile_lo * T::kBlockK, k_end = min(tile_hi * T::kBlockK, seqlen);
    const int tail = k_end - (k_begin + (n - 1) * T::kBlockK);  // valid rows of the last block
    int key_limit[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const int s = min((row0 + (i ? r_hi : r_lo)) / hpk, p.s_q - 1);
      key_limit[i] = p.causal ? min(k_end - 1, seqlen - p.s_q + s) : k_end - 1;
    }

    __syncthreads();  // the previous segment no longer reads shared memory
    if (tid == 0) {
      int pg[T::kBoxes];
      fetch_pages(bi, k_begin, k_end, pg);
      load_tiles(0, k_begin, pg, 0, T::kTiles);
      if (n > 1) {
        fetch_pages(bi, k_begin + T::kBlockK, k_end, pg);
        load_tiles(1, k_begin + T::kBlockK, pg, 0, T::kTiles);
      }
    }
    load_q_sw128<T::kThreads, T::kTiles>(p, sm.q, bi, row0, rows_total, hpk, kv_head, tid);
    dev::cp_async_commit();
    if (tid < T::kBlockQ) sm.m[tid] = dev::neg_inf();
    dev::cp_async_wait<0>();
    dev::fence_proxy_async_smem();
    __syncthreads();
    u32 rq8[4][4];  // Q's rope tile as A fragments (rows r_lo / r_hi, 16 columns per k step)
#pragma unroll
    for (int ks = 0; ks < 4; ++ks)
#pragma unroll
      for (int e = 0; e < 4; ++e)
        rq8[ks][e] = *reinterpret_cast<const u32*>(sm.q + 8 * T::kTileBytes +
                                                   dev::swizzle128_offset(e & 1 ? r_hi : r_lo, 16 * ks + 2 * c + 8 * (e >> 1)));
    __syncthreads();  // tile 8 may now take P1

    float o[128];
#pragma unroll
    for (int j = 0; j < 128; ++j) o[j] = 0.f;
    float l[2] = {0.f, 0.f};
    float s[32];
    if (wg < n) {
      qk_first(s, rq8);
      qk_rest(s, rq8);
      dev::wgmma_wait<0>();
    }
    // Warp 0's lanes hold the cache blocks of the next pair's boxes.
    int pages = warp == 0 ? fetch_pair_pages(bi, k_begin + 2 * T::kBlockK, k_begin + 3 * T::kBlockK, k_end) : -1;
    for (int b0 = 0; b0 < n; b0 += 2) {
      if (wg == 0)
        pair_wg0(bi, b0, n, k_begin, k_end, tail, key_limit, s, o, l, rq8, pages);
      else
        pair_wg1(bi, b0, n, k_begin, k_end, tail, key_limit, s, o, l, rq8, pages);
    }

#pragma unroll
    for (int i = 0; i < 2; ++i) {
      const float sum = dev::warp_sum_xor<2>(l[i]);
      if (c == 0) sm.l[wg][i ? r_hi : r_lo] = sum;
    }
    __syncthreads();
    wgmma_store<T::kElem, T::kLatent>(p, {sm.l[0][r_lo] + sm.l[1][r_lo], sm.l[0][r_hi] + sm.l[1][r_hi]},
                                      {sm.m[r_lo], sm.m[r_hi]}, row0, rows_total, hpk, kv_head, wg, lane, bi,
                                      split_idx, n_splits, o, r_lo, r_hi);
  }

  // Softmax of the block at k0 against the running max m_old: s <- P = exp2(S - m_new); returns
  // m_new, the rescale factor of the old state and this thread's part of the row sums.
  __device__ void softmax(float (&s)[32], int k0, const int (&key_limit)[2], const float (&m_old)[2],
                          float (&m_new)[2], float (&scale)[2], float (&sum)[2]) const {
    if (FLASHMLA_PROFILE_SKIP & 32) {  // profiling: P = S as is, no mask, max or exp
#pragma unroll
      for (int i = 0; i < 2; ++i) m_new[i] = m_old[i], scale[i] = 1.f, sum[i] = 0.f;
      return;
    }
    float mx[2], m_use[2];
    mask_max(s, k0, key_limit, mx);
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      m_new[i] = fmaxf(m_old[i], mx[i]);
      m_use[i] = use(m_new[i]);
      scale[i] = dev::exp2_approx(m_old[i] - m_use[i]);
    }
    exp_rows(s, m_use, sum);
  }
  __device__ void publish(float* scale_out, const float (&scale)[2], const float (&m_new)[2]) {
    __syncwarp();  // the quad's reads of m are done
    if (c == 0) {
#pragma unroll
      for (int i = 0; i < 2; ++i) scale_out[i ? r_hi : r_lo] = scale[i], sm.m[i ? r_hi : r_lo] = m_new[i];
    }
  }

  // Warpgroup 0's part of the pair (b0, b0 + 1); s holds Q K0^T of b0 and leaves with that of b0 + 2.
  __device__ void pair_wg0(int bi, int b0, int n, int k_begin, int k_end, int tail, const int (&key_limit)[2],
                           float (&s)[32], float (&o)[128], float (&l)[2], const u32 (&rq8)[4][4], int& pages) {
    const bool has1 = b0 + 1 < n, next0 = b0 + 2 < n, next1 = b0 + 3 < n;
    const int k0 = k_begin + b0 * T::kBlockK;
    if (next0 && warp == 0) load_tiles_warp(0, k0 + 2 * T::kBlockK, pages, 0, 8, 9);  // rope read by S0
    // The next pair's cache blocks, fetched now so that the table's latency is spent under this pair.
    const int pages_next = warp == 0 ? fetch_pair_pages(bi, k0 + 4 * T::kBlockK, k0 + 5 * T::kBlockK, k_end) : -1;
    float m_old[2], m_new[2], scale0[2], sum[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) m_old[i] = sm.m[i ? r_hi : r_lo];
    softmax(s, k0, key_limit, m_old, m_new, scale0, sum);
    publish(sm.scale0, scale0, m_new);
    hand_over(kScale0Ready);  // warpgroup 1's softmax may start
    u32 pb[16];
    pack_p(s, pb);
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * scale0[i] + sum[i];
    rescale(o, scale0);
    if (b0 == n - 1 && tail < T::kBlockK) zero_tail_rows(0, 0, tail);
    pv_rs(o, pb, 0);  // O_L += P0 V0_L, P0 relative to m0, under warpgroup 1's softmax
    dev::wgmma_wait<0>();
    if (next0 && warp == 0) load_tiles_warp(0, k0 + 2 * T::kBlockK, pages, 0, 0, 4);  // V0_L read

    dev::named_barrier_sync(kP1Ready, T::kThreads);  // scale1 and m1 published, P1 in Q's tile 8
    float scale1[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) scale1[i] = sm.scale1[i ? r_hi : r_lo], l[i] *= scale1[i];
    // P0 relative to m1, for warpgroup 1's P0 V0_R. sm.p0's last reader, warpgroup 1's P0 V0_R of
    // the previous pair, completed before warpgroup 1 arrived at kP1Ready.
    rescale_packed(pb, scale1);
    store_p(sm.p0, pb);
    dev::fence_proxy_async_smem();
    hand_over(kP0Ready);
    rescale(o, scale1);
    if (has1) {
      if (b0 + 1 == n - 1 && tail < T::kBlockK) zero_tail_rows(1, 0, tail);
      pv_ss(o, sm.q + 8 * T::kTileBytes, 1);  // O_L += P1 V1_L
    }
    // S0' is issued and retired inside one branch: a wgmma group open across a control-flow
    // merge lets ptxas move values into its accumulators and serialize every wgmma (C7515).
    if (next0) {
      qk_first(s, rq8);
      if (next1) {
        dev::wgmma_wait<1>();
        if (warp == 0) load_tiles_warp(1, k0 + 3 * T::kBlockK, pages, 1, 0, 4);  // V1_L read
      }
      qk_rest(s, rq8);
      dev::wgmma_wait<0>();
    } else {
      dev::wgmma_wait<0>();
      if (next1 && warp == 0) load_tiles_warp(1, k0 + 3 * T::kBlockK, pages, 1, 0, 4);  // V1_L read
    }
    pages = pages_next;
  }

  // Warpgroup 1's part of the pair; s holds Q K1^T of b0 + 1 (if any) and leaves with b0 + 3's.
  // Its softmax needs only warpgroup 0's row max, so it runs under warpgroup 0's P0 V0_L; then
  // its own P1 V1_R (P from registers), then P0 V0_R once warpgroup 0 has stored P0 relative to m1.
  __device__ void pair_wg1(int bi, int b0, int n, int k_begin, int k_end, int tail, const int (&key_limit)[2],
                           float (&s)[32], float (&o)[128], float (&l)[2], const u32 (&rq8)[4][4], int& pages) {
    const bool has1 = b0 + 1 < n, next0 = b0 + 2 < n, next1 = b0 + 3 < n;
    const int k0 = k_begin + b0 * T::kBlockK, k1 = k0 + T::kBlockK;
    if (next1 && warp == 0) load_tiles_warp(1, k0 + 3 * T::kBlockK, pages, 1, 8, 9);  // rope read by S1
    // The next pair's cache blocks, fetched now so that the table's latency is spent under this pair.
    const int pages_next = warp == 0 ? fetch_pair_pages(bi, k0 + 4 * T::kBlockK, k0 + 5 * T::kBlockK, k_end) : -1;

    dev::named_barrier_sync(kScale0Ready, T::kThreads);  // m0 and scale0 published
    float m0[2], scale0[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) m0[i] = sm.m[i ? r_hi : r_lo], scale0[i] = sm.scale0[i ? r_hi : r_lo];
    float m1[2], scale1[2] = {1.f, 1.f}, sum[2] = {0.f, 0.f};
    u32 pb[16];
    if (has1) {
      softmax(s, k1, key_limit, m0, m1, scale1, sum);
      pack_p(s, pb);
      store_p(sm.q + 8 * T::kTileBytes, pb);  // P1, for warpgroup 0
      dev::fence_proxy_async_smem();
    } else {
#pragma unroll
      for (int i = 0; i < 2; ++i) m1[i] = m0[i];
    }
    publish(sm.scale1, scale1, m1);
    hand_over(kP1Ready);
    float scale01[2];
#pragma unroll
    for (int i = 0; i < 2; ++i) l[i] = l[i] * scale0[i] * scale1[i] + sum[i], scale01[i] = scale0[i] * scale1[i];
    rescale(o, scale01);
    if (has1) {
      if (b0 + 1 == n - 1 && tail < T::kBlockK) zero_tail_rows(1, 4, tail);
      pv_rs(o, pb, 1);  // O_R += P1 V1_R
      dev::wgmma_wait<0>();
      if (next1 && warp == 0) load_tiles_warp(1, k0 + 3 * T::kBlockK, pages, 1, 4, 8);  // V1_R read
    }
    dev::named_barrier_sync(kP0Ready, T::kThreads);  // P0, relative to m1, in sm.p0
    if (b0 == n - 1 && tail < T::kBlockK) zero_tail_rows(0, 4, tail);
    pv_ss(o, sm.p0, 0);  // O_R += P0 V0_R
    dev::wgmma_wait<0>();
    if (next0 && warp == 0) load_tiles_warp(0, k0 + 2 * T::kBlockK, pages, 0, 4, 8);  // V0_R read
    pages = pages_next;
    if (next1) {
      qk_first(s, rq8);
      qk_rest(s, rq8);
      dev::wgmma_wait<0>();
    }
  }
};

template <class T>
__device__ __forceinline__ void decode_seesaw_kernel(const DecodeParams& p) {
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  DecodeSeesaw<T> cta(p, *reinterpret_cast<typename T::SharedPlan*>(smem_raw));
  for_each_segment<T::kBlockK>(p, cta);
}

}  // namespace flashmla
