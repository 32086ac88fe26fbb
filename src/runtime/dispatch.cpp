#include "runtime/dispatch.hpp"

#include <fmt/format.h>

#include <cstdlib>
#include <limits>
#include <span>

namespace flashmla::runtime {

namespace {

// On sm_90a, decode_wgmma wherever it supports the problem (latent 512 + rope 64, bf16 or fp16,
// page 16-128) and one kv head has at least 16 query rows: measured on the H100 (bench/results/
// tuning-h100.json, 2026-11-26) it beats decode_mma on every PERF.md row, 1.04x at h_q 16 up to
// 2.2x at h_q 128. Below 16 rows its fixed 64-row tile is mostly padding and nothing was measured,
// so decode_mma's narrow tiles stay. Two stages: the faster of its two configs on every row.
std::optional<KernelConfig> hopper_config(const DecodeShape& s, Arch arch) {
  if (!(arch.sm == 90 && arch.accel) || rows_per_kv_head(s) < 16) return std::nullopt;
  KernelConfig c;
  c.family = Family::decode_wgmma;
  c.block_size_q = 64, c.block_size_k = 64, c.num_warps = 8, c.num_stages = 2;
  c.latent_dim = s.latent_dim, c.rope_dim = s.rope_dim, c.page_size = s.page_size, c.dtype = s.dtype;
  c.arch = arch;
  if (c.invalid_reason()) return std::nullopt;
  return c;
}

}  // namespace

std::string family_summary(Arch arch) {
  if (arch.sm == 90 && arch.accel)
    return "decode_wgmma for latent_dim 512 (bf16, fp16; page 16-128) with >= 16 query rows per kv head; "
           "decode_mma for latent_dim 256 and fewer rows";
  return fmt::format("decode_mma (decode_wgmma needs sm_90a, this is {})", arch.name());
}

std::size_t kv_evict_first_limit(int q_tiles_per_head, std::size_t l2_bytes, long long env_mb) {
  if (env_mb >= 0) return static_cast<std::size_t>(env_mb) << 20;
  if (q_tiles_per_head == 2) return std::numeric_limits<std::size_t>::max();
  return 4 * l2_bytes;
}

KernelConfig heuristic_config(const DecodeShape& s, Arch arch) {
  if (auto hopper = hopper_config(s, arch)) return *hopper;
  struct Tile {
    int q, k, warps, stages;
  };
  // Untuned preference order: the widest q tile the rows fill (K/V tiles are shared by all
  // rows of a kv head, so wider q tiles read the cache fewer times), then the deepest
  // pipeline that fits the arch's shared memory. The autotuner replaces these.
  const int rows = rows_per_kv_head(s);
  // Measured on H100 (bench/NOTES.md, 2026-11-25): h_q 128: q64-k32-w8-s3/s4 and q64-k64-w8-s1
  // within 1%; h_q 16: q16-k64-w4-s2 best (2589 GB/s), 8 warps within 1%. The tails fit the
  // 99 KiB of sm_86/sm_89.
  static constexpr Tile kWide[] = {{64, 32, 8, 3}, {64, 32, 8, 2}, {64, 64, 8, 1},
                                   {32, 32, 8, 2}, {32, 32, 8, 1}, {16, 32, 4, 1}};
  static constexpr Tile kMid[] = {{32, 64, 8, 2}, {32, 32, 8, 3}, {32, 32, 8, 2}, {32, 32, 8, 1}, {16, 32, 4, 1}};
  static constexpr Tile kNarrow[] = {{16, 64, 4, 2}, {16, 32, 4, 3}, {16, 32, 4, 2}, {16, 32, 4, 1}};
  const std::span<const Tile> order = rows > 32   ? std::span<const Tile>(kWide)
                                      : rows > 16 ? std::span<const Tile>(kMid)
                                                  : std::span<const Tile>(kNarrow);
  for (const Tile& t : order) {
    KernelConfig c;
    c.block_size_q = t.q, c.block_size_k = t.k, c.num_warps = t.warps, c.num_stages = t.stages;
    c.latent_dim = s.latent_dim, c.rope_dim = s.rope_dim, c.page_size = s.page_size, c.dtype = s.dtype;
    c.arch = arch;
    if (!c.invalid_reason()) return c;
  }
  throw Unsupported(fmt::format("no decode_mma config fits {} for h_q {} s_q {} latent_dim {}", arch.name(), s.h_q,
                                s.s_q, s.latent_dim));
}

void check_pinned(const KernelConfig& c, const DecodeShape& s, Arch arch, const char* origin) {
  auto mismatch = [&](const char* field, int have, int want) {
    throw InvalidArgument(
        fmt::format("{} config {} has {} = {} but the problem has {}", origin, c.id(), field, have, want));
  };
  if (c.dtype != s.dtype)
    throw InvalidArgument(fmt::format("{} config {} has dtype {} but the problem has {}", origin, c.id(),
                                      to_string(c.dtype), to_string(s.dtype)));
  if (c.latent_dim != s.latent_dim) mismatch("latent_dim", c.latent_dim, s.latent_dim);
  if (c.rope_dim != s.rope_dim) mismatch("rope_dim", c.rope_dim, s.rope_dim);
  if (c.page_size != s.page_size) mismatch("page_size", c.page_size, s.page_size);
  if (c.arch.sm != arch.sm)
    throw InvalidArgument(
        fmt::format("{} config {} targets {} but the GPU is {}", origin, c.id(), c.arch.name(), arch.name()));
  if (auto reason = c.invalid_reason())
    throw InvalidArgument(fmt::format("{} config {} cannot run: {}", origin, c.id(), *reason));
}

Selection select(const DecodeShape& s, Arch arch, const DecodeOptions& options,
                 const std::vector<autotune::TuningTable>& tables, double mean_seqlen) {
  if (options.config) {
    check_pinned(*options.config, s, arch, "pinned (DecodeOptions::config)");
    return {*options.config, "pinned by DecodeOptions::config"};
  }
  if (const char* env = std::getenv("FLASHMLA_CONFIG"); env && *env) {
    KernelConfig c = KernelConfig::parse(env);
    check_pinned(c, s, arch, "FLASHMLA_CONFIG");
    return {c, "pinned by FLASHMLA_CONFIG"};
  }
  if (mean_seqlen <= 0) mean_seqlen = options.seqlen_hint > 0 ? options.seqlen_hint
                                                              : 0.5 * s.max_blocks_per_seq * s.page_size;
  const autotune::Choice choice = autotune::lookup(tables, autotune::make_key(s, mean_seqlen));
  if (choice.config) {
    KernelConfig c = *choice.config;
    c.arch = arch;  // tables record the arch they were tuned on; the device's wins
    try {
      check_pinned(c, s, arch, "tuning table");
      return {c, choice.explanation};
    } catch (const InvalidArgument& e) {
      return {heuristic_config(s, arch), choice.explanation + "; not usable (" + e.what() + "); heuristic"};
    }
  }
  return {heuristic_config(s, arch), choice.explanation};
}

KernelConfig select_config(const DecodeShape& s, Arch arch, const DecodeOptions& options) {
  return select(s, arch, options, {}, 0).config;
}

}  // namespace flashmla::runtime
