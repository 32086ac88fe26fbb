#include "tools/compile_cmd.hpp"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "autotune/search_space.hpp"
#include "codegen/codegen.hpp"
#include "core/config_json.hpp"
#include "flashmla/bundle.hpp"
#include "flashmla/flashmla.hpp"
#include "jit/bundle.hpp"
#include "jit/driver.hpp"
#include "jit/kernel_cache.hpp"
#include "jit/nvrtc.hpp"
#include "runtime/dispatch.hpp"
#include "tools/mla_problem.hpp"

namespace flashmla::cli {
namespace {

using nlohmann::json;

// Problem classes a bundle covers by default: the dispatcher's choice for these shapes.
std::vector<KernelConfig> heuristic_configs(Arch arch) {
  std::vector<KernelConfig> out;
  std::set<std::string> seen;
  for (DType dtype : {DType::bf16, DType::fp16})
    for (int latent : {512, 256})
      for (int page : {16, 32, 64, 128})
        for (int h_q : {1, 2, 4, 8, 16, 32, 64, 128})
          for (int s_q : {1, 2, 4}) {
            DecodeShape s;
            s.h_q = h_q, s.s_q = s_q, s.latent_dim = latent, s.page_size = page, s.dtype = dtype;
            const KernelConfig c = runtime::heuristic_config(s, arch);
            if (seen.insert(c.id()).second) out.push_back(c);
          }
  return out;
}

std::vector<KernelConfig> all_configs(Arch arch) {
  std::vector<KernelConfig> out;
  for (DType dtype : {DType::bf16, DType::fp16})
    for (int latent : {512, 256})
      for (int page : {16, 32, 64, 128}) {
        KernelConfig base;
        base.arch = arch, base.dtype = dtype, base.latent_dim = latent, base.page_size = page;
        for (const auto& c : autotune::decode_mma_space(base).valid) out.push_back(c);
        for (const auto& c : autotune::decode_wgmma_space(base).valid) out.push_back(c);
      }
  return out;
}

KernelConfig config_of(const json& item) {
  if (item.is_string()) return KernelConfig::parse(item.get<std::string>());
  if (item.is_object() && item.contains("config")) return config_of(item["config"]);
  return config_from_json(item);
}

// Configs listed in a file, retargeted to arch; invalid ones are reported and skipped.
std::vector<KernelConfig> file_configs(const std::string& path, Arch arch) {
  std::ifstream in(path);
  if (!in) throw InvalidArgument(fmt::format("--configs {}: cannot open the file", path));
  json doc;
  try {
    doc = json::parse(in);
  } catch (const json::exception& e) {
    throw InvalidArgument(fmt::format("--configs {}: not valid JSON ({})", path, e.what()));
  }
  const json& items = doc.is_array() ? doc : doc.contains("configs") ? doc["configs"] : doc.value("entries", json::array());
  std::vector<KernelConfig> out;
  std::set<std::string> seen;
  for (const json& item : items) {
    KernelConfig c = config_of(item);
    c.arch = arch;
    if (auto reason = c.invalid_reason()) {
      fmt::print("  skip {}: {}\n", c.id(), *reason);
      continue;
    }
    if (seen.insert(c.id()).second) out.push_back(c);
  }
  return out;
}

}  // namespace

void add_compile_options(CLI::App* app, CompileOptions& o) {
  app->add_option("--arch", o.archs, "target architectures, e.g. sm_90a,sm_80")->delimiter(',');
  app->add_option("--configs", o.configs_file, "JSON list of configs (ids or objects) or a tuning table");
  app->add_flag("--all", o.all, "every valid config of every dtype, latent_dim and page_size");
  app->add_option("-o,--out", o.out, "bundle folder to write")->required();
  app->add_option("--emit-cpp", o.emit_cpp, "also write a C++ source that embeds the bundle");
  app->add_option("--name", o.name, "name of the embedded bundle");
  app->add_option("--jobs,-j", o.jobs, "parallel compiles (default: one per core)");
}

int cmd_compile(const CompileOptions& o) {
  if (o.all && !o.configs_file.empty()) throw InvalidArgument("--all and --configs exclude each other");
  std::vector<KernelConfig> configs;
  for (const auto& name : o.archs) {
    const Arch arch = Arch::parse(name);
    const auto some = o.all ? all_configs(arch) : !o.configs_file.empty() ? file_configs(o.configs_file, arch)
                                                                          : heuristic_configs(arch);
    configs.insert(configs.end(), some.begin(), some.end());
  }
  const std::string nvrtc = jit::nvrtc_version();
  fmt::print("compiling {} configs for {} with NVRTC {} into {}\n", configs.size(), fmt::join(o.archs, ","), nvrtc,
             o.out);
  std::vector<jit::BundleKernel> kernels(configs.size());
  std::vector<std::string> failures;
  std::atomic<std::size_t> next{0}, done{0};
  std::mutex print_mutex;
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (std::size_t i; (i = next++) < configs.size();) {
      const KernelConfig& c = configs[i];
      std::string line;
      try {
        jit::CompileOutput out = jit::compile(c, codegen::unit_name(c), codegen::render(c));
        kernels[i].config = c;
        kernels[i].binary.cubin = std::move(out.cubin);
        kernels[i].binary.kernels = std::move(out.kernels);
        const int spill = jit::CompileOutput{"", "", kernels[i].binary.kernels}.max_spill_bytes();
        line = fmt::format("{} ({} bytes{})", c.id(), kernels[i].binary.cubin.size(),
                           spill ? fmt::format(", {} bytes spilled", spill) : "");
      } catch (const Error& e) {
        line = fmt::format("{} FAILED: {}", c.id(), e.what());
        std::lock_guard lock(print_mutex);
        failures.push_back(c.id());
      }
      std::lock_guard lock(print_mutex);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      fmt::print("  [{}/{}, {:.0f} s] {}\n", ++done, configs.size(), secs, line);
    }
  };
  const int jobs = o.jobs > 0 ? o.jobs : std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int j = 0; j < jobs; ++j) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  if (!failures.empty()) {
    fmt::print("{} configs failed to compile; no bundle written\n", failures.size());
    return 1;
  }
  jit::write_bundle(o.out, kernels, nvrtc);
  fmt::print("wrote {}/manifest.json and {} kernels\n", o.out, kernels.size());
  if (!o.emit_cpp.empty()) {
    jit::write_bundle_cpp(o.out, o.emit_cpp, o.name);
    fmt::print("wrote {}\n", o.emit_cpp);
  }
  return 0;
}

int cmd_first_call() {
  std::string why;
  if (!jit::driver_available(&why)) {
    fmt::print("No GPU found: {}\n", why);
    return 1;
  }
  jit::ensure_context();
  MlaCase c;
  c.name = "first-call";
  c.b = 4, c.h_q = 128, c.s_k = {1024};
  const MlaProblem problem = make_problem(c);
  DeviceProblem device(problem);
  // The first decode of this process: module lookup (bundle, disk cache or NVRTC), load,
  // metadata, decode, synchronise.
  DecodeArgs args;
  args.q = device.q.get(), args.k_cache = device.k_cache.get(), args.block_table = device.block_table.get<int32_t>();
  args.cache_seqlens = device.seqlens.get<int32_t>(), args.out = device.out.get(), args.lse = device.lse.get<float>();
  const auto start = std::chrono::steady_clock::now();
  const MlaMetadata md =
      get_mla_metadata(problem.shape, args.cache_seqlens, args.block_table, 0, nullptr, nullptr, DecodeOptions{});
  mla_decode(problem.shape, args, md, nullptr);
  FLASHMLA_CU(jit::driver().cuCtxSynchronize());
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  const MlaCheck check = run_and_check(problem, device, std::nullopt);  // and it computed the right thing
  bool nvrtc_loaded = false;
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) nvrtc_loaded |= line.find("libnvrtc") != std::string::npos;
  const jit::LookupStats stats = jit::lookup_stats();  // of the timed call (the check reuses its module)
  fmt::print("{}\n", json{{"first_call_ms", ms},
                          {"kernel_from", stats.compiled ? "nvrtc" : stats.disk ? "disk cache" : stats.bundle ? "bundle" : "memory"},
                          {"nvrtc_seconds", stats.compile_seconds},
                          {"lookup_ms", stats.lookup_seconds * 1e3},
                          {"module_load_ms", stats.load_seconds * 1e3},
                          {"config", check.config_id},
                          {"correct", check.passed()},
                          {"nvrtc_loaded", nvrtc_loaded},
                          {"bundles", loaded_bundles()}}
                         .dump());
  return check.passed() ? 0 : 1;
}

}  // namespace flashmla::cli
