// ScopedPreemptionSignals (see mpiflow/signals.h). A signal handler can reach only static
// state: the token of the innermost live scope, through one atomic pointer.
#include "mpiflow/signals.h"

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
  token_ = token;
  outer_ = g_token.exchange(token);
  if (outer_ && outer_->requested()) token->Request();
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
  g_token.store(outer_);
  if (outer_ && token_->requested()) outer_->Request();
}

}  // namespace mpiflow
