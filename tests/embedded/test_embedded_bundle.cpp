// Built together with the C++ source that `flashmla compile --emit-cpp` generated at build
// time (tests/CMakeLists.txt): the bundle registers itself before main, and its kernel is
// served with FLASHMLA_JIT=0 and no NVRTC mapped into the process.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <string>

#include "flashmla/bundle.hpp"
#include "jit/kernel_cache.hpp"

TEST_CASE("the generated --emit-cpp source compiles, registers and serves its kernel", "[bundle]") {
  const auto loaded = flashmla::loaded_bundles();
  REQUIRE(std::find(loaded.begin(), loaded.end(), "embedded:test_embedded") != loaded.end());
  ::setenv("FLASHMLA_JIT", "0", 1);
  const auto config = flashmla::KernelConfig::parse("decode_mma-bf16-l512-r64-p64-q16-k32-w4-s2-sm_80");
  CHECK(flashmla::jit::get_binary(config).source == flashmla::jit::Binary::Source::bundle);
  ::unsetenv("FLASHMLA_JIT");
  std::ifstream maps("/proc/self/maps");
  bool nvrtc = false;
  for (std::string line; std::getline(maps, line);) nvrtc |= line.find("libnvrtc") != std::string::npos;
  CHECK_FALSE(nvrtc);
}
