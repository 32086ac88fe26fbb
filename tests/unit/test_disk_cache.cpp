// DiskCache: whole entries or none (round trip, truncation, corruption, bad magic, several
// processes writing one key), cache_key() sensitivity, and get_binary() through a
// FLASHMLA_CACHE_DIR of its own (compiled, then memory, then disk from another process).
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/codegen.hpp"
#include "flashmla/config.hpp"
#include "jit/disk_cache.hpp"
#include "jit/kernel_cache.hpp"
#include "jit/nvrtc.hpp"
#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;
namespace jit = flashmla::jit;
using flashmla::test::ScopedEnv;
using flashmla::test::TempDir;
using flashmla::DType;
using flashmla::KernelConfig;

constexpr std::size_t kHeaderBytes = 16 + 8 + 32;  // magic | payload size | sha256


std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> names;
  if (!fs::exists(dir)) return names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  return names;
}

std::string random_key(std::mt19937_64& rng) {
  static const char* digits = "0123456789abcdef";
  std::string key;
  for (int i = 0; i < 64; ++i) key += digits[rng() % 16];
  return key;
}

KernelConfig valid_config(int q, int k, int w, int s, DType dtype = DType::bf16, const char* arch = "sm_80") {
  KernelConfig c;
  c.block_size_q = q, c.block_size_k = k, c.num_warps = w, c.num_stages = s;
  c.dtype = dtype;
  c.arch = flashmla::Arch::parse(arch);
  return c;
}

unsigned fresh_seed() { return std::random_device{}(); }

}  // namespace

TEST_CASE("store then load round-trips bytes, binary zeros included", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  CHECK(cache.dir() == dir.path());
  const unsigned seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  for (std::size_t size : {0u, 1u, 55u, 4096u, 1000003u}) {
    INFO("payload of " << size << " bytes");
    const std::string key = random_key(rng);
    std::string payload = random_bytes(rng, size);
    if (size > 2) payload[1] = '\0', payload[size - 1] = '\0';
    REQUIRE(cache.store(key, payload));
    CHECK(cache.path_for(key).parent_path() == dir.path() / "kernels");
    CHECK(fs::file_size(cache.path_for(key)) == kHeaderBytes + size);
    const auto loaded = cache.load(key);
    REQUIRE(loaded.has_value());
    CHECK(loaded->size() == payload.size());
    CHECK(*loaded == payload);
    // A second store replaces the entry.
    const std::string other = random_bytes(rng, size + 7);
    REQUIRE(cache.store(key, other));
    CHECK(cache.load(key) == other);
  }
  // No temp file is left behind.
  for (const auto& name : files_in(dir.path() / "kernels")) CHECK_FALSE(name.ends_with(".tmp"));
}

TEST_CASE("a missing key loads as nullopt", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  std::mt19937_64 rng(fresh_seed());
  CHECK(cache.load(random_key(rng)) == std::nullopt);
  REQUIRE(cache.store("present", "payload"));
  CHECK(cache.load("absent") == std::nullopt);
  CHECK(cache.load("present") == std::string("payload"));
}

TEST_CASE("a truncated entry is rejected, removed and rebuilt", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  std::mt19937_64 rng(fresh_seed());
  const std::string key = random_key(rng);
  const std::string payload = random_bytes(rng, 100000);
  REQUIRE(cache.store(key, payload));
  const fs::path path = cache.path_for(key);
  for (std::uintmax_t cut : {kHeaderBytes + payload.size() / 2, std::uintmax_t(kHeaderBytes),
                             std::uintmax_t(kHeaderBytes / 2), std::uintmax_t(0),
                             kHeaderBytes + payload.size() - 1}) {
    INFO("cut to " << cut << " bytes");
    REQUIRE(cache.store(key, payload));
    fs::resize_file(path, cut);
    CHECK(cache.load(key) == std::nullopt);
    CHECK_FALSE(fs::exists(path));
    // Rebuilt: the next store and load work again.
    REQUIRE(cache.store(key, payload));
    CHECK(cache.load(key) == payload);
  }
}

TEST_CASE("a flipped byte in the payload, size or checksum is rejected", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  const unsigned seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::string key = random_key(rng);
  const std::string payload = random_bytes(rng, 65536);
  REQUIRE(cache.store(key, payload));
  const fs::path path = cache.path_for(key);
  const std::string good = read_file(path);
  REQUIRE(good.size() == kHeaderBytes + payload.size());

  const std::vector<std::pair<std::string, std::size_t>> offsets = {
      {"payload (random byte)", kHeaderBytes + rng() % payload.size()},
      {"payload (first byte)", kHeaderBytes},
      {"payload (last byte)", good.size() - 1},
      {"size field", 16 + rng() % 8},
      {"checksum", 24 + rng() % 32},
  };
  for (const auto& [what, offset] : offsets) {
    INFO(what << " at " << offset);
    std::string bad = good;
    bad[offset] = static_cast<char>(bad[offset] ^ (1 << (rng() % 8)));
    write_file(path, bad);
    CHECK(cache.load(key) == std::nullopt);
    CHECK_FALSE(fs::exists(path));
    write_file(path, good);
    CHECK(cache.load(key) == payload);
  }
  // Appended garbage makes the size disagree with the header.
  write_file(path, good + "x");
  CHECK(cache.load(key) == std::nullopt);
}

TEST_CASE("bad magic is rejected", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  std::mt19937_64 rng(fresh_seed());
  const std::string key = random_key(rng);
  const std::string payload = random_bytes(rng, 1000);
  REQUIRE(cache.store(key, payload));
  const fs::path path = cache.path_for(key);
  const std::string good = read_file(path);
  CHECK(good.substr(0, 16) == "FLASHMLA-CUBIN-1");
  for (std::size_t i : {std::size_t(0), std::size_t(15), std::size_t(rng() % 16)}) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    write_file(path, bad);
    INFO("magic byte " << i);
    CHECK(cache.load(key) == std::nullopt);
    CHECK_FALSE(fs::exists(path));
  }
  // A different format version is not read either.
  std::string v2 = good;
  v2[15] = '2';
  write_file(path, v2);
  CHECK(cache.load(key) == std::nullopt);
}

TEST_CASE("store into an unwritable directory returns false without throwing", "[disk_cache]") {
  TempDir dir;
  write_file(dir.path() / "not-a-dir", "x");
  const jit::DiskCache cache(dir.path() / "not-a-dir");
  bool stored = true;
  CHECK_NOTHROW(stored = cache.store("key", "payload"));
  CHECK_FALSE(stored);
  CHECK(cache.load("key") == std::nullopt);
}

TEST_CASE("several processes storing one key concurrently leave exactly one whole entry", "[disk_cache]") {
  TempDir dir;
  const jit::DiskCache cache(dir.path());
  const unsigned seed = fresh_seed();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  const std::string key = random_key(rng);
  constexpr int kWriters = 3, kStores = 12;
  constexpr std::size_t kSize = 4 << 20;
  std::vector<std::string> payloads;
  for (int i = 0; i < kWriters; ++i) payloads.push_back(random_bytes(rng, kSize + std::size_t(i)));

  // Exit status of a child: 0 success, 1 a store failed, 2 a load returned a foreign entry.
  std::vector<pid_t> children;
  for (int i = 0; i < kWriters; ++i) {
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      int status = 0;
      for (int n = 0; n < kStores; ++n)
        if (!cache.store(key, payloads[std::size_t(i)])) status = 1;
      ::_exit(status);
    }
    children.push_back(pid);
  }
  // A reader racing the writers sees a whole entry of one writer or nothing, never a torn one;
  // once an entry exists it never disappears again (a torn read would be reported corrupt,
  // removed and seen as missing: exit status 3).
  const pid_t reader = ::fork();
  REQUIRE(reader >= 0);
  if (reader == 0) {
    int status = 0;
    bool seen = false;
    for (int n = 0; n < 3 * kStores; ++n) {
      const auto loaded = cache.load(key);
      if (!loaded) {
        if (seen) status = 3;
        continue;
      }
      seen = true;
      bool known = false;
      for (const auto& p : payloads) known = known || *loaded == p;
      if (!known) status = 2;
    }
    ::_exit(status);
  }
  children.push_back(reader);
  for (pid_t pid : children) {
    int status = -1;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    INFO("child " << pid << (pid == reader ? " (reader)" : " (writer)"));
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
  }
  const auto loaded = cache.load(key);
  REQUIRE(loaded.has_value());
  int matches = 0;
  for (const auto& p : payloads) matches += *loaded == p ? 1 : 0;
  CHECK(matches == 1);
  CHECK(files_in(dir.path() / "kernels") == std::vector<std::string>{key + ".cubin"});
}

TEST_CASE("default_dir follows FLASHMLA_CACHE_DIR, then HOME", "[disk_cache]") {
  TempDir dir;
  {
    ScopedEnv env("FLASHMLA_CACHE_DIR", dir.path().c_str());
    CHECK(jit::DiskCache::default_dir() == dir.path());
  }
  {
    ScopedEnv env("FLASHMLA_CACHE_DIR", nullptr);
    ScopedEnv home("HOME", dir.path().c_str());
    CHECK(jit::DiskCache::default_dir() == dir.path() / ".cache" / "flashmla");
  }
  {
    ScopedEnv env("FLASHMLA_CACHE_DIR", "");
    ScopedEnv home("HOME", nullptr);
    CHECK(jit::DiskCache::default_dir() == fs::path("/tmp/flashmla-cache"));
  }
}

TEST_CASE("cache_key changes with the source and with every config field", "[disk_cache][cache_key]") {
  std::string why_not;
  if (!jit::nvrtc_available(&why_not)) {
    WARN("skipped: " + why_not);  // cache_key includes the NVRTC version
    return;
  }
  const KernelConfig base = valid_config(32, 32, 8, 1);
  const std::string source = flashmla::codegen::render(base);
  const std::string key = jit::cache_key(base, source);
  CHECK(key.size() == 64);
  CHECK(key.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK(jit::cache_key(base, source) == key);
  CHECK(jit::cache_key(KernelConfig::parse(base.id()), flashmla::codegen::render(base)) == key);

  // One byte of the source, anywhere.
  std::mt19937_64 rng(fresh_seed());
  for (int i = 0; i < 5; ++i) {
    std::string changed = source;
    const std::size_t at = rng() % changed.size();
    changed[at] = static_cast<char>(changed[at] ^ 1);
    INFO("byte " << at);
    CHECK(jit::cache_key(base, changed) != key);
  }
  CHECK(jit::cache_key(base, source + " ") != key);

  // The target arch changes the key even for the same text.
  for (const char* arch : {"sm_86", "sm_90", "sm_90a"}) {
    KernelConfig other = base;
    other.arch = flashmla::Arch::parse(arch);
    INFO(arch);
    CHECK(jit::cache_key(other, source) != key);
    CHECK(jit::cache_key(other, flashmla::codegen::render(other)) != key);
  }
  // Every other field changes the key through the rendered unit.
  std::vector<KernelConfig> variants;
  for (int i = 0; i < 7; ++i) variants.push_back(base);
  variants[0].block_size_q = 64;
  variants[1].block_size_k = 64;
  variants[2].num_warps = 4;
  variants[3].num_stages = 2;
  variants[4].latent_dim = 256;
  variants[5].page_size = 16;
  variants[6].dtype = DType::fp16;
  for (const KernelConfig& v : variants) {
    INFO(v.id());
    REQUIRE(v.invalid_reason() == std::nullopt);
    CHECK(jit::cache_key(v, flashmla::codegen::render(v)) != key);
  }
}

TEST_CASE("get_binary: compiled, then memory; disk entries written by another process are used",
          "[disk_cache][get_binary]") {
  std::string why_not;
  if (!jit::nvrtc_available(&why_not)) {
    WARN("skipped: " + why_not);
    return;
  }
  TempDir dir;
  ScopedEnv env("FLASHMLA_CACHE_DIR", dir.path().c_str());
  const jit::DiskCache cache(dir.path());

  // 1. First call compiles and stores; second call hits memory.
  const KernelConfig first = valid_config(16, 32, 4, 1, DType::fp16, "sm_86");
  const std::string first_key = jit::cache_key(first, flashmla::codegen::render(first));
  const jit::Binary compiled = jit::get_binary(first);
  CHECK(compiled.source == jit::Binary::Source::compiled);
  CHECK_FALSE(compiled.cubin.empty());
  CHECK(compiled.compile_seconds > 0);
  REQUIRE(compiled.kernels.size() == 3);
  CHECK(fs::exists(cache.path_for(first_key)));
  const jit::Binary again = jit::get_binary(first);
  CHECK(again.source == jit::Binary::Source::memory);
  CHECK(again.cubin == compiled.cubin);
  CHECK(again.kernels.size() == compiled.kernels.size());
  // The disk entry holds the same cubin (payload: u64 report size | report JSON | cubin) ...
  const auto payload = cache.load(first_key);
  REQUIRE(payload.has_value());
  CHECK(payload->ends_with(compiled.cubin));
  // ... and a corrupt one is refused (the memory cache would hide it from get_binary).
  std::string file = read_file(cache.path_for(first_key));
  file[file.size() - 1 - fresh_seed() % compiled.cubin.size()] ^= 0x5a;
  write_file(cache.path_for(first_key), file);
  CHECK(cache.load(first_key) == std::nullopt);
  CHECK_FALSE(fs::exists(cache.path_for(first_key)));

  // 2. An entry another process compiled is loaded from disk.
  const KernelConfig second = valid_config(32, 32, 4, 1, DType::bf16, "sm_86");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int status = 0;
    try {
      status = jit::get_binary(second).source == jit::Binary::Source::compiled ? 0 : 1;
    } catch (...) {
      status = 2;
    }
    ::_exit(status);
  }
  int status = -1;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const jit::Binary from_disk = jit::get_binary(second);
  CHECK(from_disk.source == jit::Binary::Source::disk);
  CHECK_FALSE(from_disk.cubin.empty());
  CHECK(from_disk.kernels.size() == 3);
  REQUIRE(from_disk.kernels.size() == 3);
  bool decode_found = false;
  for (const auto& k : from_disk.kernels) {
    decode_found = decode_found || k.symbol == flashmla::codegen::kDecodeSymbol;
    CHECK(k.registers > 0);
  }
  CHECK(decode_found);

  // 3. A corrupt entry written by another process is rebuilt, not loaded.
  const KernelConfig third = valid_config(16, 64, 4, 1, DType::bf16, "sm_86");
  const std::string third_key = jit::cache_key(third, flashmla::codegen::render(third));
  const pid_t pid3 = ::fork();
  REQUIRE(pid3 >= 0);
  if (pid3 == 0) {
    int code = 0;
    try {
      jit::get_binary(third);
    } catch (...) {
      code = 2;
    }
    ::_exit(code);
  }
  REQUIRE(::waitpid(pid3, &status, 0) == pid3);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  REQUIRE(fs::exists(cache.path_for(third_key)));
  fs::resize_file(cache.path_for(third_key), fs::file_size(cache.path_for(third_key)) / 2);
  const jit::Binary rebuilt = jit::get_binary(third);
  CHECK(rebuilt.source == jit::Binary::Source::compiled);
  CHECK(cache.load(third_key).has_value());  // stored again, whole
}
