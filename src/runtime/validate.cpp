#include "runtime/validate.hpp"

#include <fmt/format.h>

#include <cstdint>

namespace flashmla::runtime {
namespace {

[[noreturn]] void fail(const std::string& message) { throw InvalidArgument(message); }

void require_pointer(const void* p, const char* name, std::size_t alignment) {
  if (!p) fail(fmt::format("{} is a null pointer; expected a device pointer", name));
  if (reinterpret_cast<std::uintptr_t>(p) % alignment != 0)
    fail(fmt::format("{} = {} is not {}-byte aligned", name, p, alignment));
}

// stride (elements) must be a multiple of `multiple` and at least `minimum`.
void require_stride(int64_t stride, int64_t minimum, int64_t multiple, const std::string& name) {
  if (stride < minimum)
    fail(fmt::format("{} = {} is smaller than the {} elements it must span", name, stride, minimum));
  if (stride % multiple != 0)
    fail(fmt::format("{} = {} is not a multiple of {} elements ({} bytes)", name, stride, multiple, multiple * 2));
}

}  // namespace

void validate_shape(const DecodeShape& s) {
  if (s.b < 1) fail(fmt::format("b = {}; expected >= 1", s.b));
  if (s.s_q < 1) fail(fmt::format("s_q = {}; expected >= 1", s.s_q));
  if (s.h_kv < 1) fail(fmt::format("h_kv = {}; expected >= 1", s.h_kv));
  if (s.h_q < 1 || s.h_q > 128) fail(fmt::format("h_q = {}; expected 1 to 128", s.h_q));
  if (s.h_q % s.h_kv != 0) fail(fmt::format("h_q = {} is not divisible by h_kv = {}", s.h_q, s.h_kv));
  if (s.latent_dim != 512 && s.latent_dim != 256)
    fail(fmt::format("latent_dim = {} is not supported; expected 512 or 256", s.latent_dim));
  if (s.rope_dim != 64) fail(fmt::format("rope_dim = {} is not supported; expected 64", s.rope_dim));
  if (s.page_size != 16 && s.page_size != 32 && s.page_size != 64 && s.page_size != 128)
    fail(fmt::format("page_size = {} is not supported; expected 16, 32, 64 or 128", s.page_size));
  if (s.num_blocks < 1) fail(fmt::format("num_blocks = {}; expected >= 1", s.num_blocks));
  if (s.max_blocks_per_seq < 1) fail(fmt::format("max_blocks_per_seq = {}; expected >= 1", s.max_blocks_per_seq));
  if (static_cast<int64_t>(s.max_blocks_per_seq) * s.page_size > INT32_MAX)
    fail(fmt::format("max_blocks_per_seq {} x page_size {} exceeds 2^31 keys", s.max_blocks_per_seq, s.page_size));
  if (s.dtype != DType::bf16 && s.dtype != DType::fp16)
    fail(fmt::format("dtype = {}; expected bf16 or fp16", static_cast<int>(s.dtype)));
}

DecodeArgs validate_args(const DecodeShape& s, const DecodeArgs& in) {
  DecodeArgs a = in;
  const int64_t d_qk = s.d_qk();
  require_pointer(a.q, "q", 16);
  require_pointer(a.k_cache, "k_cache", 16);
  require_pointer(a.block_table, "block_table", 4);
  require_pointer(a.cache_seqlens, "cache_seqlens", 4);
  require_pointer(a.out, "out", 4);
  require_pointer(a.lse, "lse", 4);
  if (a.q_strides[2] == 0) a.q_strides = {int64_t(s.s_q) * s.h_q * d_qk, int64_t(s.h_q) * d_qk, d_qk};
  if (a.k_strides[2] == 0) a.k_strides = {int64_t(s.page_size) * s.h_kv * d_qk, int64_t(s.h_kv) * d_qk, d_qk};
  if (a.out_strides[2] == 0)
    a.out_strides = {int64_t(s.s_q) * s.h_q * s.latent_dim, int64_t(s.h_q) * s.latent_dim, s.latent_dim};
  if (a.block_table_stride == 0) a.block_table_stride = s.max_blocks_per_seq;

  // q rows and cache rows are copied in 16-byte pieces: strides are multiples of 8 elements.
  // q and k_cache are only read, so their rows may overlap (a broadcast q, say); out rows
  // are written and must not: b outermost, then s_q, then h_q.
  require_stride(a.q_strides[2], d_qk, 8, "q stride of h_q");
  require_stride(a.q_strides[1], d_qk, 8, "q stride of s_q");
  require_stride(a.q_strides[0], d_qk, 8, "q stride of b");
  require_stride(a.k_strides[2], d_qk, 8, "k_cache stride of h_kv");
  require_stride(a.k_strides[1], s.h_kv > 1 ? a.k_strides[2] * s.h_kv : d_qk, 8, "k_cache stride of page rows");
  require_stride(a.k_strides[0], a.k_strides[1] * s.page_size, 8, "k_cache stride of blocks");
  // out is written two elements at a time.
  const int64_t head_span = int64_t(s.h_q - 1) * a.out_strides[2] + s.latent_dim;
  const int64_t token_span = int64_t(s.s_q - 1) * a.out_strides[1] + head_span;
  if (s.h_q > 1) require_stride(a.out_strides[2], s.latent_dim, 2, "out stride of h_q");
  if (s.s_q > 1) require_stride(a.out_strides[1], head_span, 2, "out stride of s_q");
  if (s.b > 1) require_stride(a.out_strides[0], token_span, 2, "out stride of b");
  for (int i = 0; i < 3; ++i)
    if (a.out_strides[i] % 2 != 0)
      fail(fmt::format("out stride {} = {} is odd; out is written two elements at a time", i, a.out_strides[i]));
  if (a.block_table_stride < s.max_blocks_per_seq)
    fail(fmt::format("block_table_stride = {} is smaller than max_blocks_per_seq = {}", a.block_table_stride,
                     s.max_blocks_per_seq));
  if (!(a.softmax_scale >= 0.f) || a.softmax_scale > 1e30f)
    fail(fmt::format("softmax_scale = {}; expected a finite value > 0 (or 0 for d_qk^-0.5)", a.softmax_scale));
  return a;
}

void validate_seqlens(const DecodeShape& s, const std::vector<int32_t>& seqlens,
                      const std::vector<int32_t>& block_table, int64_t block_table_stride) {
  const int64_t capacity = int64_t(s.max_blocks_per_seq) * s.page_size;
  for (int bi = 0; bi < s.b; ++bi) {
    const int64_t len = seqlens[bi];
    if (len < 0) fail(fmt::format("cache_seqlens[{}] = {} is negative", bi, len));
    if (len > capacity)
      fail(fmt::format("cache_seqlens[{}] = {} exceeds block_table capacity {} ({} blocks x {})", bi, len, capacity,
                       s.max_blocks_per_seq, s.page_size));
    const int64_t pages = (len + s.page_size - 1) / s.page_size;
    for (int64_t i = 0; i < pages; ++i) {
      const int32_t block = block_table[bi * block_table_stride + i];
      if (block < 0 || block >= s.num_blocks)
        fail(fmt::format("block_table[{}][{}] = {} is outside the cache's {} blocks (needed by cache_seqlens[{}] = {})",
                         bi, i, block, s.num_blocks, bi, len));
    }
  }
}

void validate_arch(int cc_major, int cc_minor, const char* device_name) {
  if (cc_major < 8)
    throw Unsupported(fmt::format("GPU {} is sm_{}{}; flashmla needs sm_80 or newer (mma.sync bf16, cp.async)",
                                  device_name, cc_major, cc_minor));
}

}  // namespace flashmla::runtime
