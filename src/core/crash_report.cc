// ScopedCrashContext and the fatal-signal handler (see mpiflow/crash_report.h). The handler
// uses only what a signal handler may: write(2), sigaction(2), raise(3), and a thread_local
// pointer to a string the scope built before anything could crash. The line goes out in one
// write, so the lines of ranks that crash together do not interleave.
#include "mpiflow/crash_report.h"

#include <signal.h>
#include <unistd.h>

#include <utility>

namespace mpiflow {
namespace {

thread_local const ScopedCrashContext* t_innermost = nullptr;

const char* g_program = "mpiflow";
constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction g_previous[sizeof(kSignals) / sizeof(kSignals[0])];

// Appends `text` to line[*used], within kLineBytes - 1.
constexpr size_t kLineBytes = 4096;  // one write(2) of at most PIPE_BUF: ranks' lines do not mix
void Append(char* line, size_t* used, const char* text) {
  while (*text != '\0' && *used + 1 < kLineBytes) line[(*used)++] = *text++;
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    default:
      return "SIGABRT";
  }
}

extern "C" void OnFatalSignal(int sig, siginfo_t* info, void*) {
  if (const char* what = CurrentCrashContext()) {
    char line[kLineBytes];  // on this thread's stack: threads that crash at once do not share it
    size_t used = 0;
    for (const char* piece : {g_program, ": fatal signal ", SignalName(sig), " while ", what}) {
      Append(line, &used, piece);
    }
    line[used++] = '\n';
    (void)!write(STDERR_FILENO, line, used);
  }
  size_t i = 0;
  while (kSignals[i] != sig) ++i;
  sigaction(sig, &g_previous[i], nullptr);
  // A fault comes back when the instruction runs again, now to the previous handler; a signal
  // that was sent (abort, kill) is sent again, delivered once this handler returns.
  if (info == nullptr || info->si_code <= 0) raise(sig);
}

}  // namespace

ScopedCrashContext::ScopedCrashContext(std::string what)
    : what_(std::move(what)), outer_(t_innermost) {
  t_innermost = this;
}

ScopedCrashContext::~ScopedCrashContext() { t_innermost = outer_; }

const char* CurrentCrashContext() { return t_innermost ? t_innermost->what_.c_str() : nullptr; }

void InstallCrashReport(const char* program) {
  g_program = program;
  struct sigaction sa = {};
  sa.sa_sigaction = OnFatalSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_SIGINFO;
  for (size_t i = 0; i < sizeof(kSignals) / sizeof(kSignals[0]); ++i) {
    sigaction(kSignals[i], &sa, &g_previous[i]);
  }
}

}  // namespace mpiflow
