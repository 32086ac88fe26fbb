// Kernel parameter structs, shared verbatim by host code (C++20) and device code
// (NVRTC / nvcc). Trivially copyable, passed by value as __grid_constant__.
// Strides are in elements; the last dimension of every tensor is contiguous.
#pragma once

namespace flashmla {

// Words per partition in the split-KV schedule (FlashMLA's tile_scheduler_metadata row).
// [0] begin batch (-1: empty partition), [1] begin tile, [2] end batch (inclusive),
// [3] end tile (exclusive, in the end batch), [4] split index of the begin batch, [5] 1: load
// K/V with the L2 evict_first policy (the same in every partition: the launch reads few bytes).
// Tiles are block_size_k keys.
constexpr int kSchedWords = 8;

struct DecodeParams {
  const void* q;  // [b, s_q, h_q, d_qk]
  long long q_stride_b, q_stride_s, q_stride_h;
  const void* k_cache;  // [num_blocks, page_size, h_kv, d_qk]; V = its first latent_dim columns
  long long k_stride_block, k_stride_row, k_stride_head;
  const int* block_table;  // [b, max_blocks_per_seq]
  long long block_table_stride;
  const int* cache_seqlens;  // [b]
  void* out;                 // [b, s_q, h_q, latent_dim], input dtype
  long long o_stride_b, o_stride_s, o_stride_h;
  float* lse;          // [b, h_q, s_q], contiguous, natural log
  float* o_accum;      // [num_splits_total, s_q, h_q, latent_dim] normalised partials: fp32, or
                       // the input's 16-bit type for decode_wgmma (combine.cuh)
  float* lse_accum;    // [num_splits_total, s_q, h_q] fp32, natural log (-inf: no key seen)
  const int* sched;    // [num_parts, kSchedWords]
  const int* split_offsets;  // [b + 1], exclusive prefix sum of the splits per batch
  int b, s_q, h_q, h_kv;
  int max_seqlen;       // block_table capacity in keys; longer sequences are clamped on device
  int causal;           // 1: query row s sees keys [0, s_k - s_q + s]
  float scale_log2;     // softmax_scale * log2(e)
  // decode_seesaw only: k_cache's CUtensorMap, encoded by the host (cuTensorMapEncodeTiled): 4-D
  // (d_qk, page row, kv head, block), box 64 columns x min(page_size, 64) rows, 128B swizzle.
  alignas(64) unsigned char k_tmap[128];
  // decode_wgmma only, when q_tma is 1: q's CUtensorMap, 4-D (d_qk, h_q, s_q, b), box 64 columns x
  // 64 heads x 1 x 1, 128B swizzle: one box is one 64-column tile of a q tile's 64 rows (row =
  // s * hpk + head). The host sets q_tma where hpk is a multiple of 64 (decode.cpp).
  alignas(64) unsigned char q_tmap[128];
  int q_tma;
};

struct MetadataParams {
  const int* cache_seqlens;  // [b]
  int* sched;                // [num_parts, kSchedWords]
  int* split_offsets;        // [b + 1]
  int b;
  int num_parts;
  int block_size_k;     // keys per schedule tile (the decode kernel's block_size_k)
  int overhead_tiles;   // fixed cost of one split, in tiles (load q, write partial)
  int max_seqlen;       // block_table capacity in keys
  long long evict_first_max_tiles;  // sched word 5 is 1 when the launch reads at most this many tiles
};

struct CombineParams {
  void* out;  // [b, s_q, h_q, latent_dim]
  long long o_stride_b, o_stride_s, o_stride_h;
  float* lse;                   // [b, h_q, s_q]
  const float* o_accum;         // [num_splits_total, s_q, h_q, latent_dim], fp32 or 16-bit (kPartial16)
  const float* lse_accum;       // [num_splits_total, s_q, h_q]
  const int* split_offsets;     // [b + 1]
  int b, s_q, h_q;
};

}  // namespace flashmla
