// `flashmla demo`: the README's main job. On a GPU: one decode checked against the fp64
// CPU reference, then a short benchmark. Without a GPU: generate and compile the kernels
// the dispatcher would use for sm_80 and sm_90a, and say plainly that no GPU was found.
#include <fmt/format.h>


#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "jit/kernel_cache.hpp"
#include "jit/nvrtc.hpp"
#include "runtime/dispatch.hpp"
#include "tools/bench.hpp"
#include "tools/mla_problem.hpp"

namespace flashmla::cli {
namespace {

int compile_only(const std::string& why) {
  fmt::print("No GPU found: {}\n", why);
  fmt::print("Generating and compiling the dispatcher's kernels with NVRTC {} instead (nothing is run).\n",
             jit::nvrtc_version());
  int spills = 0;
  for (const char* arch_name : {"sm_80", "sm_90a"}) {
    for (int h_q : {16, 128}) {
      DecodeShape shape;
      shape.h_q = h_q;
      const KernelConfig c = runtime::heuristic_config(shape, Arch::parse(arch_name));
      const jit::Binary b = jit::get_binary(c);
      const auto* k = [&]() -> const jit::KernelResources* {
        for (const auto& r : b.kernels)
          if (r.symbol == "flashmla_decode") return &r;
        return nullptr;
      }();
      fmt::print("  h_q {:3} {:<56} {:>7} bytes cubin, {} registers, {} bytes spilled ({})\n", h_q, c.id(),
                 b.cubin.size(), k ? k->registers : -1, k ? k->spill_store_bytes : -1,
                 b.source == jit::Binary::Source::compiled ? fmt::format("compiled in {:.2f} s", b.compile_seconds)
                                                           : "from cache");
      if (k && k->spill_store_bytes > 0) ++spills;
    }
  }
  fmt::print("Kernels compiled. Run this on a machine with an sm_80+ GPU to execute them.\n");
  return spills == 0 ? 0 : 1;
}

}  // namespace

int cmd_demo() {
  std::string why;
  if (!jit::driver_available(&why)) return compile_only(why);
  const auto info = jit::current_device_info();
  fmt::print("GPU: {} (sm_{}{}, {} SMs)\n", info.name, info.cc_major, info.cc_minor, info.sm_count);

  // 1. One decode with awkward sizes, checked against the fp64 reference.
  MlaCase c;
  c.name = "demo";
  c.b = 4, c.s_q = 2, c.h_q = 16, c.causal = true;
  c.s_k = {1000, 0, 77, 333};
  const MlaProblem problem = make_problem(c);
  DeviceProblem device(problem);
  const MlaCheck check = run_and_check(problem, device, std::nullopt);
  fmt::print("decode {}\n  {}\n  {}\n", c.describe(), check.summary(), check.passed() ? "OK" : "MISMATCH");
  if (!check.passed()) return 1;

  // 2. A short benchmark (PERF.md formulas).
  fmt::print("\nShort benchmark (median of 10 runs, L2 flushed):\n");
  for (int h_q : {16, 128}) {
    BenchOptions o;
    o.h_q = h_q;
    o.runs = 10;
    if (int rc = cmd_bench(o); rc != 0) return rc;
  }
  return 0;
}

}  // namespace flashmla::cli
