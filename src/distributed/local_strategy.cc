// LocalStrategy: training in one process. A step runs the graph once; the stop request and the
// checkpoint clock are this process's own. See replicated_strategy.h.
#include "mpiflow/gradients.h"
#include "replicated_strategy.h"
#include "strategy_util.h"

namespace mpiflow {

Status LocalStrategy::Build(const Scope& root, Output loss, const std::vector<Output>& variables,
                            const OptimizerOptions& optimizer) {
  loss_ = loss;
  std::vector<Output> grads;
  MPIFLOW_RETURN_IF_ERROR(AddGradients(root, {loss}, variables, {}, &grads));
  return AddUpdates(root, grads, variables, optimizer);
}

StatusOr<StepOutcome> LocalStrategy::RunStep(Session& session, std::vector<Session::Feed> feeds,
                                             const Batch& batch, RunStats* stats) {
  Status run = session.Run(feeds, {loss_}, {train_op_.train}, &out_, stats);
  if (!run.ok()) return strategy_util::StepError(run, step_ + 1, batch, /*lr_hint=*/true);
  StepOutcome o;
  o.step = ++step_;
  o.loss = *out_[0].data<float>();
  o.examples = batch.global_examples;
  o.stop = env_.stop && env_.stop->requested();
  o.checkpoint = checkpoints_ && checkpoints_->DueByTime();
  return o;
}

}  // namespace mpiflow
