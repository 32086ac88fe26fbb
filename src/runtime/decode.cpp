// The operations users call: get_mla_metadata and mla_decode.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string_view>
#include <vector>

#include "codegen/codegen.hpp"
#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "jit/kernel_cache.hpp"
#include "runtime/dispatch.hpp"
#include "runtime/tuning.hpp"
#include "runtime/validate.hpp"
#include "runtime/workspace.hpp"

// Device parameter structs, shared with the templates.
#include "flashmla/params.cuh"

#ifndef FLASHMLA_VERSION
#define FLASHMLA_VERSION "0.0.0"
#endif

namespace flashmla {
namespace {

// Fixed cost of one split, in K tiles (load q, write a partial, combine it); FlashMLA uses 5
// tiles of 64 keys. Not yet measured for decode_mma. Developer knob for measuring it:
// FLASHMLA_SPLIT_OVERHEAD_TILES=N (0-64).
constexpr int kSplitOverheadTiles = 2;
int split_overhead_tiles() {
  static const int tiles = [] {
    const char* env = std::getenv("FLASHMLA_SPLIT_OVERHEAD_TILES");
    const int n = env && *env ? std::atoi(env) : kSplitOverheadTiles;
    return n >= 0 && n <= 64 ? n : kSplitOverheadTiles;
  }();
  return tiles;
}

constexpr std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// decode_wgmma's K/V L2 policy: the limit kv_evict_first_limit (dispatch.hpp) gives, with
// FLASHMLA_KV_EVICT_FIRST_MB (read once) as the override.
std::size_t evict_first_max_bytes(int q_tiles_per_head) {
  static const long long mb = [] {
    const char* env = std::getenv("FLASHMLA_KV_EVICT_FIRST_MB");
    return env && *env ? std::max(0LL, std::atoll(env)) : -1LL;
  }();
  return runtime::kv_evict_first_limit(q_tiles_per_head, jit::current_device_info().l2_bytes, mb);
}

Arch device_arch() {
  const jit::DeviceInfo info = jit::current_device_info();
  runtime::validate_arch(info.cc_major, info.cc_minor, info.name.c_str());
  Arch arch;
  arch.sm = info.cc_major * 10 + info.cc_minor;
  arch.accel = arch.sm == 90;
  return arch;
}

int q_tiles(const DecodeShape& s, const KernelConfig& c) {
  return (runtime::rows_per_kv_head(s) + c.block_size_q - 1) / c.block_size_q;
}

// CTAs per q tile: decode_pair runs each q tile on a cluster of two.
int ctas_per_q_tile(const KernelConfig& c) { return c.family == Family::decode_pair ? 2 : 1; }

int num_parts_for(const DecodeShape& s, const KernelConfig& c) {
  const int sms = jit::current_device_info().sm_count;
  const int parts = std::clamp(sms / (s.h_kv * q_tiles(s, c) * ctas_per_q_tile(c)), 1, codegen::kCombineMaxSplits);
  static const int cap = [] {  // FLASHMLA_NUM_PARTS (README), read once: this runs every step
    const char* env = std::getenv("FLASHMLA_NUM_PARTS");
    return env && *env && std::atoi(env) > 0 ? std::atoi(env) : 0;
  }();
  return cap > 0 ? std::min(cap, parts) : parts;
}

void launch(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned threads, unsigned smem, CUstream stream,
            void* params) {
  void* args[] = {params};
  FLASHMLA_CU(jit::driver().cuLaunchKernel(fn, gx, gy, gz, threads, 1, 1, smem, stream, args, nullptr));
}

// Launches fn after the previous kernel in the stream with programmatic dependent launch: it
// may start once every CTA of that kernel has triggered (decode_wgmma does after its tile
// loop) and waits in griddepcontrol.wait for it to complete. sm_90 and newer;
// FLASHMLA_NO_PDL=1 turns it off (an ordinary launch; the wait is then a no-op).
bool programmatic_launch_enabled(const Arch& arch) {
  static const bool disabled = [] {
    const char* env = std::getenv("FLASHMLA_NO_PDL");
    return env && *env && std::string_view(env) != "0";
  }();
  return arch.sm >= 90 && !disabled;
}

// cuLaunchKernelEx with one launch attribute.
void launch_with(const CUlaunchAttribute& attr, CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned threads,
                 unsigned smem, CUstream stream, void* params) {
  CUlaunchConfig cfg{};
  cfg.gridDimX = gx, cfg.gridDimY = gy, cfg.gridDimZ = gz;
  cfg.blockDimX = threads, cfg.blockDimY = 1, cfg.blockDimZ = 1;
  cfg.sharedMemBytes = smem;
  cfg.hStream = stream;
  cfg.attrs = const_cast<CUlaunchAttribute*>(&attr);
  cfg.numAttrs = 1;
  void* args[] = {params};
  FLASHMLA_CU(jit::driver().cuLaunchKernelEx(&cfg, fn, args, nullptr));
}

void launch_programmatic(CUfunction fn, unsigned gx, unsigned gy, unsigned threads, CUstream stream, void* params) {
  CUlaunchAttribute attr{};
  attr.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attr.value.programmaticStreamSerializationAllowed = 1;
  launch_with(attr, fn, gx, gy, 1, threads, 0, stream, params);
}

// decode_pair: the grid in clusters of two CTAs along x (the two halves of one q tile).
void launch_pair(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned threads, unsigned smem,
                 CUstream stream, void* params) {
  CUlaunchAttribute attr{};
  attr.id = CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION;
  attr.value.clusterDim.x = 2, attr.value.clusterDim.y = 1, attr.value.clusterDim.z = 1;
  launch_with(attr, fn, gx, gy, gz, threads, smem, stream, params);
}

// The TMA view of k_cache (the sm_90a families): 4-D (d_qk, page row, kv head, block), innermost first,
// strides in bytes; a box is 64 columns (128 bytes, the swizzle span) x min(page_size, 64) rows.
// validate_args has checked that every stride is a multiple of 8 elements (TMA needs 16 bytes).
void encode_k_tmap(const DecodeShape& s, const DecodeArgs& a, unsigned char (&out)[128]) {
  static_assert(sizeof(CUtensorMap) == sizeof(out), "CUtensorMap is 128 bytes");
  const cuuint64_t dims[4] = {cuuint64_t(s.d_qk()), cuuint64_t(s.page_size), cuuint64_t(s.h_kv),
                              cuuint64_t(s.num_blocks)};
  const cuuint64_t strides[3] = {cuuint64_t(a.k_strides[1]) * 2, cuuint64_t(a.k_strides[2]) * 2,
                                 cuuint64_t(a.k_strides[0]) * 2};
  const cuuint32_t box[4] = {64, cuuint32_t(std::min(s.page_size, 64)), 1, 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  FLASHMLA_CU(jit::driver().cuTensorMapEncodeTiled(
      &map, s.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
      const_cast<void*>(a.k_cache), dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  std::memcpy(out, &map, sizeof(map));
}

// The TMA view of q for decode_wgmma (params.cuh, q_tmap): 4-D (d_qk, h_q, s_q, b), strides in
// bytes; a box is one 64-column tile of a q tile's 64 rows (row = s * hpk + head). Used where the
// heads per kv head (hpk) are a multiple of 64, so that a q tile is 64 heads of one token; returns
// false otherwise and the kernel loads q by cp.async. (Boxes of 64 / hpk whole tokens would serve
// the divisors of 64 too; measured at h_q 16, b32 s_k 4096: 70.65 us against 70.4 by cp.async,
// within noise but not better, so they keep cp.async. bench/NOTES.md)
bool encode_q_tmap(const DecodeShape& s, const DecodeArgs& a, unsigned char (&out)[128]) {
  const int hpk = s.h_q / s.h_kv;
  if (hpk % 64 != 0) return false;
  const int box_heads = 64;
  const cuuint64_t dims[4] = {cuuint64_t(s.d_qk()), cuuint64_t(s.h_q), cuuint64_t(s.s_q), cuuint64_t(s.b)};
  const cuuint64_t strides[3] = {cuuint64_t(a.q_strides[2]) * 2, cuuint64_t(a.q_strides[1]) * 2,
                                 cuuint64_t(a.q_strides[0]) * 2};
  const cuuint32_t box[4] = {64, cuuint32_t(box_heads), cuuint32_t(64 / box_heads), 1};
  const cuuint32_t elem_strides[4] = {1, 1, 1, 1};
  CUtensorMap map;
  FLASHMLA_CU(jit::driver().cuTensorMapEncodeTiled(
      &map, s.dtype == DType::bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
      const_cast<void*>(a.q), dims, strides, box, elem_strides, CU_TENSOR_MAP_INTERLEAVE_NONE,
      CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE));
  std::memcpy(out, &map, sizeof(map));
  return true;
}

std::size_t metadata_bytes(const DecodeShape& s, int num_parts) {
  return align_up(std::size_t(num_parts) * kSchedWords * 4, 256) + align_up(std::size_t(s.b + 1) * 4, 256);
}

}  // namespace

const char* version() { return FLASHMLA_VERSION; }

namespace {
runtime::Selection select_for_device(const DecodeShape& shape, const DecodeOptions& options, double mean_seqlen) {
  runtime::validate_shape(shape);
  const Arch arch = device_arch();
  return runtime::select(shape, arch, options, runtime::tables_for(jit::current_device_info()), mean_seqlen);
}
}  // namespace

KernelConfig select_config(const DecodeShape& shape, const DecodeOptions& options) {
  return select_for_device(shape, options, 0).config;
}

std::string explain_config(const DecodeShape& shape, const DecodeOptions& options) {
  const runtime::Selection s = select_for_device(shape, options, 0);
  return s.config.id() + ": " + s.explanation;
}

std::size_t metadata_workspace_size(const DecodeShape& shape, const DecodeOptions&) {
  // The config (hence num_parts) is chosen in get_mla_metadata, possibly from the lengths
  // themselves; num_parts never exceeds the SM count, so size for that.
  runtime::validate_shape(shape);
  return metadata_bytes(shape, jit::current_device_info().sm_count);
}

MlaMetadata get_mla_metadata(const DecodeShape& shape, const int32_t* cache_seqlens, const int32_t* block_table,
                             int64_t block_table_stride, Stream stream_in, void* workspace,
                             const DecodeOptions& options) {
  auto stream = reinterpret_cast<CUstream>(stream_in);
  runtime::validate_shape(shape);
  if (!cache_seqlens) throw InvalidArgument("cache_seqlens is a null pointer; expected a device pointer to b int32");
  if (!block_table) throw InvalidArgument("block_table is a null pointer; expected a device pointer");
  if (block_table_stride == 0) block_table_stride = shape.max_blocks_per_seq;
  if (block_table_stride < shape.max_blocks_per_seq)
    throw InvalidArgument(fmt::format("block_table_stride = {} is smaller than max_blocks_per_seq = {}",
                                      block_table_stride, shape.max_blocks_per_seq));
  if (shape.b > 65535) throw InvalidArgument(fmt::format("b = {}; expected at most 65535", shape.b));
  const auto& d = jit::driver();
  const jit::DeviceInfo info = jit::current_device_info();
  if (std::size_t(shape.b) * 4 > info.max_shared_optin)
    throw InvalidArgument(fmt::format("b = {} exceeds the {} sequences the metadata kernel stages in shared memory",
                                      shape.b, info.max_shared_optin / 4));

  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  FLASHMLA_CU(d.cuStreamIsCapturing(stream, &capture));
  double mean_seqlen = 0;  // known when the lengths are copied to the host
  if (options.check_seqlens && capture == CU_STREAM_CAPTURE_STATUS_NONE) {
    std::vector<int32_t> lens(shape.b), table(std::size_t(shape.b - 1) * block_table_stride + shape.max_blocks_per_seq);
    FLASHMLA_CU(d.cuMemcpyDtoHAsync(lens.data(), reinterpret_cast<CUdeviceptr>(cache_seqlens), lens.size() * 4, stream));
    FLASHMLA_CU(d.cuMemcpyDtoHAsync(table.data(), reinterpret_cast<CUdeviceptr>(block_table), table.size() * 4, stream));
    FLASHMLA_CU(d.cuStreamSynchronize(stream));
    runtime::validate_seqlens(shape, lens, table, block_table_stride);
    for (int32_t len : lens) mean_seqlen += double(len) / shape.b;
  }
  const KernelConfig config = select_for_device(shape, options, mean_seqlen).config;

  const jit::Module& module = jit::get_module(config);
  MlaMetadata md;
  md.config = config;
  md.num_parts = num_parts_for(shape, config);
  md.b = shape.b, md.s_q = shape.s_q, md.h_q = shape.h_q, md.h_kv = shape.h_kv;
  const std::size_t bytes = metadata_bytes(shape, md.num_parts);
  if (!workspace) workspace = runtime::library_workspace(stream, runtime::Purpose::metadata, bytes);
  if (reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0)
    throw InvalidArgument(fmt::format("metadata workspace {} is not 16-byte aligned", workspace));
  auto* base = static_cast<char*>(workspace);
  md.sched = reinterpret_cast<int32_t*>(base);
  md.split_offsets = reinterpret_cast<int32_t*>(base + align_up(std::size_t(md.num_parts) * kSchedWords * 4, 256));

  MetadataParams p{};
  p.cache_seqlens = cache_seqlens;
  p.sched = md.sched;
  p.split_offsets = md.split_offsets;
  p.b = shape.b;
  p.num_parts = md.num_parts;
  p.block_size_k = config.block_size_k;
  p.overhead_tiles = split_overhead_tiles();
  p.max_seqlen = shape.max_blocks_per_seq * shape.page_size;
  p.evict_first_max_tiles = static_cast<long long>(std::min<std::size_t>(
      evict_first_max_bytes(q_tiles(shape, config)) / (std::size_t(config.block_size_k) * shape.d_qk() * 2 * shape.h_kv),
      std::numeric_limits<long long>::max()));
  launch(module.metadata, 1, 1, 1, codegen::kMetadataThreads, static_cast<unsigned>(shape.b * 4), stream, &p);
  return md;
}

// Sized for fp32 partials (decode_mma, decode_seesaw); decode_wgmma's 16-bit ones use half of it.
std::size_t decode_workspace_size(const DecodeShape& s, const MlaMetadata& md) {
  const std::size_t rows = std::size_t(md.num_splits_max()) * s.s_q * s.h_q;
  return align_up(rows * s.latent_dim * 4, 256) + align_up(rows * 4, 256);
}

void mla_decode(const DecodeShape& shape, const DecodeArgs& args_in, const MlaMetadata& md, Stream stream_in,
                void* workspace) {
  auto stream = reinterpret_cast<CUstream>(stream_in);
  runtime::validate_shape(shape);
  const DecodeArgs a = runtime::validate_args(shape, args_in);
  if (!md.sched || !md.split_offsets)
    throw InvalidArgument("metadata has null schedule pointers; compute it with get_mla_metadata");
  if (md.b != shape.b || md.s_q != shape.s_q || md.h_q != shape.h_q || md.h_kv != shape.h_kv)
    throw InvalidArgument(fmt::format(
        "metadata was made for b={} s_q={} h_q={} h_kv={} but the call has b={} s_q={} h_q={} h_kv={}", md.b, md.s_q,
        md.h_q, md.h_kv, shape.b, shape.s_q, shape.h_q, shape.h_kv));
  const KernelConfig& c = md.config;
  runtime::check_pinned(c, shape, device_arch(), "metadata");
  const jit::Module& module = jit::get_module(c);
  const std::size_t bytes = decode_workspace_size(shape, md);
  if (!workspace) workspace = runtime::library_workspace(stream, runtime::Purpose::partials, bytes);
  if (reinterpret_cast<std::uintptr_t>(workspace) % 16 != 0)
    throw InvalidArgument(fmt::format("decode workspace {} is not 16-byte aligned", workspace));
  const std::size_t rows = std::size_t(md.num_splits_max()) * shape.s_q * shape.h_q;

  DecodeParams p{};
  p.q = a.q;
  p.q_stride_b = a.q_strides[0], p.q_stride_s = a.q_strides[1], p.q_stride_h = a.q_strides[2];
  p.k_cache = a.k_cache;
  p.k_stride_block = a.k_strides[0], p.k_stride_row = a.k_strides[1], p.k_stride_head = a.k_strides[2];
  p.block_table = a.block_table;
  p.block_table_stride = a.block_table_stride;
  p.cache_seqlens = a.cache_seqlens;
  p.out = a.out;
  p.o_stride_b = a.out_strides[0], p.o_stride_s = a.out_strides[1], p.o_stride_h = a.out_strides[2];
  p.lse = a.lse;
  p.o_accum = static_cast<float*>(workspace);
  p.lse_accum = reinterpret_cast<float*>(static_cast<char*>(workspace) + align_up(rows * shape.latent_dim * 4, 256));
  p.sched = md.sched;
  p.split_offsets = md.split_offsets;
  p.b = shape.b, p.s_q = shape.s_q, p.h_q = shape.h_q, p.h_kv = shape.h_kv;
  p.max_seqlen = shape.max_blocks_per_seq * shape.page_size;
  p.causal = a.causal ? 1 : 0;
  const float scale = a.softmax_scale > 0.f ? a.softmax_scale : 1.f / std::sqrt(float(shape.d_qk()));
  p.scale_log2 = scale * 1.4426950408889634f;
  if (c.family != Family::decode_mma) encode_k_tmap(shape, a, p.k_tmap);
  static const bool q_tma_off = [] {  // FLASHMLA_Q_TMA=0: decode_wgmma loads q by cp.async (README)
    const char* env = std::getenv("FLASHMLA_Q_TMA");
    return env && std::string_view(env) == "0";
  }();
  if (c.family == Family::decode_wgmma && !q_tma_off) p.q_tma = encode_q_tmap(shape, a, p.q_tmap) ? 1 : 0;
  // Grid (q tile, partition, kv head): the q tiles of one partition read the same K/V tiles and
  // are launched next to each other, so they run at the same time on nearby SMs and share L2.
  if (c.family == Family::decode_pair)
    launch_pair(module.decode, ctas_per_q_tile(c) * q_tiles(shape, c), md.num_parts, shape.h_kv, c.num_threads(),
                static_cast<unsigned>(c.shared_bytes()), stream, &p);
  else
    launch(module.decode, q_tiles(shape, c), md.num_parts, shape.h_kv, c.num_threads(),
           static_cast<unsigned>(c.shared_bytes()), stream, &p);

  CombineParams cp{};
  cp.out = a.out;
  cp.o_stride_b = p.o_stride_b, cp.o_stride_s = p.o_stride_s, cp.o_stride_h = p.o_stride_h;
  cp.lse = a.lse;
  cp.o_accum = p.o_accum;
  cp.lse_accum = p.lse_accum;
  cp.split_offsets = md.split_offsets;
  cp.b = shape.b, cp.s_q = shape.s_q, cp.h_q = shape.h_q;
  // A combine CTA works on one row at a time; ~4 CTAs per SM in all keep enough loads in
  // flight at small batches, and at large ones (where most batches have one split and their
  // CTAs exit at once) few CTAs per batch are launched.
  const int sms = jit::current_device_info().sm_count;
  const int row_blocks = std::clamp(4 * sms / shape.b, 1, shape.s_q * shape.h_q);
  // Launched early, combine CTAs pile onto the SMs whose decode CTAs finish first (up to 4 per
  // SM); a combine of fewer than ~2 CTAs per SM then runs on a fraction of the SMs. Measured on
  // the H100 (bench/NOTES.md): PDL gains 1-3 us at b 4 to 128, loses 1.8 us at b 1 (128 CTAs).
  if (programmatic_launch_enabled(c.arch) && row_blocks * shape.b >= 2 * sms)
    launch_programmatic(module.combine, row_blocks, shape.b, codegen::kCombineThreads, stream, &cp);
  else
    launch(module.combine, row_blocks, shape.b, 1, codegen::kCombineThreads, 0, stream, &cp);
}

}  // namespace flashmla
