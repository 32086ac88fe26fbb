// Problem -> KernelConfig: a pinned config (option, then FLASHMLA_CONFIG), else the heuristic.
#pragma once

#include "flashmla/flashmla.hpp"

namespace flashmla::runtime {

// Query rows one kv head's CTA tile covers: s_q * h_q / h_kv.
inline int rows_per_kv_head(const DecodeShape& s) { return s.s_q * (s.h_q / s.h_kv); }

// First valid config of the heuristic's preference list for this shape and arch.
KernelConfig heuristic_config(const DecodeShape& shape, Arch arch);
// Checks that a pinned config fits the shape and arch; throws InvalidArgument saying why not.
void check_pinned(const KernelConfig& config, const DecodeShape& shape, Arch arch, const char* origin);
KernelConfig select_config(const DecodeShape& shape, Arch arch, const DecodeOptions& options);

}  // namespace flashmla::runtime
