// ScopedPreemptionSignals (see signals.h). A signal handler can reach only static state: the
// token of the innermost live scope, through one atomic pointer.
#include "signals.h"

#include <atomic>

namespace mpiflow {
namespace {

std::atomic<StopToken*> g_token{nullptr};

extern "C" void OnPreemptionSignal(int) {
  if (StopToken* t = g_token.load()) t->Request();
}

}  // namespace

ScopedPreemptionSignals::ScopedPreemptionSignals(StopToken* token) {
  if (!token) return;
  g_token.store(token);
  struct sigaction sa = {};
  sa.sa_handler = OnPreemptionSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &old_term_);
  sigaction(SIGUSR1, &sa, &old_usr1_);
  installed_ = true;
}

ScopedPreemptionSignals::~ScopedPreemptionSignals() {
  if (!installed_) return;
  sigaction(SIGTERM, &old_term_, nullptr);
  sigaction(SIGUSR1, &old_usr1_, nullptr);
  g_token.store(nullptr);
}

}  // namespace mpiflow
