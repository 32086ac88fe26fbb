// KernelConfig: one specialisation of a kernel family, as a value (equality, hash,
// canonical id, JSON round-trip) and its validation against a GPU architecture.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace flashmla {

enum class DType : int { bf16 = 0, fp16 = 1 };
std::string_view to_string(DType dtype);
DType parse_dtype(std::string_view name);  // throws InvalidArgument
std::size_t dtype_size(DType dtype);

// A CUDA architecture as its compute capability times ten plus the 'a' suffix
// (arch-specific features, sm_90a): 80, 86, 89, 90 (+ accel).
struct Arch {
  int sm = 80;
  bool accel = false;  // sm_90a: wgmma, setmaxnreg
  std::string name() const;  // "sm_90a"
  static Arch parse(std::string_view name);  // "sm_80", "sm_90a"; throws InvalidArgument
  // Largest opt-in dynamic shared memory per block, bytes.
  std::size_t max_shared_bytes() const;
  friend bool operator==(const Arch&, const Arch&) = default;
};

// decode_mma: mma.sync + cp.async, sm_80 and newer. decode_wgmma: sm_90a, latent 512,
// q64-k64-w8; warpgroup 0 computes S and the softmax, warpgroup 1 issues the TMA loads, both do
// P V. decode_seesaw: sm_90a, latent 512, q64-k64-w8-s2; both warpgroups compute S of alternate
// blocks and P V of every block in a seesaw schedule, K/V by TMA (decode_seesaw.cuh).
// decode_pair: sm_90a, latent 512, q64-k64-w8-s4; a cluster of two CTAs per q tile, each with
// half of d_qk (Q in registers) and half of the output columns, exchanging S partials through
// distributed shared memory (decode_pair.cuh). Pinned only, experimental.
enum class Family : int { decode_mma = 0, decode_wgmma = 1, decode_seesaw = 2, decode_pair = 3 };
std::string_view to_string(Family family);
Family parse_family(std::string_view name, std::string_view context);  // throws InvalidArgument

struct KernelConfig {
  Family family = Family::decode_mma;
  int block_size_q = 64;   // query rows (s_q * h_q / h_kv flattened) per CTA: 16, 32, 64
  int block_size_k = 32;   // keys per pipeline tile: 32, 64, 128
  int num_warps = 8;       // 4 or 8
  int num_stages = 3;      // cp.async buffers: 1 to 4
  int latent_dim = 512;    // d_v; V is the first latent_dim columns of the cache
  int rope_dim = 64;       // d_qk = latent_dim + rope_dim
  int page_size = 64;      // keys per KV-cache block: 16, 32, 64, 128
  DType dtype = DType::bf16;
  Arch arch{90, true};     // the defaults are valid on sm_90a (the H100 heuristic's h_q 128 pick)

  int d_qk() const { return latent_dim + rope_dim; }
  int num_threads() const { return num_warps * 32; }

  // Canonical id, also the text form accepted by parse():
  // "decode_mma-bf16-l512-r64-p64-q64-k32-w8-s3-sm_90a"
  std::string id() const;
  static KernelConfig parse(std::string_view id);  // throws InvalidArgument naming the bad field

  // Why this config cannot run on its arch, or nullopt when it can.
  std::optional<std::string> invalid_reason() const;
  void validate() const;  // throws InvalidArgument with invalid_reason()

  // Dynamic shared memory of the decode kernel, bytes (mirrors DecodeMmaTraits::SharedPlan;
  // the generated unit static_asserts that the two agree).
  std::size_t shared_bytes() const;
  // fp32 output accumulators per thread (block_size_q * latent_dim / threads).
  int accumulator_registers() const;

  friend bool operator==(const KernelConfig&, const KernelConfig&) = default;
};

std::size_t hash_value(const KernelConfig& config);

}  // namespace flashmla

template <>
struct std::hash<flashmla::KernelConfig> {
  std::size_t operator()(const flashmla::KernelConfig& c) const noexcept { return flashmla::hash_value(c); }
};
