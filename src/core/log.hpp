// Warnings to stderr ("flashmla: warning: ..."), the one place the library prints.
#pragma once

#include <string_view>

namespace flashmla {
void log_warning(std::string_view message);
}
