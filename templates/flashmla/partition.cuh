// The split-KV schedule from the CTA's side: the (batch, tile range) segments of partition
// blockIdx.y (metadata.cuh wrote them), each handed to the family's run_segment.
#pragma once
#include "flashmla/params.cuh"

namespace flashmla {

// Cta::run_segment(batch, seqlen, tile_lo, tile_hi, split_idx, n_splits); tiles are kBlockK keys.
template <int kBlockK, class Cta>
__device__ __forceinline__ void for_each_segment(const DecodeParams& p, Cta& cta) {
  const int* sched = p.sched + blockIdx.y * kSchedWords;
  const int begin_b = sched[0], begin_tile = sched[1], end_b = sched[2], end_tile = sched[3];
  const int begin_split = sched[4];
  if (begin_b < 0) return;
  for (int bi = begin_b; bi <= end_b; ++bi) {
    const int seqlen = min(p.cache_seqlens[bi], p.max_seqlen);
    const int n_tiles = (seqlen + kBlockK - 1) / kBlockK;
    const int tile_lo = bi == begin_b ? begin_tile : 0;
    const int tile_hi = bi == end_b ? end_tile : n_tiles;
    if (tile_lo >= tile_hi) continue;
    const int n_splits = p.split_offsets[bi + 1] - p.split_offsets[bi];
    cta.run_segment(bi, seqlen, tile_lo, tile_hi, bi == begin_b ? begin_split : 0, n_splits);
  }
}

// The cache blocks of the kBoxes TMA boxes (kBoxRows keys each) of the tile of keys starting at
// k0 in batch bi: -1 for a box past k_end, which is not loaded.
template <int kBoxes, int kBoxRows, int kPageSize>
__device__ __forceinline__ void tile_pages(const DecodeParams& p, int bi, int k0, int k_end, int (&pg)[kBoxes]) {
  const int* table = p.block_table + bi * p.block_table_stride;
#pragma unroll
  for (int i = 0; i < kBoxes; ++i) {
    const int pos = k0 + i * kBoxRows;
    pg[i] = pos < k_end ? table[pos / kPageSize] : -1;
  }
}

}  // namespace flashmla
