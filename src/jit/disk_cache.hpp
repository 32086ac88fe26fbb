// Compiled binaries on disk: one file per cache key, written to a temp file then renamed
// (readers see a whole entry or none), checked on load (a truncated or corrupt entry is
// reported, removed and rebuilt, never loaded).
//
// File layout: magic "FLASHMLA-CUBIN-1" (16 bytes) | payload size (u64, little endian) |
// sha256 of payload (32 bytes) | payload. The payload is opaque to this class.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace flashmla::jit {

class DiskCache {
 public:
  explicit DiskCache(std::filesystem::path dir);
  // $FLASHMLA_CACHE_DIR, else $HOME/.cache/flashmla, else /tmp/flashmla-cache.
  static std::filesystem::path default_dir();

  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path path_for(const std::string& key) const;

  // The payload stored under key; nullopt when absent. A corrupt entry is removed and a
  // warning naming the file is written to stderr.
  std::optional<std::string> load(const std::string& key) const;
  // Atomically stores payload under key (errors are warnings: the cache is an optimisation).
  bool store(const std::string& key, const std::string& payload) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace flashmla::jit
