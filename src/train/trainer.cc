// Train: the one training loop. Builds the model, lets the strategy extend the graph, then per
// global batch: run the strategy's step, report progress, evaluate at epoch ends, checkpoint
// when the strategy's agreed decisions say so, stop on a preemption. The loop never asks which
// strategy runs it. Not option parsing (src/tools/), not distribution (src/distributed/).
#include "mpiflow/trainer.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <memory>
#include <thread>

#include "mpiflow/distributed.h"
#include "mpiflow/enum_names.h"
#include "mpiflow/graph_io.h"
#include "mpiflow/ops.h"
#include "mpiflow/signals.h"
#include "mpiflow/timeline.h"
#include "progress.h"
#include "train_data.h"

namespace mpiflow {

double PeakRssMiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// The job's attributes on every checkpoint: the graph fingerprint and the options.
std::map<std::string, std::string> CheckpointAttributes(const TrainConfig& cfg, const Graph& g) {
  char fingerprint[32];
  std::snprintf(fingerprint, sizeof(fingerprint), "%016llx",
                static_cast<unsigned long long>(g.Fingerprint()));
  std::map<std::string, std::string> a = {{"graph_fingerprint", fingerprint}};
  for (const auto& [k, v] : ConsistencyItems(cfg)) a["option." + k] = v;
  return a;
}

// decay_steps 0 means the whole run, after any warm-up.
OptimizerOptions ResolvedOptimizer(OptimizerOptions o, int64_t total_steps) {
  if (o.lr.decay_steps == 0)
    o.lr.decay_steps = std::max<int64_t>(1, total_steps - o.lr.warmup_steps);
  return o;
}

// An empty checkpoint directory means <output_dir>/checkpoints (or ./checkpoints).
CheckpointOptions ResolvedCheckpointOptions(const TrainConfig& cfg) {
  CheckpointOptions co = cfg.checkpoint;
  if (co.dir.empty()) {
    co.dir = cfg.output_dir.empty() ? "checkpoints" : cfg.output_dir + "/checkpoints";
  }
  return co;
}

Status NonFiniteLoss(double loss, const Communicator* comm, int64_t step, const Batch& b) {
  return Status(Code::kAborted,
                StrCat("the loss is NaN or Inf (", loss, comm ? ", on some rank" : "", ") at step ",
                       step, " (epoch ", b.epoch + 1, "): lower the learning rate (--lr)"));
}

// "28x28x1"
std::string DimsText(const Shape& s) {
  std::string t;
  for (int i = 0; i < s.rank(); ++i) t += StrCat(i ? "x" : "", s.dim(i));
  return t;
}

// The start-up line.
void LogStart(std::ostream& log, const TrainConfig& cfg, const std::string& model,
              const std::string& source, const OptimizerOptions& opt, const TrainingData& data,
              int64_t per_epoch, const std::vector<Output>& vars, const Strategy& strategy,
              int64_t global_batch, const std::string& device) {
  int64_t parameters = 0;
  for (const Output& v : vars) parameters += v.shape().num_elements();
  log << "mpiflow: training " << model << " on " << source << " (" << data.train.count << " train, "
      << data.test.count << " test examples of " << DimsText(data.train.example) << "), "
      << cfg.epochs << " epochs x " << per_epoch << " steps, batch " << cfg.batch_size << ", "
      << OptimizerName(opt.kind) << " lr " << opt.lr.base << " ("
      << ops::LearningRateScheduleName(opt.lr.kind)
      << (opt.lr.kind == ops::LearningRateSchedule::kConstant
              ? ""
              : StrCat(" over ", opt.lr.decay_steps, " steps"))
      << "), " << cfg.threads << " thread(s), " << parameters << " parameters";
  if (!device.empty() && device != kCpu) {
    StatusOr<Device*> d = FindDevice(device);
    if (d.ok() && d.value()) {
      log << ", on " << d.value()->name() << " (" << MathPrecisionName(cfg.precision) << ")";
    }
  }
  const std::string distribution = strategy.Describe(global_batch);
  if (!distribution.empty()) log << "\nmpiflow: " << distribution;
  log << "\n";
}

// The Session's device for --device: on a GPU, this rank's GPU is chosen by its rank on its
// node.
// Parameter servers and pipelines move variables and activations through host memory only:
// auto keeps them on the CPU, gpu refuses them.
StatusOr<std::string> ResolveDevice(const TrainConfig& cfg, Communicator* comm) {
  const DeviceChoice choice = cfg.device;
  const bool host_only = cfg.strategy == StrategyKind::kParameterServer ||
                         cfg.strategy == StrategyKind::kPipeline || cfg.pipeline.stages > 1;
  if (choice == DeviceChoice::kCpu ||
      (choice == DeviceChoice::kAuto && (GpuCount() == 0 || host_only))) {
    return std::string(kCpu);
  }
  if (host_only) {
    return Unimplemented(
        "--device gpu runs the local and allreduce strategies for now; the "
        "parameter-server and pipeline strategies need --device cpu");
  }
  Status s = SelectGpu(comm ? comm->node_rank() : 0);
  if (!s.ok()) return Status(s.code(), StrCat("--device gpu: ", s.message()));
  StatusOr<Device*> d = FindDevice(kCuda);
  if (!d.ok()) return Status(d.status().code(), StrCat("--device gpu: ", d.status().message()));
  return std::string(kCuda);
}

ModelInput InputOf(const TrainingData& data) {
  return {data.train.example, data.train.num_classes};
}

// The model, the strategy's extension of it (gradients, synchronisation, updates) and the init
// op, in `root`; `vars` gets the trainable variables.
StatusOr<Model> BuildGraph(const Scope& root, const TrainConfig& cfg, const ModelFn& build,
                           const TrainingData& data, const OptimizerOptions& optimizer,
                           Strategy& strategy, std::vector<Output>* vars, Node** init) {
  StatusOr<Model> model = build(root, InputOf(data), cfg.seed);
  if (!model.ok()) return model.status();
  MPIFLOW_RETURN_IF_ERROR(root.status());
  if (!model->features.valid() || !model->labels.valid() || !model->loss.valid() ||
      !model->correct.valid()) {
    return InvalidArgument(
        "the model function must return the model's features, labels, loss "
        "and correct count (ClassifierModel adds the last two)");
  }
  for (const VariableInfo& v : root.graph()->variables()) {
    if (v.trainable) vars->push_back(Output(v.variable));
  }
  MPIFLOW_RETURN_IF_ERROR(strategy.Build(root, model->loss, *vars, optimizer));
  *init = ops::InitOp(root);
  MPIFLOW_RETURN_IF_ERROR(root.status());
  return model;
}

// Rank 0's outputs, opened once the run has validated its inputs (a resume included): the graph
// file and the metrics file, continued from `resumed_step` when the run resumed (none without an
// output directory).
Status OpenOutputs(const TrainConfig& cfg, const Graph& graph, int64_t resumed_step,
                   int64_t epochs_done, std::unique_ptr<std::ofstream>* metrics) {
  if (cfg.output_dir.empty()) return Status::OK();
  MPIFLOW_RETURN_IF_ERROR(MakeDirs(cfg.output_dir));
  MPIFLOW_RETURN_IF_ERROR(SaveGraph(graph, cfg.output_dir + "/graph.mpg"));
  StatusOr<std::unique_ptr<std::ofstream>> m =
      OpenMetrics(cfg.output_dir + "/metrics.jsonl", resumed_step, epochs_done);
  if (!m.ok()) return m.status();
  *metrics = std::move(*m);
  return Status::OK();
}

// This rank's share of each global batch, from `start` on (a resume continues there).
BatchStreamOptions StreamOptions(const TrainConfig& cfg, const Strategy& strategy,
                                 const TrainingData& data, const DataPosition& start) {
  BatchStreamOptions bo;
  bo.batch_size = cfg.batch_size;
  bo.seed = static_cast<uint64_t>(cfg.seed);
  bo.first_epoch = start.epoch;
  bo.first_example = start.example;
  bo.num_epochs = std::max<int64_t>(0, cfg.epochs - start.epoch);
  bo.prefetch = cfg.prefetch;
  bo.num_shards = strategy.data_ranks();
  bo.shard_index = strategy.data_rank();
  bo.local_shards = data.local;
  bo.global_count = data.global_train;
  return bo;
}

// The checkpoint file a resume names, for messages ("" when it cannot be named).
std::string ResumeName(const CheckpointManager& checkpoints) {
  if (checkpoints.options().resume.empty()) return "";
  StatusOr<std::string> path = checkpoints.ResumePath();
  return path.ok() ? *path : checkpoints.options().resume;
}

// Where this run starts in its data (`fresh`: a run's plan from its beginning): a fresh run at
// the beginning; a resumed one where its checkpoint says. That position means the same on any
// number of data ranks (the same examples in the same order, in global batches of another
// size), unless each rank shuffles a shard of its own (--data-sharding local: the same
// sharding on the same count only), or the checkpoint is older than positions: those resume on
// the rank count that wrote them.
StatusOr<DataPosition> StartPosition(const RunState& s, const DataPlan& fresh, bool local,
                                     int data_ranks, int ranks, const std::string& path) {
  if (!s.resumed) return fresh.start();
  if (!s.has_position) {
    if (s.ranks != ranks) {
      return InvalidArgument("checkpoint '", path, "' was written by a run of ", s.ranks,
                             " ranks before mpiflow recorded data positions; resume it with the "
                             "same number (the data order depends on it), not ",
                             ranks);
    }
    return fresh.At(s.position.step);
  }
  if (s.position.per_shard && (!local || s.data_ranks != data_ranks)) {
    return InvalidArgument("checkpoint '", path, "' was written by ", s.data_ranks,
                           " data ranks with --data-sharding local, where each rank shuffles its "
                           "own shard: resume it that way on ",
                           s.data_ranks, " data ranks (this run: ", data_ranks, ", ",
                           local ? "local" : "global", ")");
  }
  if (!s.position.per_shard && local) {
    return InvalidArgument("checkpoint '", path,
                           "' was written with --data-sharding global: resume it that way");
  }
  const DataPosition& p = s.position;
  if (p.step < 0 || p.epoch < 0 || p.example < 0 || p.example >= fresh.epoch_length() ||
      p.example % (local ? fresh.stride() : 1) != 0) {
    return InvalidArgument("checkpoint '", path, "' is at example ", p.example, " of epoch ",
                           p.epoch + 1, " (step ", p.step, "), outside this run's ",
                           fresh.epoch_length(),
                           " training examples per epoch: was it written for another dataset?");
  }
  return p;
}

// The variables the strategy says this rank reports, by name.
Status ReadReported(Session& session, const Strategy& strategy,
                    std::vector<std::pair<std::string, Tensor>>* out) {
  for (const VariableInfo& v : session.graph().variables()) {
    if (!strategy.Reports(v)) continue;
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    out->emplace_back(v.variable->name(), *t);
  }
  return Status::OK();
}

TrainResult FromServing(ServeOutcome s, int ranks) {
  TrainResult r;
  r.ps_server = true;
  r.ranks = ranks;
  r.steps = s.steps;
  r.final_loss = s.final_loss;
  r.preempted = s.preempted;
  r.resumed_from = s.resumed_from;
  r.last_checkpoint = s.last_checkpoint;
  r.stale_dropped = s.stale_dropped;
  r.ps_updates = s.updates;
  r.staleness = std::move(s.staleness);
  r.applied_per_pusher = std::move(s.applied_per_pusher);
  r.variables = std::move(s.variables);
  r.row_slices = std::move(s.row_slices);
  r.peak_rss_mib = PeakRssMiB();
  return r;
}

}  // namespace

StatusOr<std::string> ModelSummary(const TrainConfig& cfg) {
  MPIFLOW_RETURN_IF_ERROR(ValidateTrainConfig(cfg));
  StatusOr<ModelSpec> spec = LoadModelSpec(cfg.model);
  if (!spec.ok()) return spec.status();
  StatusOr<TrainingData> data = LoadTrainingData(cfg, 1, 0);
  if (!data.ok()) return data.status();
  Scope root = Scope::NewRootScope();
  StatusOr<Model> m = BuildModel(root, *spec, InputOf(*data), cfg.seed);
  if (!m.ok()) return m.status();
  return ModelSummaryText(*spec, InputOf(*data), *m);
}

namespace {

// Where a run's model and data come from: a model file and cfg's dataset, or a program's own.
struct Sources {
  std::string model_name, data_name;
  ModelFn build;
  std::function<StatusOr<TrainingData>(int data_ranks, int data_rank)> load;
};

StatusOr<TrainResult> RunTraining(const TrainConfig& cfg, const Sources& from,
                                  std::ostream& out_log, Communicator* world, Timeline* timeline,
                                  FaultHooks* hooks);

}  // namespace

StatusOr<TrainResult> Train(const TrainConfig& cfg, std::ostream& out_log, Communicator* world,
                            Timeline* timeline, FaultHooks* hooks) {
  MPIFLOW_RETURN_IF_ERROR(ValidateTrainConfig(cfg));
  StatusOr<ModelSpec> spec = LoadModelSpec(cfg.model);  // a bad model file fails first
  if (!spec.ok()) return spec.status();
  Sources from;
  from.model_name = cfg.model;
  from.data_name = DatasetName(cfg.dataset);
  from.build = [&](const Scope& s, const ModelInput& input, int64_t seed) {
    return BuildModel(s, *spec, input, seed);
  };
  from.load = [&](int data_ranks, int data_rank) {
    return LoadTrainingData(cfg, data_ranks, data_rank);
  };
  return RunTraining(cfg, from, out_log, world, timeline, hooks);
}

StatusOr<TrainResult> Train(const ModelFn& model, const TrainingSet& set, const TrainConfig& cfg,
                            std::ostream& log, Communicator* comm) {
  MPIFLOW_RETURN_IF_ERROR(ValidateTrainConfig(cfg));
  if (!model) return InvalidArgument("Train: no model function");
  Sources from;
  from.model_name = "a model of your own";
  from.data_name = "your data";
  from.build = model;
  from.load = [&](int data_ranks, int data_rank) {
    return InMemoryTrainingData(set.train, set.test, cfg.data_sharding, data_ranks, data_rank);
  };
  return RunTraining(cfg, from, log, comm, nullptr, nullptr);
}

namespace {

StatusOr<TrainResult> RunTraining(const TrainConfig& cfg, const Sources& from,
                                  std::ostream& out_log, Communicator* world, Timeline* timeline,
                                  FaultHooks* hooks) {
  StopToken stop;
  ScopedPreemptionSignals signals(cfg.handle_signals ? &stop : nullptr);
  Communicator* comm = world && world->size() > 1 ? world : nullptr;
  const int rank = comm ? comm->rank() : 0;
  std::ostream null_log(nullptr);
  std::ostream& log = rank == 0 ? out_log : null_log;
  StatusOr<std::unique_ptr<Strategy>> made =
      MakeStrategy(cfg.strategy, {comm, &stop, hooks, &log}, cfg.allreduce, cfg.ps, cfg.pipeline);
  if (!made.ok()) return made.status();
  Strategy& strategy = **made;
  for (int q : cfg.stragglers.ranks) {  // the same answer on every rank
    const int size = comm ? comm->size() : 1;
    if (q < 0 || q >= size) {
      return InvalidArgument("--straggler-ranks: rank ", q, " is not in this job of ", size,
                             " rank(s)");
    }
    if (cfg.strategy == StrategyKind::kParameterServer && q >= size - cfg.ps.servers) {
      return InvalidArgument("--straggler-ranks: rank ", q,
                             " is a parameter server, which takes no steps; name workers (0-",
                             size - cfg.ps.servers - 1, ")");
    }
  }
  StatusOr<TrainingData> loaded = from.load(strategy.data_ranks(), strategy.data_rank());
  if (!loaded.ok()) return loaded.status();
  const TrainingData& data = *loaded;
  const int64_t global_batch = cfg.batch_size * strategy.data_ranks();
  const int ranks = comm ? comm->size() : 1;

  // Where the run starts (a resume: its checkpoint's state, read before the graph) and how long
  // it is, in global steps from step 0: the learning-rate schedule spans that (decay_steps 0).
  const CheckpointOptions co = ResolvedCheckpointOptions(cfg);
  CheckpointManager checkpoints(co, strategy.checkpoint_shard(), hooks);
  StatusOr<RunState> resumed = strategy.ResumeState(checkpoints);
  if (!resumed.ok()) return resumed.status();
  const DataPlan fresh =
      BatchStream::PlanOf(StreamOptions(cfg, strategy, data, {}), data.train.count, 0);
  const int64_t per_epoch = fresh.StepsUntil(1);
  StatusOr<DataPosition> start = StartPosition(*resumed, fresh, data.local, strategy.data_ranks(),
                                               ranks, ResumeName(checkpoints));
  if (!start.ok()) return start.status();
  const BatchStreamOptions stream_options = StreamOptions(cfg, strategy, data, *start);
  const DataPlan plan = BatchStream::PlanOf(stream_options, data.train.count, start->step);
  const int64_t total_steps = cfg.max_steps >= 0
                                  ? std::min(plan.StepsUntil(cfg.epochs), cfg.max_steps)
                                  : plan.StepsUntil(cfg.epochs);
  const OptimizerOptions optimizer = ResolvedOptimizer(cfg.optimizer, total_steps);

  Scope root = Scope::NewRootScope();
  std::vector<Output> vars;
  Node* init = nullptr;
  StatusOr<Model> model =
      BuildGraph(root, cfg, from.build, data, optimizer, strategy, &vars, &init);
  if (!model.ok()) return model.status();
  const Model& m = *model;
  StatusOr<std::string> device = ResolveDevice(cfg, comm);
  if (!device.ok()) return device.status();
  if (comm) {  // the device too: replicas on CPUs and GPUs would round apart
    std::vector<std::pair<std::string, std::string>> items = ConsistencyItems(cfg);
    items.push_back({"device (resolved)", *device});
    MPIFLOW_RETURN_IF_ERROR(CheckSameOnAllRanks(comm, *root.graph(), items));
  }
  if (*device == kCpu && cfg.precision != MathPrecision::kFp32) {
    return InvalidArgument("--precision ", MathPrecisionName(cfg.precision),
                           " needs --device gpu: the CPU kernels compute in fp32");
  }
  SessionOptions session_options{cfg.inter_op_threads, cfg.threads, *device};
  session_options.precision = cfg.precision;
  session_options.communicator = comm;
  session_options.timeline = timeline;
  session_options.hooks = hooks;
  strategy.ConfigureSession(&session_options);
  Session session(root.graph(), session_options);
  MPIFLOW_RETURN_IF_ERROR(session.RunTargets({init}));
  checkpoints.SetAttributes(CheckpointAttributes(cfg, *root.graph()));
  MPIFLOW_RETURN_IF_ERROR(strategy.Start(session, checkpoints, *resumed));
  if (strategy.serves()) {
    StatusOr<ServeOutcome> served = strategy.Serve(session, checkpoints, plan, total_steps);
    if (!served.ok()) return served.status();
    return FromServing(std::move(*served), ranks);
  }
  TrainResult r;
  r.steps = start->step;
  if (resumed->resumed) r.resumed_from = r.steps;
  std::unique_ptr<std::ofstream> metrics;
  if (rank == 0) {
    MPIFLOW_RETURN_IF_ERROR(
        OpenOutputs(cfg, *root.graph(), r.resumed_from, start->epoch, &metrics));
  }

  BatchStream stream(&data.train, stream_options);
  LogStart(log, cfg, from.model_name, from.data_name, optimizer, data, per_epoch, vars, strategy,
           global_batch, session_options.device);

  r.train_flops_per_example = m.train_flops_per_example;
  r.epochs = start->epoch;  // the epochs finished
  Progress progress(log, metrics.get(), r.steps, total_steps, cfg.epochs, global_batch);
  // Adds where to resume from to an error that ends the run.
  auto failed = [&](Status st) {
    if (checkpoints.last().empty()) return st;
    return Status(st.code(), StrCat(st.message(), "; resume from '", checkpoints.last(),
                                    "' (--resume latest)"));
  };
  const auto train_start = Clock::now();
  double eval_seconds = 0;
  RunStats stats;
  Batch b, ahead;  // the batch in hand, and the next one when read ahead (`have_ahead`)
  bool have_ahead = false;
  auto next = [&](Batch* out) {
    if (!have_ahead) return stream.Next(out);
    *out = std::move(ahead);
    have_ahead = false;
    return true;
  };
  int64_t batch_after = r.steps;  // the step that the batch in hand trains for
  while (r.steps < total_steps && next(&b)) {
    ++batch_after;
    // A straggler whose push was dropped skips to the batch of the step it now holds.
    while (batch_after <= r.steps && next(&b)) ++batch_after;
    // The next step's inputs, when it follows this one directly: not the run's last step, nor
    // (with evaluation) an epoch's last, whose values evaluation reads.
    const bool ends_epoch = plan.At(r.steps + 1).epoch != plan.At(r.steps).epoch;
    if (r.steps + 1 < total_steps && !(cfg.eval && ends_epoch) &&
        (have_ahead || (have_ahead = stream.Next(&ahead)))) {
      strategy.NextFeeds({{m.features, ahead.features}, {m.labels, ahead.labels}});
    } else {
      strategy.NextFeeds({});
    }
    if (hooks) hooks->BeforeStep(rank, r.steps + 1);
    const auto t0 = Clock::now();  // a straggler's sleep is part of its step
    const double straggle_ms = cfg.stragglers.DelayMs(rank, r.steps + 1, cfg.seed);
    if (straggle_ms > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(straggle_ms));
    }
    stats.collect_node_times = cfg.profile && progress.Timing(r.steps);
    StatusOr<StepOutcome> s =
        strategy.RunStep(session, {{m.features, b.features}, {m.labels, b.labels}}, b, &stats);
    if (!s.ok()) return failed(s.status());
    progress.AddKernelTimes(stats);
    if (!std::isfinite(s->loss)) return failed(NonFiniteLoss(s->loss, comm, r.steps + 1, b));
    // Epochs by the step now held: a straggler may jump past an epoch's last batch, so an epoch
    // ends where the step's position enters the next epoch (every rank crosses each once).
    const int64_t before = r.steps;
    r.steps = s->step;
    r.final_loss = s->loss;
    r.stale_dropped = s->stale_dropped;
    r.ps_updates = s->updates;
    r.staleness = s->staleness;
    r.ps_pushed_bytes = s->ps_pushed_bytes;
    r.ps_received_bytes = s->ps_received_bytes;
    const DataPosition at = plan.At(r.steps);
    const bool crossed = at.epoch != plan.At(before).epoch;
    const int64_t epoch = crossed ? at.epoch - 1 : at.epoch;
    const bool epoch_end = crossed || r.steps == total_steps;
    progress.Step(r.steps, epoch, r.final_loss, ops::LearningRateAt(optimizer.lr, r.steps - 1),
                  s->examples, Seconds(Clock::now() - t0),
                  r.steps % cfg.log_every == 0 || epoch_end);
    if (epoch_end && epoch >= r.epochs) {
      r.epochs = epoch + 1;
      if (cfg.eval) {
        const auto e0 = Clock::now();
        StatusOr<double> acc =
            Evaluate(session, m, data, cfg.eval_batch_size, strategy.eval_comm());
        if (!acc.ok()) return failed(acc.status());
        r.test_accuracy = *acc;
        eval_seconds += progress.Evaluated(epoch, *acc, data.test_count(), e0);
      }
    }
    // A preemption (every rank agreed on it) always writes a checkpoint.
    if ((co.enabled() && (s->checkpoint || checkpoints.DueAtStep(r.steps))) || s->stop) {
      MPIFLOW_RETURN_IF_ERROR(failed(strategy.Save(session, checkpoints, at)));
    }
    if (s->stop) {
      r.preempted = true;
      log << "mpiflow: stopped by SIGTERM/SIGUSR1 after step " << r.steps
          << "; resume with --resume latest (exit code " << kExitPreempted << ")\n";
      break;
    }
    if (s->done) break;
  }
  if (co.enabled() && !r.preempted && r.steps > 0 && checkpoints.last_step() != r.steps) {
    MPIFLOW_RETURN_IF_ERROR(strategy.Save(session, checkpoints, plan.At(r.steps)));  // the end
  }
  if (cfg.profile) progress.PrintProfile(r.steps);
  r.train_seconds = Seconds(Clock::now() - train_start) - eval_seconds;
  r.samples_per_sec = progress.samples_per_sec();
  r.peak_rss_mib = PeakRssMiB();
  r.ranks = ranks;
  r.last_checkpoint = checkpoints.last();
  MPIFLOW_RETURN_IF_ERROR(ReadReported(session, strategy, &r.variables));
  return r;
}

}  // namespace

}  // namespace mpiflow
