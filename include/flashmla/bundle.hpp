// Ahead-of-time kernel bundles: binaries made by `flashmla compile`, loaded so that a
// process needs no compiler. Lookup order for a kernel: loaded bundles, then the disk
// cache, then NVRTC (unless FLASHMLA_JIT=0). A process whose kernels all come from bundles
// never loads libnvrtc.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace flashmla {

// A bundle compiled into the program by `flashmla compile --emit-cpp` (the generated source
// registers itself at static-initialisation time).
struct EmbeddedKernel {
  const char* file;            // the manifest's "file" of this kernel
  const unsigned char* data;   // cubin bytes
  std::size_t size;
};
struct EmbeddedBundle {
  const char* name;            // shown in messages, e.g. "embedded:my_app"
  const char* manifest_json;   // the bundle's manifest.json
  const EmbeddedKernel* kernels;
  std::size_t count;
};

// Loads a bundle folder (manifest.json + one .cubin per kernel). A missing or truncated
// kernel file throws flashmla::Error naming it; each binary is checked against the manifest's
// sha256 when first used, and a corrupt one throws then, naming the file. A bundle made by
// another library version is skipped with a warning (returns false).
bool load_bundle(const std::string& path);
bool register_embedded_bundle(const EmbeddedBundle& bundle);
// Bundles loaded so far (paths or embedded names), FLASHMLA_BUNDLE's included.
std::vector<std::string> loaded_bundles();

}  // namespace flashmla
