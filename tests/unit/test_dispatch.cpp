// runtime::heuristic_config / select_config: a valid config for every supported shape and
// arch, matching the shape's problem fields; a pinned config (DecodeOptions::config) wins
// over FLASHMLA_CONFIG, which wins over the heuristic.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <cstdlib>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "autotune/search_space.hpp"
#include "flashmla/config.hpp"
#include "flashmla/error.hpp"
#include "flashmla/flashmla.hpp"
#include "runtime/dispatch.hpp"
#include "runtime/validate.hpp"

namespace {

using Catch::Matchers::Contains;
using flashmla::Arch;
using flashmla::DecodeOptions;
using flashmla::DecodeShape;
using flashmla::DType;
using flashmla::InvalidArgument;
using flashmla::KernelConfig;
namespace runtime = flashmla::runtime;

// Sets (or, with nullptr, unsets) FLASHMLA_CONFIG for one scope; restores the old value.
struct ScopedConfigEnv : flashmla::test::ScopedEnv {
  explicit ScopedConfigEnv(const char* value) : ScopedEnv("FLASHMLA_CONFIG", value) {}
};

DecodeShape shape_of(int h_q, int s_q, int h_kv, int latent, int page, DType dtype) {
  DecodeShape s;
  s.b = 2, s.s_q = s_q, s.h_q = h_q, s.h_kv = h_kv;
  s.latent_dim = latent, s.rope_dim = 64, s.page_size = page;
  s.num_blocks = 100, s.max_blocks_per_seq = 10;
  s.dtype = dtype;
  return s;
}

std::string describe(const DecodeShape& s, Arch arch) {
  return "h_q " + std::to_string(s.h_q) + " s_q " + std::to_string(s.s_q) + " h_kv " + std::to_string(s.h_kv) +
         " latent " + std::to_string(s.latent_dim) + " page " + std::to_string(s.page_size) + " " +
         std::string(flashmla::to_string(s.dtype)) + " " + arch.name();
}

}  // namespace

TEST_CASE("heuristic_config gives a valid config fitted to every shape and arch", "[dispatch]") {
  int checked = 0;
  for (const char* arch_name : {"sm_80", "sm_86", "sm_90a"})
    for (int h_q : {1, 3, 16, 63, 128})
      for (int s_q : {1, 2, 4})
        for (int h_kv : {1, 2})
          for (int latent : {512, 256})
            for (int page : {16, 32, 64, 128})
              for (DType dtype : {DType::bf16, DType::fp16}) {
                if (h_q % h_kv != 0) continue;
                const Arch arch = Arch::parse(arch_name);
                const DecodeShape s = shape_of(h_q, s_q, h_kv, latent, page, dtype);
                INFO(describe(s, arch));
                REQUIRE_NOTHROW(runtime::validate_shape(s));
                std::optional<KernelConfig> c;
                try {
                  c = runtime::heuristic_config(s, arch);
                } catch (const std::exception& e) {
                  FAIL_CHECK("heuristic_config threw: " << e.what());
                  continue;
                }
                INFO(c->id());
                CHECK(c->invalid_reason() == std::nullopt);
                CHECK(c->dtype == dtype);
                CHECK(c->latent_dim == latent);
                CHECK(c->rope_dim == 64);
                CHECK(c->page_size == page);
                CHECK(c->arch == arch);
                CHECK_NOTHROW(runtime::check_pinned(*c, s, arch, "heuristic"));
                // sm_90a: decode_wgmma where it supports the problem and a kv head has >= 16
                // rows; else decode_mma with no wider q tile than the rows need (rounded to 16).
                const int rows = runtime::rows_per_kv_head(s);
                const bool hopper = arch.name() == "sm_90a" && latent == 512 && rows >= 16;
                CHECK(c->family == (hopper ? flashmla::Family::decode_wgmma : flashmla::Family::decode_mma));
                if (!hopper) CHECK(c->block_size_q <= std::max(16, (rows + 15) / 16 * 16));
                // Deterministic.
                CHECK(runtime::heuristic_config(s, arch) == *c);
                ++checked;
              }
  CHECK(checked == 3 * (5 * 3 * 2 * 4 * 2 + 2 * 3 * 2 * 4 * 2));  // h_kv 2 only for h_q 16 and 128
}

TEST_CASE("rows_per_kv_head flattens s_q x h_q / h_kv", "[dispatch]") {
  CHECK(runtime::rows_per_kv_head(shape_of(128, 1, 1, 512, 64, DType::bf16)) == 128);
  CHECK(runtime::rows_per_kv_head(shape_of(128, 2, 2, 512, 64, DType::bf16)) == 128);
  CHECK(runtime::rows_per_kv_head(shape_of(3, 4, 1, 512, 64, DType::bf16)) == 12);
}

TEST_CASE("kv_evict_first_limit: 4 x L2, no limit with two readers, the override for every launch", "[dispatch]") {
  const std::size_t l2 = std::size_t(50) << 20, none = std::numeric_limits<std::size_t>::max();
  CHECK(runtime::kv_evict_first_limit(1, l2, -1) == 4 * l2);
  CHECK(runtime::kv_evict_first_limit(2, l2, -1) == none);
  CHECK(runtime::kv_evict_first_limit(3, l2, -1) == 4 * l2);
  CHECK(runtime::kv_evict_first_limit(4, l2, -1) == 4 * l2);
  for (int q_tiles : {1, 2, 4}) {
    CHECK(runtime::kv_evict_first_limit(q_tiles, l2, 0) == 0);
    CHECK(runtime::kv_evict_first_limit(q_tiles, l2, 200) == std::size_t(200) << 20);
  }
}

TEST_CASE("select_config: pinned config, then FLASHMLA_CONFIG, then the heuristic", "[dispatch]") {
  ScopedConfigEnv unset(nullptr);
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  const Arch arch = Arch::parse("sm_90a");
  const DecodeShape s = shape_of(16, 1 + int(rng() % 4), 1, 512, 64, DType::bf16);
  const KernelConfig heuristic = runtime::heuristic_config(s, arch);
  CHECK(runtime::select_config(s, arch, DecodeOptions{}) == heuristic);

  // Two random valid configs of the search space for this shape, distinct and both unlike
  // the heuristic's choice.
  std::vector<KernelConfig> others;
  for (const KernelConfig& c : flashmla::autotune::decode_mma_space(heuristic).valid)
    if (c != heuristic) others.push_back(c);
  REQUIRE(others.size() >= 2);
  const std::size_t first = rng() % others.size();
  const std::size_t second = (first + 1 + rng() % (others.size() - 1)) % others.size();
  const KernelConfig env_config = others[first];
  const KernelConfig pinned = others[second];
  INFO("FLASHMLA_CONFIG candidate " << env_config.id() << ", pinned " << pinned.id());
  REQUIRE(env_config != pinned);

  DecodeOptions with_pin;
  with_pin.config = pinned;
  CHECK(runtime::select_config(s, arch, with_pin) == pinned);

  SECTION("FLASHMLA_CONFIG is honoured") {
    ScopedConfigEnv env(env_config.id().c_str());
    CHECK(runtime::select_config(s, arch, DecodeOptions{}) == env_config);
    // ... but DecodeOptions::config wins over it.
    CHECK(runtime::select_config(s, arch, with_pin) == pinned);
  }
  SECTION("an empty FLASHMLA_CONFIG means unset") {
    ScopedConfigEnv env("");
    CHECK(runtime::select_config(s, arch, DecodeOptions{}) == heuristic);
  }
  SECTION("a malformed FLASHMLA_CONFIG throws InvalidArgument") {
    for (const char* bad : {"fast", "decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2",
                            "decode_mma-bf16-l512-r64-p64-qq-k64-w8-s2-sm_90a"}) {
      ScopedConfigEnv env(bad);
      INFO("FLASHMLA_CONFIG=" << bad);
      bool thrown = false;
      try {
        runtime::select_config(s, arch, DecodeOptions{});
      } catch (const InvalidArgument& e) {
        thrown = true;
        CHECK_THAT(std::string(e.what()), Contains(bad));
      }
      CHECK(thrown);
    }
  }
  SECTION("a FLASHMLA_CONFIG that does not fit the shape throws, naming the variable") {
    std::vector<KernelConfig> wrongs(5, env_config);
    wrongs[0].dtype = DType::fp16;
    wrongs[1].latent_dim = 256;
    wrongs[2].page_size = 128;
    wrongs[3].arch = Arch::parse("sm_80");
    wrongs[4].block_size_q = 64, wrongs[4].block_size_k = 64, wrongs[4].num_warps = 4;  // registers
    for (const KernelConfig& w : wrongs) {
      const std::string wrong = w.id();
      ScopedConfigEnv env(wrong.c_str());
      INFO("FLASHMLA_CONFIG=" << wrong);
      CHECK_THROWS_WITH(runtime::select_config(s, arch, DecodeOptions{}), Contains("FLASHMLA_CONFIG"));
      CHECK_THROWS_AS(runtime::select_config(s, arch, DecodeOptions{}), InvalidArgument);
    }
  }
  SECTION("an invalid pinned config throws even when FLASHMLA_CONFIG is fine") {
    ScopedConfigEnv env(env_config.id().c_str());
    DecodeOptions bad_pin;
    bad_pin.config = KernelConfig::parse("decode_mma-bf16-l512-r64-p64-q48-k64-w8-s1-sm_90a");
    CHECK_THROWS_AS(runtime::select_config(s, arch, bad_pin), InvalidArgument);
    CHECK_THROWS_WITH(runtime::select_config(s, arch, bad_pin), Contains("DecodeOptions::config"));
    bad_pin.config = pinned;
    bad_pin.config->dtype = DType::fp16;
    CHECK_THROWS_WITH(runtime::select_config(s, arch, bad_pin), Contains("dtype fp16"));
  }
}
