// Candidates compile in worker processes: a worker that dies fails its candidate only.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <stdexcept>

#include "autotune/compile_workers.hpp"
#include "jit/nvrtc.hpp"
#include "test_support.hpp"

using namespace flashmla;
using Catch::Matchers::Contains;

TEST_CASE("a crashing or failing compile worker fails its candidate, not the run", "[tuning]") {
  std::string why;
  if (!jit::nvrtc_available(&why)) {
    WARN("skipped: " << why);
    return;
  }
  test::TempDir cache;
  test::ScopedEnv env("FLASHMLA_CACHE_DIR", cache.path().c_str());
  std::vector<KernelConfig> configs;
  for (int stages : {1, 2, 3}) {
    KernelConfig c;
    c.arch = Arch::parse("sm_80");
    c.block_size_q = 16, c.block_size_k = 32, c.num_warps = 4, c.num_stages = stages, c.page_size = 32;
    REQUIRE_FALSE(c.invalid_reason());
    configs.push_back(c);
  }
  std::size_t calls = 0;
  const auto reports = autotune::compile_in_workers(
      configs, 2, [&](std::size_t done, std::size_t total, const autotune::CompileReport&) {
        ++calls;
        CHECK(done <= total);
      },
      [&](const KernelConfig& c) {
        if (c.num_stages == 2) std::abort();                            // the worker dies
        if (c.num_stages == 3) throw std::runtime_error("planted failure");  // the worker reports an error
      });
  REQUIRE(reports.size() == 3);
  CHECK(calls == 3);
  CHECK(reports[0].ok);
  CHECK(reports[0].failure.empty());
  CHECK(reports[0].kernels.size() == 3);
  CHECK(reports[0].spill_bytes() == 0);
  CHECK_FALSE(reports[1].ok);
  CHECK_THAT(reports[1].failure, Contains("crashed") && Contains("signal"));
  CHECK_FALSE(reports[2].ok);
  CHECK_THAT(reports[2].failure, Contains("planted failure"));
  for (std::size_t i = 0; i < 3; ++i) CHECK(reports[i].config == configs[i]);
}
