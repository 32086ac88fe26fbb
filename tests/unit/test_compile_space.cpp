// Every config of the decode_mma search space compiles with NVRTC (no GPU needed) without
// register spills or stack, for sm_80 and sm_90a; a smaller sweep over the problem fields;
// the ptxas-log parser; and CompileError on a unit that does not compile.
//
// Compiles go through jit::compile directly (not the disk or memory cache), on two threads;
// Catch assertions are made on the main thread only.
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "autotune/search_space.hpp"
#include "codegen/codegen.hpp"
#include "flashmla/config.hpp"
#include "flashmla/error.hpp"
#include "jit/cubin_info.hpp"
#include "jit/nvrtc.hpp"

#define SKIP_WITHOUT_NVRTC()                        \
  do {                                              \
    std::string why_not;                            \
    if (!flashmla::jit::nvrtc_available(&why_not)) { \
      WARN("skipped: " + why_not);                  \
      return;                                       \
    }                                               \
  } while (0)

namespace {

using Catch::Matchers::Contains;
using flashmla::Arch;
using flashmla::DType;
using flashmla::KernelConfig;
namespace codegen = flashmla::codegen;
namespace jit = flashmla::jit;

struct Compiled {
  KernelConfig config;
  std::optional<jit::CompileOutput> output;
  std::string error;  // what() of the exception when the compile threw
};

// Compiles every config on `threads` threads; returns the outputs in input order.
std::vector<Compiled> compile_all(const std::vector<KernelConfig>& configs, int threads = 2) {
  std::vector<Compiled> results(configs.size());
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t i = next++; i < configs.size(); i = next++) {
      Compiled& r = results[i];
      r.config = configs[i];
      try {
        r.output = jit::compile(r.config, codegen::unit_name(r.config), codegen::render(r.config));
      } catch (const std::exception& e) {
        r.error = e.what();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  return results;
}

void check_compiled(const Compiled& r) {
  INFO(r.config.id());
  INFO(r.error);
  REQUIRE(r.output.has_value());
  const jit::CompileOutput& out = *r.output;
  INFO("ptxas log:\n" << out.log);
  CHECK_FALSE(out.cubin.empty());
  // A cubin is an ELF image.
  CHECK(out.cubin.compare(0, 4, "\x7f" "ELF") == 0);
  for (const char* symbol : {codegen::kDecodeSymbol, codegen::kCombineSymbol, codegen::kMetadataSymbol}) {
    INFO("entry " << symbol);
    const jit::KernelResources* k = out.find(symbol);
    REQUIRE(k != nullptr);
    CHECK(k->registers > 0);
    CHECK(k->registers <= 255);
  }
  CHECK(out.kernels.size() == 3);
  for (const jit::KernelResources& k : out.kernels) {
    INFO("entry " << k.symbol << ": " << k.registers << " registers");
    CHECK(k.spill_store_bytes == 0);
    CHECK(k.spill_load_bytes == 0);
    CHECK(k.stack_bytes == 0);
  }
  CHECK(out.max_spill_bytes() == 0);
  // The decode kernel is launched with num_warps * 32 threads and 1 block per SM.
  CHECK(out.find(codegen::kDecodeSymbol)->registers * r.config.num_threads() <= 65536);
}

KernelConfig base_config(Arch arch, DType dtype = DType::bf16, int latent = 512, int page = 64) {
  KernelConfig c;
  c.dtype = dtype, c.latent_dim = latent, c.page_size = page, c.arch = arch;
  return c;
}

}  // namespace

TEST_CASE("every config of the decode_mma space compiles without spills (sm_80, sm_90a)", "[compile][nvrtc]") {
  SKIP_WITHOUT_NVRTC();
  std::vector<KernelConfig> configs;
  for (const char* arch : {"sm_80", "sm_90a"}) {
    const auto space = flashmla::autotune::decode_mma_space(base_config(Arch::parse(arch)));
    INFO(arch);
    REQUIRE_FALSE(space.valid.empty());
    configs.insert(configs.end(), space.valid.begin(), space.valid.end());
  }
  const auto start = std::chrono::steady_clock::now();
  const auto results = compile_all(configs);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN("compiled " << results.size() << " configs in " << seconds << " s");
  for (const Compiled& r : results) check_compiled(r);
}

TEST_CASE("problem-field sweep: fp16, latent 256, page sizes 16/32/128 compile on both archs", "[compile][nvrtc]") {
  SKIP_WITHOUT_NVRTC();
  struct Problem {
    DType dtype;
    int latent, page;
  };
  const Problem problems[] = {{DType::fp16, 512, 64}, {DType::bf16, 256, 64}, {DType::fp16, 256, 16},
                              {DType::bf16, 512, 16}, {DType::bf16, 512, 32}, {DType::bf16, 512, 128}};
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  std::vector<KernelConfig> configs;
  for (const char* arch : {"sm_80", "sm_90a"})
    for (const Problem& p : problems) {
      const auto space = flashmla::autotune::decode_mma_space(base_config(Arch::parse(arch), p.dtype, p.latent, p.page));
      REQUIRE(space.valid.size() >= 2);
      // The largest tile of the space and one other, at random.
      configs.push_back(space.valid.back());
      configs.push_back(space.valid[rng() % (space.valid.size() - 1)]);
    }
  const auto results = compile_all(configs);
  for (const Compiled& r : results) check_compiled(r);
}

TEST_CASE("parse_ptxas_log reads each entry's registers, stack and spills", "[compile]") {
  const std::string log =
      "ptxas info    : 84 bytes gmem\n"
      "ptxas info    : Compiling entry function 'flashmla_metadata' for 'sm_90a'\n"
      "ptxas info    : Function properties for flashmla_metadata\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 21 registers, used 1 barriers\n"
      "ptxas info    : Compile time = 17.614 ms\n"
      "ptxas info    : Compiling entry function 'flashmla_decode' for 'sm_90a'\n"
      "ptxas info    : Function properties for flashmla_decode\n"
      "ptxas         .     48 bytes stack frame, 40 bytes spill stores, 36 bytes spill loads\n"
      "ptxas info    : Used 255 registers, used 1 barriers, 48 bytes cumulative stack size, 364 bytes cmem[0]\n"
      "ptxas info    : Compile time = 107.488 ms";  // no trailing newline
  const auto kernels = jit::parse_ptxas_log(log);
  REQUIRE(kernels.size() == 2);
  CHECK(kernels[0].symbol == "flashmla_metadata");
  CHECK(kernels[0].registers == 21);
  CHECK(kernels[0].stack_bytes == 0);
  CHECK(kernels[0].spill_store_bytes == 0);
  CHECK(kernels[0].spill_load_bytes == 0);
  CHECK(kernels[1].symbol == "flashmla_decode");
  CHECK(kernels[1].registers == 255);
  CHECK(kernels[1].stack_bytes == 48);
  CHECK(kernels[1].spill_store_bytes == 40);
  CHECK(kernels[1].spill_load_bytes == 36);

  jit::CompileOutput out;
  out.kernels = kernels;
  CHECK(out.max_spill_bytes() == 48);
  REQUIRE(out.find("flashmla_decode") != nullptr);
  CHECK(out.find("flashmla_decode")->spill_store_bytes == 40);
  CHECK(out.find("flashmla_combine") == nullptr);

  CHECK(jit::parse_ptxas_log("").empty());
  CHECK(jit::parse_ptxas_log("ptxas info    : 0 bytes gmem\n").empty());
}

TEST_CASE("parse_ptxas_log keeps a non-inlined device function's figures out of the entry before it",
          "[compile]") {
  // Real ptxas 13.0 output order (a __noinline__ helper called from `second`): the helper's
  // "Function properties" block follows the entry it belongs to, but it is not an entry.
  const std::string log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'second' for 'sm_80'\n"
      "ptxas info    : Function properties for second\n"
      "ptxas         .     128 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 0 barriers, 128 bytes cumulative stack size, 364 bytes cmem[0]\n"
      "ptxas info    : Compile time = 3.825 ms\n"
      "ptxas info    : Function properties for _Z6helperPfi\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Compiling entry function 'first' for 'sm_80'\n"
      "ptxas info    : Function properties for first\n"
      "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 72 registers, used 0 barriers, 364 bytes cmem[0]\n";
  const auto kernels = jit::parse_ptxas_log(log);
  REQUIRE(kernels.size() == 3);  // the helper gets an entry of its own (registers unknown)
  CHECK(kernels[0].symbol == "second");
  CHECK(kernels[0].registers == 40);
  CHECK(kernels[0].stack_bytes == 128);
  CHECK(kernels[0].spill_store_bytes == 8);
  CHECK(kernels[0].spill_load_bytes == 8);
  CHECK(kernels[1].symbol == "_Z6helperPfi");
  CHECK(kernels[1].registers == -1);
  CHECK(kernels[1].stack_bytes == 0);
  CHECK(kernels[2].symbol == "first");
  CHECK(kernels[2].registers == 72);
  CHECK(kernels[2].stack_bytes == 0);
}

TEST_CASE("the cubin's own .nv.info gives the registers and frame the ptxas log gives", "[compile][nvrtc]") {
  SKIP_WITHOUT_NVRTC();
  // `framed` indexes a local array by a run-time value, so it needs a local-memory frame.
  const std::string source =
      "extern \"C\" __global__ void framed(float* x, int n) {\n"
      "  float t[300];\n"
      "  for (int i = 0; i < 300; ++i) t[i] = x[i * n];\n"
      "  x[threadIdx.x] = t[(n + threadIdx.x) % 300];\n"
      "}\n"
      "extern \"C\" __global__ void plain(float* x) { x[threadIdx.x] *= 2.f; }\n";
  for (const char* arch : {"sm_80", "sm_90a"}) {
    const auto out = jit::compile(base_config(Arch::parse(arch)), "probe.cu", source);
    const auto from_log = jit::parse_ptxas_log(out.log);
    const auto from_cubin = jit::read_cubin_functions(out.cubin);
    REQUIRE(from_cubin.size() == 2);
    for (const auto& f : from_cubin) {
      INFO(arch << " " << f.symbol);
      const auto* k = out.find(f.symbol);
      REQUIRE(k != nullptr);
      CHECK(k->registers == f.registers);
      CHECK(k->stack_bytes == f.frame_bytes);
      for (const auto& l : from_log)  // NVRTC may return no log; when it does, both agree
        if (l.symbol == f.symbol) {
          CHECK(l.registers == f.registers);
          CHECK(l.stack_bytes == f.frame_bytes);
        }
    }
    CHECK(out.find("framed")->stack_bytes > 0);
    CHECK(out.find("plain")->stack_bytes == 0);
    CHECK(out.find("plain")->registers > 0);
  }
  CHECK_THROWS_WITH(jit::read_cubin_functions("not an elf file at all, long enough to hold a header of sixty-four"),
                    Contains("not a little-endian ELF64"));
  std::string truncated = jit::compile(base_config(Arch::parse("sm_80")), "probe.cu", source).cubin;
  truncated.resize(truncated.size() / 2);
  CHECK_THROWS_WITH(jit::read_cubin_functions(truncated), Contains("past the end"));
}

TEST_CASE("a unit that does not compile throws CompileError with log, options and config id", "[compile][nvrtc]") {
  SKIP_WITHOUT_NVRTC();
  KernelConfig c = base_config(Arch::parse("sm_80"));
  c.block_size_q = 16, c.block_size_k = 32, c.num_warps = 4, c.num_stages = 1;
  REQUIRE(c.invalid_reason() == std::nullopt);
  const std::string source = codegen::render(c) + "\nstatic int flashmla_broken_unit = ;\n";
  bool thrown = false;
  try {
    jit::compile(c, codegen::unit_name(c), source);
  } catch (const flashmla::CompileError& e) {
    thrown = true;
    CHECK_FALSE(e.log().empty());
    CHECK_THAT(e.log(), Contains("flashmla_broken_unit") || Contains("expected an expression"));
    CHECK_FALSE(e.options().empty());
    CHECK_THAT(e.options(), Contains("--gpu-architecture=sm_80"));
    CHECK(e.config_id() == c.id());
    CHECK_THAT(std::string(e.what()), Contains(c.id()));
  }
  CHECK(thrown);
}

TEST_CASE("nvrtc_options target the config's arch", "[compile]") {
  KernelConfig c;
  c.arch = Arch::parse("sm_90a");
  const auto options = jit::nvrtc_options(c);
  bool found = false;
  for (const auto& o : options) found = found || o == "--gpu-architecture=sm_90a";
  CHECK(found);
  c.arch = Arch::parse("sm_86");
  found = false;
  for (const auto& o : jit::nvrtc_options(c)) found = found || o == "--gpu-architecture=sm_86";
  CHECK(found);
}

TEST_CASE("FLASHMLA_NVRTC_LINEINFO adds line info to the options (and so to the cache key)", "[compile]") {
  KernelConfig c;
  c.arch = Arch::parse("sm_90a");
  auto has_lineinfo = [&] {
    const auto options = jit::nvrtc_options(c);
    return std::find(options.begin(), options.end(), "--generate-line-info") != options.end();
  };
  const char* before = std::getenv("FLASHMLA_NVRTC_LINEINFO");
  const std::string saved = before ? before : "";
  setenv("FLASHMLA_NVRTC_LINEINFO", "1", 1);
  CHECK(has_lineinfo());
  setenv("FLASHMLA_NVRTC_LINEINFO", "0", 1);
  CHECK_FALSE(has_lineinfo());
  unsetenv("FLASHMLA_NVRTC_LINEINFO");
  CHECK_FALSE(has_lineinfo());
  if (before) setenv("FLASHMLA_NVRTC_LINEINFO", saved.c_str(), 1);
}
