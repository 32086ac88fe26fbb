#include "jit/kernel_cache.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "codegen/codegen.hpp"
#include "codegen/embedded.hpp"
#include "core/sha256.hpp"
#include "flashmla/error.hpp"
#include "flashmla/flashmla.hpp"
#include "flashmla/bundle.hpp"
#include "jit/bundle.hpp"
#include "jit/disk_cache.hpp"
#include "jit/driver.hpp"

namespace flashmla::jit {
namespace {

// Payload on disk: u64 report size | report JSON | cubin.
std::string encode(const Binary& b) {
  nlohmann::json report = nlohmann::json::array();
  for (const auto& k : b.kernels)
    report.push_back({{"symbol", k.symbol},
                      {"registers", k.registers},
                      {"stack", k.stack_bytes},
                      {"spill_stores", k.spill_store_bytes},
                      {"spill_loads", k.spill_load_bytes}});
  const std::string text = report.dump();
  const uint64_t size = text.size();
  std::string out(reinterpret_cast<const char*>(&size), 8);
  return out + text + b.cubin;
}

std::optional<Binary> decode(const std::string& payload) {
  if (payload.size() < 8) return std::nullopt;
  uint64_t size = 0;
  std::memcpy(&size, payload.data(), 8);
  if (payload.size() < 8 + size) return std::nullopt;
  Binary b;
  try {
    for (const auto& k : nlohmann::json::parse(payload.substr(8, size)))
      b.kernels.push_back({k.at("symbol"), k.at("registers"), k.at("stack"), k.at("spill_stores"), k.at("spill_loads")});
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
  b.cubin = payload.substr(8 + size);
  b.source = Binary::Source::disk;
  return b;
}

std::mutex g_stats_mutex;
LookupStats g_stats;

Binary counted(Binary b) {
  std::lock_guard lock(g_stats_mutex);
  switch (b.source) {
    case Binary::Source::bundle: ++g_stats.bundle; break;
    case Binary::Source::memory: ++g_stats.memory; break;
    case Binary::Source::disk: ++g_stats.disk; break;
    case Binary::Source::compiled:
      ++g_stats.compiled;
      g_stats.compile_seconds += b.compile_seconds;
      break;
  }
  return b;
}

}  // namespace

LookupStats lookup_stats() {
  std::lock_guard lock(g_stats_mutex);
  return g_stats;
}

std::string cache_key(const KernelConfig& config, const std::string& rendered_source) {
  Sha256 h;
  h.field("flashmla-kernel-v1").field(rendered_source);
  for (const auto& f : codegen::embedded_files()) h.field(f.name).field(f.source);
  for (const auto& o : nvrtc_options(config)) h.field(o);
  h.field(nvrtc_version()).field(config.arch.name()).field(flashmla::version());
  return h.hex_digest();
}

Binary get_binary(const KernelConfig& config) {
  static std::mutex mutex;
  static std::unordered_map<std::string, Binary> memory;
  const std::string source = codegen::render(config);
  if (auto from_bundle = find_in_bundles(config, source)) return counted(*from_bundle);
  if (!jit_allowed()) {
    std::string searched;
    for (const auto& b : loaded_bundles()) searched += (searched.empty() ? "" : ", ") + b;
    throw Error(fmt::format("FLASHMLA_JIT=0 forbids compiling {}, and no loaded bundle holds it (searched: {})",
                            config.id(), searched.empty() ? "none; set FLASHMLA_BUNDLE or call load_bundle" : searched));
  }
  const std::string key = cache_key(config, source);
  {
    std::lock_guard lock(mutex);
    if (auto it = memory.find(key); it != memory.end()) {
      Binary b = it->second;
      b.source = Binary::Source::memory;
      return counted(b);
    }
  }
  const DiskCache disk(DiskCache::default_dir());
  Binary binary;
  if (auto payload = disk.load(key); payload && decode(*payload)) {
    binary = *decode(*payload);
  } else {
    const auto start = std::chrono::steady_clock::now();
    CompileOutput out = compile(config, codegen::unit_name(config), source);
    binary.cubin = std::move(out.cubin);
    binary.kernels = std::move(out.kernels);
    binary.compile_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    binary.source = Binary::Source::compiled;
    disk.store(key, encode(binary));
  }
  std::lock_guard lock(mutex);
  memory.emplace(key, binary);
  return counted(binary);
}

const Module& get_module(const KernelConfig& config) {
  static std::mutex mutex;
  static std::map<std::pair<CUcontext, std::string>, std::unique_ptr<Module>> modules;
  const Driver& d = driver();
  ensure_context();
  CUcontext ctx = nullptr;
  FLASHMLA_CU(d.cuCtxGetCurrent(&ctx));
  const auto key = std::make_pair(ctx, config.id());
  {
    std::lock_guard lock(mutex);
    if (auto it = modules.find(key); it != modules.end()) return *it->second;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const Binary binary = get_binary(config);
  const auto t1 = std::chrono::steady_clock::now();
  auto m = std::make_unique<Module>();
  m->config = config;
  FLASHMLA_CU(d.cuModuleLoadData(&m->module, binary.cubin.data()));
  FLASHMLA_CU(d.cuModuleGetFunction(&m->decode, m->module, codegen::kDecodeSymbol));
  FLASHMLA_CU(d.cuModuleGetFunction(&m->combine, m->module, codegen::kCombineSymbol));
  FLASHMLA_CU(d.cuModuleGetFunction(&m->metadata, m->module, codegen::kMetadataSymbol));
  const DeviceInfo info = current_device_info();
  FLASHMLA_CU(d.cuFuncSetAttribute(m->decode, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                   static_cast<int>(config.shared_bytes())));
  FLASHMLA_CU(d.cuFuncSetAttribute(m->metadata, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                   static_cast<int>(info.max_shared_optin)));
  {
    const auto t2 = std::chrono::steady_clock::now();
    std::lock_guard stats_lock(g_stats_mutex);
    g_stats.lookup_seconds += std::chrono::duration<double>(t1 - t0).count();
    g_stats.load_seconds += std::chrono::duration<double>(t2 - t1).count();
  }
  std::lock_guard lock(mutex);
  auto [it, inserted] = modules.try_emplace(key, std::move(m));
  if (!inserted) FLASHMLA_CU(d.cuModuleUnload(m->module));  // another thread loaded it first
  return *it->second;
}

}  // namespace flashmla::jit
