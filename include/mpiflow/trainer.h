// The single-process training loop behind mpiflow-train: build model + optimizer, stream
// batches, run steps, report progress, evaluate each epoch, write metrics.
// Not the command-line parsing (src/tools/mpiflow_train.cc) and not distributed (yet).
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
};
Status ValidateTrainConfig(const TrainConfig& c);

struct TrainResult {
  int64_t steps = 0;
  int64_t epochs = 0;
  double final_loss = 0;
  double test_accuracy = 0;    // after the last epoch (0 when eval is off)
  double samples_per_sec = 0;  // over training steps after the first 20, evaluation excluded
  double train_seconds = 0;
  double peak_rss_mib = 0;
  double train_flops_per_example = 0;                     // see Model
  std::vector<std::pair<std::string, Tensor>> variables;  // final values, by name
};

// Trains; progress lines go to `log` (stderr in the CLI).
StatusOr<TrainResult> Train(const TrainConfig& config, std::ostream& log);

double PeakRssMiB();

}  // namespace mpiflow
