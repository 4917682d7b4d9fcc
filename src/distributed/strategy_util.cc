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
