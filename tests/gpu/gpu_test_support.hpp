// Shared pieces of the GPU test programs: the skip guard, cases with an optional pinned config,
// and the check of one run against the fp64 reference (tools/mla_problem.hpp).
#pragma once

#include <catch2/catch.hpp>

#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "flashmla/flashmla.hpp"
#include "jit/driver.hpp"
#include "tools/mla_problem.hpp"

// Without a CUDA driver or GPU, WARN "skipped: <why>" and return; ctest reports the program
// as skipped (SKIP_REGULAR_EXPRESSION), so nothing else may print that text.
#define SKIP_WITHOUT_GPU()                            \
  do {                                                \
    std::string why_not;                              \
    if (!flashmla::jit::driver_available(&why_not)) { \
      WARN("skipped: " << why_not);                   \
      return;                                         \
    }                                                 \
    flashmla::jit::ensure_context();                  \
  } while (0)

namespace flashmla::gpu_test {

namespace jit = flashmla::jit;
using flashmla::DType;
using flashmla::KernelConfig;
using Problem = flashmla::MlaProblem;
using flashmla::DeviceProblem;

struct Tunables {
  int block_size_q, block_size_k, num_warps, num_stages;
};

// A problem plus an optional pinned config (through DecodeOptions::config; unset: heuristic).
struct Case : flashmla::MlaCase {
  std::optional<Tunables> pin;
};

inline std::string tunables_id(const Tunables& t) {
  std::ostringstream os;
  os << 'q' << t.block_size_q << "-k" << t.block_size_k << "-w" << t.num_warps << "-s" << t.num_stages;
  return os.str();
}

inline flashmla::Arch device_arch() {
  const jit::DeviceInfo info = jit::current_device_info();
  const int sm = info.cc_major * 10 + info.cc_minor;
  return flashmla::Arch{sm, sm == 90};
}

inline KernelConfig make_config(const flashmla::MlaCase& c, const Tunables& t) {
  KernelConfig cfg;
  cfg.block_size_q = t.block_size_q;
  cfg.block_size_k = t.block_size_k;
  cfg.num_warps = t.num_warps;
  cfg.num_stages = t.num_stages;
  cfg.latent_dim = c.latent_dim;
  cfg.rope_dim = 64;
  cfg.page_size = c.page_size;
  cfg.dtype = c.dtype;
  cfg.arch = device_arch();
  return cfg;
}

// Runs one config (or the heuristic) and checks every error counter; a library exception
// becomes a failed check so that a loop goes on.
inline void check_config(const Problem& p, DeviceProblem& d, const std::optional<KernelConfig>& pin) {
  INFO(p.c.describe());
  INFO("pinned config: " << (pin ? pin->id() : std::string("none (heuristic)")));
  try {
    const flashmla::MlaCheck r = flashmla::run_and_check(p, d, pin);
    INFO(r.summary());
    if (pin) CHECK(r.config_id == pin->id());
    CHECK(r.out_nan == 0);
    CHECK(r.out_rel_l2 < r.out_rel_l2_tol);
    CHECK(r.out_max_abs < r.out_max_abs_tol);
    CHECK(r.padding_written == 0);
    CHECK(r.lse_nan == 0);
    CHECK(r.lse_inf_mismatch == 0);
    CHECK(r.lse_out_of_tol == 0);
  } catch (const flashmla::CompileError& e) {
    FAIL_CHECK(e.what() << "\n" << e.log().substr(0, 4000));
  } catch (const std::exception& e) {
    FAIL_CHECK(e.what());
  }
}

inline void run_case(const Case& c) {
  std::optional<KernelConfig> pin;
  if (c.pin) {
    pin = make_config(c, *c.pin);
    if (auto reason = pin->invalid_reason()) {  // wording must not match the skip regex
      WARN(c.name << ": config " << pin->id() << " is invalid on this GPU (" << *reason << "); ran unpinned");
      pin.reset();
    }
  }
  const Problem p = flashmla::make_problem(c);
  DeviceProblem d(p);
  check_config(p, d, pin);
}

inline Case make_case(std::string name, int b, int s_q, int h_q, int h_kv, int latent_dim, int page_size, DType dtype,
               bool causal, std::vector<int> s_k, std::optional<Tunables> pin = std::nullopt) {
  Case c;
  c.name = std::move(name);
  c.b = b, c.s_q = s_q, c.h_q = h_q, c.h_kv = h_kv;
  c.latent_dim = latent_dim, c.page_size = page_size, c.dtype = dtype, c.causal = causal;
  c.s_k = std::move(s_k);
  c.pin = pin;
  return c;
}

constexpr DType bf16 = DType::bf16, fp16 = DType::fp16;
inline const std::vector<int> mixed_s_k{0, 1, 77, 0, 300, 128, 4096};  // zeros among them; 128: whole tiles

}  // namespace flashmla::gpu_test
