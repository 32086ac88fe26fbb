// The split-KV schedule (templates/flashmla/metadata.cuh), run on the host: the device code
// is plain integer work, compiled here with the CUDA qualifiers defined away and one
// "thread". Properties over random batches: every tile of every sequence is covered exactly
// once, split indices per batch are 0..n-1 once each and match split_offsets, empty sequences
// get no split, at most num_parts partitions are used, and the work is balanced.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <vector>

#define __device__
#define __forceinline__ inline
namespace {
struct FakeDim {
  unsigned x;
};
FakeDim threadIdx{0}, blockDim{1};
inline void __syncthreads() {}
using std::max;
using std::min;
}  // namespace
#include "flashmla/metadata.cuh"

namespace {

struct Schedule {
  std::vector<int> sched, split_offsets;
};

Schedule run(const std::vector<int>& lens, int num_parts, int block_size_k, int overhead, int max_seqlen,
             long long evict_first_max_tiles = 0) {
  Schedule s;
  s.sched.assign(std::size_t(num_parts) * flashmla::kSchedWords, 12345);
  s.split_offsets.assign(lens.size() + 1, -7);
  std::vector<int> tiles(lens.size());
  flashmla::MetadataParams p{};
  p.cache_seqlens = lens.data();
  p.sched = s.sched.data();
  p.split_offsets = s.split_offsets.data();
  p.b = static_cast<int>(lens.size());
  p.num_parts = num_parts;
  p.block_size_k = block_size_k;
  p.overhead_tiles = overhead;
  p.max_seqlen = max_seqlen;
  p.evict_first_max_tiles = evict_first_max_tiles;
  flashmla::metadata_kernel(p, tiles.data());
  return s;
}

}  // namespace

TEST_CASE("the split-KV schedule covers every tile once, with consistent splits and balanced work", "[metadata]") {
  const unsigned seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 400; ++trial) {
    const int b = std::uniform_int_distribution<int>(1, trial % 4 == 0 ? 300 : 12)(rng);
    const int num_parts = std::uniform_int_distribution<int>(1, 140)(rng);
    const int block_k = 32 << std::uniform_int_distribution<int>(0, 2)(rng);
    const int overhead = std::uniform_int_distribution<int>(0, 4)(rng);
    const int max_seqlen = 70000;
    std::vector<int> lens(b);
    for (int& len : lens) {
      const int kind = std::uniform_int_distribution<int>(0, 9)(rng);
      len = kind == 0 ? 0 : kind == 1 ? 1 : kind == 2 ? 80000 : std::uniform_int_distribution<int>(1, 20000)(rng);
    }
    const long long evict_first_max = std::uniform_int_distribution<long long>(0, 4000)(rng);
    CAPTURE(trial, b, num_parts, block_k, overhead, evict_first_max);
    const Schedule s = run(lens, num_parts, block_k, overhead, max_seqlen, evict_first_max);

    std::vector<int> n_tiles(b);
    long long total = 0, kv_tiles = 0;
    for (int i = 0; i < b; ++i) {
      n_tiles[i] = (std::min(lens[i], max_seqlen) + block_k - 1) / block_k;
      total += n_tiles[i] > 0 ? n_tiles[i] + overhead : 0;
      kv_tiles += n_tiles[i];
    }
    // Word 5, the K/V loads' L2 policy, is the same in every partition, used or not.
    for (int part = 0; part < num_parts; ++part)
      REQUIRE(s.sched[std::size_t(part) * flashmla::kSchedWords + 5] == (kv_tiles <= evict_first_max ? 1 : 0));
    std::vector<std::vector<int>> covered(b), splits_seen(b);
    for (int i = 0; i < b; ++i) covered[i].assign(n_tiles[i], 0), splits_seen[i].assign(n_tiles[i] + 1, 0);
    long long max_work = 0;
    bool ended = false;  // used partitions come first, then the empty ones
    for (int part = 0; part < num_parts; ++part) {
      const int* w = &s.sched[std::size_t(part) * flashmla::kSchedWords];
      if (w[0] < 0) {
        ended = true;
        continue;
      }
      REQUIRE_FALSE(ended);
      long long work = 0;
      for (int bi = w[0]; bi <= w[2]; ++bi) {  // as partition.cuh walks it
        const int lo = bi == w[0] ? w[1] : 0, hi = bi == w[2] ? w[3] : n_tiles[bi];
        if (lo >= hi) continue;
        const int split = bi == w[0] ? w[4] : 0;
        REQUIRE(split >= 0);
        REQUIRE(split < n_tiles[bi] + 1);
        ++splits_seen[bi][split];
        for (int t = lo; t < hi; ++t) ++covered[bi][t];
        work += hi - lo + overhead;
      }
      max_work = std::max(max_work, work);
    }
    REQUIRE(s.split_offsets[0] == 0);
    for (int i = 0; i < b; ++i) {
      INFO("batch " << i << " length " << lens[i]);
      for (int t = 0; t < n_tiles[i]; ++t) REQUIRE(covered[i][t] == 1);
      const int n_splits = s.split_offsets[i + 1] - s.split_offsets[i];
      CHECK((n_splits == 0) == (n_tiles[i] == 0));
      for (int k = 0; k < static_cast<int>(splits_seen[i].size()); ++k) REQUIRE(splits_seen[i][k] == (k < n_splits ? 1 : 0));
    }
    CHECK(s.split_offsets[b] <= b + num_parts);  // the decode workspace is sized for this
    // Balance: no partition holds much more than an equal share (plus one split's overhead
    // and one tile); the first version gave the overflow to the last partition.
    const long long ideal = (total + num_parts - 1) / num_parts;
    CHECK(max_work <= ideal + ideal / 4 + overhead + 1);
  }
}

TEST_CASE("equal sequences a little over half a partition's share are finished, not split", "[metadata]") {
  // b = 128 sequences of 64 tiles over 66 partitions (h_q 128 on an H100): two whole
  // sequences per partition is 3 % over the equal share and needs no combine.
  const Schedule s = run(std::vector<int>(128, 4096), 66, 64, 2, 4096);
  CHECK(s.split_offsets[128] == 128);
  // Much longer sequences over few partitions still split.
  const Schedule one = run(std::vector<int>(1, 65536), 66, 64, 2, 65536);
  CHECK(one.split_offsets[1] > 60);
}
