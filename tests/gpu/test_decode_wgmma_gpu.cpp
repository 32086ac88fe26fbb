// The Hopper families, decode_wgmma, decode_seesaw and decode_pair (sm_90a), against the fp64 reference,
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
  // FLASHMLA_TEST_LAYOUT=1|2|3|4 runs one layout only (to point compute-sanitizer at one kernel).
  const char* only = std::getenv("FLASHMLA_TEST_LAYOUT");
  for (const Case& c : cases)
    for (int layout : {1, 2, 3, 4}) {  // decode_wgmma s1, s2; decode_seesaw; decode_pair
      if (only && *only && std::atoi(only) != layout) continue;
      KernelConfig cfg = make_config(c, {64, 64, 8, layout <= 2 ? layout : layout == 3 ? 2 : 4});
      cfg.family = layout <= 2   ? flashmla::Family::decode_wgmma
                   : layout == 3 ? flashmla::Family::decode_seesaw
                                 : flashmla::Family::decode_pair;
      REQUIRE_FALSE(cfg.invalid_reason());
      const Problem p = flashmla::make_problem(c);
      DeviceProblem d(p);
      check_config(p, d, cfg);
    }
}
