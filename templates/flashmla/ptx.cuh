// Device helpers written as inline PTX, so that kernels include no toolkit header
// (NVRTC 13 bundles no cuda_bf16.h) and compile the same under NVRTC and nvcc.
// Instruction references: PTX ISA 8.x, sections "ldmatrix", "mma.sync (m16n8k16)",
// "cp.async", "cvt" (packed bf16x2 / f16x2).
#pragma once

namespace flashmla {
namespace dev {

typedef unsigned int u32;
typedef unsigned short u16;
typedef long long i64;

// Element type tags; the integer values match flashmla::DType on the host.
enum class Elem : int { bf16 = 0, fp16 = 1 };

__device__ __forceinline__ float neg_inf() { return __int_as_float(0xff800000u); }
__device__ __forceinline__ float pos_inf() { return __int_as_float(0x7f800000u); }

// Programmatic dependent launch (PTX "griddepcontrol", sm_90+; no-ops before): the decode
// lets the combine launch early, and the combine waits for the decode to complete and its
// writes to be visible before reading them. Either is a no-op when the launch set no
// programmatic dependency, so correctness never depends on where the trigger stands.
__device__ __forceinline__ void grid_launch_dependents() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
__device__ __forceinline__ void grid_dependency_wait() {
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ u32 smem_u32(const void* ptr) {
  u32 addr;
  asm volatile("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }\n"
               : "=r"(addr)
               : "l"(ptr));
  return addr;
}

// 16-byte global->shared copy; bytes past src_bytes (0 or 16) are zero-filled, so a
// masked row reads nothing and lands as zeros.
// FLASHMLA_CP_ASYNC_L2_PREFETCH (0, 128 or 256) adds the .L2::NB prefetch hint.
#ifndef FLASHMLA_CP_ASYNC_L2_PREFETCH
#define FLASHMLA_CP_ASYNC_L2_PREFETCH 0
#endif
__device__ __forceinline__ void cp_async_16(u32 dst, const void* src, int src_bytes) {
#if FLASHMLA_CP_ASYNC_L2_PREFETCH == 256
  asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
#elif FLASHMLA_CP_ASYNC_L2_PREFETCH == 128
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
#else
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
#endif
}
// Named barrier (id 1..15; 0 is __syncthreads); `threads` counts all threads taking part (a
// multiple of 32).
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// Four 8x8 b16 matrices; lane l supplies the row address of matrix l/8, row l%8.
__device__ __forceinline__ void ldmatrix_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// Stores four 8x8 matrices of 16-bit pairs (r[k] = this lane's pair of matrix k, in the mma
// fragment layout: row lane / 4, columns 2 (lane % 4), +1); lane L gives the 16-byte row
// address of row L % 8 of matrix L / 8.
__device__ __forceinline__ void stmatrix_x4(u32 addr, const u32 (&r)[4]) {
  asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1,%2,%3,%4};\n" ::"r"(addr), "r"(r[0]), "r"(r[1]),
               "r"(r[2]), "r"(r[3])
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b for one m16n8k16 tile, fp32 accumulators. Registers only, so not volatile:
// the compiler may interleave it with the (volatile, ordered) shared-memory loads.
// a: rows {g, g+8} x cols {2c, 2c+8} pairs; b: k rows {2c, 2c+8} pairs x col g;
// d: rows {g, g+8} x cols {2c, 2c+1}   (g = lane/4, c = lane%4).
template <Elem kElem>
__device__ __forceinline__ void mma_16816(float (&d)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  if constexpr (kElem == Elem::bf16) {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// Packs (lo, hi) into one 32-bit register of two 16-bit floats, round to nearest even.
template <Elem kElem>
__device__ __forceinline__ u32 pack2(float lo, float hi) {
  u32 r;
  if constexpr (kElem == Elem::bf16) {
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  } else {
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
  }
  return r;
}

// The two 16-bit floats of a packed register, as fp32 (lo: bits 0-15).
template <Elem kElem>
__device__ __forceinline__ void unpack2(u32 v, float& lo, float& hi) {
  if constexpr (kElem == Elem::bf16) {
    lo = __uint_as_float(v << 16), hi = __uint_as_float(v & 0xffff0000u);
  } else {
    asm("{ .reg .f16 a, b; mov.b32 {a, b}, %2; cvt.f32.f16 %0, a; cvt.f32.f16 %1, b; }\n"
        : "=f"(lo), "=f"(hi)
        : "r"(v));
  }
}

__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float log2_approx(float x) {
  float y;
  asm("lg2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

template <int kMask>
__device__ __forceinline__ float warp_max_xor(float v) {
#pragma unroll
  for (int m = 1; m <= kMask; m <<= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, m));
  return v;
}
template <int kMask>
__device__ __forceinline__ float warp_sum_xor(float v) {
#pragma unroll
  for (int m = 1; m <= kMask; m <<= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
  return v;
}

}  // namespace dev
}  // namespace flashmla
