/* Diagnostic preload: on SIGSEGV/SIGABRT print the native stack (exported symbols) to stderr,
 * then die by the same signal. For machines without gdb:
 *   gcc -shared -fPIC -O1 -o /tmp/segv_backtrace.so python/tools/segv_backtrace.c
 *   LD_PRELOAD=/tmp/segv_backtrace.so python3 ...                                         */
#include <execinfo.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

static void on_fault(int sig) {
  void* frames[64];
  const int n = backtrace(frames, 64);
  static const char head[] = "\n== native stack at the fault ==\n";
  if (write(2, head, sizeof head - 1) < 0) return;
  backtrace_symbols_fd(frames, n, 2);
  signal(sig, SIG_DFL);
  raise(sig);
}

__attribute__((constructor)) static void install(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_fault;
  sa.sa_flags = SA_ONSTACK;
  sigaction(SIGSEGV, &sa, 0);
  sigaction(SIGABRT, &sa, 0);
}
