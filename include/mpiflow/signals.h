// Preemption signals: while a ScopedPreemptionSignals lives, SIGTERM and SIGUSR1 (Slurm's
// --signal) request a stop on its StopToken; the previous handlers come back when it goes.
// Scopes nest: mpiflow-train installs one first thing (a signal during start-up is not lost),
// Train its own; a stop requested in the outer scope carries into an inner one as it begins,
// and one requested in the inner scope into the outer as it ends. Not the stop decision: the
// strategy makes every rank agree on it.
#pragma once

#include <signal.h>

#include "mpiflow/stop_token.h"

namespace mpiflow {

class ScopedPreemptionSignals {
 public:
  explicit ScopedPreemptionSignals(StopToken* token);  // null: installs nothing
  ~ScopedPreemptionSignals();
  ScopedPreemptionSignals(const ScopedPreemptionSignals&) = delete;
  ScopedPreemptionSignals& operator=(const ScopedPreemptionSignals&) = delete;

 private:
  bool installed_ = false;
  StopToken* token_ = nullptr;
  StopToken* outer_ = nullptr;  // the enclosing scope's token, if any
  struct sigaction old_term_ = {}, old_usr1_ = {};
};

}  // namespace mpiflow
