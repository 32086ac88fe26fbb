// The tuning tables dispatch consults: shipped ones (configs/*.json, embedded) and the
// user's ($FLASHMLA_CACHE_DIR/tuning/*.json), filtered to this device and library version.
#pragma once

#include <string>
#include <vector>

#include "autotune/tuning_table.hpp"
#include "jit/driver.hpp"

namespace flashmla::runtime {

autotune::DeviceStamp device_stamp(const jit::DeviceInfo& info);
// Tables for this device, loaded once per device name. A malformed file throws
// InvalidArgument naming the file and line; a table for another GPU or library version is
// skipped with a warning.
const std::vector<autotune::TuningTable>& tables_for(const jit::DeviceInfo& info);
// Makes the next tables_for() read the files again.
void reload();
// Folder of the user's tables.
std::string user_tuning_dir();

}  // namespace flashmla::runtime
