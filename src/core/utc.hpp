// Today's date and the current time in UTC, as records and manifests write them.
#pragma once

#include <string>

namespace flashmla {
std::string utc_date();       // "2026-11-25"
std::string utc_timestamp();  // "2026-11-25T22:18:42Z"
}  // namespace flashmla
