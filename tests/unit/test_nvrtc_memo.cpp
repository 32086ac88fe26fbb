// The NVRTC version memo (jit/nvrtc.cpp): the disk-cache key needs the NVRTC version, and a
// process that finds its memo in the cache folder reports it without loading libnvrtc (~8 ms of a
// warm start); a changed search input, or a changed library file, makes it load NVRTC again.
// Each step runs in a forked child, so that this process never loads NVRTC itself.
#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>

#include "jit/nvrtc.hpp"
#include "test_support.hpp"

namespace {

bool nvrtc_mapped() {
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);)
    if (line.find("libnvrtc") != std::string::npos) return true;
  return false;
}

// Runs step in a child process with FLASHMLA_CACHE_DIR = dir (and the given extra variable);
// returns "<version> <loaded 0|1>", or "none" when NVRTC is unavailable there.
std::string in_child(const std::string& dir, const char* var = nullptr, const char* value = nullptr) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    setenv("FLASHMLA_CACHE_DIR", dir.c_str(), 1);
    if (var) setenv(var, value, 1);
    std::string out;
    try {
      const std::string v = flashmla::jit::nvrtc_version();
      out = v + (nvrtc_mapped() ? " 1" : " 0");
    } catch (...) {
      out = "none";
    }
    (void)!write(fds[1], out.data(), out.size());
    _exit(0);
  }
  close(fds[1]);
  std::string out;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return out;
}

}  // namespace

TEST_CASE("a warm process takes the NVRTC version from the memo, without loading libnvrtc") {
  flashmla::test::TempDir dir;
  const std::string first = in_child(dir.path().string());
  if (first == "none") {
    WARN("skipped: NVRTC is not available here");
    return;
  }
  const std::string version = first.substr(0, first.find(' '));
  CHECK(first == version + " 1");                               // no memo yet: loads NVRTC, leaves the memo
  CHECK(in_child(dir.path().string()) == version + " 0");       // the memo answers
  CHECK(in_child(dir.path().string(), "LD_LIBRARY_PATH", "/nonexistent") == version + " 1");  // other search
  CHECK(in_child(dir.path().string(), "FLASHMLA_NVRTC_LIBRARY", "/nonexistent/libnvrtc.so") == "none");
  flashmla::test::TempDir other;
  CHECK(in_child(other.path().string()) == version + " 1");     // another cache folder: no memo there
}
