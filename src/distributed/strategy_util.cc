// The strategies' shared helpers (see strategy_util.h).
#include "strategy_util.h"

namespace mpiflow {
namespace strategy_util {

StatusOr<Checkpoint> Snapshot(Session& session, const DataPosition& at, int ranks, int data_ranks,
                              const std::set<std::string>* only) {
  Checkpoint c;
  for (const VariableInfo& v : session.graph().variables()) {
    if (only && !only->count(v.variable->name())) continue;
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    c.variables.emplace_back(v.variable->name(), *t);
  }
  RunState state;
  state.position = at;
  state.ranks = ranks;
  state.data_ranks = data_ranks;
  state.run_counter = session.run_counter();
  SetRunState(state, &c);
  return c;
}

Status SameStep(const std::string& path, const RunState& peeked, const RunState& read) {
  if (peeked.position.step == read.position.step) return Status::OK();
  return Status(Code::kAborted,
                StrCat("checkpoint '", path, "' changed while the run started (step ",
                       peeked.position.step, ", then ", read.position.step, "): start it again"));
}

StatusOr<int64_t> ResumeWholeModel(Session& session, CheckpointManager& checkpoints,
                                   const RunState& resumed, Communicator* comm, std::ostream& log,
                                   const std::function<bool(const Node*)>& keep) {
  std::string changed;
  StatusOr<Checkpoint> c = checkpoints.LoadForResume(&changed);
  if (!c.ok()) return c.status();
  const std::string& path = checkpoints.last();
  StatusOr<std::vector<std::pair<std::string, Tensor>>> values =
      RestoreCheckpoint(*c, session.graph(), path);
  if (!values.ok()) return values.status();
  for (const auto& [name, value] : *values) {
    if (keep && !keep(session.graph().FindNode(name))) continue;
    MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(name, value));
  }
  if (!changed.empty()) {
    log << "mpiflow: warning: resuming with options that differ from the checkpoint's: " << changed
        << "\n";
  }
  const RunState state = GetRunState(*c);
  MPIFLOW_RETURN_IF_ERROR(SameStep(path, resumed, state));
  const int64_t step = state.position.step;
  NoteCheckpoint(comm, path, step);
  session.set_run_counter(state.run_counter);
  log << "mpiflow: resumed from '" << path << "' at step " << step << "\n";
  return step;
}

Status WriteVariables(Session& session, const std::vector<std::pair<std::string, Tensor>>& values) {
  for (const auto& [name, t] : values) MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(name, t));
  return Status::OK();
}

Status StepError(const Status& run, int64_t step, const Batch& batch, bool lr_hint) {
  return Status(
      run.code(),
      StrCat("at step ", step, " (epoch ", batch.epoch + 1, "): ", run.message(),
             lr_hint && run.code() == Code::kAborted ? "; lower the learning rate (--lr)" : ""));
}

void NoteCheckpoint(Communicator* comm, const std::string& path, int64_t step) {
  if (comm) {
    comm->SetReportNote(
        StrCat("last checkpoint: '", path, "' (step ", step, "): resume with --resume latest"));
  }
}

}  // namespace strategy_util
}  // namespace mpiflow
