#include "core/log.hpp"

#include <cstdio>
#include <mutex>

namespace flashmla {
void log_warning(std::string_view message) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  std::fprintf(stderr, "flashmla: warning: %.*s\n", static_cast<int>(message.size()), message.data());
}
}  // namespace flashmla
