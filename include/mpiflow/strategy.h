// Strategy: everything one way of distributing training decides, behind one interface that the
// trainer's single loop calls (src/train/trainer.cc never branches on the strategy):
//   Build    how the graph is extended for a step: gradients, their synchronisation, updates;
//   ResumeState  before the graph: the state of the checkpoint a resume reads, on every rank;
//   Start    what happens before the first step: sub-communicators, resume, initial values;
//   RunStep  what one step does on this rank: run, exchange, and agree with the other ranks on
//            the loss, stop, checkpoint and NaN, so that every training rank decides alike;
//   Save     which rank writes which checkpoint;
//   Serve    what a rank that does not train (a parameter server) does instead of the loop.
// Implementations, one room each in src/distributed/: local_strategy.cc (one rank),
// allreduce_strategy.cc (synchronous data parallelism), ps_strategy.h with ps_worker.cc and
// ps_server.cc (parameter servers with backup workers), pipeline_strategy.h (model parallelism
// over stages, with microbatches). A new scheme is a new class here.
// Not the loop (trainer.h), not the collectives (communicator.h), not the data (data.h).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/distributed.h"
#include "mpiflow/fault_hooks.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/session.h"
#include "mpiflow/stop_token.h"

namespace mpiflow {

enum class StrategyKind { kAuto, kNone, kAllReduce, kParameterServer, kPipeline };
// "auto" (pipeline with --pipeline-stages > 1, allreduce under several ranks, else none), "none",
// "allreduce", "ps", "pipeline".
StatusOr<StrategyKind> ParseStrategy(const std::string& name);
const char* StrategyName(StrategyKind kind);

struct AllReduceOptions {
  double bucket_mb = 1.0;                                    // gradient fusion bucket size, MiB
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kAuto;  // per bucket
  SparseSync sparse = SparseSync::kAuto;                     // sparse gradients (distributed.h)
  // float32 gradient buckets on the wire as 16-bit values (communicator.h); the step agreement
  // then travels exactly, in a bucket of its own.
  AllreduceCompression compression = AllreduceCompression::kNone;
};

// How parameter servers apply the workers' gradients (the protocols: parameter_server.h).
//   sync    each update averages the first (workers - backup_workers) pushes of a step;
//   async   each push is applied when it arrives, to whatever values the server holds then;
//   hybrid  workers in groups of group_size average by allreduce inside the group (synchronous),
//           and each group's leader pushes asynchronously.
enum class PsMode { kSync, kAsync, kHybrid };
StatusOr<PsMode> ParsePsMode(const std::string& name);  // sync, async, hybrid
const char* PsModeName(PsMode mode);

// The last `servers` ranks serve the variables (sharded by size), the others are workers.
struct ParameterServerOptions {
  int servers = 1;
  int backup_workers = 0;  // sync only
  PsMode mode = PsMode::kSync;
  // async and hybrid: a push computed on values more than this many updates older than the
  // server's is dropped, not applied (-1: every push is applied).
  int64_t max_staleness = -1;
  int group_size = 1;  // hybrid: workers per group (the last group takes the rest)
  // Sparse gradients (an embedding table's): anything but kDense moves only the rows a step
  // touches, when the optimizer updates only those (SGD; lazy momentum and Adam); not hybrid.
  SparseSync sparse = SparseSync::kAuto;
};
// Whether the options make sense whatever the rank count (errors name the option).
Status ValidateParameterServerOptions(const ParameterServerOptions& o);
// Whether `ranks` ranks can run parameter servers with these options (errors name the option).
Status CheckParameterServerRanks(int ranks, const ParameterServerOptions& o);

// Model parallelism: the model cut into `stages` stages, each batch in `microbatches`
// microbatches through them (pipeline_strategy.h). A job of R x stages ranks runs R replicas of
// the pipeline (data parallel over the replicas; rank = replica * stages + stage).
struct PipelineOptions {
  int stages = 1;
  int microbatches = 1;
  bool print_placement = false;  // rank 0 prints node -> device and the bytes of each cut
};

// What every strategy is given.
struct StrategyEnv {
  Communicator* comm = nullptr;     // the world when training over several ranks, else null
  const StopToken* stop = nullptr;  // a preemption: stop after the step under way
  FaultHooks* hooks = nullptr;      // tests only
  std::ostream* log = nullptr;      // progress lines (rank 0's; a null stream elsewhere)
};

// One step's result, the same on every rank that trains.
struct StepOutcome {
  int64_t step = 0;           // the global step the variables now hold
  double loss = 0;            // mean loss over the examples the step used, on all ranks
  int64_t examples = 0;       // those examples
  bool stop = false;          // every rank stops after this step (a checkpoint is written)
  bool checkpoint = false;    // every rank checkpoints now (the time-based clock)
  bool done = false;          // nothing is left to train (the servers said so)
  int64_t stale_dropped = 0;  // parameter servers: stragglers' pushes dropped so far
  // Asynchronous parameter servers (server 0's count so far): updates applied and, for each,
  // its staleness (updates the server applied between the values the push was computed on and
  // the push): [s] counts staleness s, the last bucket that and more.
  int64_t updates = 0;
  std::vector<int64_t> staleness;
  // Parameter servers: bytes this worker has pushed and received so far (whole messages).
  int64_t ps_pushed_bytes = 0, ps_received_bytes = 0;
};

// What a serving rank ends with.
struct ServeOutcome {
  int64_t steps = 0;
  double final_loss = 0;
  bool preempted = false;
  int64_t resumed_from = -1;
  std::string last_checkpoint;
  int64_t stale_dropped = 0;
  int64_t updates = 0;             // updates this server applied (async and hybrid)
  std::vector<int64_t> staleness;  // their staleness histogram (StepOutcome::staleness)
  // Per pushing rank (workers; hybrid: group leaders): its pushes this server averaged.
  std::vector<int64_t> applied_per_pusher;
  std::vector<std::pair<std::string, Tensor>> variables;  // this server's shard and slots
  std::map<std::string, RowSlice> row_slices;             // its parts of tables split by rows
};

class Strategy {
 public:
  virtual ~Strategy() = default;

  // Ranks that read data and compute gradients, and this rank's index among them (0 on a
  // serving rank, which reads none).
  virtual int data_ranks() const = 0;
  virtual int data_rank() const = 0;
  virtual bool serves() const { return false; }

  // Adds the gradients of `loss` for `variables` (trainable, in graph order), their
  // synchronisation and the optimizer's updates. Every rank builds the same graph.
  virtual Status Build(const Scope& root, Output loss, const std::vector<Output>& variables,
                       const OptimizerOptions& optimizer) = 0;
  // The distribution part of the start-up line ("" for one process), after Build.
  virtual std::string Describe(int64_t global_batch) const = 0;
  // How this strategy's Session runs the graph Build made (a pipeline: its placement and the
  // communicator its stages exchange tensors on).
  virtual void ConfigureSession(SessionOptions* options) const {}
  // The suffix of this rank's checkpoint files ("" for a whole run's, ".ps<k>-of-<P>" for a
  // server's shard).
  virtual std::string checkpoint_shard() const { return ""; }
  // Before the graph is built: the state of the checkpoint this run resumes from (RunState{},
  // not `resumed`, for a fresh run), the same on every rank. From it the trainer decides where
  // the run starts and how long it is (which the learning-rate schedule needs). Reads counters
  // only; the default reads them on every rank.
  virtual StatusOr<RunState> ResumeState(CheckpointManager& checkpoints);
  // After the graph is initialised in `session`: restore the checkpoint of `resumed` (when it
  // is), receive initial values.
  virtual Status Start(Session& session, CheckpointManager& checkpoints,
                       const RunState& resumed) = 0;
  // Evaluation sums its counts over this communicator (null: this process alone).
  virtual Communicator* eval_comm() const = 0;

  // One step on this rank's share of a global batch: `feeds` are the model's inputs for `batch`.
  // Errors are final: every rank that reached an agreed failure returns the same message.
  virtual StatusOr<StepOutcome> RunStep(Session& session, std::vector<Session::Feed> feeds,
                                        const Batch& batch, RunStats* stats) = 0;
  // Before RunStep: the model's inputs for the batch of the step after it, when nothing but that
  // step reads this rank's variables in between (no evaluation, no end of the run); else empty.
  // A strategy may then bring up to date only what those inputs read (parameter servers: the
  // rows of a table the batch looks up). Default: not used.
  virtual void NextFeeds(std::vector<Session::Feed> next) {}
  // Writes (or records) the checkpoint of the run at `at` as this strategy divides the work.
  virtual Status Save(Session& session, CheckpointManager& checkpoints, const DataPosition& at) = 0;
  // A serving rank's whole run (serves() only): from plan.start() to `total_steps`, the
  // checkpoints of step s at plan.At(s).
  virtual StatusOr<ServeOutcome> Serve(Session& session, CheckpointManager& checkpoints,
                                       const DataPlan& plan, int64_t total_steps);
  // Whether this rank's final result lists the variable (a worker's optimizer slots live on
  // the servers and are not).
  virtual bool Reports(const VariableInfo& v) const { return true; }
};

// The strategy `kind` for `env.comm` (kAuto resolved by the rank count). Errors name the option.
StatusOr<std::unique_ptr<Strategy>> MakeStrategy(StrategyKind kind, const StrategyEnv& env,
                                                 const AllReduceOptions& allreduce,
                                                 const ParameterServerOptions& ps,
                                                 const PipelineOptions& pipeline = {});

}  // namespace mpiflow
