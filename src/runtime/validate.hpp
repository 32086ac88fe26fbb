// Checks of user input, done before anything launches. Each failure throws
// InvalidArgument (or Unsupported) naming the argument, its value and what was expected.
#pragma once

#include <vector>

#include "flashmla/flashmla.hpp"

namespace flashmla::runtime {

void validate_shape(const DecodeShape& shape);
// Fills zero strides with the contiguous ones; rejects bad pointers, strides, alignment.
DecodeArgs validate_args(const DecodeShape& shape, const DecodeArgs& args);
// Host-side check of sequence lengths and block ids against the block table.
void validate_seqlens(const DecodeShape& shape, const std::vector<int32_t>& seqlens,
                      const std::vector<int32_t>& block_table, int64_t block_table_stride);
// The device must be sm_80 or newer.
void validate_arch(int cc_major, int cc_minor, const char* device_name);

}  // namespace flashmla::runtime
