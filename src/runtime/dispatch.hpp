// Problem -> KernelConfig: a pinned config (option, then FLASHMLA_CONFIG), else the heuristic.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "autotune/tuning_table.hpp"
#include "flashmla/flashmla.hpp"

namespace flashmla::runtime {

// Query rows one kv head's CTA tile covers: s_q * h_q / h_kv.
inline int rows_per_kv_head(const DecodeShape& s) { return s.s_q * (s.h_q / s.h_kv); }

// decode_wgmma loads K/V with the L2 evict_first policy when a launch reads at most this many
// bytes of it (the metadata kernel compares the real lengths). A short launch then leaves the
// lines already in L2 in place, where evicting them would write the dirty ones back while it
// runs; a long one is better off with the whole L2. Measured on the H100 (bench/NOTES.md):
// evict_first gains 3-4.5 us at 75-151 MB (b1, b8, b32 h_q16) and loses 1-3.5 % at 302-604 MB
// with one reader per K/V tile (b64, b128 h_q16): so 4 x l2_bytes (200 MB there). With exactly
// two readers (two q tiles per kv head, e.g. h_q 128 at s_q 1) it gains 1.5-3.5 % at 302-604 MB
// (b32, b64) and loses nothing at b 96-128: no limit. With four (s_q 2) the later readers miss
// in L2 under evict_first: the byte limit. env_mb >= 0 (FLASHMLA_KV_EVICT_FIRST_MB) is the one
// limit for every launch, in MiB; 0 never.
std::size_t kv_evict_first_limit(int q_tiles_per_head, std::size_t l2_bytes, long long env_mb);

// First valid config of the heuristic's preference list for this shape and arch.
KernelConfig heuristic_config(const DecodeShape& shape, Arch arch);
// Which kernel family decodes on `arch`, and where the other one takes over (for `flashmla info`).
std::string family_summary(Arch arch);
// Checks that a pinned config fits the shape and arch; throws InvalidArgument saying why not.
void check_pinned(const KernelConfig& config, const DecodeShape& shape, Arch arch, const char* origin);
// The config for a shape and why: DecodeOptions::config, then FLASHMLA_CONFIG, then the
// tuning tables (exact bucket, then nearest), then the heuristic. mean_seqlen picks the
// context-length bucket (0: unknown, half the block table's capacity is assumed).
struct Selection {
  KernelConfig config;
  std::string explanation;
};
Selection select(const DecodeShape& shape, Arch arch, const DecodeOptions& options,
                 const std::vector<autotune::TuningTable>& tables, double mean_seqlen);
KernelConfig select_config(const DecodeShape& shape, Arch arch, const DecodeOptions& options);

}  // namespace flashmla::runtime
