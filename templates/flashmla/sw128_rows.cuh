// Rows of 576 16-bit elements into shared memory as nine 128B-swizzled [rows x 64] tiles
// (wgmma.cuh's layout), by cp.async: the Q tile of both Hopper kernels and decode_wgmma's K/V.
#pragma once
#include "flashmla/params.cuh"
#include "flashmla/ptx.cuh"

namespace flashmla {

constexpr int kSw128TileBytes = 64 * 128;  // one [64 rows x 64 elements] tile

// Row r <- 16-byte chunks c0, c0 + 8, ... of src (c0 = 0..7, one of the row's 8 copying
// threads): chunk j = c0 + 8t lands in column tile t at swizzled position c0 ^ (r % 8).
// An invalid row is zero-filled.
template <int kTiles>
__device__ __forceinline__ void copy_row_sw128(unsigned char* tiles, int r, const dev::u16* src, bool valid, int c0) {
  const dev::u32 base = dev::smem_u32(tiles + r * 128 + (((c0 ^ r) & 7) << 4));
#pragma unroll
  for (int t = 0; t < kTiles; ++t) dev::cp_async_16(base + t * kSw128TileBytes, src + t * 64 + c0 * 8, valid ? 16 : 0);
}

// The 64 query rows row0.. of kv head kv_head (row = s * hpk + head within the kv head's group),
// rows past rows_total zero-filled; kThreads threads, 8 per row.
template <int kThreads, int kTiles>
__device__ __forceinline__ void load_q_sw128(const DecodeParams& p, unsigned char* q, int bi, int row0, int rows_total,
                                             int hpk, int kv_head, int tid) {
#pragma unroll
  for (int r = tid / 8; r < 64; r += kThreads / 8) {
    const int row = row0 + r;
    const bool valid = row < rows_total;
    const int s = valid ? row / hpk : 0, h = kv_head * hpk + (valid ? row % hpk : 0);
    copy_row_sw128<kTiles>(q, r, static_cast<const dev::u16*>(p.q) + bi * p.q_stride_b + s * p.q_stride_s + h * p.q_stride_h,
                           valid, tid % 8);
  }
}

}  // namespace flashmla
