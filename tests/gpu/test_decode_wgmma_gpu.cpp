// The Hopper families, decode_wgmma and decode_seesaw (sm_90a), against the fp64 reference,
// pinned to each layout. On other GPUs the program is reported as skipped.
#include <cstdlib>

#include "gpu_test_support.hpp"

using namespace flashmla::gpu_test;
using flashmla::DType;
using flashmla::KernelConfig;

TEST_CASE("decode_wgmma matches the fp64 reference (pinned, sm_90a)", "[gpu][wgmma]") {
  SKIP_WITHOUT_GPU();
  const flashmla::Arch arch = device_arch();
  if (!(arch.sm == 90 && arch.accel)) {
    WARN("skipped: decode_wgmma needs sm_90a, this GPU is " << arch.name());
    return;
  }
  const std::vector<Case> cases = {
      make_case("wgmma h_q=128 s_k=4096", 2, 1, 128, 1, 512, 64, bf16, false, {4096}),
      make_case("wgmma h_q=16 s_q=2 causal mixed s_k", 7, 2, 16, 1, 512, 32, bf16, true, mixed_s_k),
      make_case("wgmma h_q=63 page 16", 2, 1, 63, 1, 512, 16, bf16, false, {140}),
      make_case("wgmma h_kv=2 h_q=32 s_q=4 page 128", 3, 4, 32, 2, 512, 128, bf16, true, {1, 20, 300}),
      make_case("wgmma h_q=1 s_k=1 and 0", 4, 1, 1, 1, 512, 64, bf16, false, {1, 0, 65, 64}),
      make_case("wgmma fp16 h_q=64 s_q=2 causal", 3, 2, 64, 1, 512, 64, fp16, true, {5000, 33, 0}),
  };
  // FLASHMLA_TEST_LAYOUT=1|2|3 runs one layout only (to point compute-sanitizer at one kernel).
  const char* only = std::getenv("FLASHMLA_TEST_LAYOUT");
  for (const Case& c : cases)
    for (int layout : {1, 2, 3}) {  // decode_wgmma s1, s2; decode_seesaw
      if (only && *only && std::atoi(only) != layout) continue;
      KernelConfig cfg = make_config(c, {64, 64, 8, layout <= 2 ? layout : 2});
      cfg.family = layout <= 2 ? flashmla::Family::decode_wgmma : flashmla::Family::decode_seesaw;
      REQUIRE_FALSE(cfg.invalid_reason());
      const Problem p = flashmla::make_problem(c);
      DeviceProblem d(p);
      check_config(p, d, cfg);
    }
}

// Prototype check for FLASHMLA_WGMMA_CLUSTER=2 (decode.cpp, decode_wgmma.cuh): shapes with an even
// number of q tiles only. Run with that variable and FLASHMLA_NVRTC_DEFINES=FLASHMLA_WGMMA_CLUSTER=2.
TEST_CASE("decode_wgmma in clusters of 2 matches the fp64 reference (prototype)", "[gpu][wgmma][cluster]") {
  SKIP_WITHOUT_GPU();
  const char* cluster = std::getenv("FLASHMLA_WGMMA_CLUSTER");
  if (!cluster || std::atoi(cluster) != 2) {
    WARN("skipped: set FLASHMLA_WGMMA_CLUSTER=2 (and the same NVRTC define) to run the cluster prototype");
    return;
  }
  const std::vector<Case> cases = {
      make_case("cluster h_q=128 s_k=4096", 2, 1, 128, 1, 512, 64, bf16, false, {4096}),
      make_case("cluster h_q=128 s_q=2 causal mixed s_k page 32", 7, 2, 128, 1, 512, 32, bf16, true, mixed_s_k),
      make_case("cluster fp16 h_q=64 s_q=2 causal", 3, 2, 64, 1, 512, 64, fp16, true, {5000, 33, 0}),
      make_case("cluster h_kv=2 h_q=128 s_q=2 page 16", 3, 2, 128, 2, 512, 16, bf16, false, {1, 140, 20}),
      make_case("cluster h_q=128 page 128 many", 10, 1, 128, 1, 512, 128, bf16, false,
                {0, 1, 20, 140, 4096, 333, 64, 65, 0, 2000}),
  };
  for (const Case& c : cases) {
    KernelConfig cfg = make_config(c, {64, 64, 8, 2});
    cfg.family = flashmla::Family::decode_wgmma;
    const Problem p = flashmla::make_problem(c);
    DeviceProblem d(p);
    check_config(p, d, cfg);
  }
}
