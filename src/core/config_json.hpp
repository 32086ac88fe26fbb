// KernelConfig <-> JSON ({"family": "decode_mma", "dtype": "bf16", "block_size_q": 64, ...}).
#pragma once

#include <nlohmann/json.hpp>

#include "flashmla/config.hpp"

namespace flashmla {

nlohmann::json to_json(const KernelConfig& config);
// Throws InvalidArgument naming the missing or malformed field.
KernelConfig config_from_json(const nlohmann::json& j);

}  // namespace flashmla
