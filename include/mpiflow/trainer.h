// The training loop behind mpiflow-train: build model + optimizer, stream batches, run steps,
// report progress, evaluate each epoch, write metrics; with a Communicator of several ranks,
// synchronous data parallelism (each rank its own shard, gradients averaged by allreduce).
// Not the command-line parsing (src/tools/mpiflow_train.cc) and not the collectives.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/optimizer.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

struct TrainConfig {
  std::string model = "mlp";              // mlp or cnn
  std::string dataset = "fashion-mnist";  // fashion-mnist or synthetic
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  int64_t synthetic_train = 6000, synthetic_test = 1000;  // examples, for dataset=synthetic
  int64_t epochs = 5;
  int64_t batch_size = 64;
  int64_t max_steps = -1;  // stop early after this many steps (-1: all epochs)
  int64_t eval_batch_size = 1000;
  bool eval = true;  // test accuracy after every epoch
  OptimizerOptions optimizer;
  int threads = 1;           // intra-op threads
  int inter_op_threads = 1;  // nodes run concurrently
  int64_t seed = 42;
  int prefetch = 2;
  std::string output_dir;  // metrics.jsonl, graph.mpg; empty: write nothing
  int64_t log_every = 100;
  bool profile = false;  // time every kernel after the first 20 steps; print a table per op type
  // Distribution (with a Communicator of more than one rank).
  // auto (allreduce under several ranks), allreduce, ps (parameter servers), none
  std::string strategy = "auto";
  // With strategy ps: the last ps_ranks ranks serve the variables (sharded by size), the others
  // are workers; each step averages the first (workers - backup_workers) pushes to arrive.
  int ps_ranks = 1;
  int backup_workers = 0;
  double bucket_mb = 1.0;          // gradient fusion bucket size, MiB
  std::string allreduce = "auto";  // algorithm per bucket: auto (rule list), native, ring, hd, rd
  // global: every rank loads the whole training set and takes its part of each global batch
  // from one shared permutation (N ranks see what one process with batch N*B sees); local: each
  // rank loads only its contiguous share (a hyperslab of an HDF5 file) and shuffles within it,
  // for data larger than one node's memory.
  std::string data_sharding = "global";
  // Checkpoints (HDF5, written by rank 0) and resume.
  std::string checkpoint_dir;     // empty: <output_dir>/checkpoints
  int64_t checkpoint_every = 0;   // steps between checkpoints (0: not by steps)
  double checkpoint_seconds = 0;  // seconds between checkpoints (0: not by time)
  int keep_checkpoints = 3;       // the newest K are kept
  std::string resume;             // "": start fresh; "latest": checkpoint_dir's latest; or a file
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
  double samples_per_sec = 0;  // over training steps after the first 20, evaluation excluded
  double train_seconds = 0;
  double peak_rss_mib = 0;
  double train_flops_per_example = 0;  // see Model
  int ranks = 1;
  bool preempted = false;       // stopped by SIGTERM/SIGUSR1 after writing a checkpoint
  int64_t resumed_from = -1;    // the step the run resumed from (-1: a fresh start)
  std::string last_checkpoint;  // the newest checkpoint written (or resumed from)
  // Final values, by name. With strategy ps: a worker's hold every trainable variable (its
  // optimizer slots are not kept: they live on the servers); a server's, only its shard.
  std::vector<std::pair<std::string, Tensor>> variables;
  bool ps_server = false;     // this rank served parameters (strategy ps)
  int64_t stale_dropped = 0;  // strategy ps: pushes from stragglers dropped, all servers
};

class Communicator;
class Timeline;

// Trains; progress lines go to `log` (stderr in the CLI) on rank 0 only. With `comm` of more
// than one rank every rank must call Train with the same config (checked at start-up). An error
// with code kAborted was reached by every rank together (a NaN gradient); any other error may be
// this rank's alone, and the caller should end the job (Communicator::Abort). `timeline`
// records kernel runs when not null.
StatusOr<TrainResult> Train(const TrainConfig& config, std::ostream& log,
                            Communicator* comm = nullptr, Timeline* timeline = nullptr);

double PeakRssMiB();

// The exit code mpiflow-train uses after a preemption (SIGTERM/SIGUSR1, checkpoint written):
// EX_TEMPFAIL, "try again", so a job script can requeue on it.
inline constexpr int kExitPreempted = 75;

}  // namespace mpiflow
