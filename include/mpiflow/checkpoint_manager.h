// CheckpointManager: the checkpoint policy of a training run, one path for every role (a whole
// run's checkpoint written by one rank, or a parameter server's shard): file names, the atomic
// write, `latest`, rotation, temporaries a killed writer left, when a checkpoint is due, and
// which file a resume reads. Not the file format (checkpoint.h) and not what goes into a
// checkpoint (the strategy snapshots its Session's variables).
//
// Files in `dir`: ckpt-<step, 8 digits>.h5 for a whole run; ckpt-<step>.ps<k>-of-<P>.h5 for
// server k's shard of P; `latest` holds the name of the newest complete checkpoint (for sharded
// runs, shard 0's name: every shard of that step is whole when it is moved).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "mpiflow/checkpoint.h"
#include "mpiflow/data.h"
#include "mpiflow/fault_hooks.h"
#include "mpiflow/status.h"

namespace mpiflow {

struct CheckpointOptions {
  std::string dir;           // where checkpoints go (the trainer defaults it)
  int64_t every_steps = 0;   // steps between checkpoints (0: not by steps)
  double every_seconds = 0;  // seconds between checkpoints (0: not by time)
  int keep = 3;              // the newest `keep` are kept
  std::string resume;        // "": start fresh; "latest": dir's latest; or a file
  bool enabled() const { return every_steps > 0 || every_seconds > 0; }
};
Status ValidateCheckpointOptions(const CheckpointOptions& o);

// A training checkpoint's counters (/state): where the run is in its data and who wrote it.
struct RunState {
  bool resumed = false;      // read from a checkpoint (false: a fresh run, all zero)
  DataPosition position;     // the step, and the example the next global batch starts at
  bool has_position = true;  // false: a checkpoint from before positions were recorded (the
                             // position follows from the step on the same rank count only)
  int64_t ranks = 0;         // the world size of the run that wrote it
  int64_t data_ranks = 0;    // those of them that read data
  int64_t run_counter = 0;   // Session::run_counter() (per-run random streams)
};
// Stores `s` in c->counters ("step", "epoch", "example", "per_shard", "ranks", "data_ranks",
// "run_counter").
void SetRunState(const RunState& s, Checkpoint* c);
// The counters of `c` (a checkpoint without "epoch" has has_position false).
RunState GetRunState(const Checkpoint& c);

// Creates `path` and its parents (mkdir -p). An existing file in the way is an error saying so.
Status MakeDirs(const std::string& path);

class CheckpointManager {
 public:
  // `shard`: ".ps<k>-of-<P>" for a parameter server's shard, empty for a whole run.
  CheckpointManager(CheckpointOptions options, std::string shard = "", FaultHooks* hooks = nullptr);

  const CheckpointOptions& options() const { return options_; }
  // Stored on /job of every checkpoint written (graph fingerprint, "option.<name>" values).
  void SetAttributes(std::map<std::string, std::string> attributes);

  bool DueAtStep(int64_t step) const;  // every_steps divides step
  bool DueByTime() const;              // every_seconds have passed since the last save (or start)

  static std::string FileName(int64_t step, const std::string& shard = "");
  static std::string ShardSuffix(int server, int servers);  // ".ps<k>-of-<P>"
  std::string PathOf(int64_t step) const { return options_.dir + "/" + FileName(step, shard_); }

  // Writes `c` (with the attributes above and counters["step"] = step) as this role's
  // checkpoint of `step`: creates the directory, removes a killed writer's temporaries the first
  // time, writes atomically, points `latest` at it unless `point_latest` is false (a shard:
  // PointLatest once every shard is written), and removes all but the newest `keep`.
  StatusOr<std::string> Save(Checkpoint c, int64_t step, bool point_latest = true);
  // Records that `step`'s checkpoint exists (written by another rank): last() and the clock.
  void MarkSaved(int64_t step);
  // Points `latest` at FileName(step, shard) (atomically: a temporary renamed over it).
  Status PointLatest(int64_t step, const std::string& shard) const;

  // The file a resume names: the --resume file, or what `latest` names (for a sharded run,
  // shard 0's file of the step). Errors say what is missing.
  StatusOr<std::string> ResumePath() const;
  // Reads the checkpoint ResumePath() names and records it as last(). A shard role reads every
  // shard of that step, however many servers wrote them, and returns them merged (its own
  // variables are among them: the servers re-shard when their number changed). `changed`
  // gets "name old -> new" for job options that differ (epochs and max-steps may change
  // freely). Whether the rank count may differ is the caller's question (RunState).
  StatusOr<Checkpoint> LoadForResume(std::string* changed);
  // The state of the checkpoint a resume names, read without its variables (every shard holds
  // the same): what a run needs before it builds its graph. Errors as LoadForResume's.
  StatusOr<RunState> PeekResumeState() const;

  // The newest checkpoint written or resumed from ("" when none), and its step (-1).
  const std::string& last() const { return last_; }
  int64_t last_step() const { return last_step_; }

 private:
  void RemoveStaleTemporaries() const;
  // ResumePath() and, for a shard role, the number of servers that wrote it (0 for a whole run);
  // a sharded role's path must be shard 0's.
  StatusOr<std::pair<std::string, int>> ResumeTarget() const;
  void CrashPoint() const {  // tests only (FaultHooks)
    if (hooks_) hooks_->AtCheckpointCrashPoint();
  }

  CheckpointOptions options_;
  std::string shard_;
  FaultHooks* hooks_;
  std::map<std::string, std::string> attributes_;
  bool cleaned_ = false;
  std::string last_;
  int64_t last_step_ = -1;
  std::chrono::steady_clock::time_point last_save_;
};

}  // namespace mpiflow
