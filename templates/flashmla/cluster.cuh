// Thread-block-cluster helpers (sm_90): the CTA's rank, cluster-wide barriers, and the stores
// and barrier waits by which two CTAs of a cluster hand data over through distributed shared
// memory. PTX ISA 8.x: "mapa", "barrier.cluster", "st.async".
#pragma once
#include "flashmla/ptx.cuh"

namespace flashmla {
namespace dev {

__device__ __forceinline__ u32 cluster_rank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
}

// Every thread of every CTA of the cluster; orders shared-memory accesses across it.
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
}

// The shared::cluster address of `addr` (this CTA's shared memory) in CTA `rank` of the cluster.
__device__ __forceinline__ u32 map_shared(u32 addr, u32 rank) {
  u32 r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}

// 16 bytes into another CTA's shared memory (cluster address `dst`), completing their bytes on
// that CTA's mbarrier at cluster address `bar`. The values go in as f32 registers (a .b32
// operand takes any 32-bit register): a bit cast to integers would let the compiler move them
// out of the accumulators before the wgmma that wrote them is waited for (ptxas C7514).
__device__ __forceinline__ void st_async_v4(u32 dst, float a, float b, float c, float d, u32 bar) {
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(dst),
               "f"(a), "f"(b), "f"(c), "f"(d), "r"(bar)
               : "memory");
}

}  // namespace dev
}  // namespace flashmla
