// codegen::render(): the generated instantiation unit of one config (deterministic, carries
// its config, entry points and shared-memory static_assert, includes no toolkit header), and
// the embedded templates it compiles against.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/codegen.hpp"
#include "codegen/embedded.hpp"
#include "flashmla/config.hpp"
#include "flashmla/error.hpp"

namespace {

using Catch::Matchers::Contains;
using flashmla::DType;
using flashmla::KernelConfig;
namespace codegen = flashmla::codegen;

KernelConfig make(int q, int k, int w, int s, int latent = 512, int page = 64, DType dtype = DType::bf16,
                  int sm = 80, bool accel = false) {
  KernelConfig c;
  c.block_size_q = q, c.block_size_k = k, c.num_warps = w, c.num_stages = s;
  c.latent_dim = latent, c.page_size = page, c.dtype = dtype;
  c.arch.sm = sm, c.arch.accel = accel;
  return c;
}

// Lines of `text` that are preprocessor includes.
std::vector<std::string> include_lines(std::string_view text) {
  static const std::regex include(R"(^\s*#\s*include\s*(.*)$)");
  std::vector<std::string> out;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, include)) out.push_back(m[1].str());
  }
  return out;
}

}  // namespace

TEST_CASE("render is deterministic", "[codegen]") {
  for (const KernelConfig& c : {make(64, 32, 8, 2), make(16, 32, 4, 2, 256, 16, DType::fp16, 90, true)}) {
    INFO(c.id());
    const std::string first = codegen::render(c);
    const std::string second = codegen::render(KernelConfig::parse(c.id()));
    CHECK(first == second);
    CHECK(codegen::unit_name(c) == c.id() + ".cu");
  }
}

TEST_CASE("render differs when any field of the config differs", "[codegen]") {
  const KernelConfig base = make(32, 32, 8, 2, 512, 64, DType::bf16, 90, true);
  REQUIRE(base.invalid_reason() == std::nullopt);
  const std::string text = codegen::render(base);
  // Per field, candidate values other than base's; the first one that makes a valid config
  // is used (the validity rules may tighten without this test losing a field).
  const std::vector<std::pair<std::string, std::vector<std::function<void(KernelConfig&)>>>> mutations = {
      {"block_size_q", {[](KernelConfig& c) { c.block_size_q = 64; }, [](KernelConfig& c) { c.block_size_q = 16; }}},
      {"block_size_k", {[](KernelConfig& c) { c.block_size_k = 64; }, [](KernelConfig& c) { c.block_size_k = 128; }}},
      {"num_warps", {[](KernelConfig& c) { c.num_warps = 4; }}},
      {"num_stages", {[](KernelConfig& c) { c.num_stages = 1; }, [](KernelConfig& c) { c.num_stages = 3; }}},
      {"latent_dim", {[](KernelConfig& c) { c.latent_dim = 256; }}},
      {"page_size", {[](KernelConfig& c) { c.page_size = 128; }, [](KernelConfig& c) { c.page_size = 16; }}},
      {"dtype", {[](KernelConfig& c) { c.dtype = DType::fp16; }}},
      {"arch.accel", {[](KernelConfig& c) { c.arch.accel = false; }}},
      {"arch.sm", {[](KernelConfig& c) { c.arch.sm = 100; }}},
  };
  for (const auto& [field, candidates] : mutations) {
    INFO("field " << field);
    std::optional<KernelConfig> other;
    for (const auto& mutate : candidates) {
      KernelConfig c = base;
      mutate(c);
      if (!c.invalid_reason()) {
        other = c;
        break;
      }
    }
    REQUIRE(other.has_value());
    INFO(other->id());
    CHECK(codegen::render(*other) != text);
  }
}

TEST_CASE("render carries the id, the three entry points and the shared-memory static_assert", "[codegen]") {
  for (const KernelConfig& c : {make(64, 32, 8, 2), make(16, 32, 4, 3, 256, 32, DType::fp16, 86),
                                make(64, 32, 8, 3, 512, 128, DType::bf16, 90, true)}) {
    INFO(c.id());
    const std::string text = codegen::render(c);
    CHECK_THAT(text, Contains(c.id()));
    for (const char* symbol : {codegen::kDecodeSymbol, codegen::kCombineSymbol, codegen::kMetadataSymbol}) {
      const std::regex entry("extern \"C\" __global__[^\\n]*\\n" + std::string(symbol) + "\\(");
      CHECK(std::regex_search(text, entry));
    }
    CHECK_THAT(text, Contains("static_assert(sizeof(Traits::SharedPlan) == " + std::to_string(c.shared_bytes()) + ","));
    const std::string traits = "DecodeMmaTraits</*block_size_q*/ " + std::to_string(c.block_size_q) +
                               ", /*block_size_k*/ " + std::to_string(c.block_size_k) + ", /*num_warps*/ " +
                               std::to_string(c.num_warps) + ",";
    CHECK_THAT(text, Contains(traits));
    CHECK_THAT(text, Contains("/*num_stages*/ " + std::to_string(c.num_stages) + ","));
    CHECK_THAT(text, Contains("/*latent_dim*/ " + std::to_string(c.latent_dim) + ","));
    CHECK_THAT(text, Contains("/*page_size*/ " + std::to_string(c.page_size) + ","));
    CHECK_THAT(text, Contains(c.dtype == DType::bf16 ? "Elem::bf16" : "Elem::fp16"));
    CHECK_THAT(text, Contains("__launch_bounds__(" + std::to_string(codegen::kCombineThreads) + ", " +
                                   std::to_string(codegen::kCombineMinCtasPerSm) + ")"));
    CHECK_THAT(text, Contains("__launch_bounds__(" + std::to_string(codegen::kMetadataThreads) + ")"));
  }
}

TEST_CASE("the rendered unit includes only embedded templates, no toolkit header", "[codegen]") {
  const std::string text = codegen::render(make(64, 32, 8, 2));
  CHECK_THAT(text, !Contains("#include <cuda"));
  std::set<std::string> embedded;
  for (const auto& f : codegen::embedded_files()) embedded.insert(std::string(f.name));
  const auto includes = include_lines(text);
  CHECK(includes.size() >= 3);
  for (const std::string& inc : includes) {
    INFO("#include " << inc);
    REQUIRE(inc.size() > 2);
    CHECK(inc.front() == '"');
    CHECK(embedded.count(inc.substr(1, inc.find('"', 1) - 1)) == 1);
  }
}

TEST_CASE("embedded templates: the expected files, no system header", "[codegen]") {
  std::set<std::string> names;
  for (const auto& f : codegen::embedded_files()) {
    INFO(f.name);
    names.insert(std::string(f.name));
    CHECK_FALSE(f.source.empty());
    CHECK(f.source.find('\0') == std::string_view::npos);
    for (const std::string& inc : include_lines(f.source)) {
      INFO("#include " << inc);
      CHECK(inc.front() != '<');
    }
    // Every quoted include resolves to another embedded file.
    for (const std::string& inc : include_lines(f.source)) {
      if (inc.front() != '"') continue;
      const std::string target = inc.substr(1, inc.find('"', 1) - 1);
      bool found = false;
      for (const auto& g : codegen::embedded_files()) found = found || g.name == target;
      CHECK(found);
    }
  }
  for (const char* expected : {"flashmla/decode_mma.cuh", "flashmla/combine.cuh", "flashmla/metadata.cuh",
                               "flashmla/params.cuh", "flashmla/ptx.cuh"}) {
    INFO(expected);
    CHECK(names.count(expected) == 1);
  }
  CHECK(names.size() == codegen::embedded_files().size());  // no duplicate names
}

TEST_CASE("embedded templates are the files in templates/flashmla", "[codegen]") {
  // This file lives in <repo>/tests/unit; the build embeds <repo>/templates/flashmla/*.cuh.
  const std::filesystem::path repo = std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
  const std::filesystem::path dir = repo / "templates" / "flashmla";
  if (!std::filesystem::is_directory(dir)) {
    WARN("templates not found next to " << __FILE__ << "; comparison not done");
    return;
  }
  std::size_t on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".cuh") continue;
    ++on_disk;
    const std::string name = "flashmla/" + entry.path().filename().string();
    INFO(name << " (rebuild if a template was edited since the last build)");
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    bool found = false;
    for (const auto& f : codegen::embedded_files())
      if (f.name == name) {
        found = true;
        CHECK(f.source == ss.str());
      }
    CHECK(found);
  }
  CHECK(on_disk == codegen::embedded_files().size());
}

TEST_CASE("render of an invalid config throws InvalidArgument", "[codegen]") {
  for (const KernelConfig& c : {make(48, 32, 4, 2), make(64, 64, 4, 1), make(64, 64, 8, 4),
                                make(16, 32, 4, 2, 384), make(16, 32, 4, 2, 512, 64, DType::bf16, 75)}) {
    INFO(c.id());
    REQUIRE(c.invalid_reason().has_value());
    CHECK_THROWS_AS(codegen::render(c), flashmla::InvalidArgument);
    CHECK_THROWS_WITH(codegen::render(c), Contains(*c.invalid_reason()));
  }
}
