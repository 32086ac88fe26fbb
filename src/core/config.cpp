#include "flashmla/config.hpp"

#include <fmt/format.h>

#include <charconv>
#include <functional>
#include <vector>

#include "flashmla/error.hpp"

namespace flashmla {

std::string_view to_string(DType dtype) { return dtype == DType::bf16 ? "bf16" : "fp16"; }

DType parse_dtype(std::string_view name) {
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  if (name == "fp16" || name == "float16" || name == "half") return DType::fp16;
  throw InvalidArgument(fmt::format("dtype '{}' is not supported; expected bf16 or fp16", name));
}

std::size_t dtype_size(DType) { return 2; }

std::string_view to_string(Family family) {
  switch (family) {
    case Family::decode_mma:
      return "decode_mma";
    case Family::decode_wgmma:
      return "decode_wgmma";
    case Family::decode_seesaw:
      return "decode_seesaw";
    case Family::decode_pair:
      return "decode_pair";
  }
  return "unknown";
}

std::string Arch::name() const { return fmt::format("sm_{}{}", sm, accel ? "a" : ""); }

Arch Arch::parse(std::string_view name) {
  Arch arch;
  std::string_view digits = name;
  if (digits.starts_with("sm_")) digits.remove_prefix(3);
  if (digits.ends_with("a")) {
    arch.accel = true;
    digits.remove_suffix(1);
  }
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), arch.sm);
  if (ec != std::errc{} || end != digits.data() + digits.size() || digits.empty() || arch.sm < 10)
    throw InvalidArgument(fmt::format("arch '{}' is not of the form sm_80, sm_86, sm_90a", name));
  return arch;
}

std::size_t Arch::max_shared_bytes() const {
  // Opt-in shared memory per block, CUDA C Programming Guide, "Compute Capabilities".
  if (sm == 80 || sm == 87) return 163 * 1024;
  if (sm >= 90 && sm < 100) return 227 * 1024;
  if (sm >= 100) return 227 * 1024;
  return 99 * 1024;  // sm_86, sm_89
}

std::string KernelConfig::id() const {
  return fmt::format("{}-{}-l{}-r{}-p{}-q{}-k{}-w{}-s{}-{}", to_string(family), to_string(dtype), latent_dim,
                     rope_dim, page_size, block_size_q, block_size_k, num_warps, num_stages, arch.name());
}

namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == sep) {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  return parts;
}

int parse_field(std::string_view id, std::string_view part, char prefix, const char* what) {
  int value = 0;
  if (part.size() >= 2 && part[0] == prefix) {
    auto [end, ec] = std::from_chars(part.data() + 1, part.data() + part.size(), value);
    if (ec == std::errc{} && end == part.data() + part.size()) return value;
  }
  throw InvalidArgument(fmt::format("config id '{}': field '{}' should be {} as '{}<number>'", id, part, what, prefix));
}

}  // namespace

KernelConfig KernelConfig::parse(std::string_view id) {
  const auto parts = split(id, '-');
  if (parts.size() != 10)
    throw InvalidArgument(fmt::format(
        "config id '{}' has {} fields; expected 10 as in decode_mma-bf16-l512-r64-p64-q64-k32-w8-s3-sm_90a", id,
        parts.size()));
  KernelConfig c;
  c.family = parse_family(parts[0], id);
  c.dtype = parse_dtype(parts[1]);
  c.latent_dim = parse_field(id, parts[2], 'l', "latent_dim");
  c.rope_dim = parse_field(id, parts[3], 'r', "rope_dim");
  c.page_size = parse_field(id, parts[4], 'p', "page_size");
  c.block_size_q = parse_field(id, parts[5], 'q', "block_size_q");
  c.block_size_k = parse_field(id, parts[6], 'k', "block_size_k");
  c.num_warps = parse_field(id, parts[7], 'w', "num_warps");
  c.num_stages = parse_field(id, parts[8], 's', "num_stages");
  c.arch = Arch::parse(parts[9]);
  return c;
}

Family parse_family(std::string_view name, std::string_view context) {
  if (name == "decode_mma") return Family::decode_mma;
  if (name == "decode_wgmma") return Family::decode_wgmma;
  if (name == "decode_seesaw") return Family::decode_seesaw;
  if (name == "decode_pair") return Family::decode_pair;
  throw InvalidArgument(fmt::format(
      "{}: family '{}' is unknown; expected decode_mma, decode_wgmma, decode_seesaw or decode_pair", context, name));
}

namespace {
int warps_m(const KernelConfig& c) { return std::min(c.block_size_q / 16, c.num_warps); }
}  // namespace

std::size_t KernelConfig::shared_bytes() const {
  if (family == Family::decode_wgmma) {
    // DecodeWgmmaTraits::SharedPlan: Q and num_stages K/V tiles of 9 x 8 KB, the 8 KB P tile,
    // three fp32 row arrays, the whole rounded up to its 1024-byte alignment.
    return 73728 * (1 + std::size_t(num_stages)) + 8192 + 1024;
  }
  if (family == Family::decode_pair) {
    // DecodePairTraits::SharedPlan: 4 stages of 5 x 8 KB, two P tiles (8 KB each), two fp32 S
    // partials (16 KB each), four fp32 row arrays, 6 mbarriers, rounded up to the 1024-byte
    // alignment.
    return (4 * 40960 + 2 * 8192 + 2 * 16384 + 4 * 64 * 4 + 6 * 8 + 1023) / 1024 * 1024;
  }
  if (family == Family::decode_seesaw) {
    // DecodeSeesawTraits::SharedPlan: Q, K0, K1 (9 x 8 KB each), P0 (8 KB), five fp32 row arrays,
    // 18 mbarriers, rounded up to the 1024-byte alignment.
    return (73728 * 3 + 8192 + 5 * 64 * 4 + 18 * 8 + 1023) / 1024 * 1024;
  }
  // Mirrors DecodeMmaTraits::SharedPlan: q, kv stages, p (bf16/fp16, rows padded by 8
  // elements), then red[warps_n][block_size_q], row_scale and row_m (fp32).
  const std::size_t pitch_qk = d_qk() + 8, pitch_p = block_size_k + 8;
  const std::size_t warps_n = num_warps / std::max(1, warps_m(*this));
  return 2 * (block_size_q * pitch_qk + num_stages * block_size_k * pitch_qk + block_size_q * pitch_p) +
         4 * (warps_n * block_size_q + 2 * block_size_q);
}

int KernelConfig::accumulator_registers() const { return block_size_q * latent_dim / num_threads(); }

namespace {
// The Hopper families (decode_wgmma, decode_seesaw, decode_pair) share their limits but the stage
// count: sm_90a (wgmma, TMA), latent 512 + rope 64, q64-k64-w8 tiles, pages of 16-128 (TMA boxes of
// one page), and the shared-memory plan within the block limit; num_stages from min_stages to
// max_stages.
std::optional<std::string> hopper_invalid_reason(const KernelConfig& c, const char* name, int min_stages,
                                                 int max_stages, const char* tile_note) {
  if (!(c.arch.sm == 90 && c.arch.accel))
    return fmt::format("{} needs sm_90a (wgmma, TMA), not {}", name, c.arch.name());
  if (c.latent_dim != 512 || c.rope_dim != 64)
    return fmt::format("{} supports latent_dim 512 with rope_dim 64 only, not {} + {}", name, c.latent_dim,
                       c.rope_dim);
  if (c.block_size_q != 64 || c.block_size_k != 64 || c.num_warps != 8 || c.num_stages < min_stages ||
      c.num_stages > max_stages)
    return fmt::format("{} has fixed tiles q64-k64-w8-s{}{}, not q{}-k{}-w{}-s{}", name,
                       min_stages == max_stages ? fmt::format("{}", min_stages)
                                                : fmt::format("{}/{}", min_stages, max_stages),
                       tile_note, c.block_size_q, c.block_size_k, c.num_warps, c.num_stages);
  if (c.page_size != 16 && c.page_size != 32 && c.page_size != 64 && c.page_size != 128)
    return fmt::format("page_size = {} is not one of 16, 32, 64, 128", c.page_size);
  if (c.shared_bytes() > c.arch.max_shared_bytes())
    return fmt::format("shared memory {} bytes exceeds the {} bytes a block may use on {}", c.shared_bytes(),
                       c.arch.max_shared_bytes(), c.arch.name());
  return std::nullopt;
}
}  // namespace

std::optional<std::string> KernelConfig::invalid_reason() const {
  if (family == Family::decode_wgmma) return hopper_invalid_reason(*this, "decode_wgmma", 1, 2, "");
  if (family == Family::decode_seesaw)
    return hopper_invalid_reason(*this, "decode_seesaw", 2, 2, " (two K buffers)");
  if (family == Family::decode_pair) return hopper_invalid_reason(*this, "decode_pair", 4, 4, " (a 4-stage ring)");
  auto one_of = [](int v, std::initializer_list<int> allowed) {
    for (int a : allowed)
      if (v == a) return true;
    return false;
  };
  if (!one_of(block_size_q, {16, 32, 64}))
    return fmt::format("block_size_q = {} is not one of 16, 32, 64", block_size_q);
  if (!one_of(block_size_k, {32, 64, 128}))
    return fmt::format("block_size_k = {} is not one of 32, 64, 128", block_size_k);
  if (!one_of(num_warps, {4, 8})) return fmt::format("num_warps = {} is not 4 or 8", num_warps);
  if (num_stages < 1 || num_stages > 4) return fmt::format("num_stages = {} is not in 1..4", num_stages);
  if (!one_of(latent_dim, {256, 512})) return fmt::format("latent_dim = {} is not 256 or 512", latent_dim);
  if (rope_dim != 64) return fmt::format("rope_dim = {} is not 64", rope_dim);
  if (!one_of(page_size, {16, 32, 64, 128}))
    return fmt::format("page_size = {} is not one of 16, 32, 64, 128", page_size);
  if (arch.sm < 80) return fmt::format("arch {} is older than sm_80 (mma.sync bf16 and cp.async need sm_80)", arch.name());
  const int wn = num_warps / warps_m(*this);
  if (block_size_k % (8 * wn) != 0)
    return fmt::format(
        "block_size_k = {} gives each of the {} column warps of S = QK^T less than one n8 tile "
        "(num_warps {} / (block_size_q {} / 16)); use block_size_k >= {}",
        block_size_k, wn, num_warps, block_size_q, 8 * wn);
  // Measured with ptxas (sm_80, sm_90a): O + S accumulators up to 144 fp32 registers per
  // thread compile without spills with 8 warps (q64-k64-w8: 251 registers) and 160 spill
  // (q64-k128-w8); with 4 warps each thread also issues twice the copies, and 144 spill
  // (q32-k64-w4: 40 bytes) while 136 do not (q32-k32-w4: 222 registers).
  const int s_registers = 4 * block_size_k / (8 * wn);
  if (s_registers > 16)
    return fmt::format(
        "each warp's S tile would span {} keys (block_size_k {} / {} column warps); more than 32 keys "
        "spill (q32-k128-w4 with latent_dim 256: 8 bytes)",
        block_size_k / wn, block_size_k, wn);
  const int register_budget = num_warps == 4 ? 136 : 144;
  if (accumulator_registers() + s_registers > register_budget)
    return fmt::format(
        "accumulators need {} fp32 registers per thread (O: block_size_q {} x latent_dim {} / {} threads = {}, "
        "S: {}); more than {} spill with {} warps",
        accumulator_registers() + s_registers, block_size_q, latent_dim, num_threads(), accumulator_registers(),
        s_registers, register_budget, num_warps);
  if (shared_bytes() > arch.max_shared_bytes())
    return fmt::format("shared memory {} bytes exceeds the {} bytes a block may use on {}", shared_bytes(),
                       arch.max_shared_bytes(), arch.name());
  return std::nullopt;
}

void KernelConfig::validate() const {
  if (auto reason = invalid_reason()) throw InvalidArgument(fmt::format("config {}: {}", id(), *reason));
}

std::size_t hash_value(const KernelConfig& c) {
  std::size_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](long long v) { h = (h ^ std::hash<long long>{}(v)) * 0x100000001b3ull; };
  for (long long v : {static_cast<long long>(c.family), static_cast<long long>(c.dtype),
                      static_cast<long long>(c.block_size_q), static_cast<long long>(c.block_size_k),
                      static_cast<long long>(c.num_warps), static_cast<long long>(c.num_stages),
                      static_cast<long long>(c.latent_dim), static_cast<long long>(c.rope_dim),
                      static_cast<long long>(c.page_size), static_cast<long long>(c.arch.sm),
                      static_cast<long long>(c.arch.accel)})
    mix(v);
  return h;
}

}  // namespace flashmla
