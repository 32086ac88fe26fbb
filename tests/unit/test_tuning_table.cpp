// Tuning tables: JSON round trip, bucket lookup (exact, nearest, none), stale and foreign
// tables, malformed files (error names file and line), and dispatch through a table.
#include <catch2/catch.hpp>

#include <random>
#include <string>

#include "autotune/search_space.hpp"
#include "codegen/embedded.hpp"
#include "flashmla/flashmla.hpp"
#include "autotune/tuner.hpp"
#include "autotune/tuning_table.hpp"
#include "flashmla/error.hpp"
#include "runtime/dispatch.hpp"

namespace {

using namespace flashmla;
using namespace flashmla::autotune;
using Catch::Matchers::Contains;

DeviceStamp h100() {
  return {"NVIDIA H100 80GB HBM3", 132, "sm_90a", 13000, "13.0", version(), "2026-11-25"};
}

DecodeShape shape(int b, int h_q, int s_q = 1) {
  DecodeShape s;
  s.b = b, s.h_q = h_q, s.s_q = s_q, s.num_blocks = 100, s.max_blocks_per_seq = 64;
  return s;
}

// A table with one entry per (h_q, seqlen bucket), each with a random valid config.
TuningTable random_table(std::mt19937& rng) {
  KernelConfig base;
  const auto space = decode_mma_space(base).valid;
  std::uniform_int_distribution<std::size_t> pick(0, space.size() - 1);
  TuningTable t;
  t.origin = "random.json";
  t.device = h100();
  for (int h_q : {16, 128})
    for (int bucket : {12, 14}) {
      TuningEntry e;
      e.key = make_key(shape(128, h_q), double(1 << bucket));
      e.config = space[pick(rng)];
      e.median_us = std::uniform_real_distribution<double>(10, 1000)(rng);
      e.heuristic_config = space[pick(rng)].id();
      e.heuristic_us = e.median_us * 1.1;
      e.candidates.push_back({e.config.id(), Timing{e.median_us, e.median_us * 0.99, e.median_us * 1.02}, ""});
      e.candidates.push_back({"decode_mma-bf16-l512-r64-p64-q64-k128-w4-s4-sm_90a", std::nullopt, "invalid: registers"});
      t.entries.push_back(e);
    }
  return t;
}

}  // namespace

TEST_CASE("a tuning table survives a JSON round trip", "[tuning]") {
  std::mt19937 rng(std::random_device{}());
  const TuningTable t = random_table(rng);
  const TuningTable back = parse_table(dump_table(t), "round-trip.json");
  REQUIRE(back.entries.size() == t.entries.size());
  CHECK(back.device.name == t.device.name);
  CHECK(back.device.sm_count == t.device.sm_count);
  for (std::size_t i = 0; i < t.entries.size(); ++i) {
    CHECK(back.entries[i].key == t.entries[i].key);
    CHECK(back.entries[i].config == t.entries[i].config);
    CHECK(back.entries[i].median_us == Approx(t.entries[i].median_us));
    REQUIRE(back.entries[i].candidates.size() == 2);
    CHECK(back.entries[i].candidates[0].timing.has_value());
    CHECK(back.entries[i].candidates[1].failure == "invalid: registers");
  }
  CHECK(dump_table(back) == dump_table(t));
}

TEST_CASE("buckets are powers of two of batch and context length", "[tuning]") {
  CHECK(batch_bucket(1) == 0);
  CHECK(batch_bucket(2) == 1);
  CHECK(batch_bucket(3) == 2);
  CHECK(batch_bucket(128) == 7);
  CHECK(batch_bucket(129) == 8);
  CHECK(seqlen_bucket(1) == 6);  // at least 64 keys
  CHECK(seqlen_bucket(4096) == 12);
  CHECK(seqlen_bucket(4097) == 13);
}

TEST_CASE("lookup takes the exact bucket, else the nearest of the same class, else none", "[tuning]") {
  std::mt19937 rng(std::random_device{}());
  const TuningTable t = random_table(rng);
  const std::vector<TuningTable> tables{t};

  const Choice exact = lookup(tables, make_key(shape(128, 128), 4096));
  REQUIRE(exact.config);
  CHECK(*exact.config == t.entries[2].config);  // h_q 128, bucket 12
  CHECK_THAT(exact.explanation, Contains("tuning entry") && Contains("random.json"));

  const Choice near = lookup(tables, make_key(shape(64, 128), 30000));  // b bucket 6 (entry 7), s_k bucket 15 (14)
  REQUIRE(near.config);
  CHECK(*near.config == t.entries[3].config);
  CHECK_THAT(near.explanation, Contains("nearest") && Contains("2 bucket steps"));

  const Choice other_class = lookup(tables, make_key(shape(128, 64), 4096));  // h_q 64: no entry
  CHECK_FALSE(other_class.config);
  CHECK_THAT(other_class.explanation, Contains("heuristic"));
  DecodeShape fp16 = shape(128, 128);
  fp16.dtype = DType::fp16;
  CHECK_FALSE(lookup(tables, make_key(fp16, 4096)).config);
}

TEST_CASE("tables from another GPU or library version do not apply", "[tuning]") {
  std::mt19937 rng(std::random_device{}());
  TuningTable t = random_table(rng);
  CHECK_FALSE(stale_reason(t, h100()));
  DeviceStamp a100 = h100();
  a100.name = "NVIDIA A100-SXM4-80GB", a100.sm_count = 108;
  CHECK_THAT(*stale_reason(t, a100), Contains("A100") && Contains("108 SMs"));
  t.device.library = "0.0.1";
  CHECK_THAT(*stale_reason(t, h100()), Contains("flashmla 0.0.1"));
  CHECK(gpu_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3");
}

TEST_CASE("a malformed table is an error naming the file and line", "[tuning]") {
  std::mt19937 rng(std::random_device{}());
  const std::string good = dump_table(random_table(rng));
  // Broken JSON on line 3.
  std::string broken = good;
  const std::size_t line3 = broken.find('\n', broken.find('\n') + 1) + 1;
  broken.insert(line3, "{{{\n");
  CHECK_THROWS_WITH(parse_table(broken, "t.json"), Contains("t.json:3:") && Contains("not valid JSON"));
  // A field of the wrong type in the third entry: the line of that entry's key.
  std::string wrong = good;
  std::size_t at = wrong.find("\"h_q\"");
  at = wrong.find("\"h_q\"", at + 1);
  at = wrong.find("\"h_q\"", at + 1);
  wrong.replace(wrong.find(':', at) + 1, 0, " \"many\", \"x\":");
  std::size_t entries = wrong.find("\"entries\""), key = entries;
  for (int i = 0; i < 3; ++i) key = wrong.find("\"key\"", key + 1);
  const int line = 1 + static_cast<int>(std::count(wrong.begin(), wrong.begin() + key, '\n'));
  CHECK_THROWS_WITH(parse_table(wrong, "t.json"), Contains("t.json:" + std::to_string(line) + ":") && Contains("entry 2"));
  CHECK_THROWS_AS(parse_table("{\"format\": \"other\"}", "t.json"), InvalidArgument);
}

TEST_CASE("dispatch uses a matching table entry, and falls back when it cannot", "[tuning]") {
  std::mt19937 rng(std::random_device{}());
  TuningTable t = random_table(rng);
  const Arch arch = Arch::parse("sm_90a");
  const DecodeShape s = shape(128, 128);
  const runtime::Selection from_table = runtime::select(s, arch, {}, {t}, 4096);
  CHECK(from_table.config == t.entries[2].config);
  CHECK_THAT(from_table.explanation, Contains("tuning entry"));
  // A pinned config wins over the table.
  DecodeOptions pinned;
  pinned.config = runtime::heuristic_config(s, arch);
  CHECK_THAT(runtime::select(s, arch, pinned, {t}, 4096).explanation, Contains("pinned"));
  // An entry whose config does not fit the problem (page size) falls back to the heuristic.
  t.entries[2].config.page_size = 16;
  const runtime::Selection fallback = runtime::select(s, arch, {}, {t}, 4096);
  CHECK(fallback.config == runtime::heuristic_config(s, arch));
  CHECK_THAT(fallback.explanation, Contains("not usable") && Contains("page_size"));
  // No tables: the heuristic.
  CHECK(runtime::select(s, arch, {}, {}, 4096).config == runtime::heuristic_config(s, arch));
}

TEST_CASE("tune shapes parse from text, and bad text says which field", "[tuning]") {
  const TuneShape t = parse_shape("b=4,s_q=2,h_q=64,s_k=8192,page_size=32,dtype=fp16");
  CHECK(t.b == 4);
  CHECK(t.s_q == 2);
  CHECK(t.h_q == 64);
  CHECK(t.s_k == 8192);
  CHECK(t.page_size == 32);
  CHECK(t.dtype == DType::fp16);
  CHECK(t.latent_dim == 512);
  CHECK_THROWS_WITH(parse_shape("b=4,heads=2"), Contains("unknown field 'heads'"));
  CHECK_THROWS_WITH(parse_shape("b=four"), Contains("b = 'four' is not a number"));
  CHECK_THROWS_WITH(parse_shape("b4"), Contains("not name=value"));
  CHECK(preset_shapes().size() == 11);
}

TEST_CASE("every shipped table parses, is named by its GPU's slug, and holds only valid configs", "[tuning]") {
  const auto tables = codegen::embedded_tables();
  for (const auto& f : tables) {
    INFO(f.name);
    const TuningTable t = parse_table(std::string(f.source), std::string(f.name));
    CHECK(std::string(f.name).find(gpu_slug(t.device.name) + ".json") != std::string::npos);
    CHECK(t.device.library == std::string(flashmla::version()));
    CHECK_FALSE(t.entries.empty());
    for (const auto& e : t.entries) {
      INFO(e.config.id());
      CHECK_FALSE(e.config.invalid_reason());
      CHECK(e.config.arch.name() == t.device.arch);
      CHECK(e.config.dtype == e.key.dtype);
      CHECK(e.config.page_size == e.key.page_size);
      CHECK(e.config.latent_dim == e.key.latent_dim);
      CHECK(e.median_us > 0);
      CHECK(e.median_us <= e.heuristic_us * 1.02);  // the winner was timed beside the heuristic
    }
  }
}
