#include "jit/bundle.hpp"

#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "codegen/codegen.hpp"
#include "codegen/embedded.hpp"
#include "core/config_json.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "flashmla/error.hpp"
#include "core/utc.hpp"
#include "flashmla/flashmla.hpp"

namespace flashmla::jit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A bundle kernel. Its bytes are read and checked against the manifest's sha256 on first
// use, so that loading a bundle of hundreds of kernels costs a stat per file, not a hash; its
// config and resource report are parsed (and the config checked against config_id) then too.
struct Entry {
  std::string config_id;
  json config, resources;  // the manifest's objects, parsed on first use
  std::string source_hash;
  std::string origin, file, sha256;
  std::size_t bytes = 0;
  std::function<std::optional<std::string>()> read;  // the kernel file's bytes
  Binary binary;                                     // cubin filled on first use
};

struct Registry {
  std::mutex mutex;
  std::vector<std::string> origins;
  std::unordered_map<std::string, Entry> by_id;  // first bundle to provide an id wins
  std::map<std::string, std::set<std::string>> archs;  // per origin
  std::set<std::string> warned;
  bool env_loaded = false;
};

Registry& registry() {
  static Registry r;
  return r;
}

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Parses and verifies a manifest; `read` returns a kernel file's bytes.
// `size_of` and `read` give a kernel file's size and bytes (a folder's files, or arrays).
bool add_bundle(const std::string& origin, const std::string& manifest_text,
                const std::function<std::optional<std::size_t>(const std::string&)>& size_of,
                const std::function<std::optional<std::string>(const std::string&)>& read) {
  json manifest;
  try {
    manifest = json::parse(manifest_text);
  } catch (const json::exception& e) {
    throw Error(fmt::format("bundle {}: manifest.json is not valid JSON ({})", origin, e.what()));
  }
  if (manifest.value("format", "") != kBundleFormat)
    throw Error(fmt::format("bundle {}: manifest format '{}' is not {}", origin, manifest.value("format", ""),
                            kBundleFormat));
  const std::string made_by = manifest.value("library_version", "?");
  if (made_by != flashmla::version()) {
    log_warning(fmt::format("bundle {} was made by flashmla {}, this is {}: skipped", origin, made_by,
                            flashmla::version()));
    return false;
  }
  std::vector<Entry> entries;
  std::set<std::string> archs;
  for (json& k : manifest.at("kernels")) {
    const std::string file = k.at("file");
    const std::size_t expected = k.at("bytes");
    const auto size = size_of(file);
    if (!size) throw Error(fmt::format("bundle {}: kernel file {} is missing", origin, file));
    if (*size != expected)
      throw Error(fmt::format("bundle {}: kernel file {} is truncated or padded: {} bytes, the manifest says {}",
                              origin, file, *size, expected));
    Entry e;
    e.config_id = k.at("config_id").get<std::string>();
    e.config = std::move(k.at("config"));
    e.resources = std::move(k.at("resources"));
    e.source_hash = k.at("source_hash");
    e.origin = origin;
    e.file = file;
    e.sha256 = k.at("sha256");
    e.bytes = expected;
    e.read = [read, file] { return read(file); };
    e.binary.source = Binary::Source::bundle;
    archs.insert(k.at("arch").get<std::string>());
    entries.push_back(std::move(e));
  }
  Registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (auto& e : entries) reg.by_id.try_emplace(e.config_id, std::move(e));
  reg.origins.push_back(origin);
  reg.archs[origin] = std::move(archs);
  return true;
}

bool load_folder(const std::string& path) {
  const fs::path dir(path);
  const auto manifest = read_file(dir / "manifest.json");
  if (!manifest) throw Error(fmt::format("bundle {}: no manifest.json there", path));
  return add_bundle(
      path, *manifest,
      [dir](const std::string& file) -> std::optional<std::size_t> {
        std::error_code ec;
        const auto size = fs::file_size(dir / file, ec);
        return ec ? std::nullopt : std::optional<std::size_t>(size);
      },
      [dir](const std::string& file) { return read_file(dir / file); });
}

void load_env_bundles() {
  Registry& reg = registry();
  {
    std::lock_guard lock(reg.mutex);
    if (reg.env_loaded) return;
    reg.env_loaded = true;
  }
  const char* env = std::getenv("FLASHMLA_BUNDLE");
  if (!env || !*env) return;
  std::string list = env;
  std::size_t start = 0;
  while (start <= list.size()) {
    const std::size_t end = std::min(list.find(':', start), list.size());
    if (end > start) load_folder(list.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

std::string source_hash(const KernelConfig& config, const std::string& rendered_source) {
  Sha256 h;
  h.field("flashmla-source-v1").field(config.id()).field(rendered_source);
  for (const auto& f : codegen::embedded_files()) h.field(f.name).field(f.source);
  return h.hex_digest();
}

bool jit_allowed() {
  const char* env = std::getenv("FLASHMLA_JIT");
  return !(env && std::string(env) == "0");
}

std::optional<Binary> find_in_bundles(const KernelConfig& config, const std::string& rendered_source) {
  load_env_bundles();
  Registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  // Lookups name the GPU's arch: a bundle without it is of no use here.
  for (const auto& [origin, archs] : reg.archs)
    if (!archs.empty() && !archs.count(config.arch.name()) && reg.warned.insert(origin + config.arch.name()).second) {
      std::string have;
      for (const auto& a : archs) have += (have.empty() ? "" : ", ") + a;
      log_warning(fmt::format("bundle {} holds no kernel for {} (it holds {}): skipped", origin, config.arch.name(), have));
    }
  const auto it = reg.by_id.find(config.id());
  if (it == reg.by_id.end()) return std::nullopt;
  Entry& e = it->second;
  if (e.binary.cubin.empty()) {  // first use: parse, read and verify
    try {
      const KernelConfig parsed = config_from_json(e.config);
      if (parsed.id() != e.config_id)
        throw Error(fmt::format("bundle {}: kernel {} has config_id {} but its config reads {}", e.origin, e.file,
                                e.config_id, parsed.id()));
      e.binary.kernels.clear();
      for (const json& r : e.resources)
        e.binary.kernels.push_back({r.at("symbol"), r.at("registers"), r.at("stack"), r.at("spill_stores"),
                                    r.at("spill_loads")});
    } catch (const json::exception& ex) {
      throw Error(fmt::format("bundle {}: kernel {} has a malformed manifest entry ({})", e.origin, e.file, ex.what()));
    }
    const auto bytes = e.read();
    if (!bytes || bytes->size() != e.bytes)
      throw Error(fmt::format("bundle {}: kernel file {} is missing or truncated ({} bytes, the manifest says {})",
                              e.origin, e.file, bytes ? bytes->size() : 0, e.bytes));
    const std::string digest = sha256_hex(*bytes);
    if (digest != e.sha256)
      throw Error(fmt::format("bundle {}: kernel file {} is corrupt: sha256 {} but the manifest says {}", e.origin,
                              e.file, digest, e.sha256));
    e.binary.cubin = *bytes;
  }
  if (it->second.source_hash != source_hash(config, rendered_source)) {
    if (reg.warned.insert(config.id()).second)
      log_warning(fmt::format("kernel {} in bundle {} was compiled from other templates than this library's; not used",
                              config.id(), it->second.origin));
    return std::nullopt;
  }
  return it->second.binary;
}

std::string write_bundle(const std::string& dir, const std::vector<BundleKernel>& kernels,
                         const std::string& nvrtc_version) {
  fs::create_directories(dir);
  json list = json::array();
  for (const auto& k : kernels) {
    const std::string file = k.config.id() + ".cubin";
    {
      std::ofstream out(fs::path(dir) / file, std::ios::binary | std::ios::trunc);
      out.write(k.binary.cubin.data(), static_cast<std::streamsize>(k.binary.cubin.size()));
      if (!out.flush()) throw Error(fmt::format("cannot write {}/{}", dir, file));
    }
    json resources = json::array();
    for (const auto& r : k.binary.kernels)
      resources.push_back({{"symbol", r.symbol},
                           {"registers", r.registers},
                           {"stack", r.stack_bytes},
                           {"spill_stores", r.spill_store_bytes},
                           {"spill_loads", r.spill_load_bytes}});
    list.push_back({{"config_id", k.config.id()},
                    {"config", to_json(k.config)},
                    {"arch", k.config.arch.name()},
                    {"file", file},
                    {"bytes", k.binary.cubin.size()},
                    {"sha256", sha256_hex(k.binary.cubin)},
                    {"source_hash", source_hash(k.config, codegen::render(k.config))},
                    {"shared_bytes", k.config.shared_bytes()},
                    {"resources", resources}});
  }
  const json manifest = {{"format", kBundleFormat},
                         {"library_version", flashmla::version()},
                         {"nvrtc_version", nvrtc_version},
                         {"created", utc_timestamp()},
                         {"kernels", list}};
  const std::string text = manifest.dump(2) + "\n";
  std::ofstream(fs::path(dir) / "manifest.json") << text;
  return text;
}

void write_bundle_cpp(const std::string& dir, const std::string& cpp_path, const std::string& name) {
  const auto manifest_text = read_file(fs::path(dir) / "manifest.json");
  if (!manifest_text) throw Error(fmt::format("bundle {}: no manifest.json there", dir));
  const json manifest = json::parse(*manifest_text);
  std::ostringstream out;
  out << "// Generated by `flashmla compile --emit-cpp` from the bundle " << dir << "; do not edit.\n"
      << "// Compile it into a program (or the library: -DFLASHMLA_EMBED_BUNDLE=<this file>) and its\n"
      << "// kernels load with no compiler and no bundle files.\n"
      << "#include <flashmla/bundle.hpp>\n\nnamespace {\n";
  std::size_t index = 0;
  std::string table;
  for (const json& k : manifest.at("kernels")) {
    const std::string file = k.at("file");
    const auto bytes = read_file(fs::path(dir) / file);
    if (!bytes) throw Error(fmt::format("bundle {}: kernel file {} is missing", dir, file));
    out << "const unsigned char kKernel" << index << "[] = {";
    for (std::size_t i = 0; i < bytes->size(); ++i)
      out << (i % 24 == 0 ? "\n    " : "") << static_cast<unsigned>(static_cast<unsigned char>((*bytes)[i])) << ",";
    out << "\n};\n";
    table += fmt::format("    {{\"{}\", kKernel{}, sizeof(kKernel{})}},\n", file, index, index);
    ++index;
  }
  out << "const flashmla::EmbeddedKernel kKernels[] = {\n" << table << "};\n"
      << "const char kManifest[] = R\"fmla_json(" << *manifest_text << ")fmla_json\";\n"
      << "const bool kRegistered = flashmla::register_embedded_bundle(\n"
      << "    {\"embedded:" << name << "\", kManifest, kKernels, " << index << "});\n"
      << "}  // namespace\n";
  std::ofstream file(cpp_path);
  file << out.str();
  if (!file.flush()) throw Error(fmt::format("cannot write {}", cpp_path));
}

}  // namespace flashmla::jit

namespace flashmla {

bool load_bundle(const std::string& path) { return jit::load_folder(path); }

bool register_embedded_bundle(const EmbeddedBundle& bundle) {
  // The arrays live as long as the program (static storage of the generated source).
  const auto find = [bundle](const std::string& file) -> const EmbeddedKernel* {
    for (std::size_t i = 0; i < bundle.count; ++i)
      if (file == bundle.kernels[i].file) return &bundle.kernels[i];
    return nullptr;
  };
  return jit::add_bundle(
      bundle.name, bundle.manifest_json,
      [find](const std::string& file) -> std::optional<std::size_t> {
        const EmbeddedKernel* k = find(file);
        return k ? std::optional<std::size_t>(k->size) : std::nullopt;
      },
      [find](const std::string& file) -> std::optional<std::string> {
        const EmbeddedKernel* k = find(file);
        if (!k) return std::nullopt;
        return std::string(reinterpret_cast<const char*>(k->data), k->size);
      });
}

std::vector<std::string> loaded_bundles() {
  jit::load_env_bundles();
  auto& reg = jit::registry();
  std::lock_guard lock(reg.mutex);
  return reg.origins;
}

}  // namespace flashmla
