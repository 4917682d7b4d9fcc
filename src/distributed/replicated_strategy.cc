// What the one-process and allreduce strategies share: the whole run's checkpoint (written by
// rank 0, resumed by every rank) and the optimizer's update op. See replicated_strategy.h.
#include "replicated_strategy.h"

#include "strategy_util.h"

namespace mpiflow {

ReplicatedStrategy::ReplicatedStrategy(const StrategyEnv& env)
    : env_(env), rank_(env.comm ? env.comm->rank() : 0), ranks_(env.comm ? env.comm->size() : 1) {}

Status ReplicatedStrategy::AddUpdates(const Scope& root, const std::vector<Output>& gradients,
                                      const std::vector<Output>& variables,
                                      const OptimizerOptions& optimizer) {
  StatusOr<TrainOp> t = ApplyGradients(root, gradients, variables, optimizer);
  if (!t.ok()) return t.status();
  train_op_ = std::move(*t);
  return Status::OK();
}

Status ReplicatedStrategy::Start(Session& session, CheckpointManager& checkpoints,
                                 const RunState& resumed) {
  checkpoints_ = &checkpoints;
  if (!resumed.resumed) return Status::OK();
  StatusOr<int64_t> step =
      strategy_util::ResumeWholeModel(session, checkpoints, resumed, env_.comm, *env_.log);
  if (!step.ok()) return step.status();
  step_ = *step;
  return Status::OK();
}

Status ReplicatedStrategy::Save(Session& session, CheckpointManager& checkpoints,
                                const DataPosition& at) {
  if (rank_ == 0) {
    StatusOr<Checkpoint> c = strategy_util::Snapshot(session, at, ranks_, ranks_);
    if (!c.ok()) return c.status();
    StatusOr<std::string> p = checkpoints.Save(std::move(*c), at.step);
    if (!p.ok()) return p.status();
    *env_.log << "mpiflow: checkpoint '" << *p << "' (step " << at.step << ")\n";
  } else {
    checkpoints.MarkSaved(at.step);
  }
  strategy_util::NoteCheckpoint(env_.comm, checkpoints.last(), at.step);
  return Status::OK();
}

}  // namespace mpiflow
