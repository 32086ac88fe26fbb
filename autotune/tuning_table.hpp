// Tuning tables: the best config per problem class on one GPU model, as JSON.
//
// A table is written by `flashmla tune` for one device; shipped tables live in configs/
// (embedded into the library at build time), user tables in $FLASHMLA_CACHE_DIR/tuning/.
// File layout:
//   {"format": "flashmla-tuning-1",
//    "device": {"name", "sm_count", "arch", "driver", "nvrtc", "library", "date"},
//    "entries": [{"key": {"family", "dtype", "h_q", "s_q", "h_kv", "page_size", "latent_dim",
//                         "batch_bucket", "seqlen_bucket"},
//                 "config": {...}, "median_us", "heuristic_config", "heuristic_us",
//                 "candidates": [{"config_id", "median_us", "p20_us", "p80_us"} |
//                                {"config_id", "failure"}]}]}
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "flashmla/config.hpp"
#include "flashmla/flashmla.hpp"

namespace flashmla::autotune {

inline constexpr const char* kTableFormat = "flashmla-tuning-1";

// Problem class. Batch and context length are bucketed by powers of two.
struct TuningKey {
  Family family = Family::decode_mma;
  DType dtype = DType::bf16;
  int h_q = 0, s_q = 0, h_kv = 0, page_size = 0, latent_dim = 0;
  int batch_bucket = 0;   // ceil(log2(b))
  int seqlen_bucket = 0;  // ceil(log2(mean s_k)), at least 6 (64 keys)
  friend bool operator==(const TuningKey&, const TuningKey&) = default;
  std::string describe() const;
};
int batch_bucket(int b);
int seqlen_bucket(double mean_seqlen);
TuningKey make_key(const DecodeShape& shape, double mean_seqlen);

struct Timing {
  double median_us = 0, p20_us = 0, p80_us = 0;
};
struct Candidate {
  std::string config_id;
  std::optional<Timing> timing;  // empty when it failed
  std::string failure;           // why it could not run or was rejected
};

struct TuningEntry {
  TuningKey key;
  KernelConfig config;  // the winner
  double median_us = 0;
  std::string heuristic_config;
  double heuristic_us = 0;
  std::vector<Candidate> candidates;
};

// The device (and software) a table was measured on.
struct DeviceStamp {
  std::string name;  // "NVIDIA H100 80GB HBM3"
  int sm_count = 0;
  std::string arch;  // "sm_90a"
  int driver = 0;
  std::string nvrtc, library, date;
};

struct TuningTable {
  std::string origin;  // file name, for messages
  DeviceStamp device;
  std::vector<TuningEntry> entries;
};

// "nvidia-h100-80gb-hbm3": the file name of a GPU model's table.
std::string gpu_slug(const std::string& device_name);

// Throws InvalidArgument "<origin>:<line>: <what>" for malformed JSON or fields.
TuningTable parse_table(const std::string& text, const std::string& origin);
std::string dump_table(const TuningTable& table);

// Why a table does not apply to this device and library (nullopt: it applies).
std::optional<std::string> stale_reason(const TuningTable& table, const DeviceStamp& here);

struct Choice {
  std::optional<KernelConfig> config;  // nullopt: no entry; use the heuristic
  std::string explanation;             // which entry or rule, and why
};
// Exact key, else the nearest bucket of the same problem class (same family, dtype, h_q, s_q,
// h_kv, page_size, latent_dim; distance |batch buckets| + |seqlen buckets|), else none.
Choice lookup(const std::vector<TuningTable>& tables, const TuningKey& key);

}  // namespace flashmla::autotune
