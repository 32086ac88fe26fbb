// flashmla C++ API: paged Multi-head Latent Attention decode.
//
// Protocol per decoding step (the metadata is reused by every layer of the step):
//   MlaMetadata md = get_mla_metadata(shape, cache_seqlens, stream);
//   for each layer: mla_decode(shape, args, md, stream);
// All pointers are device pointers; strides are in elements; every call is
// asynchronous on the caller's stream and launches nothing when it throws.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "flashmla/config.hpp"
#include "flashmla/error.hpp"

struct CUstream_st;  // CUstream and cudaStream_t are both CUstream_st*

namespace flashmla {

using Stream = CUstream_st*;

// Shapes of one decode call.
struct DecodeShape {
  int b = 1;                 // batch
  int s_q = 1;               // query tokens per sequence (causal masking when > 1 and causal)
  int h_q = 128;             // query heads, 1..128, a multiple of h_kv
  int h_kv = 1;              // latent KV heads
  int latent_dim = 512;      // d_v: 512 or 256
  int rope_dim = 64;         // d_qk = latent_dim + rope_dim
  int page_size = 64;        // keys per cache block: 16, 32, 64, 128
  int num_blocks = 0;        // blocks in k_cache
  int max_blocks_per_seq = 0;  // columns of block_table
  DType dtype = DType::bf16;
  int d_qk() const { return latent_dim + rope_dim; }
};

struct DecodeArgs {
  const void* q = nullptr;               // [b, s_q, h_q, d_qk]
  std::array<int64_t, 3> q_strides{};    // b, s_q, h_q; 0 = contiguous
  const void* k_cache = nullptr;         // [num_blocks, page_size, h_kv, d_qk]
  std::array<int64_t, 3> k_strides{};    // block, row, head; 0 = contiguous
  const int32_t* block_table = nullptr;  // [b, max_blocks_per_seq]
  int64_t block_table_stride = 0;        // 0 = max_blocks_per_seq
  const int32_t* cache_seqlens = nullptr;  // [b]
  void* out = nullptr;                   // [b, s_q, h_q, latent_dim], dtype of q
  std::array<int64_t, 3> out_strides{};  // 0 = contiguous
  float* lse = nullptr;                  // [b, h_q, s_q] fp32, contiguous
  float softmax_scale = 0.f;             // 0 = d_qk^-0.5
  bool causal = false;                   // only changes anything when s_q > 1
};

struct DecodeOptions {
  // Run exactly this config (its dtype/latent/rope/page fields must match the shape).
  // Unset: the FLASHMLA_CONFIG environment variable, then the heuristic.
  std::optional<KernelConfig> config;
  // Copy cache_seqlens and block_table to the host once in get_mla_metadata and reject
  // sequences longer than their block table or block ids out of range. Synchronises the
  // stream; skipped automatically while the stream is being captured into a graph.
  bool check_seqlens = true;
  // Mean context length used to pick a tuning-table bucket when the lengths are not copied
  // to the host (check_seqlens off, or graph capture). 0: half the block table's capacity.
  double seqlen_hint = 0;
};

// The split-KV schedule of one decoding step: FlashMLA's (tile_scheduler_metadata,
// num_splits). Points into caller or library memory; see get_mla_metadata.
struct MlaMetadata {
  KernelConfig config;          // the decode config the schedule was made for
  int num_parts = 0;            // partitions (CTAs per q tile and kv head)
  int b = 0, s_q = 0, h_q = 0, h_kv = 0;  // shape the schedule was made for
  int32_t* sched = nullptr;          // device [num_parts, 8]
  int32_t* split_offsets = nullptr;  // device [b + 1]
  int num_splits_max() const { return b + num_parts; }  // bound on the total split count
};

// Bytes of device memory get_mla_metadata needs for this shape (caller-provided workspace).
std::size_t metadata_workspace_size(const DecodeShape& shape, const DecodeOptions& options = {});
// Computes the schedule on the GPU from cache_seqlens. workspace: at least
// metadata_workspace_size() bytes, 16-byte aligned, or nullptr to use a library buffer
// owned per stream that the next get_mla_metadata on that stream overwrites.
MlaMetadata get_mla_metadata(const DecodeShape& shape, const int32_t* cache_seqlens, const int32_t* block_table,
                             int64_t block_table_stride, Stream stream, void* workspace = nullptr,
                             const DecodeOptions& options = {});

// Bytes of scratch mla_decode needs for split partials.
std::size_t decode_workspace_size(const DecodeShape& shape, const MlaMetadata& metadata);
// out, lse = softmax(q k^T * scale) v over the paged cache. workspace: at least
// decode_workspace_size() bytes, or nullptr for a library buffer owned per stream.
void mla_decode(const DecodeShape& shape, const DecodeArgs& args, const MlaMetadata& metadata, Stream stream,
                void* workspace = nullptr);

// The config the dispatcher picks for a shape on the current device: DecodeOptions::config,
// FLASHMLA_CONFIG, the tuning tables (configs/, $FLASHMLA_CACHE_DIR/tuning/), the heuristic.
KernelConfig select_config(const DecodeShape& shape, const DecodeOptions& options = {});
// The same choice with the entry or rule that made it.
std::string explain_config(const DecodeShape& shape, const DecodeOptions& options = {});
// Forgets the tuning tables read so far (they are read once per device, on first dispatch).
void reload_tuning_tables();

// Library version, "major.minor.patch".
const char* version();

}  // namespace flashmla
