// Helpers the strategies share: snapshots of a Session's variables as checkpoints, writing
// restored values back, the error text of a failed step, and the stall inspector's note about
// the last checkpoint. Private to src/distributed. Not a strategy.
#pragma once

#include <functional>
#include <ostream>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/session.h"

namespace mpiflow {
namespace strategy_util {

// The session's variables (those named in `only` when given) as a checkpoint of the run at `at`,
// written by a run of `ranks` ranks of which `data_ranks` read data (RunState's counters).
StatusOr<Checkpoint> Snapshot(Session& session, const DataPosition& at, int ranks, int data_ranks,
                              const std::set<std::string>* only = nullptr);
// The checkpoint `path` read in full holds the step its first look saw (it could have been
// replaced in between: a clear error, not a mixed state).
Status SameStep(const std::string& path, const RunState& peeked, const RunState& read);
// Resumes from the whole model's checkpoint (CheckpointManager::LoadForResume): writes the
// variables `keep` accepts (null: every one) into the session, restores its run counter, warns
// on `log` of options that differ, tells the stall inspector. Returns the step it holds.
StatusOr<int64_t> ResumeWholeModel(Session& session, CheckpointManager& checkpoints,
                                   const RunState& resumed, Communicator* comm, std::ostream& log,
                                   const std::function<bool(const Node*)>& keep = nullptr);
// Writes restored (name, value) pairs into the session's variables.
Status WriteVariables(Session& session, const std::vector<std::pair<std::string, Tensor>>& values);
// "at step N (epoch E): <what the run said>"; with `lr_hint`, an aborted run (a NaN) adds
// "; lower the learning rate (--lr)".
Status StepError(const Status& run, int64_t step, const Batch& batch, bool lr_hint);
// Tells the stall inspector where a failed job resumes from.
void NoteCheckpoint(Communicator* comm, const std::string& path, int64_t step);

}  // namespace strategy_util
}  // namespace mpiflow
