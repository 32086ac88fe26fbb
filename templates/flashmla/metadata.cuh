// Split-KV schedule (FlashMLA's get_mla_metadata), computed on the GPU from cache_seqlens
// so that a decode step needs no host synchronisation and can be captured in a graph.
//
// Work of batch b = n_tiles(b) + overhead_tiles (a split also pays for loading q and
// writing its partial). The total is cut into num_parts nearly equal, contiguous
// pieces of the (batch, tile) sequence; the last partition takes whatever is left.
// A batch cut across partitions gets one split per piece; split_offsets is the
// exclusive prefix sum of the split counts (0 splits for an empty sequence).
#pragma once
#include "flashmla/params.cuh"

namespace flashmla {

// One block; the sweep itself is sequential (thread 0) over seqlens staged in smem.
__device__ __forceinline__ void metadata_kernel(const MetadataParams& p, int* s_tiles) {
  for (int i = threadIdx.x; i < p.b; i += blockDim.x) {
    const int len = min(max(p.cache_seqlens[i], 0), p.max_seqlen);
    s_tiles[i] = (len + p.block_size_k - 1) / p.block_size_k;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;

  long long total = 0;
  for (int i = 0; i < p.b; ++i) total += s_tiles[i] > 0 ? s_tiles[i] + p.overhead_tiles : 0;
  const long long per_part = (total + p.num_parts - 1) / p.num_parts;
  const int payload = static_cast<int>(per_part > p.overhead_tiles + 1 ? per_part : p.overhead_tiles + 1);

  int part = 0, used = 0;
  int begin_b = 0, begin_tile = 0, begin_split = 0, last_b = 0, last_tile = 0;
  int split_sum = 0;
  for (int bi = 0; bi < p.b; ++bi) {
    const int n = s_tiles[bi];
    int splits = 0;
    int tile = 0;
    while (tile < n) {
      const int room = payload - used - p.overhead_tiles;
      if (used > 0 && room <= 0 && part < p.num_parts - 1) {  // close the full partition
        int* w = p.sched + part * kSchedWords;
        w[0] = begin_b, w[1] = begin_tile, w[2] = last_b, w[3] = last_tile, w[4] = begin_split;
        ++part;
        used = 0;
        continue;
      }
      if (used == 0) begin_b = bi, begin_tile = tile, begin_split = splits;
      int take = n - tile;
      if (part < p.num_parts - 1 && take > room) take = room > 1 ? room : 1;
      tile += take;
      used += take + p.overhead_tiles;
      ++splits;
      last_b = bi, last_tile = tile;
    }
    p.split_offsets[bi] = split_sum;
    split_sum += splits;
  }
  p.split_offsets[p.b] = split_sum;
  if (used > 0) {
    int* w = p.sched + part * kSchedWords;
    w[0] = begin_b, w[1] = begin_tile, w[2] = last_b, w[3] = last_tile, w[4] = begin_split;
    ++part;
  }
  for (; part < p.num_parts; ++part) {
    int* w = p.sched + part * kSchedWords;
    w[0] = -1, w[1] = 0, w[2] = -1, w[3] = 0, w[4] = 0;
  }
}

}  // namespace flashmla
