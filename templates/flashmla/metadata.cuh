// Split-KV schedule (FlashMLA's get_mla_metadata), computed on the GPU from cache_seqlens
// so that a decode step needs no host synchronisation and can be captured in a graph.
//
// Work of batch b = n_tiles(b) + overhead_tiles per split (a split also pays for loading q
// and writing its partial). The (batch, tile) sequence is cut into at most num_parts
// contiguous pieces of nearly equal work.
// A batch cut across partitions gets one split per piece; split_offsets is the
// exclusive prefix sum of the split counts (0 splits for an empty sequence).
// A sequence whose rest overflows the partition by at most payload / 8 tiles is finished
// there instead of split: a split costs more than its overhead_tiles suggest (its partial
// output goes out and back through memory, and the combine reads it), so a partition up to
// 1/8 over its share is cheaper. Measured on the H100 at b 128 (bench/NOTES.md).
#pragma once
#include "flashmla/params.cuh"

namespace flashmla {

// Cuts the (batch, tile) sequence into partitions of at most `payload` work; returns how
// many partitions that takes. Writes the schedule when `write` is set (and the count fits).
__device__ __forceinline__ int metadata_sweep(const MetadataParams& p, const int* s_tiles, int payload, int evict_first,
                                              bool write) {
  int part = 0, used = 0;
  int begin_b = 0, begin_tile = 0, begin_split = 0, last_b = 0, last_tile = 0;
  int split_sum = 0;
  auto close = [&] {
    if (write) {
      int* w = p.sched + part * kSchedWords;
      w[0] = begin_b, w[1] = begin_tile, w[2] = last_b, w[3] = last_tile, w[4] = begin_split, w[5] = evict_first;
    }
    ++part;
    used = 0;
  };
  for (int bi = 0; bi < p.b; ++bi) {
    const int n = s_tiles[bi];
    int splits = 0, tile = 0;
    while (tile < n) {
      const int room = payload - used - p.overhead_tiles;  // tiles this partition can still take
      if (used > 0 && room <= 0) {
        close();
        continue;
      }
      if (used == 0) begin_b = bi, begin_tile = tile, begin_split = splits;
      const int rest = n - tile;
      const int take = rest <= room + payload / 8 ? rest : max(room, 1);
      tile += take;
      used += take + p.overhead_tiles;
      ++splits;
      last_b = bi, last_tile = tile;
    }
    if (write) p.split_offsets[bi] = split_sum;
    split_sum += splits;
  }
  if (used > 0) close();
  if (write) {
    p.split_offsets[p.b] = split_sum;
    for (int empty = part; empty < p.num_parts; ++empty) {
      int* w = p.sched + empty * kSchedWords;
      w[0] = -1, w[1] = 0, w[2] = -1, w[3] = 0, w[4] = 0, w[5] = evict_first;
    }
  }
  return part;
}

// One block: seqlens are staged in smem as tile counts, then thread 0 finds the smallest
// payload (work per partition) whose sweep fits in num_parts and writes that schedule.
// Every split pays overhead_tiles, so the ideal payload total / num_parts may need a few
// more partitions than there are; the payload grows by ~1/16 until it fits.
__device__ __forceinline__ void metadata_kernel(const MetadataParams& p, int* s_tiles) {
  for (int i = threadIdx.x; i < p.b; i += blockDim.x) {
    const int len = min(max(p.cache_seqlens[i], 0), p.max_seqlen);
    s_tiles[i] = (len + p.block_size_k - 1) / p.block_size_k;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;

  long long total = 0, kv_tiles = 0;
  for (int i = 0; i < p.b; ++i) {
    total += s_tiles[i] > 0 ? s_tiles[i] + p.overhead_tiles : 0;
    kv_tiles += s_tiles[i];
  }
  const int evict_first = kv_tiles <= p.evict_first_max_tiles;
  const long long ideal = (total + p.num_parts - 1) / p.num_parts;
  int payload = static_cast<int>(ideal > p.overhead_tiles + 1 ? ideal : p.overhead_tiles + 1);
  while (metadata_sweep(p, s_tiles, payload, evict_first, false) > p.num_parts) payload += max(1, payload / 16);
  metadata_sweep(p, s_tiles, payload, evict_first, true);
}

}  // namespace flashmla
