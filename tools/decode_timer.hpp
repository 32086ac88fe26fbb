// Timing one decode call as PERF.md prescribes: CUDA events around mla_decode (split kernel
// + combine), L2 flushed by writing a 256 MB buffer before each run, 3 warm-up calls,
// metadata computed once beforehand. Shared by `flashmla bench` and `flashmla tune`.
#pragma once

#include <cstdint>

#include "autotune/tuning_table.hpp"
#include "flashmla/flashmla.hpp"
#include "tools/device_buffer.hpp"

namespace flashmla {

inline constexpr std::size_t kL2FlushBytes = 256u << 20;

// Random 16-bit floats in [-1, 1) (a 32 MB pattern repeated), never zeros.
void fill_random(DeviceBuffer& buf, std::size_t elems, DType dtype, uint64_t seed);

// Median, p20 and p80 over `runs` timed calls, in microseconds.
autotune::Timing time_decode(const DecodeShape& shape, const DecodeArgs& args, const MlaMetadata& md, int runs,
                             DeviceBuffer& l2_flush);

}  // namespace flashmla
