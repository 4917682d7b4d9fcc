// Crash reports: what a process was reading when it died of a fatal signal. A library that
// mpiflow calls can crash on damaged input (HDF5 1.10 segfaults on some damaged files, its own
// tools too); the report names the file and the way out instead of a bare "Segmentation fault".
// Not a recovery: the process still dies of the same signal, so mpirun and Slurm see a crash
// and end the job. Not a stack dump (the sanitizers and core files do that).
#pragma once

#include <string>

namespace mpiflow {

// While one lives, a fatal signal on this thread reports "while <what>". Scopes nest (the
// innermost is reported) and belong to the thread that made them.
class ScopedCrashContext {
 public:
  explicit ScopedCrashContext(std::string what);
  ~ScopedCrashContext();
  ScopedCrashContext(const ScopedCrashContext&) = delete;
  ScopedCrashContext& operator=(const ScopedCrashContext&) = delete;

 private:
  std::string what_;
  const ScopedCrashContext* outer_;
  friend const char* CurrentCrashContext();
};

// The innermost live scope's text on this thread, or null.
const char* CurrentCrashContext();

// Installs, for the whole process, handlers of SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT that
// write "PROGRAM: fatal signal SIGSEGV while <what>" to stderr (only where a scope is live on the
// crashing thread) and then hand the signal to the handler that was there before (the default
// ends the process; a sanitizer's prints its report). Tools call it first thing in main.
void InstallCrashReport(const char* program);

}  // namespace mpiflow
