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
inline constexpr int kCombineThreads = 256;  // threads of a combine CTA (one row of partials at a time)
// Most splits one batch can have: num_parts is capped by it (decode.cpp), and the combine
// stages one row's split lse values in shared memory of this size.
inline constexpr int kCombineMaxSplits = 1024;
// The combine's launch bound: 4 CTAs of 256 threads per SM allow 64 registers, room for its
// 8 float4 loads in flight; with the thread count alone ptxas aims at 8 CTAs (32 registers)
// and spills.
inline constexpr int kCombineMinCtasPerSm = 4;
inline constexpr int kMetadataThreads = 256;

std::string render(const KernelConfig& config);
// Name of the unit as NVRTC sees it, e.g. "decode_mma-bf16-...-sm_90a.cu".
std::string unit_name(const KernelConfig& config);

}  // namespace flashmla::codegen
