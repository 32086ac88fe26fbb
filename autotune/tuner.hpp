// The autotuner: for each problem shape, every valid config of the search space is compiled
// in worker processes (pruned by the compile's resource report), checked against the fp64
// reference on a small problem of the same class, then timed (CUDA events, L2 flushed,
// median/p20/p80); the fastest correct one wins. Every candidate's timing or failure is kept.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "autotune/tuning_table.hpp"

namespace flashmla::autotune {

struct TuneShape {
  int b = 128, s_q = 1, h_q = 128, s_k = 4096, h_kv = 1, page_size = 64, latent_dim = 512;
  DType dtype = DType::bf16;
  std::string describe() const;
};
// PERF.md's rows (bf16, d_qk 576, h_kv 1, page 64; causal when s_q = 2).
std::vector<TuneShape> preset_shapes();
// JSON list of {"b", "s_q", "h_q", "s_k", optional "h_kv", "page_size", "latent_dim", "dtype"}.
std::vector<TuneShape> shapes_from_file(const std::string& path);
// "b=128,s_q=1,h_q=128,s_k=4096[,h_kv=1,page_size=64,latent_dim=512,dtype=bf16]"
TuneShape parse_shape(const std::string& text);

struct TuneOptions {
  std::vector<TuneShape> shapes = preset_shapes();
  double budget_minutes = 15;  // candidates left when it runs out are recorded as not run
  int runs = 20;               // timed runs per candidate
  int jobs = 0;                // compile workers (0: one per core)
};

// Needs a GPU. Progress goes to `progress` (a bar per shape, then a line per shape).
TuningTable tune(const TuneOptions& options, std::FILE* progress);

}  // namespace flashmla::autotune
