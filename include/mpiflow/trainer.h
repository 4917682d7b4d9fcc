// The training loop behind mpiflow-train: build the model, let the strategy extend the graph,
// stream batches, run steps through the strategy, report progress, evaluate each epoch, write
// metrics and checkpoints when the strategy says. One loop for every strategy (strategy.h).
// Not the command-line parsing (src/tools/), not distribution (src/distributed/).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/fault_hooks.h"
#include "mpiflow/models.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/strategy.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

enum class DatasetKind { kFashionMnist, kSynthetic, kHdf5, kWordnetLexname };
// fashion-mnist, synthetic, hdf5, wordnet-lexname
StatusOr<DatasetKind> ParseDataset(const std::string& name);
const char* DatasetName(DatasetKind kind);
// global: every rank loads the whole training set and takes its part of each global batch
// from one shared permutation (N ranks see what one process with batch N*B sees); local: each
// rank loads only its contiguous share (a hyperslab of an HDF5 file) and shuffles within it,
// for data larger than one node's memory.
enum class DataSharding { kGlobal, kLocal };
// Where the Session runs the step: gpu (the node's GPU of this rank's node-local rank, CUDA
// kernels where an op has one, the CPU's elsewhere), cpu, or auto: gpu where one is visible.
enum class DeviceChoice { kAuto, kCpu, kGpu };
StatusOr<DeviceChoice> ParseDeviceChoice(const std::string& name);  // auto, cpu, gpu
const char* DeviceChoiceName(DeviceChoice d);
StatusOr<DataSharding> ParseDataSharding(const std::string& name);  // global, local
const char* DataShardingName(DataSharding s);

// Stragglers injected for experiments (--straggler-ranks): these world ranks sleep before every
// step, delay_ms each time, or with jitter a duration uniform in [0, 2 * delay_ms) drawn from
// (seed, rank, step), so that a rerun sleeps alike.
struct StragglerOptions {
  std::vector<int> ranks;
  double delay_ms = 0;
  bool jitter = false;
  // The sleep before `step` on `rank` (0 when the rank is not listed).
  double DelayMs(int rank, int64_t step, int64_t seed) const;
};

struct TrainConfig {
  std::string model = "mlp";  // a built-in model (mlp, cnn, wide_mlp, embed_bag) or a model file
  DatasetKind dataset = DatasetKind::kFashionMnist;
  // The dataset's files (hdf5: the file). Left at this default, wordnet-lexname reads
  // /usr/share/wordnet (Debian's wordnet-base).
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t synthetic_train = 6000, synthetic_test = 1000;  // examples, for dataset=synthetic
  DataSharding data_sharding = DataSharding::kGlobal;
  int64_t epochs = 5;
  int64_t batch_size = 64;  // per rank that trains
  int64_t max_steps = -1;   // stop early after this many steps (-1: all epochs)
  int64_t eval_batch_size = 1000;
  bool eval = true;  // test accuracy after every epoch
  OptimizerOptions optimizer;
  DeviceChoice device = DeviceChoice::kAuto;
  MathPrecision precision = MathPrecision::kFp32;  // a GPU's matrix arithmetic (kernel.h)
  int threads = 1;                                 // intra-op threads
  int inter_op_threads = 1;                        // nodes run concurrently
  int64_t seed = 42;
  int prefetch = 2;
  std::string output_dir;  // metrics.jsonl, graph.mpg; empty: write nothing
  int64_t log_every = 100;
  bool profile = false;  // time every kernel after the first 20 steps; print a table per op type
  // Distribution (with a Communicator of more than one rank): kAuto is allreduce under several
  // ranks; each strategy reads its own options.
  StrategyKind strategy = StrategyKind::kAuto;
  AllReduceOptions allreduce;
  ParameterServerOptions ps;
  PipelineOptions pipeline;
  StragglerOptions stragglers;
  // Checkpoints and resume; an empty dir means <output_dir>/checkpoints.
  CheckpointOptions checkpoint;
  // SIGTERM / SIGUSR1 (Slurm's --signal) make every rank stop at the next step boundary after a
  // checkpoint; Train then returns with preempted = true.
  bool handle_signals = true;
};

// The options every rank must agree on (compared at start-up), as (name, value).
std::vector<std::pair<std::string, std::string>> ConsistencyItems(const TrainConfig& c);
Status ValidateTrainConfig(const TrainConfig& c);

struct TrainResult {
  int64_t steps = 0;
  int64_t epochs = 0;
  double final_loss = 0;
  double test_accuracy = 0;    // after the last epoch (0 when eval is off)
  double samples_per_sec = 0;  // over the steps after warm-up (progress.h), evaluation excluded
  double train_seconds = 0;
  double peak_rss_mib = 0;
  double train_flops_per_example = 0;  // see Model
  int ranks = 1;
  bool preempted = false;       // stopped by SIGTERM/SIGUSR1 after writing a checkpoint
  int64_t resumed_from = -1;    // the step the run resumed from (-1: a fresh start)
  std::string last_checkpoint;  // the newest checkpoint written (or resumed from)
  // Final values, by name. With strategy ps: a worker's hold every trainable variable (its
  // optimizer slots are not kept: they live on the servers); a server's, only its shard, where
  // a table split by rows over the servers (and its slots) is this server's rows: row_slices.
  std::vector<std::pair<std::string, Tensor>> variables;
  std::map<std::string, RowSlice> row_slices;
  bool ps_server = false;     // this rank served parameters (strategy ps)
  int64_t stale_dropped = 0;  // strategy ps: pushes from stragglers dropped, all servers
  // Asynchronous parameter servers (server 0's, as a worker last heard): updates applied and
  // their staleness histogram (StepOutcome::staleness).
  int64_t ps_updates = 0;
  std::vector<int64_t> staleness;
  // A server's: per pushing rank (workers; hybrid: group leaders), its pushes applied.
  std::vector<int64_t> applied_per_pusher;
  // A worker's (strategy ps): bytes it pushed to and received from the servers.
  int64_t ps_pushed_bytes = 0, ps_received_bytes = 0;
};

class Timeline;

// Trains; progress lines go to `log` (stderr in the CLI) on rank 0 only. With `comm` of more
// than one rank every rank must call Train with the same config (checked at start-up). An error
// with code kAborted was reached by every rank together (a NaN gradient); any other error may be
// this rank's alone, and the caller should end the job (Communicator::Abort). `timeline`
// records kernel runs when not null. `hooks` (tests only) injects failures.
StatusOr<TrainResult> Train(const TrainConfig& config, std::ostream& log,
                            Communicator* comm = nullptr, Timeline* timeline = nullptr,
                            FaultHooks* hooks = nullptr);

// Your own model in C++: a function that builds it under `s` for the data's `input` (variables
// seeded from `seed`, so that every rank builds the same), returning its placeholders and outputs
// (ClassifierModel fills in the loss and the counts from the logits).
using ModelFn =
    std::function<StatusOr<Model>(const Scope& s, const ModelInput& input, int64_t seed)>;

// Your own data in memory: both splits, the same on every rank.
struct TrainingSet {
  Dataset train, test;
};

// Train as above with the graph `model` builds (config.model is not read) on `data` (config's
// dataset, data_dir and synthetic sizes are not read): every strategy, checkpoints, preemption,
// metrics and evaluation as for a model file.
StatusOr<TrainResult> Train(const ModelFn& model, const TrainingSet& data,
                            const TrainConfig& config, std::ostream& log,
                            Communicator* comm = nullptr);

// --print-model: the model's layers, shapes and parameter counts for the configured data (whose
// shape and classes are read, not trained on).
StatusOr<std::string> ModelSummary(const TrainConfig& config);

double PeakRssMiB();

// The exit code mpiflow-train uses after a preemption (SIGTERM/SIGUSR1, checkpoint written):
// EX_TEMPFAIL, "try again", so a job script can requeue on it.
inline constexpr int kExitPreempted = 75;

}  // namespace mpiflow
