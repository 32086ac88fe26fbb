#include "runtime/tuning.hpp"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "codegen/embedded.hpp"
#include "core/log.hpp"
#include "flashmla/flashmla.hpp"
#include "jit/disk_cache.hpp"
#include "jit/nvrtc.hpp"

namespace flashmla::runtime {

namespace fs = std::filesystem;

autotune::DeviceStamp device_stamp(const jit::DeviceInfo& info) {
  autotune::DeviceStamp s;
  s.name = info.name;
  s.sm_count = info.sm_count;
  const int sm = info.cc_major * 10 + info.cc_minor;
  s.arch = Arch{sm, sm == 90}.name();
  s.library = flashmla::version();
  return s;
}

std::string user_tuning_dir() { return (jit::DiskCache::default_dir() / "tuning").string(); }

namespace {
std::mutex g_mutex;
// Tables per device name. Entries are never erased while the process runs (callers hold
// references); a reload bumps the generation and reads the files again.
std::map<std::pair<std::string, int>, std::vector<autotune::TuningTable>> g_by_device;
int g_generation = 0;
}  // namespace

void reload() {
  std::lock_guard lock(g_mutex);
  ++g_generation;
}

const std::vector<autotune::TuningTable>& tables_for(const jit::DeviceInfo& info) {
  std::lock_guard lock(g_mutex);
  auto& by_device = g_by_device;
  const auto key = std::make_pair(info.name, g_generation);
  if (auto it = by_device.find(key); it != by_device.end()) return it->second;
  const autotune::DeviceStamp here = device_stamp(info);
  std::vector<autotune::TuningTable> tables;
  auto consider = [&](const std::string& text, const std::string& origin) {
    autotune::TuningTable t = autotune::parse_table(text, origin);  // throws on malformed input
    if (auto why = autotune::stale_reason(t, here))
      log_warning(fmt::format("tuning table {} ignored: {}", origin, *why));
    else
      tables.push_back(std::move(t));
  };
  // User tables first: they win over shipped ones in lookup order.
  std::error_code ec;
  if (fs::is_directory(user_tuning_dir(), ec))
    for (const auto& file : fs::directory_iterator(user_tuning_dir(), ec))
      if (file.path().extension() == ".json") {
        std::ifstream in(file.path());
        std::stringstream ss;
        ss << in.rdbuf();
        consider(ss.str(), file.path().string());
      }
  for (const auto& f : codegen::embedded_tables()) consider(std::string(f.source), "configs/" + std::string(f.name));
  return by_device.emplace(key, std::move(tables)).first->second;
}

}  // namespace flashmla::runtime

namespace flashmla {
void reload_tuning_tables() { runtime::reload(); }

}  // namespace flashmla::runtime
