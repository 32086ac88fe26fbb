#include "jit/disk_cache.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/log.hpp"
#include "core/sha256.hpp"

namespace flashmla::jit {
namespace {
constexpr char kMagic[16] = {'F', 'L', 'A', 'S', 'H', 'M', 'L', 'A', '-', 'C', 'U', 'B', 'I', 'N', '-', '1'};
constexpr std::size_t kHeader = 16 + 8 + 32;
}  // namespace

DiskCache::DiskCache(std::filesystem::path dir) : dir_(std::move(dir)) {}

std::filesystem::path DiskCache::default_dir() {
  if (const char* env = std::getenv("FLASHMLA_CACHE_DIR"); env && *env) return env;
  if (const char* home = std::getenv("HOME"); home && *home) return std::filesystem::path(home) / ".cache" / "flashmla";
  return "/tmp/flashmla-cache";
}

std::filesystem::path DiskCache::path_for(const std::string& key) const { return dir_ / "kernels" / (key + ".cubin"); }

std::optional<std::string> DiskCache::load(const std::string& key) const {
  const auto path = path_for(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  std::string problem;
  if (data.size() < kHeader || std::memcmp(data.data(), kMagic, 16) != 0) {
    problem = "bad header";
  } else {
    uint64_t size = 0;
    std::memcpy(&size, data.data() + 16, 8);
    if (data.size() != kHeader + size) {
      problem = fmt::format("size {} bytes, header says {}", data.size() - kHeader, size);
    } else {
      Sha256 h;
      h.update(data.data() + kHeader, size);
      const auto digest = h.digest();
      if (std::memcmp(digest.data(), data.data() + 24, 32) != 0) problem = "checksum mismatch";
    }
  }
  if (!problem.empty()) {
    log_warning(fmt::format("kernel cache entry {} is corrupt ({}); removing it and recompiling", path.string(),
                            problem));
    std::error_code ec;
    std::filesystem::remove(path, ec);
    return std::nullopt;
  }
  return data.substr(kHeader);
}

bool DiskCache::store(const std::string& key, const std::string& payload) const {
  const auto path = path_for(key);
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  static std::atomic<unsigned> counter{0};
  const auto tmp = path.parent_path() /
                   fmt::format(".{}.{}.{}.{}.tmp", key, getpid(), counter++, std::random_device{}());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) {
      log_warning(fmt::format("cannot write kernel cache entry {}; continuing without disk cache", tmp.string()));
      return false;
    }
    const uint64_t size = payload.size();
    Sha256 h;
    h.update(payload);
    const auto digest = h.digest();
    out.write(kMagic, 16);
    out.write(reinterpret_cast<const char*>(&size), 8);
    out.write(reinterpret_cast<const char*>(digest.data()), 32);
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    if (!out.flush()) {
      out.close();
      std::filesystem::remove(tmp, ec);
      log_warning(fmt::format("writing kernel cache entry {} failed", tmp.string()));
      return false;
    }
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp, ec);
    return false;
  }
  return true;
}

}  // namespace flashmla::jit
