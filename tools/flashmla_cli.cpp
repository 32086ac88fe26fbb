// flashmla: the command-line tool. Subcommands:
//   info                  driver, GPUs, NVRTC version, cache folder
//   emit <config-id>      print exactly the unit NVRTC compiles for a config
//   compile-check         compile a search space through NVRTC; registers and spills
//   cache [--clear]       show or clear the kernel cache folder
//   demo                  the main job: decode + short benchmark on a GPU, compile-only without
//   bench                 time one decode problem or the PERF.md preset rows (--json)
//   tune                  autotune on this GPU into a tuning table (--explain a shape's choice)
//   compile               ahead-of-time bundle of configs for given archs (--emit-cpp)
//   first-call            start-up latency of this process's first decode
// Errors are flashmla::Error exceptions; only this file turns them into exit codes.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "autotune/search_space.hpp"
#include "autotune/tuner.hpp"
#include "autotune/tuning_table.hpp"
#include "runtime/dispatch.hpp"
#include "runtime/tuning.hpp"
#include "codegen/codegen.hpp"
#include "flashmla/bundle.hpp"
#include "flashmla/flashmla.hpp"
#include "jit/disk_cache.hpp"
#include "jit/driver.hpp"
#include "jit/kernel_cache.hpp"
#include "jit/nvrtc.hpp"
#include "tools/bench.hpp"
#include "tools/compile_cmd.hpp"

namespace {

using namespace flashmla;

int cmd_info() {
  fmt::print("flashmla {}\n", version());
  std::string why;
  if (jit::nvrtc_available(&why))
    fmt::print("NVRTC: {}\n", jit::nvrtc_version());
  else
    fmt::print("NVRTC: not available ({})\n", why);
  fmt::print("kernel cache: {}\n", jit::DiskCache::default_dir().string());
  const auto bundles = loaded_bundles();
  fmt::print("bundles: {}\n", bundles.empty() ? "none" : fmt::format("{}", fmt::join(bundles, ", ")));
  if (!jit::driver_available(&why)) {
    fmt::print("GPU: none found ({})\n", why);
    return 0;
  }
  const int v = jit::driver_version();
  fmt::print("CUDA driver: {}.{}\n", v / 1000, (v % 1000) / 10);
  for (const auto& d : jit::list_devices()) {
    const int sm = d.cc_major * 10 + d.cc_minor;
    fmt::print("GPU {}: {}, sm_{}{}, {} SMs, {:.1f} GiB, {} KiB shared memory per block\n", d.ordinal, d.name, sm,
               sm == 90 ? "a" : "", d.sm_count, d.total_memory / double(1 << 30), d.max_shared_optin / 1024);
    if (sm < 80)
      fmt::print("  unsupported: flashmla needs sm_80 or newer\n");
    else
      fmt::print("  decode: {} (tuning tables may choose otherwise; `flashmla tune --explain`)\n",
                 runtime::family_summary(Arch{sm, sm == 90}));
  }
  return 0;
}

int cmd_emit(const std::string& id) {
  const KernelConfig c = KernelConfig::parse(id);
  std::cout << codegen::render(c);
  return 0;
}

// Compiles every valid config of the decode_mma space for each arch; fails on spills.
int cmd_compile_check(const std::vector<std::string>& archs, const std::string& dtype, int latent, int page) {
  int failures = 0, total = 0;
  for (const auto& arch_name : archs) {
    KernelConfig base;
    base.arch = Arch::parse(arch_name);
    base.dtype = parse_dtype(dtype);
    base.latent_dim = latent;
    base.page_size = page;
    auto space = autotune::decode_mma_space(base);
    const auto wgmma = autotune::decode_wgmma_space(base);
    space.valid.insert(space.valid.end(), wgmma.valid.begin(), wgmma.valid.end());
    fmt::print("{}: {} valid configs, {} pruned\n", arch_name, space.valid.size(), space.pruned.size());
    for (const auto& c : space.valid) {
      ++total;
      const jit::Binary b = jit::get_binary(c);
      int regs = -1, spill = 0;
      for (const auto& k : b.kernels) {
        if (k.symbol == codegen::kDecodeSymbol) regs = k.registers;
        spill = std::max({spill, k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes});
      }
      fmt::print("  [{:3}] {:<56} regs {:3}  spill/stack {:4} B  smem {:6} B  {}\n", total, c.id(), regs, spill,
                 c.shared_bytes(), b.source == jit::Binary::Source::compiled ? fmt::format("{:.2f} s", b.compile_seconds) : "cached");
      if (spill > 0) ++failures;
    }
  }
  fmt::print("{} configs compiled, {} with spills\n", total, failures);
  return failures == 0 ? 0 : 1;
}

struct TuneArgs {
  std::string shapes = "preset";
  double budget = 15;
  int runs = 20, jobs = 0;
  std::string out, explain;
};

int cmd_tune(const TuneArgs& a) {
  std::string why;
  if (!jit::driver_available(&why)) {
    fmt::print(stderr, "flashmla tune needs a GPU: {}\n", why);
    return 1;
  }
  if (!a.explain.empty()) {
    const autotune::TuneShape t = autotune::parse_shape(a.explain);
    DecodeShape s;
    s.b = t.b, s.s_q = t.s_q, s.h_q = t.h_q, s.h_kv = t.h_kv, s.page_size = t.page_size, s.latent_dim = t.latent_dim;
    s.dtype = t.dtype, s.max_blocks_per_seq = (t.s_k + t.page_size - 1) / t.page_size, s.num_blocks = 1;
    DecodeOptions o;
    o.seqlen_hint = t.s_k;
    fmt::print("{}\n", explain_config(s, o));
    return 0;
  }
  autotune::TuneOptions o;
  o.shapes = a.shapes == "preset" ? autotune::preset_shapes() : autotune::shapes_from_file(a.shapes);
  o.budget_minutes = a.budget, o.runs = a.runs, o.jobs = a.jobs;
  const auto start = std::chrono::steady_clock::now();
  const autotune::TuningTable table = autotune::tune(o, stdout);
  const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
  const std::string out = !a.out.empty() ? a.out
                                         : runtime::user_tuning_dir() + "/" + autotune::gpu_slug(table.device.name) + ".json";
  std::filesystem::create_directories(std::filesystem::path(out).parent_path());
  std::ofstream(out) << autotune::dump_table(table);
  fmt::print("\n{:<44} {:>12} {:>12} {:>8}\n", "problem class", "heuristic us", "tuned us", "speedup");
  for (const auto& e : table.entries)
    fmt::print("{:<44} {:>12.1f} {:>12.1f} {:>7.2f}x  {}\n", e.key.describe().substr(11), e.heuristic_us, e.median_us,
               e.heuristic_us / e.median_us, e.config.id());
  fmt::print("tuned {} shapes in {:.1f} minutes; wrote {}\n", table.entries.size(), minutes, out);
  return 0;
}

int cmd_cache(bool clear) {
  const auto dir = jit::DiskCache::default_dir() / "kernels";
  std::size_t files = 0, bytes = 0;
  std::error_code ec;
  if (std::filesystem::exists(dir, ec))
    for (const auto& e : std::filesystem::directory_iterator(dir, ec))
      if (e.is_regular_file()) ++files, bytes += e.file_size();
  fmt::print("kernel cache {}: {} entries, {:.1f} MiB\n", dir.string(), files, bytes / double(1 << 20));
  if (clear) {
    std::filesystem::remove_all(dir, ec);
    fmt::print("cleared\n");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"flashmla: JIT-generated Multi-head Latent Attention kernels"};
  app.require_subcommand(1);
  int rc = 0;

  app.add_subcommand("info", "driver, GPUs, NVRTC version and cache folder")->callback([&] { rc = cmd_info(); });

  auto* emit = app.add_subcommand("emit", "print the unit NVRTC compiles for a config id");
  std::string emit_id;
  emit->add_option("config", emit_id, "config id, e.g. decode_mma-bf16-l512-r64-p64-q64-k32-w8-s3-sm_90a")->required();
  emit->callback([&] { rc = cmd_emit(emit_id); });

  auto* check = app.add_subcommand("compile-check", "compile every valid config through NVRTC; fail on spills");
  std::vector<std::string> archs{"sm_80", "sm_90a"};
  std::string check_dtype = "bf16";
  int check_latent = 512, check_page = 64;
  check->add_option("--arch", archs, "architectures")->delimiter(',');
  check->add_option("--dtype", check_dtype, "bf16 or fp16");
  check->add_option("--latent-dim", check_latent, "512 or 256");
  check->add_option("--page-size", check_page, "16, 32, 64, 128");
  check->callback([&] { rc = cmd_compile_check(archs, check_dtype, check_latent, check_page); });

  auto* cache = app.add_subcommand("cache", "show (or --clear) the kernel cache");
  bool clear = false;
  cache->add_flag("--clear", clear, "delete every cached kernel");
  cache->callback([&] { rc = cmd_cache(clear); });

  TuneArgs tune_args;
  auto* tune = app.add_subcommand("tune", "autotune configs on this GPU and write a tuning table");
  tune->add_option("--shapes", tune_args.shapes, "'preset' (PERF.md rows) or a JSON file of shapes");
  tune->add_option("--budget", tune_args.budget, "minutes; candidates left when it runs out are recorded as not run");
  tune->add_option("--runs", tune_args.runs, "timed runs per candidate (median kept, with p20 and p80)");
  tune->add_option("--jobs,-j", tune_args.jobs, "compile worker processes (default: one per core)");
  tune->add_option("--out", tune_args.out, "table to write (default $FLASHMLA_CACHE_DIR/tuning/<gpu>.json)");
  tune->add_option("--explain", tune_args.explain,
                   "say which config dispatch picks for b=..,s_q=..,h_q=..,s_k=..[,h_kv,page_size,latent_dim,dtype] and why");
  tune->callback([&] { rc = cmd_tune(tune_args); });

  cli::BenchOptions bench_opts;
  auto* bench = app.add_subcommand("bench", "time decode problems (CUDA events, L2 flushed, median)");
  cli::add_bench_options(bench, bench_opts);
  bench->callback([&] { rc = cli::cmd_bench(bench_opts); });

  cli::CompileOptions compile_opts;
  auto* compile = app.add_subcommand("compile", "compile configs ahead of time into a bundle (no GPU needed)");
  cli::add_compile_options(compile, compile_opts);
  compile->callback([&] { rc = cli::cmd_compile(compile_opts); });

  app.add_subcommand("first-call", "time this process's first decode (start-up latency), as JSON")
      ->callback([&] { rc = cli::cmd_first_call(); });

  auto* demo = app.add_subcommand("demo", "main job: a checked decode and a short benchmark (compile-only without GPU)");
  demo->callback([&] { rc = cli::cmd_demo(); });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const flashmla::Error& e) {
    fmt::print(stderr, "flashmla: error: {}\n", e.what());
    return 2;
  }
  return rc;
}
