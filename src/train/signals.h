// Preemption signals: while a ScopedPreemptionSignals lives, SIGTERM and SIGUSR1 (Slurm's
// --signal) request a stop on its StopToken; the previous handlers come back when it goes.
// Private to src/train. Not the stop decision: the strategy makes every rank agree on it.
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
  struct sigaction old_term_ = {}, old_usr1_ = {};
};

}  // namespace mpiflow
