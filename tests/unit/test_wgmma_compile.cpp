// The wgmma helpers compile for sm_90a through NVRTC without spills, and, where cuobjdump is
// installed, the probe's SASS holds HGMMA (the Hopper matrix instruction, not HMMA).
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <fstream>
#include <string>

#include "autotune/search_space.hpp"
#include "codegen/codegen.hpp"
#include "jit/nvrtc.hpp"
#include "test_support.hpp"
#include "tests/wgmma_probe.hpp"

using namespace flashmla;
using Catch::Matchers::Contains;

namespace {

// The SASS of a cubin through cuobjdump ($CUDA_HOME or /usr/local/cuda), or nullopt with a
// warning where cuobjdump (or the nvdisasm it runs) is missing.
std::optional<std::string> sass_of(const std::string& cubin) {
  const char* home = std::getenv("CUDA_HOME");
  const std::filesystem::path cuobjdump = std::filesystem::path(home ? home : "/usr/local/cuda") / "bin" / "cuobjdump";
  if (!std::filesystem::exists(cuobjdump)) {
    WARN("SASS not checked: no cuobjdump at " << cuobjdump);
    return std::nullopt;
  }
  test::TempDir dir;
  std::ofstream(dir.path() / "k.cubin", std::ios::binary) << cubin;
  const std::string cmd = cuobjdump.string() + " --dump-sass " + (dir.path() / "k.cubin").string() + " 2>&1";
  std::string sass;
  if (FILE* pipe = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) sass.append(buf, n);
    ::pclose(pipe);
  }
  if (sass.find("fatal") != std::string::npos) {  // e.g. cuobjdump without its nvdisasm
    WARN("SASS not checked: " << sass.substr(0, 300));
    return std::nullopt;
  }
  return sass;
}

}  // namespace

TEST_CASE("the wgmma probe compiles for sm_90a, and its SASS holds HGMMA", "[wgmma]") {
  std::string why;
  if (!jit::nvrtc_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  KernelConfig c;
  c.arch = Arch::parse("sm_90a");
  const jit::CompileOutput out = jit::compile(c, "wgmma_probe.cu", test::kWgmmaProbeSource);
  for (const char* symbol : {"wgmma_probe", "wgmma_probe_n256"}) {
    INFO(symbol);
    const jit::KernelResources* k = out.find(symbol);
    REQUIRE(k != nullptr);
    CHECK(k->spill_store_bytes == 0);
    CHECK(k->stack_bytes == 0);
  }

  const auto sass = sass_of(out.cubin);
  if (!sass) return;
  CHECK_THAT(*sass, Contains("HGMMA.64x64x16.F32.BF16") && Contains("HGMMA.64x256x16.F32.BF16"));
  CHECK_FALSE(sass->find("HMMA") != std::string::npos);
}

TEST_CASE("every decode_wgmma config compiles for sm_90a without spills, with HGMMA", "[wgmma]") {
  std::string why;
  if (!jit::nvrtc_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  for (int page : {16, 32, 64, 128})
    for (DType dtype : {DType::bf16, DType::fp16}) {
      KernelConfig base;
      base.arch = Arch::parse("sm_90a");
      base.page_size = page, base.dtype = dtype;
      // SASS names the operand type for bf16 only: "HGMMA.64x64x16.F32.BF16" / "HGMMA.64x64x16.F32".
      const bool bf16 = dtype == DType::bf16;
      const auto space = autotune::decode_wgmma_space(base);
      REQUIRE(space.valid.size() == 3);
      for (const KernelConfig& c : space.valid) {
        INFO(c.id());
        const jit::CompileOutput out = jit::compile(c, codegen::unit_name(c), codegen::render(c));
        const jit::KernelResources* k = out.find(codegen::kDecodeSymbol);
        REQUIRE(k != nullptr);
        CHECK(k->registers <= 255);
        CHECK(out.max_spill_bytes() == 0);
        // ptxas reports (C7514/C7515 "Potential Performance Loss") when it serializes the wgmmas
        // because non-wgmma code touches an accumulator while one is in flight (bench/NOTES.md).
        CHECK(out.log.find("are serialized") == std::string::npos);
        if (const auto sass = sass_of(out.cubin)) {
          CHECK_THAT(*sass, Contains("HGMMA.64x64x16.F32") && Contains("HGMMA.64x256x16.F32"));
          CHECK((sass->find(".F32.BF16") != std::string::npos) == bf16);
          CHECK(sass->find("LDL") == std::string::npos);  // no local-memory loads (spills)
          // Both sm_90a families load K/V by TMA: UTMALDG in SASS.
          CHECK(sass->find("UTMALDG") != std::string::npos);
        }
      }
    }
  KernelConfig l256;
  l256.family = Family::decode_wgmma, l256.latent_dim = 256, l256.arch = Arch::parse("sm_90a");
  l256.block_size_q = 64, l256.block_size_k = 64, l256.num_warps = 8, l256.num_stages = 1;
  CHECK_THAT(*l256.invalid_reason(), Contains("latent_dim 512"));
}

TEST_CASE("decode_pair compiles for sm_90a without spills or serialized wgmmas, with HGMMA", "[wgmma]") {
  std::string why;
  if (!jit::nvrtc_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  for (int page : {16, 64})
    for (DType dtype : {DType::bf16, DType::fp16}) {
      KernelConfig c;
      c.family = Family::decode_pair, c.arch = Arch::parse("sm_90a");
      c.block_size_q = 64, c.block_size_k = 64, c.num_warps = 8, c.num_stages = 4;
      c.page_size = page, c.dtype = dtype;
      INFO(c.id());
      REQUIRE_FALSE(c.invalid_reason());
      const jit::CompileOutput out = jit::compile(c, codegen::unit_name(c), codegen::render(c));
      const jit::KernelResources* k = out.find(codegen::kDecodeSymbol);
      REQUIRE(k != nullptr);
      CHECK(out.max_spill_bytes() == 0);
      CHECK(out.log.find("are serialized") == std::string::npos);
      if (const auto sass = sass_of(out.cubin)) {
        // S with Q from registers (the A operand a register list), P V from shared memory, K/V by
        // TMA, the S partials by st.async (STAS).
        CHECK_THAT(*sass, Contains("HGMMA.64x64x16.F32") && Contains("HGMMA.64x256x16.F32"));
        CHECK(sass->find("UTMALDG") != std::string::npos);
        CHECK(sass->find("STAS") != std::string::npos);
        CHECK(sass->find("LDL") == std::string::npos);
      }
    }
  KernelConfig s2;
  s2.family = Family::decode_pair, s2.arch = Arch::parse("sm_90a");
  s2.block_size_q = 64, s2.block_size_k = 64, s2.num_warps = 8, s2.num_stages = 2;
  CHECK_THAT(*s2.invalid_reason(), Contains("q64-k64-w8-s4"));
  s2.num_stages = 4, s2.arch = Arch::parse("sm_80");
  CHECK_THAT(*s2.invalid_reason(), Contains("sm_90a"));
  CHECK(parse_family("decode_pair", "test") == Family::decode_pair);
}
