// AOT bundles: compiled for sm_80 + sm_90a, written, loaded, hash-checked; truncated (at
// load) and corrupt (at first use) copies are errors naming the file; another library version is skipped;
// FLASHMLA_JIT=0 names what was searched; a process served by bundles never loads libnvrtc.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/codegen.hpp"
#include "flashmla/bundle.hpp"
#include "flashmla/error.hpp"
#include "jit/bundle.hpp"
#include "jit/kernel_cache.hpp"
#include "jit/nvrtc.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace jit = flashmla::jit;
using flashmla::KernelConfig;
using flashmla::test::ScopedEnv;
using flashmla::test::TempDir;
using Catch::Matchers::Contains;

#define SKIP_WITHOUT_NVRTC()                        \
  do {                                              \
    std::string why_not;                            \
    if (!jit::nvrtc_available(&why_not)) {          \
      WARN("skipped: " << why_not);                 \
      return;                                       \
    }                                               \
  } while (0)

// Each test uses its own page size so that the process-wide bundle registry (first bundle
// to provide a config wins) cannot serve one test from another test's bundle.
std::vector<KernelConfig> configs_for(int page_size) {
  std::vector<KernelConfig> out;
  for (const char* arch : {"sm_80", "sm_90a"}) {
    KernelConfig c;
    c.arch = flashmla::Arch::parse(arch);
    c.page_size = page_size;
    c.block_size_q = 16, c.block_size_k = 32, c.num_warps = 4, c.num_stages = 2;
    REQUIRE_FALSE(c.invalid_reason());
    out.push_back(c);
  }
  return out;
}

void make_bundle(const fs::path& dir, const std::vector<KernelConfig>& configs) {
  std::vector<jit::BundleKernel> kernels;
  for (const auto& c : configs) {
    jit::CompileOutput out = jit::compile(c, flashmla::codegen::unit_name(c), flashmla::codegen::render(c));
    jit::BundleKernel k;
    k.config = c;
    k.binary.cubin = std::move(out.cubin);
    k.binary.kernels = std::move(out.kernels);
    kernels.push_back(std::move(k));
  }
  jit::write_bundle(dir.string(), kernels, jit::nvrtc_version());
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& data) { std::ofstream(p, std::ios::binary) << data; }

std::string load_error(const fs::path& dir) {
  try {
    flashmla::load_bundle(dir.string());
  } catch (const flashmla::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("a bundle for sm_80 and sm_90a is written, loaded, hash-checked and used", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const auto configs = configs_for(16);
  make_bundle(dir.path(), configs);
  const auto manifest = nlohmann::json::parse(slurp(dir.path() / "manifest.json"));
  REQUIRE(manifest["kernels"].size() == configs.size());
  for (const auto& k : manifest["kernels"]) {
    CHECK(k["sha256"].get<std::string>().size() == 64);
    CHECK(k["source_hash"].get<std::string>().size() == 64);
    CHECK(k["resources"].size() == 3);  // decode, combine, metadata
    CHECK(fs::file_size(dir.path() / k["file"].get<std::string>()) == k["bytes"].get<std::size_t>());
  }
  REQUIRE(flashmla::load_bundle(dir.path().string()));
  const auto loaded = flashmla::loaded_bundles();
  CHECK(std::find(loaded.begin(), loaded.end(), dir.path().string()) != loaded.end());
  for (const auto& c : configs) {
    const jit::Binary b = jit::get_binary(c);
    CHECK(b.source == jit::Binary::Source::bundle);
    CHECK(b.cubin == slurp(dir.path() / (c.id() + ".cubin")));
  }
}

TEST_CASE("a corrupt or truncated bundle is an error naming the file", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const auto configs = configs_for(32);
  make_bundle(dir.path(), configs);
  const fs::path victim = dir.path() / (configs[1].id() + ".cubin");
  const std::string good = slurp(victim);

  // A flipped byte keeps the size: found when the kernel is first used.
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x01;
  spit(victim, flipped);
  REQUIRE(load_error(dir.path()).empty());
  CHECK(jit::get_binary(configs[0]).source == jit::Binary::Source::bundle);  // an intact neighbour
  try {
    jit::get_binary(configs[1]);
    FAIL("a corrupt kernel file was used");
  } catch (const flashmla::Error& e) {
    CHECK_THAT(std::string(e.what()), Contains(configs[1].id() + ".cubin") && Contains("corrupt"));
  }

  spit(victim, good.substr(0, good.size() / 3));
  const std::string truncated = load_error(dir.path());
  CHECK_THAT(truncated, Contains(configs[1].id() + ".cubin") && Contains("truncated"));

  fs::remove(victim);
  CHECK_THAT(load_error(dir.path()), Contains("missing"));

  spit(dir.path() / "manifest.json", "{ not json");
  CHECK_THAT(load_error(dir.path()), Contains("manifest.json is not valid JSON"));
}

TEST_CASE("a manifest entry whose config does not read as its config_id fails on first use", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  auto configs = configs_for(16);
  for (auto& c : configs) c.num_stages = 1;  // ids of its own (every page size is taken)
  for (const auto& c : configs) REQUIRE_FALSE(c.invalid_reason());
  make_bundle(dir.path(), configs);
  // Entries are parsed lazily (a bundle of hundreds loads fast): the mismatch is found when the
  // kernel is looked up, and names the file; the other kernels stay usable.
  auto manifest = nlohmann::json::parse(slurp(dir.path() / "manifest.json"));
  for (auto& k : manifest["kernels"])
    if (k["config_id"] == configs[1].id()) k["config"]["num_warps"] = configs[1].num_warps == 4 ? 8 : 4;
  spit(dir.path() / "manifest.json", manifest.dump());
  REQUIRE(load_error(dir.path()).empty());
  CHECK(jit::get_binary(configs[0]).source == jit::Binary::Source::bundle);
  try {
    jit::get_binary(configs[1]);
    FAIL("a mismatched manifest entry was used");
  } catch (const flashmla::Error& e) {
    CHECK_THAT(std::string(e.what()), Contains(configs[1].id() + ".cubin") && Contains("config_id"));
  }
}

TEST_CASE("a bundle made by another library version is skipped", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const auto configs = configs_for(64);
  make_bundle(dir.path(), configs);
  auto manifest = nlohmann::json::parse(slurp(dir.path() / "manifest.json"));
  manifest["library_version"] = "9.9.9";
  spit(dir.path() / "manifest.json", manifest.dump());
  CHECK_FALSE(flashmla::load_bundle(dir.path().string()));
  const auto loaded = flashmla::loaded_bundles();
  CHECK(std::find(loaded.begin(), loaded.end(), dir.path().string()) == loaded.end());
}

TEST_CASE("with FLASHMLA_JIT=0 a kernel missing from the bundles is an error naming both", "[bundle]") {
  KernelConfig c;
  c.arch = flashmla::Arch::parse("sm_86");
  c.block_size_q = 16, c.block_size_k = 32, c.num_warps = 4, c.num_stages = 1;
  REQUIRE_FALSE(c.invalid_reason());
  ScopedEnv jit_off("FLASHMLA_JIT", "0");
  try {
    jit::get_binary(c);
    FAIL("get_binary compiled with FLASHMLA_JIT=0");
  } catch (const flashmla::Error& e) {
    CHECK_THAT(std::string(e.what()), Contains(c.id()) && Contains("FLASHMLA_JIT=0") && Contains("searched"));
  }
}

// Runs in a fresh process (spawned by the next test): kernels come from FLASHMLA_BUNDLE
// with FLASHMLA_JIT=0, and libnvrtc must never be mapped.
TEST_CASE("child: bundle kernels without NVRTC", "[.child]") {
  const char* ids = std::getenv("FLASHMLA_TEST_CONFIGS");
  REQUIRE(ids != nullptr);
  std::stringstream list(ids);
  for (std::string id; std::getline(list, id, ',');)
    CHECK(jit::get_binary(KernelConfig::parse(id)).source == jit::Binary::Source::bundle);
  std::ifstream maps("/proc/self/maps");
  std::string line;
  bool nvrtc = false;
  while (std::getline(maps, line)) nvrtc |= line.find("libnvrtc") != std::string::npos;
  CHECK_FALSE(nvrtc);
}

TEST_CASE("a process whose kernels all come from bundles never loads libnvrtc", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const auto configs = configs_for(128);
  make_bundle(dir.path(), configs);
  std::string ids;
  for (const auto& c : configs) ids += (ids.empty() ? "" : ",") + c.id();
  ScopedEnv bundle("FLASHMLA_BUNDLE", dir.path().c_str());
  ScopedEnv jit_off("FLASHMLA_JIT", "0");
  ScopedEnv list("FLASHMLA_TEST_CONFIGS", ids.c_str());
  const std::string exe = fs::read_symlink("/proc/self/exe").string();
  const int status = std::system(("'" + exe + "' '[.child]' > /dev/null 2>&1").c_str());
  CHECK(status == 0);
}

TEST_CASE("an embedded bundle registers itself and serves its kernels", "[bundle]") {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  KernelConfig c;
  c.arch = flashmla::Arch::parse("sm_89");
  c.block_size_q = 16, c.block_size_k = 64, c.num_warps = 4, c.num_stages = 1;
  REQUIRE_FALSE(c.invalid_reason());
  make_bundle(dir.path(), {c});
  const std::string cubin = slurp(dir.path() / (c.id() + ".cubin"));
  const std::string manifest = slurp(dir.path() / "manifest.json");
  const std::string file = c.id() + ".cubin";
  const flashmla::EmbeddedKernel kernel{file.c_str(), reinterpret_cast<const unsigned char*>(cubin.data()),
                                        cubin.size()};
  REQUIRE(flashmla::register_embedded_bundle({"embedded:test", manifest.c_str(), &kernel, 1}));
  CHECK(jit::get_binary(c).source == jit::Binary::Source::bundle);

  // The generated C++ holds the same manifest and one array per kernel.
  const fs::path cpp = dir.path() / "bundle.cpp";
  jit::write_bundle_cpp(dir.path().string(), cpp.string(), "test");
  const std::string text = slurp(cpp);
  CHECK_THAT(text, Contains("register_embedded_bundle") && Contains("embedded:test") && Contains(c.id()));
}
