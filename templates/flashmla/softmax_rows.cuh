// Row pieces of the online softmax shared by decode_wgmma and decode_seesaw, for a 64 x 64 S tile
// in the wgmma accumulator layout: this thread holds s[4j + e] = row (e < 2 ? r_lo : r_hi), key
// k0 + 8j + 2c + (e & 1), j = 0..7 (c = lane % 4); a row's 64 keys sit in the 4 lanes of a quad.
#pragma once
#include "flashmla/ptx.cuh"
#include "flashmla/wgmma.cuh"

namespace flashmla {

// Keys past a row's limit (the sequence end, the causal diagonal) become -inf. They only occur
// in a segment's last tiles: the others skip the per-element test.
__device__ __forceinline__ void mask_rows(float (&s)[32], int k0, const int (&key_limit)[2], int c) {
  if (k0 + 63 <= min(key_limit[0], key_limit[1])) return;
#pragma unroll
  for (int j = 0; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (k0 + 8 * j + 2 * c + (e & 1) > key_limit[e >> 1]) s[4 * j + e] = dev::neg_inf();
}

// Each row's maximum over the quad, of the raw scores (so scaled by a positive factor once, not
// per element), with four independent max chains per row: the softmax runs one warp per SMSP,
// where nothing else hides a long dependent chain.
__device__ __forceinline__ void row_max(const float (&s)[32], float (&m)[2]) {
  float part[2][4];
#pragma unroll
  for (int e = 0; e < 4; ++e) part[e >> 1][2 * (e & 1)] = s[e], part[e >> 1][2 * (e & 1) + 1] = s[4 + e];
#pragma unroll
  for (int j = 2; j < 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float& v = part[e >> 1][2 * (e & 1) + (j & 1)];
      v = fmaxf(v, s[4 * j + e]);
    }
#pragma unroll
  for (int i = 0; i < 2; ++i)
    m[i] = dev::warp_max_xor<2>(fmaxf(fmaxf(part[i][0], part[i][1]), fmaxf(part[i][2], part[i][3])));
}

// p = exp2(s * scale_log2 - m): one FFMA and one MUFU (neg_m = -m of the row).
__device__ __forceinline__ float exp2_scaled(float s, float scale_log2, float neg_m) {
  return dev::exp2_approx(fmaf(s, scale_log2, neg_m));
}

// P = exp2(s * scale_log2 - m) of this thread's S fragment (kRaw: P = S, for profiling) into the
// swizzled 64 x 64 P tile at p_base, adding each row's sum into l_part. P in bf16/fp16 pairs: reg
// (j, i) holds row i's columns 8j + 2c, +1, the fragment of one 8x8 matrix of stmatrix; four
// matrices (rows lo/hi x column blocks j, j+1) per stmatrix.x4, lane L addressing row L % 8 of
// matrix L / 8.
template <dev::Elem kElem, bool kRaw = false>
__device__ __forceinline__ void store_p_rows(const float (&s)[32], float scale_log2, const float (&neg_m)[2],
                                             float (&l_part)[2], dev::u32 p_base, int warp, int lane) {
  const int st_row = 16 * warp + 8 * ((lane >> 3) & 1) + (lane & 7), st_blk = lane >> 4;
#pragma unroll
  for (int j = 0; j < 8; j += 2) {
    dev::u32 packed[4];
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const float* s2 = s + 4 * (j + h) + 2 * i;
        const float p0 = kRaw ? s2[0] : exp2_scaled(s2[0], scale_log2, neg_m[i]);
        const float p1 = kRaw ? s2[1] : exp2_scaled(s2[1], scale_log2, neg_m[i]);
        l_part[i] += p0 + p1;
        packed[2 * h + i] = dev::pack2<kElem>(p0, p1);
      }
    dev::stmatrix_x4(p_base + dev::swizzle128_offset(st_row, 8 * (j + st_blk)), packed);
  }
}

}  // namespace flashmla
