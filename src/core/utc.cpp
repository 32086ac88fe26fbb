#include "core/utc.hpp"

#include <ctime>

namespace flashmla {
namespace {
std::string now(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), format, &tm);
  return buf;
}
}  // namespace

std::string utc_date() { return now("%Y-%m-%d"); }
std::string utc_timestamp() { return now("%Y-%m-%dT%H:%M:%SZ"); }
}  // namespace flashmla
