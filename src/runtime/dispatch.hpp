// Problem -> KernelConfig: a pinned config (option, then FLASHMLA_CONFIG), else the heuristic.
#pragma once

#include <string>
#include <vector>

#include "autotune/tuning_table.hpp"
#include "flashmla/flashmla.hpp"

namespace flashmla::runtime {

// Query rows one kv head's CTA tile covers: s_q * h_q / h_kv.
inline int rows_per_kv_head(const DecodeShape& s) { return s.s_q * (s.h_q / s.h_kv); }

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
