// KernelConfig as a value: canonical id and parse(), equality and hash, the validity rules
// of invalid_reason() (each reason names the offending value), shared_bytes(), Arch, and
// the JSON form (to_json / config_from_json).
#include <catch2/catch.hpp>

#include <initializer_list>
#include <functional>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "autotune/search_space.hpp"
#include "core/config_json.hpp"
#include "flashmla/config.hpp"
#include "flashmla/error.hpp"

namespace {

using Catch::Matchers::Contains;
using flashmla::Arch;
using flashmla::DType;
using flashmla::InvalidArgument;
using flashmla::KernelConfig;

Arch arch_of(int sm, bool accel = false) {
  Arch a;
  a.sm = sm;
  a.accel = accel;
  return a;
}

KernelConfig make(int q, int k, int w, int s, int latent = 512, int page = 64, DType dtype = DType::bf16,
                  Arch arch = arch_of(80)) {
  KernelConfig c;
  c.block_size_q = q, c.block_size_k = k, c.num_warps = w, c.num_stages = s;
  c.latent_dim = latent, c.page_size = page, c.dtype = dtype, c.arch = arch;
  return c;
}

// Every combination of the listed fields (valid or not: id() and parse() cover any value).
std::vector<KernelConfig> grid() {
  std::vector<KernelConfig> out;
  for (int q : {16, 32, 64})
    for (int k : {32, 64, 128})
      for (int w : {4, 8})
        for (int s : {1, 2, 3, 4})
          for (int latent : {256, 512})
            for (int page : {16, 32, 64, 128})
              for (DType dtype : {DType::bf16, DType::fp16})
                for (Arch arch : {arch_of(80), arch_of(86), arch_of(89), arch_of(90, true)})
                  out.push_back(make(q, k, w, s, latent, page, dtype, arch));
  return out;
}

// The message InvalidArgument carries when `body` throws it, or "" when it does not throw.
template <class F>
std::string invalid_argument_message(F&& body) {
  try {
    body();
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

// One mutation per field of KernelConfig; each yields a config that differs in that field only.
std::vector<std::pair<std::string, std::function<void(KernelConfig&)>>> single_field_mutations() {
  return {
      {"family", [](KernelConfig& c) { c.family = static_cast<flashmla::Family>(1); }},
      {"block_size_q", [](KernelConfig& c) { c.block_size_q = 32; }},
      {"block_size_k", [](KernelConfig& c) { c.block_size_k = 128; }},
      {"num_warps", [](KernelConfig& c) { c.num_warps = 4; }},
      {"num_stages", [](KernelConfig& c) { c.num_stages = 3; }},
      {"latent_dim", [](KernelConfig& c) { c.latent_dim = 256; }},
      {"rope_dim", [](KernelConfig& c) { c.rope_dim = 32; }},
      {"page_size", [](KernelConfig& c) { c.page_size = 16; }},
      {"dtype", [](KernelConfig& c) { c.dtype = DType::fp16; }},
      {"arch.sm", [](KernelConfig& c) { c.arch.sm = 86; }},
      {"arch.accel", [](KernelConfig& c) { c.arch.accel = !c.arch.accel; }},
  };
}

}  // namespace

TEST_CASE("id() is the documented canonical form", "[config]") {
  const KernelConfig c = make(64, 64, 8, 2, 512, 64, DType::bf16, arch_of(90, true));
  CHECK(c.id() == "decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2-sm_90a");
  const KernelConfig d = make(16, 128, 4, 3, 256, 16, DType::fp16, arch_of(86));
  CHECK(d.id() == "decode_mma-fp16-l256-r64-p16-q16-k128-w4-s3-sm_86");
}

TEST_CASE("parse(id()) reproduces every config of the grid", "[config]") {
  const auto configs = grid();
  REQUIRE(configs.size() == 3u * 3 * 2 * 4 * 2 * 4 * 2 * 4);
  std::unordered_set<std::string> ids;
  for (const KernelConfig& c : configs) {
    const std::string id = c.id();
    INFO(id);
    const KernelConfig back = KernelConfig::parse(id);
    CHECK(back == c);
    CHECK(back.id() == id);
    ids.insert(id);
  }
  CHECK(ids.size() == configs.size());  // distinct configs, distinct ids
}

TEST_CASE("parse(id()) round-trips random field values", "[config]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> any(0, 100000);
  for (int i = 0; i < 500; ++i) {
    KernelConfig c;
    c.block_size_q = any(rng), c.block_size_k = any(rng), c.num_warps = any(rng), c.num_stages = any(rng);
    c.latent_dim = any(rng), c.rope_dim = any(rng), c.page_size = any(rng);
    c.dtype = rng() % 2 ? DType::bf16 : DType::fp16;
    c.arch = arch_of(10 + any(rng), rng() % 2 == 0);  // Arch::parse rejects sm < 10
    INFO(c.id());
    CHECK(KernelConfig::parse(c.id()) == c);
  }
}

TEST_CASE("parse accepts dtype aliases", "[config]") {
  CHECK(KernelConfig::parse("decode_mma-bfloat16-l512-r64-p64-q64-k64-w8-s2-sm_90a").dtype == DType::bf16);
  CHECK(KernelConfig::parse("decode_mma-half-l512-r64-p64-q64-k64-w8-s2-sm_90a").dtype == DType::fp16);
  CHECK(KernelConfig::parse("decode_mma-float16-l512-r64-p64-q64-k64-w8-s2-sm_90a").dtype == DType::fp16);
}

TEST_CASE("parse errors name the bad field", "[config]") {
  struct Bad {
    std::string id;
    std::vector<std::string> expected;  // substrings the message must contain
  };
  const std::vector<Bad> cases = {
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2", {"has 9 fields", "expected 10"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2-sm_90a-x", {"has 11 fields"}},
      {"", {"has 1 fields"}},
      {"prefill_mma-bf16-l512-r64-p64-q64-k64-w8-s2-sm_90a", {"family", "prefill_mma"}},
      {"decode_mma-fp32-l512-r64-p64-q64-k64-w8-s2-sm_90a", {"dtype", "fp32"}},
      {"decode_mma-bf16-x512-r64-p64-q64-k64-w8-s2-sm_90a", {"latent_dim", "x512"}},
      {"decode_mma-bf16-l-r64-p64-q64-k64-w8-s2-sm_90a", {"latent_dim", "'l'"}},
      {"decode_mma-bf16-l51x-r64-p64-q64-k64-w8-s2-sm_90a", {"latent_dim", "l51x"}},
      {"decode_mma-bf16-l99999999999-r64-p64-q64-k64-w8-s2-sm_90a", {"latent_dim", "l99999999999"}},
      {"decode_mma-bf16-l512-rr64-p64-q64-k64-w8-s2-sm_90a", {"rope_dim", "rr64"}},
      {"decode_mma-bf16-l512-r64-page64-q64-k64-w8-s2-sm_90a", {"page_size", "page64"}},
      {"decode_mma-bf16-l512-r64-p64-k64-q64-w8-s2-sm_90a", {"block_size_q", "k64"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k6.4-w8-s2-sm_90a", {"block_size_k", "k6.4"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w 8-s2-sm_90a", {"num_warps", "w 8"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w8-stages2-sm_90a", {"num_stages", "stages2"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2-sm_9x", {"arch", "sm_9x"}},
      {"decode_mma-bf16-l512-r64-p64-q64-k64-w8-s2-", {"arch", "sm_80"}},
  };
  for (const Bad& bad : cases) {
    INFO("id: " << bad.id);
    const std::string message = invalid_argument_message([&] { KernelConfig::parse(bad.id); });
    REQUIRE_FALSE(message.empty());
    for (const std::string& part : bad.expected) CHECK_THAT(message, Contains(part));
  }
}

TEST_CASE("equality and hash: equal configs hash equally, one differing field breaks equality", "[config]") {
  const KernelConfig base = make(64, 64, 8, 2, 512, 64, DType::bf16, arch_of(90, true));
  KernelConfig copy = KernelConfig::parse(base.id());
  CHECK(copy == base);
  CHECK(std::hash<KernelConfig>{}(copy) == std::hash<KernelConfig>{}(base));
  CHECK(flashmla::hash_value(copy) == flashmla::hash_value(base));

  for (const auto& [field, mutate] : single_field_mutations()) {
    INFO("field " << field);
    KernelConfig other = base;
    mutate(other);
    CHECK_FALSE(other == base);
    CHECK(other != base);
    CHECK(std::hash<KernelConfig>{}(other) != std::hash<KernelConfig>{}(base));
  }
}

TEST_CASE("hash separates every config of the grid in an unordered_set", "[config]") {
  const auto configs = grid();
  std::unordered_set<KernelConfig> set(configs.begin(), configs.end());
  CHECK(set.size() == configs.size());
  std::unordered_set<std::size_t> hashes;
  for (const auto& c : configs) hashes.insert(std::hash<KernelConfig>{}(c));
  CHECK(hashes.size() == configs.size());
  for (const auto& c : configs) CHECK(set.count(KernelConfig::parse(c.id())) == 1);
}

TEST_CASE("invalid_reason names each violated rule and the offending value", "[config]") {
  struct Rule {
    std::string what;
    KernelConfig config;
    std::vector<std::string> expected;
  };
  KernelConfig sm75 = make(16, 32, 4, 2);
  sm75.arch = arch_of(75);
  KernelConfig rope32 = make(16, 32, 4, 2);
  rope32.rope_dim = 32;
  // q16-k32-w4-s4 is far inside the register rule (O 64 + S 4) but needs
  // 2*(16*584 + 4*32*584 + 16*40) + 4*(4*16 + 2*16) = 169856 bytes > 163 KiB on sm_80.
  const KernelConfig too_big = make(16, 32, 4, 4, 512, 64, DType::bf16, arch_of(80));
  const std::vector<Rule> rules = {
      {"block_size_q", make(48, 32, 4, 2), {"block_size_q = 48"}},
      {"block_size_k", make(16, 16, 4, 2), {"block_size_k = 16"}},
      {"num_warps", make(16, 32, 2, 2), {"num_warps = 2"}},
      {"num_stages 5", make(16, 32, 4, 5), {"num_stages = 5"}},
      {"num_stages 0", make(16, 32, 4, 0), {"num_stages = 0"}},
      {"latent_dim", make(16, 32, 4, 2, 384), {"latent_dim = 384"}},
      {"rope_dim", rope32, {"rope_dim = 32"}},
      {"page_size", make(16, 32, 4, 2, 512, 8), {"page_size = 8"}},
      {"arch", sm75, {"sm_75"}},
      // q16 w8: one row warp, eight column warps, each needs an n8 tile: block_size_k >= 64.
      {"S-tile divisibility", make(16, 32, 8, 1), {"block_size_k = 32", "8 column warps", ">= 64"}},
      // q64-k32-w4 latent 512: O alone needs 64*512/128 = 256 registers per thread.
      {"registers", make(64, 32, 4, 1), {"block_size_q 64", "latent_dim 512", "128 threads = 256"}},
      {"shared memory", too_big, {"169856", "sm_80", std::to_string(163 * 1024)}},
  };
  for (const Rule& rule : rules) {
    INFO(rule.what << ": " << rule.config.id());
    const auto reason = rule.config.invalid_reason();
    REQUIRE(reason.has_value());
    for (const std::string& part : rule.expected) CHECK_THAT(*reason, Contains(part));
    const std::string message = invalid_argument_message([&] { rule.config.validate(); });
    CHECK_THAT(message, Contains(*reason));
    CHECK_THAT(message, Contains(rule.config.id()));
  }
  CHECK(too_big.shared_bytes() == 169856);
}

TEST_CASE("configs that fit pass invalid_reason and validate", "[config]") {
  for (const KernelConfig& c : {make(16, 32, 4, 2), make(32, 32, 8, 2), make(64, 32, 8, 2),
                                make(64, 64, 8, 1), make(16, 64, 8, 2, 256, 16, DType::fp16, arch_of(86)),
                                make(64, 32, 8, 3, 512, 128, DType::bf16, arch_of(90, true))}) {
    INFO(c.id());
    CHECK(c.invalid_reason() == std::nullopt);
    CHECK_NOTHROW(c.validate());
  }
}

TEST_CASE("shared_bytes matches a hand computation", "[config]") {
  // q32-k64-w4-s2, latent 256: d_qk = 320, q/kv rows pitched to 328 elements, p rows to 72.
  // Warps: min(32/16, 4) = 2 along rows, 4/2 = 2 along columns.
  //   q  32 x 328 x 2 B         = 20992
  //   kv 2 x 64 x 328 x 2 B     = 83968
  //   p  32 x 72 x 2 B          =  4608
  //   red 2 x 32 x 4 B          =   256
  //   row_scale, row_m 2x32x4 B =   256
  const KernelConfig c = make(32, 64, 4, 2, 256, 64, DType::fp16, arch_of(86));
  CHECK(c.shared_bytes() == 20992u + 83968 + 4608 + 256 + 256);
  CHECK(c.d_qk() == 320);
  CHECK(c.num_threads() == 128);
  CHECK(c.accumulator_registers() == 32 * 256 / 128);
}

TEST_CASE("Arch::parse and Arch::name", "[config]") {
  CHECK(Arch::parse("sm_80") == arch_of(80));
  CHECK(Arch::parse("sm_86") == arch_of(86));
  CHECK(Arch::parse("sm_90a") == arch_of(90, true));
  CHECK(Arch::parse("sm_90") == arch_of(90, false));
  for (const Arch a : {arch_of(80), arch_of(86), arch_of(89), arch_of(90), arch_of(90, true), arch_of(100, true)})
    CHECK(Arch::parse(a.name()) == a);
  CHECK(arch_of(90, true).name() == "sm_90a");
  CHECK(arch_of(86).name() == "sm_86");
  for (const char* bad : {"", "sm_", "sm_a", "sm_9x", "sm_80aa", "smx_80", "sm_-80x", "ampere"}) {
    INFO("arch '" << bad << "'");
    const std::string message = invalid_argument_message([&] { Arch::parse(bad); });
    CHECK_THAT(message, Contains(std::string("'") + bad + "'"));
  }
  CHECK(arch_of(80).max_shared_bytes() == 163u * 1024);
  CHECK(arch_of(86).max_shared_bytes() == 99u * 1024);
  CHECK(arch_of(90, true).max_shared_bytes() == 227u * 1024);
}

TEST_CASE("dtype names", "[config]") {
  CHECK(flashmla::to_string(DType::bf16) == "bf16");
  CHECK(flashmla::to_string(DType::fp16) == "fp16");
  CHECK(flashmla::parse_dtype("bf16") == DType::bf16);
  CHECK(flashmla::parse_dtype("fp16") == DType::fp16);
  CHECK(flashmla::dtype_size(DType::bf16) == 2);
  CHECK_THAT(invalid_argument_message([] { flashmla::parse_dtype("fp8"); }), Contains("'fp8'"));
}

TEST_CASE("JSON round trip for every config of the search space", "[config][json]") {
  std::size_t checked = 0, valid = 0;
  for (DType dtype : {DType::bf16, DType::fp16})
    for (int latent : {512, 256})
      for (int page : {16, 32, 64, 128})
        for (Arch arch : {arch_of(80), arch_of(86), arch_of(90, true)}) {
          const KernelConfig base = make(64, 64, 8, 2, latent, page, dtype, arch);
          const auto space = flashmla::autotune::decode_mma_space(base);
          CHECK(space.valid.size() + space.pruned.size() == 3u * 3 * 2 * 4);
          valid += space.valid.size();
          std::vector<KernelConfig> all = space.valid;
          for (const auto& [config, reason] : space.pruned) {
            CHECK(config.invalid_reason() == reason);
            all.push_back(config);
          }
          for (const KernelConfig& c : all) {
            INFO(c.id());
            const nlohmann::json j = flashmla::to_json(c);
            CHECK(flashmla::config_from_json(j) == c);
            CHECK(flashmla::config_from_json(nlohmann::json::parse(j.dump())) == c);
            CHECK(j.at("arch") == c.arch.name());
            CHECK(j.at("block_size_q") == c.block_size_q);
            ++checked;
          }
          for (const KernelConfig& c : space.valid) CHECK(c.invalid_reason() == std::nullopt);
        }
  CHECK(checked == 2u * 2 * 4 * 3 * 72);
  CHECK(valid > 0);
}

TEST_CASE("malformed JSON fields give InvalidArgument naming the field", "[config][json]") {
  const nlohmann::json good = flashmla::to_json(make(32, 64, 8, 2, 512, 64, DType::fp16, arch_of(90, true)));
  REQUIRE_NOTHROW(flashmla::config_from_json(good));

  CHECK_THAT(invalid_argument_message([] { flashmla::config_from_json(nlohmann::json::array({1, 2})); }),
             Contains("must be an object"));
  CHECK_THAT(invalid_argument_message([] { flashmla::config_from_json(nlohmann::json(42)); }),
             Contains("must be an object"));

  const std::vector<std::string> int_fields = {"block_size_q", "block_size_k", "num_warps", "num_stages",
                                               "latent_dim",   "rope_dim",     "page_size"};
  const std::vector<std::string> string_fields = {"family", "dtype", "arch"};
  for (const auto& field : int_fields) {
    INFO("field " << field);
    nlohmann::json missing = good;
    missing.erase(field);
    CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(missing); }),
               Contains("'" + field + "'") && Contains("not an integer"));
    for (const nlohmann::json& wrong : {nlohmann::json("64"), nlohmann::json(64.5), nlohmann::json(nullptr),
                                        nlohmann::json::array({64})}) {
      nlohmann::json bad = good;
      bad[field] = wrong;
      CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(bad); }), Contains("'" + field + "'"));
    }
  }
  for (const auto& field : string_fields) {
    INFO("field " << field);
    nlohmann::json missing = good;
    missing.erase(field);
    CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(missing); }),
               Contains("'" + field + "'") && Contains("not a string"));
    nlohmann::json bad = good;
    bad[field] = 80;
    CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(bad); }), Contains("'" + field + "'"));
  }
  // Strings of the right type but unknown value name the field and the value.
  nlohmann::json family = good;
  family["family"] = "prefill";
  CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(family); }),
             Contains("family") && Contains("'prefill'"));
  nlohmann::json dtype = good;
  dtype["dtype"] = "fp32";
  CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(dtype); }),
             Contains("dtype") && Contains("'fp32'"));
  nlohmann::json arch = good;
  arch["arch"] = "hopper";
  CHECK_THAT(invalid_argument_message([&] { flashmla::config_from_json(arch); }),
             Contains("arch") && Contains("'hopper'"));
}
