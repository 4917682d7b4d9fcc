// Train: the single-process training loop. Builds the graph once, runs one Session step per
// batch, evaluates per epoch, writes metrics.jsonl. Not option parsing, not distribution.
#include "mpiflow/trainer.h"

#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "mpiflow/data.h"
#include "mpiflow/graph_io.h"
#include "mpiflow/models.h"
#include "mpiflow/ops.h"
#include "mpiflow/session.h"

namespace mpiflow {

double PeakRssMiB() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // ru_maxrss is KiB on Linux
}

Status ValidateTrainConfig(const TrainConfig& c) {
  if (c.model != "mlp" && c.model != "cnn") {
    return InvalidArgument("--model must be mlp or cnn, got '", c.model, "'");
  }
  if (c.dataset != "fashion-mnist" && c.dataset != "synthetic") {
    return InvalidArgument("--dataset must be fashion-mnist or synthetic, got '", c.dataset, "'");
  }
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
  if (c.dataset == "synthetic" && (c.synthetic_train <= 0 || c.synthetic_test <= 0)) {
    return InvalidArgument("synthetic dataset sizes must be positive");
  }
  if (c.optimizer.lr.decay_steps < 0) {
    return InvalidArgument("--decay-steps must be >= 0 (0: the whole run), got ",
                           c.optimizer.lr.decay_steps);
  }
  OptimizerOptions o = c.optimizer;
  if (o.lr.decay_steps == 0) o.lr.decay_steps = 1;  // resolved to the run's length in Train
  return ValidateOptimizerOptions(o);
}

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  }
  return buf;
}

Status MakeDirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0 && errno != EEXIST) {
        return Status(Code::kUnavailable,
                      StrCat("cannot create directory '", cur, "': ", std::strerror(errno)));
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::OK();
}

StatusOr<double> Evaluate(Session& session, const Model& m, const ImageDataset& test,
                          int64_t batch_size) {
  BatchStreamOptions o;
  o.batch_size = batch_size;
  o.shuffle = false;
  o.prefetch = 0;
  BatchStream stream(&test, o);
  Batch b;
  double correct = 0;
  std::vector<Tensor> out;
  while (stream.Next(&b)) {
    MPIFLOW_RETURN_IF_ERROR(
        session.Run({{m.images, b.images}, {m.labels, b.labels}}, {m.correct}, {}, &out));
    correct += *out[0].data<float>();
  }
  return correct / static_cast<double>(test.count);
}

}  // namespace

StatusOr<TrainResult> Train(const TrainConfig& cfg, std::ostream& log) {
  MPIFLOW_RETURN_IF_ERROR(ValidateTrainConfig(cfg));
  ImageDataset train, test;
  if (cfg.dataset == "synthetic") {
    train = SyntheticDataset(cfg.synthetic_train, 10, static_cast<uint64_t>(cfg.seed));
    test = SyntheticDataset(cfg.synthetic_test, 10, static_cast<uint64_t>(cfg.seed) + 1);
  } else {
    StatusOr<ImageDataset> tr = LoadMnistDirectory(cfg.data_dir, true);
    if (!tr.ok()) return tr.status();
    StatusOr<ImageDataset> te = LoadMnistDirectory(cfg.data_dir, false);
    if (!te.ok()) return te.status();
    train = std::move(*tr);
    test = std::move(*te);
  }
  if (train.example_size() != 784) {
    return InvalidArgument("the models expect 28x28 images; '", cfg.data_dir, "' holds ",
                           train.rows, "x", train.cols);
  }

  const int64_t per_epoch = (train.count + cfg.batch_size - 1) / cfg.batch_size;
  int64_t total_steps = per_epoch * cfg.epochs;
  if (cfg.max_steps >= 0) total_steps = std::min(total_steps, cfg.max_steps);
  OptimizerOptions optimizer = cfg.optimizer;
  if (optimizer.lr.decay_steps == 0) {  // decay over the whole run, after any warm-up
    optimizer.lr.decay_steps = std::max<int64_t>(1, total_steps - optimizer.lr.warmup_steps);
  }

  Scope root = Scope::NewRootScope();
  StatusOr<Model> model = BuildModel(root, cfg.model, cfg.seed, train.num_classes);
  if (!model.ok()) return model.status();
  const Model& m = *model;
  StatusOr<TrainOp> train_op = Minimize(root, m.loss, optimizer);
  if (!train_op.ok()) return train_op.status();
  Node* init = ops::InitOp(root);
  MPIFLOW_RETURN_IF_ERROR(root.status());

  std::unique_ptr<std::ofstream> metrics;
  if (!cfg.output_dir.empty()) {
    MPIFLOW_RETURN_IF_ERROR(MakeDirs(cfg.output_dir));
    MPIFLOW_RETURN_IF_ERROR(SaveGraph(*root.graph(), cfg.output_dir + "/graph.mpg"));
    metrics = std::make_unique<std::ofstream>(cfg.output_dir + "/metrics.jsonl");
    if (!*metrics) {
      return Status(Code::kUnavailable,
                    StrCat("cannot write '", cfg.output_dir, "/metrics.jsonl'"));
    }
  }

  SessionOptions so;
  so.intra_op_threads = cfg.threads;
  so.inter_op_threads = cfg.inter_op_threads;
  Session session(root.graph(), so);
  MPIFLOW_RETURN_IF_ERROR(session.RunTargets({init}));

  BatchStreamOptions bo;
  bo.batch_size = cfg.batch_size;
  bo.seed = static_cast<uint64_t>(cfg.seed);
  bo.num_epochs = cfg.epochs;
  bo.prefetch = cfg.prefetch;
  BatchStream stream(&train, bo);
  MPIFLOW_CHECK(stream.batches_per_epoch() == per_epoch);

  log << "mpiflow: training " << cfg.model << " on " << cfg.dataset << " (" << train.count
      << " train, " << test.count << " test images), " << cfg.epochs << " epochs x " << per_epoch
      << " steps, batch " << cfg.batch_size << ", " << optimizer.name << " lr " << optimizer.lr.base
      << " (" << optimizer.lr.kind
      << (optimizer.lr.kind == "constant" ? ""
                                          : StrCat(" over ", optimizer.lr.decay_steps, " steps"))
      << "), " << cfg.threads << " thread(s)\n";

  TrainResult r;
  r.train_flops_per_example = m.train_flops_per_example;
  constexpr int64_t kWarmupSteps = 20;
  double timed_seconds = 0, window_seconds = 0;
  int64_t timed_samples = 0, window_samples = 0;
  std::vector<Tensor> out;
  Batch b;
  int64_t epoch_done = -1;
  const auto train_start = Clock::now();
  double eval_seconds = 0;
  RunStats stats;
  std::map<std::string, std::pair<double, int64_t>> op_seconds;  // op -> (seconds, kernel runs)
  while (r.steps < total_steps && stream.Next(&b)) {
    const auto t0 = Clock::now();
    stats.collect_node_times = cfg.profile && r.steps >= kWarmupSteps;
    MPIFLOW_RETURN_IF_ERROR(session.Run({{m.images, b.images}, {m.labels, b.labels}}, {m.loss},
                                        {train_op->train}, &out, &stats));
    for (const RunStats::NodeTime& t : stats.node_times) {
      auto& entry = op_seconds[t.node->op()];
      entry.first += t.seconds;
      ++entry.second;
    }
    const double dt = Seconds(Clock::now() - t0);
    const int64_t n = b.images.shape().dim(0);
    r.final_loss = *out[0].data<float>();
    if (!std::isfinite(r.final_loss)) {
      return Status(Code::kAborted,
                    StrCat("the loss became ", r.final_loss, " at step ", r.steps + 1, " (epoch ",
                           b.epoch + 1, "): lower the learning rate (--lr)"));
    }
    ++r.steps;
    if (r.steps > kWarmupSteps) {
      timed_seconds += dt;
      timed_samples += n;
    }
    window_seconds += dt;
    window_samples += n;
    const bool epoch_end = b.index == per_epoch - 1 || r.steps == total_steps;
    if (r.steps % cfg.log_every == 0 || epoch_end) {
      const double rate = window_samples / std::max(window_seconds, 1e-9);
      const double eta = (total_steps - r.steps) * cfg.batch_size / std::max(rate, 1e-9);
      char line[256];
      std::snprintf(line, sizeof(line),
                    "step %lld/%lld  epoch %lld/%lld  loss %.4f  %.1f samples/s  ETA %s\n",
                    static_cast<long long>(r.steps), static_cast<long long>(total_steps),
                    static_cast<long long>(b.epoch + 1), static_cast<long long>(cfg.epochs),
                    r.final_loss, rate, FormatDuration(eta).c_str());
      log << line << std::flush;
      if (metrics) {
        *metrics << "{\"step\":" << r.steps << ",\"epoch\":" << b.epoch + 1
                 << ",\"loss\":" << r.final_loss << ",\"samples_per_sec\":" << rate << "}\n";
      }
      window_seconds = 0;
      window_samples = 0;
    }
    if (epoch_end && b.epoch != epoch_done) {
      epoch_done = b.epoch;
      r.epochs = b.epoch + 1;
      if (cfg.eval) {
        const auto e0 = Clock::now();
        StatusOr<double> acc = Evaluate(session, m, test, cfg.eval_batch_size);
        if (!acc.ok()) return acc.status();
        const double es = Seconds(Clock::now() - e0);
        eval_seconds += es;
        r.test_accuracy = *acc;
        char line[160];
        std::snprintf(line, sizeof(line),
                      "epoch %lld/%lld  test_accuracy %.4f  (%lld images, %.1f s)\n",
                      static_cast<long long>(b.epoch + 1), static_cast<long long>(cfg.epochs), *acc,
                      static_cast<long long>(test.count), es);
        log << line << std::flush;
        if (metrics) {
          *metrics << "{\"epoch\":" << b.epoch + 1 << ",\"test_accuracy\":" << *acc << "}\n";
        }
      }
    }
  }
  if (cfg.profile && timed_seconds > 0) {
    std::vector<std::pair<double, std::string>> rows;
    double kernel_seconds = 0;
    for (const auto& [op, e] : op_seconds) {
      rows.emplace_back(e.first, op);
      kernel_seconds += e.first;
    }
    std::sort(rows.rbegin(), rows.rend());
    const int64_t steps = r.steps - kWarmupSteps;
    char line[160];
    std::snprintf(
        line, sizeof(line), "profile: %lld steps, %.3f ms/step, %.3f ms/step in kernels\n",
        static_cast<long long>(steps), 1e3 * timed_seconds / steps, 1e3 * kernel_seconds / steps);
    log << line;
    for (const auto& [seconds, op] : rows) {
      std::snprintf(line, sizeof(line), "  %-36s %9.3f ms/step %5.1f%%  (%lld runs/step)\n",
                    op.c_str(), 1e3 * seconds / steps, 100 * seconds / timed_seconds,
                    static_cast<long long>(op_seconds[op].second / steps));
      log << line;
    }
  }
  r.train_seconds = Seconds(Clock::now() - train_start) - eval_seconds;
  r.samples_per_sec = timed_seconds > 0 ? timed_samples / timed_seconds : 0;
  r.peak_rss_mib = PeakRssMiB();
  for (const VariableInfo& v : root.graph()->variables()) {
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    r.variables.emplace_back(v.variable->name(), *t);
  }
  return r;
}

}  // namespace mpiflow
