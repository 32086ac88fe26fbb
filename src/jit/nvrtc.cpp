#include "jit/nvrtc.hpp"
#include "jit/cubin_info.hpp"

#include <dlfcn.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fmt/format.h>
#include <nvrtc.h>

#include <cstdlib>
#include <algorithm>
#include <optional>
#include <string_view>
#include <mutex>

#include "codegen/embedded.hpp"
#include "core/sha256.hpp"
#include "jit/disk_cache.hpp"
#include <nlohmann/json.hpp>
#include "flashmla/error.hpp"

namespace flashmla::jit {
namespace {

struct Nvrtc {
  decltype(&::nvrtcVersion) version = nullptr;
  decltype(&::nvrtcCreateProgram) create = nullptr;
  decltype(&::nvrtcCompileProgram) compile = nullptr;
  decltype(&::nvrtcGetProgramLogSize) log_size = nullptr;
  decltype(&::nvrtcGetProgramLog) log = nullptr;
  decltype(&::nvrtcGetCUBINSize) cubin_size = nullptr;
  decltype(&::nvrtcGetCUBIN) cubin = nullptr;
  decltype(&::nvrtcDestroyProgram) destroy = nullptr;
  decltype(&::nvrtcGetErrorString) error_string = nullptr;
  std::string error;
  std::string path;  // the file dlopen loaded (resolved)
};

Nvrtc load() {
  Nvrtc n;
  // FLASHMLA_NVRTC_LIBRARY names the one library to use; else the loader's search, then
  // the toolkit folders.
  std::vector<std::string> candidates;
  if (const char* pinned = std::getenv("FLASHMLA_NVRTC_LIBRARY"); pinned && *pinned) {
    candidates = {pinned};
  } else {
    candidates = {"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"};
    for (const char* var : {"CUDA_HOME", "CUDA_PATH"})
      if (const char* home = std::getenv(var); home && *home) {
        candidates.push_back(fmt::format("{}/lib64/libnvrtc.so", home));
        candidates.push_back(fmt::format("{}/lib/libnvrtc.so", home));
      }
    candidates.push_back("/usr/local/cuda/lib64/libnvrtc.so");
  }
  void* lib = nullptr;
  std::string tried;
  for (const auto& path : candidates) {
    lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib) break;
    tried += (tried.empty() ? "" : ", ") + path;
  }
  if (!lib) {
    n.error = fmt::format("NVRTC not found (tried {}); install the CUDA toolkit, or set CUDA_HOME or "
                          "FLASHMLA_NVRTC_LIBRARY",
                          tried);
    return n;
  }
  auto sym = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
    if (!fn && n.error.empty()) n.error = fmt::format("libnvrtc lacks {}", name);
  };
  sym(n.version, "nvrtcVersion");
  sym(n.create, "nvrtcCreateProgram");
  sym(n.compile, "nvrtcCompileProgram");
  sym(n.log_size, "nvrtcGetProgramLogSize");
  sym(n.log, "nvrtcGetProgramLog");
  sym(n.cubin_size, "nvrtcGetCUBINSize");
  sym(n.cubin, "nvrtcGetCUBIN");
  sym(n.destroy, "nvrtcDestroyProgram");
  sym(n.error_string, "nvrtcGetErrorString");
  Dl_info info{};
  if (n.version && dladdr(reinterpret_cast<void*>(n.version), &info) && info.dli_fname) {
    char resolved[PATH_MAX];
    n.path = realpath(info.dli_fname, resolved) ? resolved : info.dli_fname;
  }
  return n;
}

const Nvrtc& nvrtc() {
  static const Nvrtc instance = load();
  if (!instance.error.empty()) throw NoDriver(instance.error);
  return instance;
}

}  // namespace

bool nvrtc_available(std::string* why_not) {
  try {
    nvrtc();
    return true;
  } catch (const NoDriver& e) {
    if (why_not) *why_not = e.what();
    return false;
  }
}

// The NVRTC version is part of every disk-cache key, but loading libnvrtc to ask it costs ~8 ms,
// most of a warm start. So a process that loads it leaves a memo in the cache folder: the file it
// loaded (resolved path, size, mtime) and its version, filed under what steers load()'s search
// (the variables it reads, LD_LIBRARY_PATH, this library's and the executable's files, the
// loader cache). A later process with the same inputs whose memo file is unchanged takes the
// version from the memo and loads no NVRTC until it compiles.
namespace {
std::string file_stamp(const std::string& path) {
  struct stat st {};
  if (path.empty() || stat(path.c_str(), &st) != 0) return "-";
  return fmt::format("{}:{}.{}", static_cast<long long>(st.st_size), static_cast<long long>(st.st_mtim.tv_sec),
                     static_cast<long long>(st.st_mtim.tv_nsec));
}

std::string memo_key() {
  Sha256 h;
  h.field("flashmla-nvrtc-memo-v1");
  for (const char* var : {"FLASHMLA_NVRTC_LIBRARY", "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_PATH"}) {
    const char* v = std::getenv(var);
    h.field(var).field(v ? v : "");
  }
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  const std::string exe = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
  Dl_info self{};
  const std::string lib = dladdr(reinterpret_cast<void*>(&file_stamp), &self) && self.dli_fname ? self.dli_fname : "";
  h.field(exe).field(file_stamp(exe)).field(lib).field(file_stamp(lib)).field(file_stamp("/etc/ld.so.cache"));
  return h.hex_digest();
}

std::optional<std::string> memo_version(const DiskCache& cache, const std::string& key) {
  const auto payload = cache.load(key);
  if (!payload) return std::nullopt;
  try {
    const auto memo = nlohmann::json::parse(*payload);
    if (file_stamp(memo.at("path")) != memo.at("stamp").get<std::string>()) return std::nullopt;
    return memo.at("version").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}
}  // namespace

std::string nvrtc_version() {
  static std::mutex mutex;
  static std::string known;
  std::lock_guard lock(mutex);
  if (!known.empty()) return known;
  const DiskCache cache(DiskCache::default_dir());
  const std::string key = memo_key();
  if (auto v = memo_version(cache, key)) return known = *v;
  const Nvrtc& n = nvrtc();
  int major = 0, minor = 0;
  n.version(&major, &minor);
  known = fmt::format("{}.{}", major, minor);
  if (!n.path.empty())
    cache.store(key, nlohmann::json{{"path", n.path}, {"stamp", file_stamp(n.path)}, {"version", known}}.dump());
  return known;
}

int CompileOutput::max_spill_bytes() const {
  int worst = 0;
  for (const auto& k : kernels) worst = std::max({worst, k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes});
  return worst;
}

const KernelResources* CompileOutput::find(const std::string& symbol) const {
  for (const auto& k : kernels)
    if (k.symbol == symbol) return &k;
  return nullptr;
}

std::vector<std::string> nvrtc_options(const KernelConfig& config) {
  std::vector<std::string> options = {fmt::format("--gpu-architecture={}", config.arch.name()), "--std=c++17",
                                      "--ptxas-options=-v"};
  // Developer knob: FLASHMLA_NVRTC_DEFINES="A=1 B" adds -DA=1 -DB (part of the cache key, since
  // the options are). Used to time kernel variants, e.g. FLASHMLA_PROFILE_SKIP in decode_wgmma.cuh.
  if (const char* defines = std::getenv("FLASHMLA_NVRTC_DEFINES"); defines && *defines) {
    std::string token;
    for (const char* c = defines;; ++c) {
      if (*c == ' ' || *c == ',' || *c == '\0') {
        if (!token.empty()) options.push_back("-D" + token);
        token.clear();
        if (*c == '\0') break;
      } else {
        token += *c;
      }
    }
  }
  // Developer knob: FLASHMLA_NVRTC_LINEINFO=1 adds --generate-line-info, so that
  // compute-sanitizer and profilers name template lines (also part of the cache key).
  if (const char* lineinfo = std::getenv("FLASHMLA_NVRTC_LINEINFO"); lineinfo && *lineinfo && *lineinfo != '0')
    options.push_back("--generate-line-info");
  return options;
}

namespace {

// The text after `prefix` in line, up to the first of `stops` (or the end of the line).
std::optional<std::string_view> word_after(std::string_view line, std::string_view prefix, std::string_view stops) {
  const auto at = line.find(prefix);
  if (at == std::string_view::npos) return std::nullopt;
  const std::string_view rest = line.substr(at + prefix.size());
  const std::string_view word = rest.substr(0, rest.find_first_of(stops));
  if (word.empty()) return std::nullopt;
  return word;
}

std::optional<int> parse_digits(std::string_view digits) {
  if (digits.empty() || digits.size() > 9) return std::nullopt;
  int v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

// The decimal number right before `suffix` ("48 bytes stack frame" -> 48).
std::optional<int> number_before(std::string_view line, std::string_view suffix) {
  const auto at = line.find(suffix);
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t begin = at;
  while (begin > 0 && line[begin - 1] >= '0' && line[begin - 1] <= '9') --begin;
  return parse_digits(line.substr(begin, at - begin));
}

// The decimal number right after `prefix` ("Used 21 registers" -> 21).
std::optional<int> number_after(std::string_view line, std::string_view prefix) {
  const auto at = line.find(prefix);
  if (at == std::string_view::npos) return std::nullopt;
  std::size_t end = at + prefix.size();
  while (end < line.size() && line[end] >= '0' && line[end] <= '9') ++end;
  return parse_digits(line.substr(at + prefix.size(), end - at - prefix.size()));
}

}  // namespace

std::vector<KernelResources> parse_ptxas_log(const std::string& log) {
  // ptxas prints, per entry:  Compiling entry function 'NAME' for 'sm_90a'
  //                           Function properties for NAME
  //                               S bytes stack frame, A bytes spill stores, B bytes spill loads
  //                           Used R registers, ...
  // A non-inlined device function gets its own "Function properties for F" block (often right
  // after its caller's); its figures go to an entry of its own (registers -1), never to the
  // kernel printed before it.
  //
  // Plain string scanning, no std::regex: constructing a std::regex crashed inside a Python
  // process that had imported torch 2.11 (H100 machine, 2026-11-26: a segfault in its bracket
  // matcher, python/tools/nvrtc_in_torch.py).
  std::vector<KernelResources> out;
  std::string props_of;  // function named by the last "Function properties for" line
  auto find_or_add = [&out](const std::string& name) -> KernelResources& {
    for (auto& k : out)
      if (k.symbol == name) return k;
    out.push_back(KernelResources{name});
    return out.back();
  };
  std::size_t pos = 0;
  while (pos < log.size()) {
    std::size_t end = log.find('\n', pos);
    if (end == std::string::npos) end = log.size();
    const std::string_view line(log.data() + pos, end - pos);
    pos = end + 1;
    if (auto name = word_after(line, "Compiling entry function '", "'")) {
      out.push_back(KernelResources{std::string(*name)});
      props_of.clear();
    } else if (auto fn = word_after(line, "Function properties for ", " \r")) {
      props_of = std::string(*fn);
    } else if (auto stack = number_before(line, " bytes stack frame")) {
      if (props_of.empty() && out.empty()) continue;
      KernelResources& k = props_of.empty() ? out.back() : find_or_add(props_of);
      k.stack_bytes = *stack;
      k.spill_store_bytes = number_before(line, " bytes spill stores").value_or(0);
      k.spill_load_bytes = number_before(line, " bytes spill loads").value_or(0);
    } else if (auto used = number_after(line, "Used ")) {
      if (!out.empty() && line.find(" registers") != std::string_view::npos) out.back().registers = *used;
    }
  }
  return out;
}

namespace {

int count_entries(const std::string& source) {
  int n = 0;
  for (std::size_t at = source.find("__global__"); at != std::string::npos; at = source.find("__global__", at + 1)) ++n;
  return n;
}

// Registers and local-memory frame come from the cubin (always there); spill figures from the
// ptxas log when NVRTC returned it. Without the log a function's spills are bounded by its
// frame: spilled registers live in the frame, so frame 0 means no spills.
std::vector<KernelResources> resources_of(const std::string& cubin, const std::string& log) {
  std::vector<KernelResources> out = parse_ptxas_log(log);
  for (const CubinFunction& f : read_cubin_functions(cubin)) {
    auto it = std::find_if(out.begin(), out.end(), [&](const KernelResources& k) { return k.symbol == f.symbol; });
    const bool from_log = it != out.end();
    if (!from_log) it = out.insert(out.end(), KernelResources{f.symbol});
    if (f.registers >= 0) it->registers = f.registers;
    if (f.frame_bytes >= 0) it->stack_bytes = f.frame_bytes;
    if (!from_log) it->spill_store_bytes = it->spill_load_bytes = std::max(0, f.frame_bytes);
  }
  return out;
}

CompileOutput compile_once(const KernelConfig& config, const std::string& unit_name, const std::string& source) {
  const Nvrtc& n = nvrtc();
  std::vector<const char*> names, sources;
  for (const auto& f : codegen::embedded_files()) {
    names.push_back(f.name.data());
    sources.push_back(f.source.data());
  }
  nvrtcProgram prog = nullptr;
  nvrtcResult r = n.create(&prog, source.c_str(), unit_name.c_str(), static_cast<int>(names.size()),
                           sources.data(), names.data());
  if (r != NVRTC_SUCCESS)
    throw CompileError(fmt::format("nvrtcCreateProgram failed for {}: {}", config.id(), n.error_string(r)), "", "",
                       config.id());
  const auto options = nvrtc_options(config);
  std::vector<const char*> opts;
  std::string joined;
  for (const auto& o : options) {
    opts.push_back(o.c_str());
    joined += (joined.empty() ? "" : " ") + o;
  }
  r = n.compile(prog, static_cast<int>(opts.size()), opts.data());
  std::size_t log_size = 0;
  n.log_size(prog, &log_size);
  std::string log(log_size, '\0');
  if (log_size > 0) n.log(prog, log.data());
  while (!log.empty() && log.back() == '\0') log.pop_back();
  if (r != NVRTC_SUCCESS) {
    n.destroy(&prog);
    throw CompileError(fmt::format("NVRTC failed to compile {} ({}): {}\noptions: {}\n{}", config.id(),
                                   n.error_string(r), unit_name, joined, log),
                       log, joined, config.id());
  }
  CompileOutput out;
  std::size_t size = 0;
  n.cubin_size(prog, &size);
  out.cubin.resize(size);
  n.cubin(prog, out.cubin.data());
  n.destroy(&prog);
  out.log = std::move(log);
  out.kernels = resources_of(out.cubin, out.log);
  return out;
}

}  // namespace

CompileOutput compile(const KernelConfig& config, const std::string& unit_name, const std::string& source) {
  const int entries = count_entries(source);
  CompileOutput out = compile_once(config, unit_name, source);
  const auto known = std::count_if(out.kernels.begin(), out.kernels.end(),
                                   [](const KernelResources& k) { return k.registers >= 0; });
  if (known < entries)
    throw CompileError(fmt::format("NVRTC compiled {} but its cubin reports registers for {} of {} entry functions",
                                   config.id(), known, entries),
                       out.log, "", config.id());
  return out;
}

}  // namespace flashmla::jit
