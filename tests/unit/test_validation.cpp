// Every bad input of the API is rejected before anything touches the GPU: through
// flashmla::mla_decode / get_mla_metadata / select_config, through runtime::validate_* and
// check_pinned directly, and through the C ABI (status code + flashmla_last_error()).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "flashmla/flashmla.h"
#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "runtime/dispatch.hpp"
#include "runtime/validate.hpp"

namespace {

using Catch::Matchers::Contains;
using flashmla::DecodeArgs;
using flashmla::DecodeShape;
using flashmla::DType;
using flashmla::InvalidArgument;
using flashmla::KernelConfig;
namespace runtime = flashmla::runtime;

template <class T = void>
T* fake_pointer(std::uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

DecodeShape valid_shape() {
  DecodeShape s;
  s.b = 4, s.s_q = 1, s.h_q = 16, s.h_kv = 1;
  s.latent_dim = 512, s.rope_dim = 64, s.page_size = 64;
  s.num_blocks = 64, s.max_blocks_per_seq = 16;
  s.dtype = DType::bf16;
  return s;
}

// Distinct, suitably aligned addresses that are never dereferenced (no GPU is touched).
DecodeArgs valid_args() {
  DecodeArgs a;
  a.q = fake_pointer(0x10000);
  a.k_cache = fake_pointer(0x20000);
  a.block_table = fake_pointer<const int32_t>(0x30000);
  a.cache_seqlens = fake_pointer<const int32_t>(0x40000);
  a.out = fake_pointer(0x50000);
  a.lse = fake_pointer<float>(0x60000);
  return a;
}

// The message of the InvalidArgument `body` throws; "" when it throws nothing. Any other
// exception propagates (and fails the test).
std::string invalid_argument_message(const std::function<void()>& body) {
  try {
    body();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

struct BadInput {
  std::string what;
  std::function<void(DecodeShape&, DecodeArgs&)> mutate;
  std::vector<std::string> expected;  // substrings of the message
};

std::vector<BadInput> bad_inputs(std::mt19937& rng) {
  const unsigned q_misalign = 1 + rng() % 15, k_misalign = 1 + rng() % 15, table_misalign = 1 + rng() % 3;
  const auto hex = [](std::uintptr_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%lx", static_cast<unsigned long>(v));
    return std::string(buf);
  };
  const int64_t d_qk = 576;
  return {
      // Pointers.
      {"null q", [](DecodeShape&, DecodeArgs& a) { a.q = nullptr; }, {"q is a null pointer"}},
      {"null k_cache", [](DecodeShape&, DecodeArgs& a) { a.k_cache = nullptr; }, {"k_cache is a null pointer"}},
      {"null block_table", [](DecodeShape&, DecodeArgs& a) { a.block_table = nullptr; },
       {"block_table is a null pointer"}},
      {"null cache_seqlens", [](DecodeShape&, DecodeArgs& a) { a.cache_seqlens = nullptr; },
       {"cache_seqlens is a null pointer"}},
      {"null out", [](DecodeShape&, DecodeArgs& a) { a.out = nullptr; }, {"out is a null pointer"}},
      {"null lse", [](DecodeShape&, DecodeArgs& a) { a.lse = nullptr; }, {"lse is a null pointer"}},
      {"misaligned q (0x1002)", [](DecodeShape&, DecodeArgs& a) { a.q = fake_pointer(0x1002); },
       {"q = 0x1002", "16-byte aligned"}},
      {"misaligned q (random)", [=](DecodeShape&, DecodeArgs& a) { a.q = fake_pointer(0x7000 + q_misalign); },
       {"q = " + hex(0x7000 + q_misalign), "16-byte aligned"}},
      {"misaligned k_cache", [=](DecodeShape&, DecodeArgs& a) { a.k_cache = fake_pointer(0x9000 + k_misalign); },
       {"k_cache = " + hex(0x9000 + k_misalign), "16-byte aligned"}},
      {"misaligned block_table",
       [=](DecodeShape&, DecodeArgs& a) { a.block_table = fake_pointer<const int32_t>(0x3000 + table_misalign); },
       {"block_table", "4-byte aligned"}},
      // Shape.
      {"b 0", [](DecodeShape& s, DecodeArgs&) { s.b = 0; }, {"b = 0"}},
      {"s_q 0", [](DecodeShape& s, DecodeArgs&) { s.s_q = 0; }, {"s_q = 0"}},
      {"h_q 0", [](DecodeShape& s, DecodeArgs&) { s.h_q = 0; }, {"h_q = 0", "1 to 128"}},
      {"h_q 129", [](DecodeShape& s, DecodeArgs&) { s.h_q = 129; }, {"h_q = 129", "1 to 128"}},
      {"h_kv 0", [](DecodeShape& s, DecodeArgs&) { s.h_kv = 0; }, {"h_kv = 0"}},
      {"h_q 12 h_kv 5", [](DecodeShape& s, DecodeArgs&) { s.h_q = 12, s.h_kv = 5; },
       {"h_q = 12", "not divisible", "h_kv = 5"}},
      {"page_size 48", [](DecodeShape& s, DecodeArgs&) { s.page_size = 48; }, {"page_size = 48"}},
      {"latent_dim 384", [](DecodeShape& s, DecodeArgs&) { s.latent_dim = 384; }, {"latent_dim = 384"}},
      {"rope_dim 32", [](DecodeShape& s, DecodeArgs&) { s.rope_dim = 32; }, {"rope_dim = 32"}},
      {"dtype 7", [](DecodeShape& s, DecodeArgs&) { s.dtype = static_cast<DType>(7); }, {"dtype = 7"}},
      {"num_blocks 0", [](DecodeShape& s, DecodeArgs&) { s.num_blocks = 0; }, {"num_blocks = 0"}},
      {"max_blocks_per_seq 0", [](DecodeShape& s, DecodeArgs&) { s.max_blocks_per_seq = 0; },
       {"max_blocks_per_seq = 0"}},
      {"2^32 keys per sequence", [](DecodeShape& s, DecodeArgs&) { s.max_blocks_per_seq = 1 << 25, s.page_size = 128; },
       {"max_blocks_per_seq 33554432", "2^31"}},
      // q strides (elements).
      {"q head stride not a multiple of 8", [=](DecodeShape&, DecodeArgs& a) { a.q_strides = {16 * 580, 16 * 580, 580}; },
       {"q stride of h_q = 580", "multiple of 8"}},
      {"q head stride < d_qk", [=](DecodeShape&, DecodeArgs& a) { a.q_strides = {16 * 568, 16 * 568, 568}; },
       {"q stride of h_q = 568", "smaller than the 576"}},
      {"q s_q stride < d_qk", [=](DecodeShape&, DecodeArgs& a) { a.q_strides = {16 * d_qk, 568, d_qk}; },
       {"q stride of s_q = 568", "smaller"}},
      {"q b stride not a multiple of 8", [=](DecodeShape&, DecodeArgs& a) { a.q_strides = {16 * d_qk + 4, 16 * d_qk, d_qk}; },
       {"q stride of b = 9220", "multiple of 8"}},
      // k_cache strides.
      {"k head stride not a multiple of 8", [](DecodeShape&, DecodeArgs& a) { a.k_strides = {64 * 580, 580, 580}; },
       {"k_cache stride of h_kv = 580", "multiple of 8"}},
      {"k row stride < d_qk", [](DecodeShape&, DecodeArgs& a) { a.k_strides = {64 * 576, 568, 576}; },
       {"k_cache stride of page rows = 568", "smaller"}},
      {"k block stride < page_size rows", [](DecodeShape&, DecodeArgs& a) { a.k_strides = {63 * 576, 576, 576}; },
       {"k_cache stride of blocks = 36288", "smaller than the 36864"}},
      // out strides.
      {"out head stride < latent_dim", [](DecodeShape&, DecodeArgs& a) { a.out_strides = {16 * 512, 16 * 510, 510}; },
       {"out stride of h_q = 510", "smaller"}},
      {"out head stride odd", [](DecodeShape&, DecodeArgs& a) { a.out_strides = {16 * 514, 16 * 513, 513}; },
       {"out stride of h_q = 513", "multiple of 2"}},
      // block table and scale.
      {"block_table_stride < max_blocks_per_seq", [](DecodeShape&, DecodeArgs& a) { a.block_table_stride = 15; },
       {"block_table_stride = 15", "max_blocks_per_seq = 16"}},
      {"negative softmax_scale", [](DecodeShape&, DecodeArgs& a) { a.softmax_scale = -0.5f; },
       {"softmax_scale = -0.5"}},
      {"NaN softmax_scale", [](DecodeShape&, DecodeArgs& a) { a.softmax_scale = std::nanf(""); },
       {"softmax_scale = nan"}},
      {"infinite softmax_scale",
       [](DecodeShape&, DecodeArgs& a) { a.softmax_scale = std::numeric_limits<float>::infinity(); },
       {"softmax_scale = inf"}},
  };
}

}  // namespace

TEST_CASE("valid shape and args pass; zero strides become the contiguous ones", "[validation]") {
  const DecodeShape s = valid_shape();
  REQUIRE_NOTHROW(runtime::validate_shape(s));
  DecodeArgs filled;
  REQUIRE_NOTHROW(filled = runtime::validate_args(s, valid_args()));
  const int64_t d_qk = s.d_qk();
  CHECK(filled.q_strides == std::array<int64_t, 3>{s.s_q * s.h_q * d_qk, s.h_q * d_qk, d_qk});
  CHECK(filled.k_strides == std::array<int64_t, 3>{s.page_size * s.h_kv * d_qk, s.h_kv * d_qk, d_qk});
  CHECK(filled.out_strides ==
        std::array<int64_t, 3>{int64_t(s.s_q) * s.h_q * s.latent_dim, int64_t(s.h_q) * s.latent_dim, s.latent_dim});
  CHECK(filled.block_table_stride == s.max_blocks_per_seq);
  CHECK(filled.q == valid_args().q);

  // Padded (non-contiguous) layouts are fine when every stride spans its rows.
  DecodeArgs padded = valid_args();
  padded.q_strides = {4 * 16 * 640, 16 * 640, 640};
  padded.k_strides = {64 * 584 + 8, 584, 584};
  padded.out_strides = {2 * 16 * 514, 16 * 514, 514};
  padded.block_table_stride = 20;
  padded.softmax_scale = 0.125f;
  DecodeArgs kept;
  REQUIRE_NOTHROW(kept = runtime::validate_args(s, padded));
  CHECK(kept.q_strides == padded.q_strides);
  CHECK(kept.k_strides == padded.k_strides);
  CHECK(kept.block_table_stride == 20);

  for (DType dtype : {DType::bf16, DType::fp16})
    for (int latent : {256, 512})
      for (int page : {16, 32, 64, 128})
        for (int h_kv : {1, 2}) {
          DecodeShape v = s;
          v.dtype = dtype, v.latent_dim = latent, v.page_size = page, v.h_kv = h_kv, v.h_q = 128, v.s_q = 2;
          CHECK_NOTHROW(runtime::validate_shape(v));
          CHECK_NOTHROW(runtime::validate_args(v, valid_args()));
        }
}

TEST_CASE("each bad input is rejected by validate_shape/validate_args, naming it", "[validation]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  for (const BadInput& bad : bad_inputs(rng)) {
    INFO(bad.what);
    DecodeShape s = valid_shape();
    DecodeArgs a = valid_args();
    bad.mutate(s, a);
    const std::string message = invalid_argument_message([&] {
      runtime::validate_shape(s);
      runtime::validate_args(s, a);
    });
    REQUIRE_FALSE(message.empty());
    for (const auto& part : bad.expected) CHECK_THAT(message, Contains(part));
  }
}

TEST_CASE("each bad input is rejected by mla_decode before it touches the driver", "[validation]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  for (const BadInput& bad : bad_inputs(rng)) {
    INFO(bad.what);
    DecodeShape s = valid_shape();
    DecodeArgs a = valid_args();
    bad.mutate(s, a);
    flashmla::MlaMetadata md;  // never reached
    const std::string message = invalid_argument_message([&] { flashmla::mla_decode(s, a, md, nullptr); });
    REQUIRE_FALSE(message.empty());
    for (const auto& part : bad.expected) CHECK_THAT(message, Contains(part));
  }
  // Valid input with unusable metadata is rejected before the driver too.
  const DecodeShape s = valid_shape();
  flashmla::MlaMetadata empty;
  CHECK_THAT(invalid_argument_message([&] { flashmla::mla_decode(s, valid_args(), empty, nullptr); }),
             Contains("metadata has null schedule pointers"));
  flashmla::MlaMetadata other;
  other.sched = fake_pointer<int32_t>(0x70000), other.split_offsets = fake_pointer<int32_t>(0x71000);
  other.b = s.b + 1, other.s_q = s.s_q, other.h_q = s.h_q, other.h_kv = s.h_kv;
  CHECK_THAT(invalid_argument_message([&] { flashmla::mla_decode(s, valid_args(), other, nullptr); }),
             Contains("made for b=5") && Contains("call has b=4"));
}

TEST_CASE("rows of different sequences in out may not overlap (s_q == 1)", "[validation]") {
  // b = 4, s_q = 1, h_q = 16: a b stride of one row makes sequence 1's head 0 the same
  // memory as sequence 0's head 1; mla_decode would write both.
  const DecodeShape s = valid_shape();
  DecodeArgs a = valid_args();
  a.out_strides = {512, 16 * 512, 512};
  CHECK_THAT(invalid_argument_message([&] { runtime::validate_args(s, a); }), Contains("out stride of b"));
}

TEST_CASE("validate_seqlens: lengths within the block table and block ids within the cache", "[validation]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  DecodeShape s = valid_shape();
  s.b = 6, s.page_size = 64, s.max_blocks_per_seq = 128, s.num_blocks = 1 + int(rng() % 500);
  const int64_t stride = s.max_blocks_per_seq + int64_t(rng() % 4);
  const int capacity = s.max_blocks_per_seq * s.page_size;  // 8192
  std::vector<int32_t> lens(std::size_t(s.b));
  for (auto& l : lens) l = int32_t(rng() % (capacity + 1));
  lens[0] = 0, lens[1] = capacity;
  // Used columns hold valid ids; unused columns and the padding hold -1 (must be ignored).
  std::vector<int32_t> table(std::size_t(s.b) * std::size_t(stride), -1);
  for (int bi = 0; bi < s.b; ++bi)
    for (int i = 0; i < (lens[std::size_t(bi)] + s.page_size - 1) / s.page_size; ++i)
      table[std::size_t(bi * stride + i)] = int32_t(rng() % std::uint32_t(s.num_blocks));
  REQUIRE_NOTHROW(runtime::validate_seqlens(s, lens, table, stride));

  SECTION("a sequence longer than its block table") {
    auto bad = lens;
    bad[3] = 9000;
    const std::string message = invalid_argument_message([&] { runtime::validate_seqlens(s, bad, table, stride); });
    CHECK_THAT(message, Contains("cache_seqlens[3] = 9000"));
    CHECK_THAT(message, Contains("capacity 8192"));
    CHECK_THAT(message, Contains("(128 blocks x 64)"));
    bad[3] = capacity + 1;
    CHECK_THAT(invalid_argument_message([&] { runtime::validate_seqlens(s, bad, table, stride); }),
               Contains("cache_seqlens[3] = 8193"));
  }
  SECTION("a negative length") {
    auto bad = lens;
    const int at = 1 + int(rng() % 5);
    bad[std::size_t(at)] = -1 - int32_t(rng() % 100);
    CHECK_THAT(invalid_argument_message([&] { runtime::validate_seqlens(s, bad, table, stride); }),
               Contains("cache_seqlens[" + std::to_string(at) + "] = " + std::to_string(bad[std::size_t(at)])) &&
                   Contains("negative"));
  }
  SECTION("a block id outside [0, num_blocks)") {
    for (int32_t id : {s.num_blocks, -1, s.num_blocks + int32_t(rng() % 1000)}) {
      auto bad = table;
      // Sequence 1 uses all 128 blocks: corrupt a random one of them.
      const int col = int(rng() % 128);
      bad[std::size_t(stride + col)] = id;
      const std::string message = invalid_argument_message([&] { runtime::validate_seqlens(s, lens, bad, stride); });
      INFO("id " << id << " at column " << col);
      CHECK_THAT(message, Contains("block_table[1][" + std::to_string(col) + "] = " + std::to_string(id)));
      CHECK_THAT(message, Contains(std::to_string(s.num_blocks) + " blocks"));
    }
  }
}

TEST_CASE("validate_arch: sm_80 or newer", "[validation]") {
  bool thrown = false;
  try {
    runtime::validate_arch(7, 5, "Tesla T4");
  } catch (const flashmla::Unsupported& e) {
    thrown = true;
    CHECK_THAT(std::string(e.what()), Contains("sm_75") && Contains("Tesla T4") && Contains("sm_80"));
  }
  CHECK(thrown);
  CHECK_THROWS_AS(runtime::validate_arch(6, 1, "GTX 1080"), flashmla::Unsupported);
  CHECK_THROWS_AS(runtime::validate_arch(7, 0, "V100"), flashmla::Unsupported);
  CHECK_NOTHROW(runtime::validate_arch(8, 0, "A100"));
  CHECK_NOTHROW(runtime::validate_arch(8, 6, "A6000"));
  CHECK_NOTHROW(runtime::validate_arch(9, 0, "H100"));
}

TEST_CASE("check_pinned rejects configs that do not fit the shape or cannot run", "[validation]") {
  const DecodeShape s = valid_shape();
  const flashmla::Arch arch = flashmla::Arch::parse("sm_90a");
  const KernelConfig good = KernelConfig::parse("decode_mma-bf16-l512-r64-p64-q64-k32-w8-s2-sm_90a");
  REQUIRE_NOTHROW(runtime::check_pinned(good, s, arch, "test"));

  struct Case {
    std::string id, expected;
  };
  const std::vector<Case> cases = {
      {"decode_mma-fp16-l512-r64-p64-q64-k32-w8-s2-sm_90a", "dtype fp16 but the problem has bf16"},
      {"decode_mma-bf16-l256-r64-p64-q64-k32-w8-s2-sm_90a", "latent_dim = 256 but the problem has 512"},
      {"decode_mma-bf16-l512-r64-p32-q64-k32-w8-s2-sm_90a", "page_size = 32 but the problem has 64"},
      {"decode_mma-bf16-l512-r32-p64-q64-k32-w8-s2-sm_90a", "rope_dim = 32 but the problem has 64"},
      {"decode_mma-bf16-l512-r64-p64-q64-k32-w8-s2-sm_80", "targets sm_80 but the GPU is sm_90a"},
      {"decode_mma-bf16-l512-r64-p64-q48-k32-w8-s2-sm_90a", "cannot run: block_size_q = 48"},
      {"decode_mma-bf16-l512-r64-p64-q64-k32-w4-s1-sm_90a", "cannot run: accumulators need"},
      {"decode_mma-bf16-l512-r64-p64-q64-k128-w8-s4-sm_90a", "cannot run"},
  };
  for (const Case& c : cases) {
    INFO(c.id);
    const std::string message =
        invalid_argument_message([&] { runtime::check_pinned(KernelConfig::parse(c.id), s, arch, "my-origin"); });
    CHECK_THAT(message, Contains(c.expected));
    CHECK_THAT(message, Contains("my-origin"));
    CHECK_THAT(message, Contains(c.id));
  }
}

TEST_CASE("get_mla_metadata, select_config and metadata_workspace_size reject bad input before the driver",
          "[validation]") {
  const DecodeShape s = valid_shape();
  const auto* lens = fake_pointer<const int32_t>(0x40000);
  const auto* table = fake_pointer<const int32_t>(0x30000);
  CHECK_THAT(invalid_argument_message([&] { flashmla::get_mla_metadata(s, nullptr, table, 0, nullptr); }),
             Contains("cache_seqlens is a null pointer"));
  CHECK_THAT(invalid_argument_message([&] { flashmla::get_mla_metadata(s, lens, nullptr, 0, nullptr); }),
             Contains("block_table is a null pointer"));
  CHECK_THAT(invalid_argument_message([&] { flashmla::get_mla_metadata(s, lens, table, 15, nullptr); }),
             Contains("block_table_stride = 15"));
  DecodeShape big = s;
  big.b = 70000;
  CHECK_THAT(invalid_argument_message([&] { flashmla::get_mla_metadata(big, lens, table, 0, nullptr); }),
             Contains("b = 70000"));
  DecodeShape bad = s;
  bad.h_q = 129;
  CHECK_THAT(invalid_argument_message([&] { flashmla::get_mla_metadata(bad, lens, table, 0, nullptr); }),
             Contains("h_q = 129"));
  CHECK_THAT(invalid_argument_message([&] { flashmla::select_config(bad); }), Contains("h_q = 129"));
  CHECK_THAT(invalid_argument_message([&] { flashmla::metadata_workspace_size(bad); }), Contains("h_q = 129"));
}

namespace {

flashmla_decode_shape c_shape() {
  const DecodeShape s = valid_shape();
  flashmla_decode_shape c{};
  c.b = s.b, c.s_q = s.s_q, c.h_q = s.h_q, c.h_kv = s.h_kv;
  c.latent_dim = s.latent_dim, c.rope_dim = s.rope_dim, c.page_size = s.page_size;
  c.num_blocks = s.num_blocks, c.max_blocks_per_seq = s.max_blocks_per_seq;
  c.dtype = FLASHMLA_BF16;
  return c;
}

flashmla_decode_args c_args() {
  const DecodeArgs a = valid_args();
  flashmla_decode_args c{};
  c.q = a.q, c.k_cache = a.k_cache, c.block_table = a.block_table, c.cache_seqlens = a.cache_seqlens;
  c.out = a.out, c.lse = a.lse;
  return c;
}

flashmla_metadata c_metadata() {
  flashmla_metadata m{};
  std::strcpy(m.config_id, "decode_mma-bf16-l512-r64-p64-q64-k32-w8-s2-sm_90a");
  m.num_parts = 8;
  m.b = 4, m.s_q = 1, m.h_q = 16, m.h_kv = 1;
  m.sched = fake_pointer<int32_t>(0x70000);
  m.split_offsets = fake_pointer<int32_t>(0x71000);
  return m;
}

}  // namespace

TEST_CASE("C ABI: bad input gives FLASHMLA_ERROR_INVALID_ARGUMENT and a message naming it", "[validation][c_abi]") {
  const flashmla_decode_shape shape = c_shape();
  const flashmla_metadata md = c_metadata();

  flashmla_decode_args null_q = c_args();
  null_q.q = nullptr;
  CHECK(flashmla_mla_decode(&shape, &null_q, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("q is a null pointer"));

  const flashmla_decode_args args = c_args();
  CHECK(flashmla_mla_decode(nullptr, &args, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("shape is a null pointer"));
  CHECK(flashmla_mla_decode(&shape, nullptr, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("args is a null pointer"));
  CHECK(flashmla_mla_decode(&shape, &args, nullptr, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("metadata is a null pointer"));

  flashmla_decode_shape bad_dtype = shape;
  bad_dtype.dtype = static_cast<flashmla_dtype>(7);
  CHECK(flashmla_mla_decode(&bad_dtype, &args, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("dtype = 7"));

  flashmla_decode_shape bad_heads = shape;
  bad_heads.h_q = 12, bad_heads.h_kv = 5;
  CHECK(flashmla_mla_decode(&bad_heads, &args, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("not divisible"));

  flashmla_metadata bad_id = md;
  std::strcpy(bad_id.config_id, "decode_mma-bf16-l512");
  CHECK(flashmla_mla_decode(&shape, &args, &bad_id, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("decode_mma-bf16-l512"));

  CHECK(flashmla_get_mla_metadata(&shape, nullptr, fake_pointer<const int32_t>(0x30000), 0, nullptr, nullptr, nullptr,
                                  1, fake_pointer<flashmla_metadata>(0x80000)) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("cache_seqlens"));
  CHECK(flashmla_get_mla_metadata(&shape, fake_pointer<const int32_t>(0x40000), fake_pointer<const int32_t>(0x30000),
                                  0, nullptr, nullptr, nullptr, 1, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("metadata is a null pointer"));
  CHECK(flashmla_metadata_workspace_size(&shape, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("bytes"));
  char buf[96];
  CHECK(flashmla_select_config(&shape, nullptr, sizeof buf) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("buf"));
  flashmla_decode_shape bad_page = shape;
  bad_page.page_size = 48;
  CHECK(flashmla_select_config(&bad_page, buf, sizeof buf) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  CHECK_THAT(std::string(flashmla_last_error()), Contains("page_size = 48"));
}

TEST_CASE("C ABI: a success clears the message; messages are per thread", "[validation][c_abi]") {
  const flashmla_decode_shape shape = c_shape();
  const flashmla_metadata md = c_metadata();
  CHECK(flashmla_mla_decode(nullptr, nullptr, nullptr, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT);
  REQUIRE(std::string(flashmla_last_error()).size() > 0);

  // decode_workspace_size is host arithmetic: it succeeds without a GPU.
  size_t bytes = 0;
  REQUIRE(flashmla_decode_workspace_size(&shape, &md, &bytes) == FLASHMLA_OK);
  CHECK(std::string(flashmla_last_error()).empty());
  // Partials of (b + num_parts) splits x s_q x h_q rows: latent_dim fp32 each, plus one lse.
  const std::size_t rows = std::size_t(shape.b + md.num_parts) * shape.s_q * shape.h_q;
  const auto align = [](std::size_t n) { return (n + 255) / 256 * 256; };
  CHECK(bytes == align(rows * std::size_t(shape.latent_dim) * 4) + align(rows * 4));

  std::string other_thread;
  std::thread t([&] {
    flashmla_decode_args null_lse = c_args();
    null_lse.lse = nullptr;
    if (flashmla_mla_decode(&shape, &null_lse, &md, nullptr, nullptr) == FLASHMLA_ERROR_INVALID_ARGUMENT)
      other_thread = flashmla_last_error();
  });
  t.join();
  CHECK_THAT(other_thread, Contains("lse is a null pointer"));
  CHECK(std::string(flashmla_last_error()).empty());  // this thread's message is untouched

  CHECK(std::regex_match(std::string(flashmla_version()), std::regex(R"(\d+\.\d+\.\d+)")));
  CHECK(std::string(flashmla_version()) == flashmla::version());
}

TEST_CASE("C ABI: a valid call needs a GPU (NO_DRIVER here, OK on a GPU machine)", "[validation][c_abi]") {
  const flashmla_decode_shape shape = c_shape();
  char buf[96] = {};
  const flashmla_status status = flashmla_select_config(&shape, buf, sizeof buf);
  std::string why_not;
  if (flashmla::jit::driver_available(&why_not)) {
    CHECK(status == FLASHMLA_OK);
    CHECK(std::string(flashmla_last_error()).empty());
    CHECK_NOTHROW(KernelConfig::parse(buf));
  } else {
    INFO("no driver: " << why_not);
    CHECK(status == FLASHMLA_ERROR_NO_DRIVER);
    CHECK_FALSE(std::string(flashmla_last_error()).empty());
    CHECK_THAT(std::string(flashmla_last_error()), Contains(why_not));
    size_t bytes = 0;
    CHECK(flashmla_metadata_workspace_size(&shape, nullptr, &bytes) == FLASHMLA_ERROR_NO_DRIVER);
    CHECK_THROWS_AS(flashmla::select_config(valid_shape()), flashmla::NoDriver);
  }
}
