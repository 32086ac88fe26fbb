#include "autotune/compile_workers.hpp"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <csignal>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "jit/kernel_cache.hpp"

namespace flashmla::autotune {
namespace {

using nlohmann::json;

// Child: compile into the disk cache, report on the pipe, never return.
[[noreturn]] void run_child(const KernelConfig& config, int fd, const std::function<void(const KernelConfig&)>& hook) {
  json report;
  int code = 0;
  try {
    if (hook) hook(config);
    const jit::Binary b = jit::get_binary(config);
    report["kernels"] = json::array();
    for (const auto& k : b.kernels)
      report["kernels"].push_back({k.symbol, k.registers, k.stack_bytes, k.spill_store_bytes, k.spill_load_bytes});
  } catch (const std::exception& e) {
    report["error"] = std::string(e.what()).substr(0, 4000);
    code = 1;
  }
  const std::string text = report.dump();
  for (std::size_t done = 0; done < text.size();) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  std::_Exit(code);
}

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

}  // namespace

int CompileReport::spill_bytes() const {
  int worst = 0;
  for (const auto& k : kernels) worst = std::max({worst, k.spill_store_bytes, k.spill_load_bytes, k.stack_bytes});
  return worst;
}

std::vector<CompileReport> compile_in_workers(
    const std::vector<KernelConfig>& configs, int jobs,
    const std::function<void(std::size_t, std::size_t, const CompileReport&)>& progress,
    const std::function<void(const KernelConfig&)>& child_hook) {
  if (jobs <= 0) jobs = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<CompileReport> reports(configs.size());
  struct Running {
    std::size_t index;
    int fd;
  };
  std::map<pid_t, Running> running;
  std::size_t next = 0, done = 0;
  while (done < configs.size()) {
    while (next < configs.size() && static_cast<int>(running.size()) < jobs) {
      int fds[2];
      if (::pipe(fds) != 0) throw std::runtime_error(fmt::format("pipe failed: {}", std::strerror(errno)));
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(fds[0]);
        run_child(configs[next], fds[1], child_hook);
      }
      ::close(fds[1]);
      if (pid < 0) {
        ::close(fds[0]);
        throw std::runtime_error(fmt::format("fork failed: {}", std::strerror(errno)));
      }
      running[pid] = {next++, fds[0]};
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) throw std::runtime_error(fmt::format("waitpid failed: {}", std::strerror(errno)));
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    // The child has exited, so its whole report is in the pipe (or the pipe is empty).
    const std::string text = read_all(it->second.fd);
    CompileReport& r = reports[it->second.index];
    r.config = configs[it->second.index];
    running.erase(it);
    if (WIFSIGNALED(status)) {
      r.failure = fmt::format("compiler worker crashed (signal {}: {})", WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
      try {
        const json report = json::parse(text);
        if (report.contains("error")) {
          r.failure = report["error"].get<std::string>();
        } else {
          for (const auto& k : report.at("kernels"))
            r.kernels.push_back({k.at(0), k.at(1), k.at(2), k.at(3), k.at(4)});
          r.ok = r.spill_bytes() == 0;
          if (!r.ok) r.failure = fmt::format("pruned: {} bytes of spills or stack", r.spill_bytes());
        }
      } catch (const json::exception&) {
        r.failure = fmt::format("compiler worker exited with status {} and no report", WEXITSTATUS(status));
      }
    }
    ++done;
    if (progress) progress(done, configs.size(), r);
  }
  return reports;
}

}  // namespace flashmla::autotune
