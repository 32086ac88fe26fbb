// Internal side of AOT bundles: the manifest format, writing a bundle, and lookup.
//
// Folder layout: manifest.json + <config id>.cubin per kernel. manifest.json:
//   {"format": "flashmla-bundle-1", "library_version", "nvrtc_version", "created",
//    "kernels": [{"config_id", "config": {...}, "arch", "file", "bytes", "sha256",
//                 "source_hash", "shared_bytes", "resources": [{"symbol", "registers",
//                 "stack", "spill_stores", "spill_loads"}]}]}
// source_hash = sha256 of the rendered unit and every embedded template: a kernel whose
// templates changed since it was compiled is not used (the lookup falls through to JIT).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "flashmla/bundle.hpp"
#include "flashmla/config.hpp"
#include "jit/kernel_cache.hpp"

namespace flashmla::jit {

inline constexpr const char* kBundleFormat = "flashmla-bundle-1";

// sha256 over the rendered unit and the embedded templates (needs no NVRTC).
std::string source_hash(const KernelConfig& config, const std::string& rendered_source);

struct BundleKernel {
  KernelConfig config;
  Binary binary;
};
// Writes a bundle folder (created if missing); returns the manifest text.
std::string write_bundle(const std::string& dir, const std::vector<BundleKernel>& kernels,
                         const std::string& nvrtc_version);
// Writes a C++ source that embeds the bundle folder `dir` and registers it at start-up.
void write_bundle_cpp(const std::string& dir, const std::string& cpp_path, const std::string& name);

// The binary of config from a loaded bundle (FLASHMLA_BUNDLE is loaded on first use).
std::optional<Binary> find_in_bundles(const KernelConfig& config, const std::string& rendered_source);
// False when FLASHMLA_JIT=0.
bool jit_allowed();

}  // namespace flashmla::jit
