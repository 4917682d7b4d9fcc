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
  std::string changed;
  StatusOr<Checkpoint> c = checkpoints.LoadForResume(&changed);
  if (!c.ok()) return c.status();
  const std::string& path = checkpoints.last();
  StatusOr<std::vector<std::pair<std::string, Tensor>>> values =
      RestoreCheckpoint(*c, session.graph(), path);
  if (!values.ok()) return values.status();
  MPIFLOW_RETURN_IF_ERROR(strategy_util::WriteVariables(session, *values));
  std::ostream& log = *env_.log;
  if (!changed.empty()) {
    log << "mpiflow: warning: resuming with options that differ from the checkpoint's: " << changed
        << "\n";
  }
  const RunState state = GetRunState(*c);
  MPIFLOW_RETURN_IF_ERROR(strategy_util::SameStep(path, resumed, state));
  step_ = state.position.step;
  strategy_util::NoteCheckpoint(env_.comm, path, step_);
  session.set_run_counter(state.run_counter);
  log << "mpiflow: resumed from '" << path << "' at step " << step_ << "\n";
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
