// Renders the instantiation unit of one KernelConfig: the config's constants, a
// static_assert that host and device agree on shared memory, and extern "C" entries.
// `flashmla emit` prints exactly this text, which is what NVRTC compiles.
#pragma once

#include <string>

#include "flashmla/config.hpp"

namespace flashmla::codegen {

// Entry points of every generated module.
inline constexpr const char* kDecodeSymbol = "flashmla_decode";
inline constexpr const char* kCombineSymbol = "flashmla_combine";
inline constexpr const char* kMetadataSymbol = "flashmla_metadata";
inline constexpr int kCombineThreads = 128;   // kCombineWarps (combine.cuh) x 32
inline constexpr int kMetadataThreads = 256;

std::string render(const KernelConfig& config);
// Name of the unit as NVRTC sees it, e.g. "decode_mma-bf16-...-sm_90a.cu".
std::string unit_name(const KernelConfig& config);

}  // namespace flashmla::codegen
