// StopToken: a request to stop training at the next step boundary (a preemption signal, or a
// caller that wants the run to end early with a checkpoint). Set from any thread or a signal
// handler; read by the strategy that runs a step, which makes every rank agree on it.
// Not signal handling itself (src/train/signals.cc installs the handlers that set one).
#pragma once

#include <atomic>

namespace mpiflow {

class StopToken {
 public:
  void Request() { requested_.store(true, std::memory_order_relaxed); }
  void Reset() { requested_.store(false, std::memory_order_relaxed); }
  bool requested() const { return requested_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> requested_{false};  // lock-free: safe to set from a signal handler
};

}  // namespace mpiflow
