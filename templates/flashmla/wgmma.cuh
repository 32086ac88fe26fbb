// Hopper (sm_90a) warpgroup MMA helpers of the decode_wgmma family.
// PTX ISA 8.x: "Asynchronous Warpgroup Level Matrix Multiply-Accumulate" (wgmma.mma_async,
// wgmma.fence/commit_group/wait_group) and "Matrix Descriptor Format".
//
// Shared-memory tiles use the 128-byte swizzle: a tile is rows of 64 bf16/fp16 (128 bytes);
// the 16-byte chunk c of row r is stored at chunk c ^ (r % 8). Tiles start 1024-byte aligned.
//   K-major operand (Q, K; also A):  rows = M or N, the 64 elements of a row = K.
//   MN-major operand (V as B):       rows = K (keys), the 64 elements of a row = N.
// tests/gpu/test_wgmma_probe.cpp checks them against a CPU product (m64n64k16 with K-major
// and MN-major B, m64n256k16 with MN-major B over four 64-column tiles) and the MN-major
// descriptor's field order (passed on the H100, 2026-11-26); CI checks that they compile to
// HGMMA for sm_90a.
#pragma once
#include "flashmla/ptx.cuh"

namespace flashmla {
namespace dev {

typedef unsigned long long u64;

// Byte offset of element (r, c) in a 128B-swizzled tile of rows of 64 16-bit elements.
__device__ __forceinline__ u32 swizzle128_offset(int r, int c) {
  return static_cast<u32>(r * 128 + ((((c >> 3) ^ r) & 7) << 4) + (c & 7) * 2);
}

// Matrix descriptor: start address, leading and stride byte offsets (16-byte units), and the
// 128B swizzle mode (bits 62-63 = 1).
__device__ __forceinline__ u64 smem_desc_sw128(u32 smem_addr, u32 leading_bytes, u32 stride_bytes) {
  u64 d = 0;
  d |= static_cast<u64>((smem_addr >> 4) & 0x3fff);
  d |= static_cast<u64>((leading_bytes >> 4) & 0x3fff) << 16;
  d |= static_cast<u64>((stride_bytes >> 4) & 0x3fff) << 32;
  d |= static_cast<u64>(1) << 62;
  return d;
}

// The descriptor d with its start address advanced by `bytes` (a multiple of 16). Only the low word
// changes and it cannot carry: every shared-memory address >> 4 is below 2^14, the field's width.
// Built once per operand base and advanced by constants, a descriptor costs one uniform add per
// wgmma, where smem_desc_sw128 per wgmma costs a dependent chain of four (add, shift, mask, or).
__device__ __forceinline__ u64 desc_advance(u64 d, u32 bytes) {
  return (d & 0xffffffff00000000ull) | static_cast<u32>(static_cast<u32>(d) + (bytes >> 4));
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Makes ordinary shared-memory stores visible to the async proxy (wgmma, TMA).
__device__ __forceinline__ void fence_proxy_async_smem() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// The accumulator operand lists, d[0..31] and d[0..127].
#define FLASHMLA_WGMMA_D32 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define FLASHMLA_WGMMA_D128 "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
// The instruction text for one operand type (TYPE: "bf16" or "f16"); %35 / %130 = kTransB.
#define FLASHMLA_WGMMA_M64N64K16(TYPE)                            \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"                 \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, %32, %33, p, 1, 1, 0, %35;\n}\n"
#define FLASHMLA_WGMMA_M64N256K16(TYPE)                            \
  "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                    \
  "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " " \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, %128, %129, p, 1, 1, 0, %130;\n}\n"

// Register-A forms (A = a 64 x 16 fragment in four 32-bit registers per thread, the layout of
// mma.sync's A: a[0] row 16w + lane/4, k 2(lane%4) + {0,1}; a[1] row + 8; a[2] k + 8; a[3] both).
#define FLASHMLA_WGMMA_M64N64K16_RS(TYPE)                         \
  "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"                 \
  "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, {%32,%33,%34,%35}, %36, p, 1, 1, %38;\n}\n"
#define FLASHMLA_WGMMA_M64N256K16_RS(TYPE)                         \
  "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"                    \
  "wgmma.mma_async.sync.aligned.m64n256k16.f32." TYPE "." TYPE " " \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}, {%128,%129,%130,%131}, %132, p, 1, 1, %133;\n}\n"

// d[64 x 64] (+)= A[64 x 16] * B[16 x 64], bf16 or fp16 operands from shared memory, fp32 in
// registers. Accumulator layout: warp w of the warpgroup owns rows 16w..16w+15; d[4j + {0,1}]
// are row 16w + lane/4, columns 8j + 2(lane%4) + {0,1}; d[4j + {2,3}] the same columns of row + 8.
// kTransB = 0: B given K-major (rows = N); 1: B given MN-major (rows = K).
template <Elem kElem, int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16(float (&d)[32], u64 desc_a, u64 desc_b, int accumulate) {
  if constexpr (kElem == Elem::bf16)
    asm volatile(FLASHMLA_WGMMA_M64N64K16("bf16")
                 : FLASHMLA_WGMMA_D32
                 : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB));
  else
    asm volatile(FLASHMLA_WGMMA_M64N64K16("f16")
                 : FLASHMLA_WGMMA_D32
                 : "l"(desc_a), "l"(desc_b), "r"(accumulate), "n"(kTransB));
}

// d[64 x 256] += A[64 x 16] * B[16 x 256]: A K-major from shared memory, B MN-major
// (kTransB = 1, V rows = keys) or K-major (0). Accumulator layout as for n64: d[4j + {0,1}]
// row 16w + lane/4, columns 8j + 2(lane%4) + {0,1}; d[4j + {2,3}] row + 8 (j = 0..31).
template <Elem kElem, int kTransB>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], u64 desc_a, u64 desc_b) {
  if constexpr (kElem == Elem::bf16)
    asm volatile(FLASHMLA_WGMMA_M64N256K16("bf16") : FLASHMLA_WGMMA_D128 : "l"(desc_a), "l"(desc_b), "n"(kTransB));
  else
    asm volatile(FLASHMLA_WGMMA_M64N256K16("f16") : FLASHMLA_WGMMA_D128 : "l"(desc_a), "l"(desc_b), "n"(kTransB));
}

// d[64 x 64] (+)= A * B with A from registers (see above), B from shared memory.
template <Elem kElem, int kTransB>
__device__ __forceinline__ void wgmma_m64n64k16_rs(float (&d)[32], const u32 (&a)[4], u64 desc_b, int accumulate) {
  if constexpr (kElem == Elem::bf16)
    asm volatile(FLASHMLA_WGMMA_M64N64K16_RS("bf16")
                 : FLASHMLA_WGMMA_D32
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB));
  else
    asm volatile(FLASHMLA_WGMMA_M64N64K16_RS("f16")
                 : FLASHMLA_WGMMA_D32
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate), "n"(kTransB));
}

// d[64 x 256] += A * B with A from registers (see above), B from shared memory.
template <Elem kElem, int kTransB>
__device__ __forceinline__ void wgmma_m64n256k16_rs(float (&d)[128], const u32 (&a)[4], u64 desc_b) {
  if constexpr (kElem == Elem::bf16)
    asm volatile(FLASHMLA_WGMMA_M64N256K16_RS("bf16")
                 : FLASHMLA_WGMMA_D128
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(kTransB));
  else
    asm volatile(FLASHMLA_WGMMA_M64N256K16_RS("f16")
                 : FLASHMLA_WGMMA_D128
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "n"(kTransB));
}

#undef FLASHMLA_WGMMA_D32
#undef FLASHMLA_WGMMA_D128
#undef FLASHMLA_WGMMA_M64N64K16
#undef FLASHMLA_WGMMA_M64N256K16
#undef FLASHMLA_WGMMA_M64N64K16_RS
#undef FLASHMLA_WGMMA_M64N256K16_RS

}  // namespace dev
}  // namespace flashmla
