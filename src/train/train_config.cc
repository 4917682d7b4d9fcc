// TrainConfig's checks and names: the dataset and sharding enums, ValidateTrainConfig, and the
// options every rank must agree on (ConsistencyItems). Not the loop (trainer.cc).
#include <algorithm>

#include "mpiflow/distributed.h"
#include "mpiflow/enum_names.h"
#include "mpiflow/ops.h"
#include "mpiflow/random.h"
#include "mpiflow/trainer.h"

namespace mpiflow {

namespace {
constexpr EnumName<DatasetKind> kDatasets[] = {{DatasetKind::kFashionMnist, "fashion-mnist"},
                                               {DatasetKind::kHdf5, "hdf5"},
                                               {DatasetKind::kSynthetic, "synthetic"},
                                               {DatasetKind::kWordnetLexname, "wordnet-lexname"}};
constexpr EnumName<DataSharding> kShardings[] = {{DataSharding::kGlobal, "global"},
                                                 {DataSharding::kLocal, "local"}};
constexpr EnumName<DeviceChoice> kDevices[] = {
    {DeviceChoice::kAuto, "auto"}, {DeviceChoice::kCpu, "cpu"}, {DeviceChoice::kGpu, "gpu"}};
}  // namespace

StatusOr<DeviceChoice> ParseDeviceChoice(const std::string& name) {
  return ParseEnum(kDevices, "--device", name);
}

const char* DeviceChoiceName(DeviceChoice d) { return EnumToName(kDevices, d); }

StatusOr<DatasetKind> ParseDataset(const std::string& name) {
  return ParseEnum(kDatasets, "--dataset", name);
}

const char* DatasetName(DatasetKind kind) { return EnumToName(kDatasets, kind); }

StatusOr<DataSharding> ParseDataSharding(const std::string& name) {
  return ParseEnum(kShardings, "--data-sharding", name);
}

const char* DataShardingName(DataSharding s) { return EnumToName(kShardings, s); }

Status ValidateTrainConfig(const TrainConfig& c) {
  if (c.batch_size <= 0)
    return InvalidArgument("--batch-size must be positive, got ", c.batch_size);
  if (c.epochs <= 0) return InvalidArgument("--epochs must be positive, got ", c.epochs);
  if (c.eval_batch_size <= 0) {
    return InvalidArgument("--eval-batch-size must be positive, got ", c.eval_batch_size);
  }
  if (c.threads <= 0) return InvalidArgument("--threads must be positive, got ", c.threads);
  if (c.inter_op_threads <= 0) {
    return InvalidArgument("--inter-op-threads must be positive, got ", c.inter_op_threads);
  }
  if (c.log_every <= 0) return InvalidArgument("--log-every must be positive, got ", c.log_every);
  if (c.prefetch < 0) return InvalidArgument("--prefetch must be >= 0, got ", c.prefetch);
  if (c.dataset == DatasetKind::kSynthetic && (c.synthetic_train <= 0 || c.synthetic_test <= 0)) {
    return InvalidArgument("synthetic dataset sizes must be positive");
  }
  if (c.optimizer.lr.decay_steps < 0) {
    return InvalidArgument("--decay-steps must be >= 0 (0: the whole run), got ",
                           c.optimizer.lr.decay_steps);
  }
  MPIFLOW_RETURN_IF_ERROR(ValidateParameterServerOptions(c.ps));
  if (c.ps.backup_workers > 0 && c.strategy != StrategyKind::kParameterServer) {
    return InvalidArgument("--backup-workers needs --strategy ps (allreduce waits for every rank)");
  }
  if (!(c.allreduce.bucket_mb > 0)) {
    return InvalidArgument("--bucket-mb must be positive, got ", c.allreduce.bucket_mb);
  }
  if (c.ps.mode != PsMode::kSync && c.strategy != StrategyKind::kParameterServer) {
    return InvalidArgument("--ps-mode ", PsModeName(c.ps.mode), " needs --strategy ps");
  }
  if (c.ps.mode != PsMode::kSync && c.data_sharding == DataSharding::kLocal) {
    return InvalidArgument("--ps-mode ", PsModeName(c.ps.mode),
                           " evaluates on each worker, which needs the whole test set: use "
                           "--data-sharding global");
  }
  if (!(c.stragglers.delay_ms >= 0)) {
    return InvalidArgument("--straggler-delay-ms must be >= 0, got ", c.stragglers.delay_ms);
  }
  if (c.stragglers.delay_ms > 0 && c.stragglers.ranks.empty()) {
    return InvalidArgument("--straggler-delay-ms needs --straggler-ranks (which ranks sleep)");
  }
  MPIFLOW_RETURN_IF_ERROR(ValidateCheckpointOptions(c.checkpoint));
  OptimizerOptions o = c.optimizer;
  if (o.lr.decay_steps == 0) o.lr.decay_steps = 1;  // resolved to the run's length in Train
  return ValidateOptimizerOptions(o);
}

double StragglerOptions::DelayMs(int rank, int64_t step, int64_t seed) const {
  if (delay_ms <= 0 || std::find(ranks.begin(), ranks.end(), rank) == ranks.end()) return 0;
  if (!jitter) return delay_ms;
  // Its own stream: never the same numbers as an initializer's or a shuffle's.
  const uint64_t stream = 0x5354524147ull ^ static_cast<uint64_t>(rank);
  return 2 * delay_ms *
         RandomUniform01(static_cast<uint64_t>(seed), stream, static_cast<uint64_t>(step));
}

std::vector<std::pair<std::string, std::string>> ConsistencyItems(const TrainConfig& c) {
  const OptimizerOptions& o = c.optimizer;
  return {
      {"model", c.model},
      {"dataset", DatasetName(c.dataset)},
      {"synthetic-train", StrCat(c.synthetic_train)},
      {"synthetic-test", StrCat(c.synthetic_test)},
      {"epochs", StrCat(c.epochs)},
      {"batch-size", StrCat(c.batch_size)},
      {"max-steps", StrCat(c.max_steps)},
      {"eval", c.eval ? "true" : "false"},
      {"seed", StrCat(c.seed)},
      {"optimizer", OptimizerName(o.kind)},
      {"lr", StrCat(o.lr.base)},
      {"lr-schedule", ops::LearningRateScheduleName(o.lr.kind)},
      {"warmup-steps", StrCat(o.lr.warmup_steps)},
      {"decay-steps", StrCat(o.lr.decay_steps)},
      {"decay-rate", StrCat(o.lr.decay_rate)},
      {"momentum", StrCat(o.momentum, "/", o.nesterov, "/", o.rho, "/", o.rmsprop_momentum)},
      {"adam", StrCat(o.beta1, "/", o.beta2, "/", o.epsilon)},
      {"lazy-sparse", o.lazy_sparse ? "true" : "false"},
      {"strategy", StrategyName(c.strategy)},
      {"bucket-mb", StrCat(c.allreduce.bucket_mb)},
      {"allreduce", AllreduceAlgorithmName(c.allreduce.algorithm)},
      {"allreduce-compression", AllreduceCompressionName(c.allreduce.compression)},
      {"precision", MathPrecisionName(c.precision)},
      {"sparse-sync", StrCat(SparseSyncName(c.allreduce.sparse), "/", SparseSyncName(c.ps.sparse))},
      {"data-sharding", DataShardingName(c.data_sharding)},
      {"ps-ranks", StrCat(c.ps.servers)},
      {"backup-workers", StrCat(c.ps.backup_workers)},
      {"ps-mode", StrCat(PsModeName(c.ps.mode), "/", c.ps.max_staleness, "/", c.ps.group_size)},
      {"pipeline-stages", StrCat(c.pipeline.stages)},
      {"microbatches", StrCat(c.pipeline.microbatches)},
      {"resume", c.checkpoint.resume}};
}

}  // namespace mpiflow
