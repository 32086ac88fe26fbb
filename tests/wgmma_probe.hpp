// The wgmma probe: one warpgroup multiplies 64x64 bf16 tiles from 128B-swizzled shared memory
// with templates/flashmla/wgmma.cuh, once with B K-major (S = Q K^T's layout) and once with
// B MN-major (O = P V's layout, V read from the K tile), so one device run checks the PTX
// wrappers and the descriptor encodings the decode_wgmma family will build on.
#pragma once

namespace flashmla::test {

// Kernel wgmma_probe(a [64 m][64 k], b [64 n][64 k], v [64 k][64 n] (bf16, row-major),
//                    c_kmajor [64][64] = a b^T, c_mnmajor [64][64] = a v (fp32),
//                    v_leading_bytes, v_stride_bytes: the MN-major descriptor's offsets).
// Kernel wgmma_probe_n256(a [64 m][16 k], w [16 k][256 n], c [64][256] = a w,
//                         w_leading_bytes, w_stride_bytes): B MN-major across four
//                         64-column tiles (2048 bytes apart, 8 rows = 1024 bytes), the way
//                         O += P V reads a warpgroup's 256 columns of V.
inline constexpr const char* kWgmmaProbeSource = R"(// flashmla wgmma probe
#include "flashmla/wgmma.cuh"
using namespace flashmla::dev;

__device__ void store_accumulators(float* out, const float (&d)[32]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < 8; ++j) {
    const int r = 16 * warp + lane / 4, c = 8 * j + 2 * (lane % 4);
    out[r * 64 + c] = d[4 * j];
    out[r * 64 + c + 1] = d[4 * j + 1];
    out[(r + 8) * 64 + c] = d[4 * j + 2];
    out[(r + 8) * 64 + c + 1] = d[4 * j + 3];
  }
}

extern "C" __global__ void __launch_bounds__(128)
wgmma_probe(const u16* a, const u16* b, const u16* v, float* c_kmajor, float* c_mnmajor,
            unsigned v_leading_bytes, unsigned v_stride_bytes) {
  __shared__ __align__(1024) unsigned char smem[3 * 8192];
  for (int i = threadIdx.x; i < 64 * 64; i += 128) {
    const int r = i / 64, c = i % 64;
    *reinterpret_cast<u16*>(smem + swizzle128_offset(r, c)) = a[i];
    *reinterpret_cast<u16*>(smem + 8192 + swizzle128_offset(r, c)) = b[i];
    *reinterpret_cast<u16*>(smem + 16384 + swizzle128_offset(r, c)) = v[i];
  }
  fence_proxy_async_smem();
  __syncthreads();
  const u32 base = smem_u32(smem);
  float d[32];

  // K-major A and B: k-step s starts 32 bytes further into each 128-byte row.
#pragma unroll
  for (int j = 0; j < 32; ++j) d[j] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < 4; ++s)
    wgmma_m64n64k16<Elem::bf16, 0>(d, smem_desc_sw128(base + s * 32, 16, 1024),
                            smem_desc_sw128(base + 8192 + s * 32, 16, 1024), 1);
  wgmma_commit();
  wgmma_wait<0>();
  store_accumulators(c_kmajor, d);

  // MN-major B: k-step s starts 16 rows (2048 bytes) further.
#pragma unroll
  for (int j = 0; j < 32; ++j) d[j] = 0.f;
  wgmma_fence();
#pragma unroll
  for (int s = 0; s < 4; ++s)
    wgmma_m64n64k16<Elem::bf16, 1>(d, smem_desc_sw128(base + s * 32, 16, 1024),
                            smem_desc_sw128(base + 16384 + s * 2048, v_leading_bytes, v_stride_bytes), 1);
  wgmma_commit();
  wgmma_wait<0>();
  store_accumulators(c_mnmajor, d);
}

// B = w [16 keys][256 columns] stored as four swizzled tiles of [16 rows][64 columns]
// (column block t at byte 2048 t): the layout of V's 256 columns of one warpgroup, 16 keys deep.
extern "C" __global__ void __launch_bounds__(128)
wgmma_probe_n256(const u16* a, const u16* w, float* c, unsigned w_leading_bytes, unsigned w_stride_bytes) {
  __shared__ __align__(1024) unsigned char smem[8192 + 4 * 2048];
  for (int i = threadIdx.x; i < 64 * 16; i += 128) {  // a: 64 rows x 16 k, in a 64-column tile
    const int r = i / 16, c = i % 16;
    *reinterpret_cast<u16*>(smem + swizzle128_offset(r, c)) = a[i];
  }
  for (int i = threadIdx.x; i < 16 * 256; i += 128) {
    const int r = i / 256, c = i % 256;
    *reinterpret_cast<u16*>(smem + 8192 + (c / 64) * 2048 + swizzle128_offset(r, c % 64)) = w[i];
  }
  fence_proxy_async_smem();
  __syncthreads();
  const u32 base = smem_u32(smem);
  float d[128];
#pragma unroll
  for (int j = 0; j < 128; ++j) d[j] = 0.f;
  wgmma_fence();
  wgmma_m64n256k16<Elem::bf16, 1>(d, smem_desc_sw128(base, 16, 1024),
                           smem_desc_sw128(base + 8192, w_leading_bytes, w_stride_bytes));
  wgmma_commit();
  wgmma_wait<0>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int j = 0; j < 32; ++j) {
    const int r = 16 * warp + lane / 4, col = 8 * j + 2 * (lane % 4);
    c[r * 256 + col] = d[4 * j];
    c[r * 256 + col + 1] = d[4 * j + 1];
    c[(r + 8) * 256 + col] = d[4 * j + 2];
    c[(r + 8) * 256 + col + 1] = d[4 * j + 3];
  }
}
)";

}  // namespace flashmla::test
