// Train: the training loop. Builds the graph once, runs one Session step per batch, evaluates
// per epoch, writes metrics.jsonl; under several ranks each rank trains on its shard and the
// gradient buckets are allreduced inside the step. Not option parsing, not the collectives.
#include "mpiflow/trainer.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <thread>
#include <tuple>

#include "mpiflow/checkpoint.h"
#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/distributed.h"
#include "mpiflow/gradients.h"
#include "mpiflow/graph_io.h"
#include "mpiflow/models.h"
#include "mpiflow/ops.h"
#include "mpiflow/parameter_server.h"
#include "mpiflow/session.h"
#include "mpiflow/timeline.h"

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
  if (c.dataset != "fashion-mnist" && c.dataset != "synthetic" && c.dataset != "hdf5") {
    return InvalidArgument("--dataset must be fashion-mnist, hdf5 or synthetic, got '", c.dataset,
                           "'");
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
  if (c.strategy != "auto" && c.strategy != "allreduce" && c.strategy != "ps" &&
      c.strategy != "none") {
    return InvalidArgument("--strategy must be auto, allreduce, ps or none, got '", c.strategy,
                           "'");
  }
  if (c.ps_ranks < 1) return InvalidArgument("--ps-ranks must be >= 1, got ", c.ps_ranks);
  if (c.backup_workers < 0) {
    return InvalidArgument("--backup-workers must be >= 0, got ", c.backup_workers);
  }
  if (c.backup_workers > 0 && c.strategy != "ps") {
    return InvalidArgument("--backup-workers needs --strategy ps (allreduce waits for every rank)");
  }
  if (!(c.bucket_mb > 0)) return InvalidArgument("--bucket-mb must be positive, got ", c.bucket_mb);
  MPIFLOW_RETURN_IF_ERROR(ParseAllreduceAlgorithm(c.allreduce).status());
  if (c.data_sharding != "global" && c.data_sharding != "local") {
    return InvalidArgument("--data-sharding must be global or local, got '", c.data_sharding, "'");
  }
  if (c.checkpoint_every < 0) {
    return InvalidArgument("--checkpoint-every must be >= 0 (0: off), got ", c.checkpoint_every);
  }
  if (c.checkpoint_seconds < 0) {
    return InvalidArgument("--checkpoint-seconds must be >= 0 (0: off), got ",
                           c.checkpoint_seconds);
  }
  if (c.keep_checkpoints < 1) {
    return InvalidArgument("--keep-checkpoints must be >= 1, got ", c.keep_checkpoints);
  }
  OptimizerOptions o = c.optimizer;
  if (o.lr.decay_steps == 0) o.lr.decay_steps = 1;  // resolved to the run's length in Train
  return ValidateOptimizerOptions(o);
}

std::vector<std::pair<std::string, std::string>> ConsistencyItems(const TrainConfig& c) {
  const OptimizerOptions& o = c.optimizer;
  return {{"model", c.model},
          {"dataset", c.dataset},
          {"synthetic-train", StrCat(c.synthetic_train)},
          {"synthetic-test", StrCat(c.synthetic_test)},
          {"epochs", StrCat(c.epochs)},
          {"batch-size", StrCat(c.batch_size)},
          {"max-steps", StrCat(c.max_steps)},
          {"eval", c.eval ? "true" : "false"},
          {"seed", StrCat(c.seed)},
          {"optimizer", o.name},
          {"lr", StrCat(o.lr.base)},
          {"lr-schedule", o.lr.kind},
          {"warmup-steps", StrCat(o.lr.warmup_steps)},
          {"decay-steps", StrCat(o.lr.decay_steps)},
          {"decay-rate", StrCat(o.lr.decay_rate)},
          {"momentum", StrCat(o.momentum, "/", o.nesterov, "/", o.rho, "/", o.rmsprop_momentum)},
          {"adam", StrCat(o.beta1, "/", o.beta2, "/", o.epsilon)},
          {"strategy", c.strategy},
          {"bucket-mb", StrCat(c.bucket_mb)},
          {"allreduce", c.allreduce},
          {"data-sharding", c.data_sharding},
          {"ps-ranks", StrCat(c.ps_ranks)},
          {"backup-workers", StrCat(c.backup_workers)}};
}

namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_stop_requested{false};

extern "C" void OnPreemptionSignal(int) { g_stop_requested.store(true); }

void InstallPreemptionHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnPreemptionSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

// Points <dir>/latest at `name` atomically (a temporary file renamed over it).
Status PointLatest(const std::string& dir, const std::string& name) {
  const std::string latest = dir + "/latest", tmp = latest + ".tmp";
  {
    std::ofstream f(tmp);
    f << name << "\n";
    if (!f.flush()) return Status(Code::kUnavailable, StrCat("cannot write '", tmp, "'"));
  }
  if (std::rename(tmp.c_str(), latest.c_str()) != 0) {
    return Status(Code::kUnavailable,
                  StrCat("cannot rename '", tmp, "' to '", latest, "': ", std::strerror(errno)));
  }
  return Status::OK();
}

// "ckpt-<step>.h5"; a parameter server's shard: "ckpt-<step>.ps<k>-of-<P>.h5" (`shard` is the
// ".ps<k>-of-<P>" part, empty otherwise).
std::string CheckpointName(int64_t step, const std::string& shard = "") {
  char name[40];
  std::snprintf(name, sizeof(name), "ckpt-%08lld", static_cast<long long>(step));
  return name + shard + ".h5";
}

std::string ShardSuffix(int server, int servers) { return StrCat(".ps", server, "-of-", servers); }

// Writes <dir>/CheckpointName(step, shard) with the session's variables (those in `only` when
// given); then, when `point_latest`, points <dir>/latest at it (written to a temporary file and
// renamed), and removes all but the newest `keep` of this shard.
StatusOr<std::string> SaveTrainingCheckpoint(Session& session, const Graph& graph,
                                             const TrainConfig& cfg, const std::string& dir,
                                             int64_t step, int ranks,
                                             const std::set<std::string>* only = nullptr,
                                             const std::string& shard = "",
                                             bool point_latest = true) {
  Checkpoint c;
  for (const VariableInfo& v : graph.variables()) {
    if (only && !only->count(v.variable->name())) continue;
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    c.variables.emplace_back(v.variable->name(), *t);
  }
  char fingerprint[32];
  std::snprintf(fingerprint, sizeof(fingerprint), "%016llx",
                static_cast<unsigned long long>(graph.Fingerprint()));
  c.attributes["graph_fingerprint"] = fingerprint;
  for (const auto& [k, v] : ConsistencyItems(cfg)) c.attributes["option." + k] = v;
  c.counters["step"] = step;
  c.counters["ranks"] = ranks;
  c.counters["run_counter"] = session.run_counter();
  // Every rank's data cursor is the number of global batches consumed: the same on all ranks.
  c.counters["data_cursor"] = step;
  const std::string path = dir + "/" + CheckpointName(step, shard);
  MPIFLOW_RETURN_IF_ERROR(WriteCheckpoint(path, c));
  if (point_latest) MPIFLOW_RETURN_IF_ERROR(PointLatest(dir, CheckpointName(step, shard)));
  // Prune: checkpoints of the steps before the newest `keep` (step numbers are what we wrote).
  for (int64_t old = step - 1, kept = 1; old >= 0; --old) {
    const std::string p = dir + "/" + CheckpointName(old, shard);
    if (::access(p.c_str(), F_OK) != 0) continue;
    if (++kept > cfg.keep_checkpoints) std::remove(p.c_str());
    if (kept > cfg.keep_checkpoints + 64) break;
  }
  return path;
}

// Removes the temporary files of checkpoint writers that were killed ("ckpt-*<shard>.h5.tmp.*").
void RemoveStaleTemporaries(const std::string& dir, const std::string& shard = "") {
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  const std::string mark = shard + ".h5.tmp.";
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    const size_t at = n.find(mark);
    // Without a shard, only unsharded names (a server's temporaries are not ours to remove).
    if (n.rfind("ckpt-", 0) == 0 && at != std::string::npos &&
        (!shard.empty() || n.find(".ps") == std::string::npos)) {
      stale.push_back(n);
    }
  }
  closedir(d);
  for (const std::string& n : stale) std::remove((dir + "/" + n).c_str());
}

StatusOr<std::string> ResolveResume(const TrainConfig& cfg, const std::string& dir) {
  if (cfg.resume != "latest") return cfg.resume;
  std::ifstream f(dir + "/latest");
  std::string name;
  if (!(f >> name)) {
    return Status(Code::kNotFound, StrCat("--resume latest: no '", dir,
                                          "/latest' (no checkpoint written there yet?)"));
  }
  return dir + "/" + name;
}

// Test hooks for the failure tests, read from the environment: MPIFLOW_TEST_KILL="rank:step"
// raises SIGKILL on that rank before that step; MPIFLOW_TEST_SLEEP="rank:step:seconds" sleeps;
// MPIFLOW_TEST_SIGTERM="rank:step" raises SIGTERM (a preemption) there.
void TestHooks(int rank, int64_t step) {
  const char* kill_spec = std::getenv("MPIFLOW_TEST_KILL");  // read every step: tests set them
  const char* sleep_spec = std::getenv("MPIFLOW_TEST_SLEEP");
  long long r = -1, st = -1;
  double seconds = 0;
  if (kill_spec && std::sscanf(kill_spec, "%lld:%lld", &r, &st) == 2 && r == rank && st == step) {
    std::fprintf(stderr, "mpiflow: rank %d: MPIFLOW_TEST_KILL: raising SIGKILL at step %lld\n",
                 rank, st);
    std::fflush(stderr);
    raise(SIGKILL);
  }
  const char* term_spec = std::getenv("MPIFLOW_TEST_SIGTERM");
  if (term_spec && std::sscanf(term_spec, "%lld:%lld", &r, &st) == 2 && r == rank && st == step) {
    raise(SIGTERM);
  }
  if (sleep_spec && std::sscanf(sleep_spec, "%lld:%lld:%lf", &r, &st, &seconds) == 3 && r == rank &&
      st == step) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  }
}

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
      if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0) {
        struct stat st;
        if (errno != EEXIST) {
          return Status(Code::kUnavailable,
                        StrCat("cannot create directory '", cur, "': ", std::strerror(errno)));
        }
        if (::stat(cur.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
          return Status(Code::kUnavailable, StrCat("cannot create directory '", cur,
                                                   "': a file of that name exists (move it, or "
                                                   "name another directory)"));
        }
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::OK();
}

// Test accuracy; with a communicator each rank evaluates its shard and the counts are summed.
// `local`: each rank holds only its share of the test set (of `global_count` examples).
StatusOr<double> Evaluate(Session& session, const Model& m, const ImageDataset& test,
                          int64_t batch_size, Communicator* comm, bool local,
                          int64_t global_count) {
  BatchStreamOptions o;
  o.batch_size = batch_size;
  o.shuffle = false;
  o.prefetch = 0;
  if (comm && local) {
    o.num_shards = comm->size();
    o.shard_index = comm->rank();
    o.local_shards = true;
    o.global_count = global_count;
  } else if (comm) {
    o.num_shards = comm->size();
    o.shard_index = comm->rank();
  }
  BatchStream stream(&test, o);
  Batch b;
  double correct = 0;
  std::vector<Tensor> out;
  while (stream.Next(&b)) {
    MPIFLOW_RETURN_IF_ERROR(
        session.Run({{m.images, b.images}, {m.labels, b.labels}}, {m.correct}, {}, &out));
    if (b.examples > 0) correct += *out[0].data<float>();
  }
  if (comm) {
    Tensor t = Tensor::Scalar<double>(correct);
    MPIFLOW_RETURN_IF_ERROR(comm->Allreduce(t, {})->Wait());
    correct = *t.data<double>();
  }
  return correct / static_cast<double>(local ? global_count : test.count);
}

ImageDataset SliceDataset(const ImageDataset& d, std::pair<int64_t, int64_t> range) {
  ImageDataset out = d;
  out.count = range.second;
  out.images.assign(d.images.begin() + range.first * d.example_size(),
                    d.images.begin() + (range.first + range.second) * d.example_size());
  out.labels.assign(d.labels.begin() + range.first, d.labels.begin() + range.first + range.second);
  return out;
}

// What a parameter server needs from Train.
struct PsServing {
  const TrainConfig& cfg;
  Session& session;
  const Graph& graph;
  const TrainOp& train_op;
  const std::vector<Output>& placeholders;  // gradient feeds, indexed like vars
  const std::vector<Output>& vars;
  const PsLayout& layout;
  Communicator* world;
  Communicator* servers;  // the servers' group: they agree on stop / checkpoint / NaN
  int64_t total_steps;
  std::string checkpoint_dir;
};

// A parameter server's life: restore its shard (with --resume), send the values, then per
// step gather the first N pushes, agree with the other servers, apply, checkpoint, publish.
StatusOr<TrainResult> ServeShard(const PsServing& x) {
  const TrainConfig& cfg = x.cfg;
  const int k = x.layout.ServerIndex(x.world->rank());
  const std::vector<int>& shard = x.layout.shards[k];
  const std::string suffix = ShardSuffix(k, x.layout.servers);
  const std::string global_step = x.train_op.global_step.node->name();
  // This server's variables: its shard, their optimizer slots ("<variable>/<slot>"), the global
  // step, and on server 0 any other variable that is not trainable.
  std::set<std::string> own = {global_step};
  for (int v : shard) own.insert(x.vars[v].node->name());
  for (const VariableInfo& vi : x.graph.variables()) {
    const std::string& name = vi.variable->name();
    if (vi.trainable || name == global_step) continue;
    int owner = 0;
    for (size_t v = 0; v < x.vars.size(); ++v) {
      if (name.rfind(x.vars[v].node->name() + "/", 0) == 0) owner = x.layout.owner[v];
    }
    if (owner == k) own.insert(name);
  }
  TrainResult r;
  r.ps_server = true;
  r.ranks = x.world->size();
  if (!cfg.resume.empty()) {
    StatusOr<std::string> resolved = ResolveResume(cfg, x.checkpoint_dir);
    if (!resolved.ok()) return resolved.status();
    std::string path = *resolved;
    const std::string first = ShardSuffix(0, x.layout.servers) + ".h5";
    const size_t at = path.rfind(first);
    if (at == std::string::npos || at + first.size() != path.size()) {
      return InvalidArgument("--resume '", path,
                             "': not server 0's shard of a run with --ps-ranks ", x.layout.servers,
                             " (a name ending in '", first,
                             "'); resume a parameter-server run from its own checkpoints");
    }
    path = path.substr(0, at) + suffix + ".h5";
    StatusOr<Checkpoint> c = ReadCheckpoint(path);
    if (!c.ok()) return c.status();
    if (c->counters["ranks"] != x.world->size()) {
      return InvalidArgument("checkpoint '", path, "' was written by a run of ",
                             c->counters["ranks"], " ranks; resume it with the same number, not ",
                             x.world->size());
    }
    MPIFLOW_RETURN_IF_ERROR(RestoreCheckpoint(*c, x.graph, x.session, path, &own));
    r.steps = c->counters["step"];
    r.resumed_from = r.steps;
    r.last_checkpoint = path;
  }
  std::vector<Shape> shapes;
  std::vector<Node*> updates;
  for (int v : shard) {
    shapes.push_back(x.vars[v].shape());
    updates.push_back(x.train_op.updates[v]);
  }
  auto read_values = [&](std::vector<Tensor>* values) -> Status {
    values->clear();
    for (int v : shard) {
      StatusOr<Tensor> t = x.session.ReadVariable(x.vars[v].node->name());
      if (!t.ok()) return t.status();
      values->push_back(std::move(*t));
    }
    return Status::OK();
  };
  std::vector<Tensor> values, mean;
  MPIFLOW_RETURN_IF_ERROR(read_values(&values));
  PsServerLink link(x.world, x.layout, k, shapes);
  PsReply start;
  start.done = r.steps >= x.total_steps;
  MPIFLOW_RETURN_IF_ERROR(link.Start(r.steps, values, start.done));
  const bool checkpointing = cfg.checkpoint_every > 0 || cfg.checkpoint_seconds > 0;
  auto last_save = Clock::now();
  bool cleaned = false, done = start.done;
  std::vector<Session::Feed> feeds;
  while (!done) {
    TestHooks(x.world->rank(), r.steps + 1);
    double loss = 0, examples = 0;
    bool votes = false;
    MPIFLOW_RETURN_IF_ERROR(link.Gather(&mean, &loss, &examples, &votes));
    bool finite = std::isfinite(loss);
    for (const Tensor& g : mean) {
      const float* p = g.data<float>();
      for (int64_t i = 0; i < g.num_elements() && finite; ++i) finite = std::isfinite(p[i]);
    }
    // The servers agree (max over them) so that they stop, checkpoint and fail together.
    const bool timed = k == 0 && cfg.checkpoint_seconds > 0 &&
                       Seconds(Clock::now() - last_save) >= cfg.checkpoint_seconds;
    Tensor flags =
        Tensor::FromVector<float>(Shape{3}, {votes || g_stop_requested.load() ? 1.0f : 0.0f,
                                             timed ? 1.0f : 0.0f, finite ? 0.0f : 1.0f});
    AllreduceOptions max;
    max.op = ReduceOp::kMax;
    max.name = "parameter server agreement";
    MPIFLOW_RETURN_IF_ERROR(x.servers->Allreduce(flags, max)->Wait());
    const bool stop = flags.data<float>()[0] > 0, timed_all = flags.data<float>()[1] > 0;
    const bool non_finite = flags.data<float>()[2] > 0;
    if (!non_finite) {
      MPIFLOW_RETURN_IF_ERROR(
          x.session.WriteVariable(global_step, Tensor::Scalar<int64_t>(r.steps)));
      feeds.clear();
      for (size_t j = 0; j < shard.size(); ++j)
        feeds.push_back({x.placeholders[shard[j]], mean[j]});
      MPIFLOW_RETURN_IF_ERROR(x.session.Run(feeds, {}, updates, nullptr));
    }
    const int64_t next = r.steps + 1;
    done = stop || non_finite || next >= x.total_steps;
    const bool save =
        !non_finite && (stop || (checkpointing &&
                                 (timed_all || done ||
                                  (cfg.checkpoint_every > 0 && next % cfg.checkpoint_every == 0))));
    if (save) {
      MPIFLOW_RETURN_IF_ERROR(x.session.WriteVariable(global_step, Tensor::Scalar<int64_t>(next)));
      MPIFLOW_RETURN_IF_ERROR(MakeDirs(x.checkpoint_dir));
      if (!cleaned) {
        RemoveStaleTemporaries(x.checkpoint_dir, suffix);
        cleaned = true;
      }
      StatusOr<std::string> p = SaveTrainingCheckpoint(x.session, x.graph, cfg, x.checkpoint_dir,
                                                       next, x.world->size(), &own, suffix,
                                                       /*point_latest=*/false);
      if (!p.ok()) return p.status();
      // Every shard is whole before server 0 moves `latest` to this step.
      MPIFLOW_RETURN_IF_ERROR(x.servers->Barrier()->Wait());
      if (k == 0) {
        MPIFLOW_RETURN_IF_ERROR(
            PointLatest(x.checkpoint_dir, CheckpointName(next, ShardSuffix(0, x.layout.servers))));
      }
      r.last_checkpoint = *p;
      last_save = Clock::now();
      x.world->SetReportNote(
          StrCat("last checkpoint: '", *p, "' (step ", next, "): resume with --resume latest"));
    }
    MPIFLOW_RETURN_IF_ERROR(read_values(&values));
    PsReply reply;
    reply.loss = loss;
    reply.examples = examples;
    reply.stop = stop;
    reply.done = done;
    reply.non_finite = non_finite;
    MPIFLOW_RETURN_IF_ERROR(link.Publish(values, reply));
    r.steps = next;
    r.final_loss = loss;
    r.preempted = stop;
    if (non_finite) {
      return Status(Code::kAborted,
                    StrCat("the loss or a gradient is NaN or Inf (on some worker) at step ", next,
                           ": lower the learning rate (--lr)"));
    }
  }
  r.epochs = 0;
  r.stale_dropped = link.dropped();
  r.peak_rss_mib = PeakRssMiB();
  for (const VariableInfo& v : x.graph.variables()) {
    if (!own.count(v.variable->name())) continue;
    StatusOr<Tensor> t = x.session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    r.variables.emplace_back(v.variable->name(), *t);
  }
  return r;
}

}  // namespace

StatusOr<TrainResult> Train(const TrainConfig& cfg, std::ostream& out_log, Communicator* world,
                            Timeline* timeline) {
  MPIFLOW_RETURN_IF_ERROR(ValidateTrainConfig(cfg));
  if (world && world->size() > 1 && cfg.strategy == "none") {
    return InvalidArgument("--strategy none under ", world->size(), " ranks would train ",
                           world->size(),
                           " separate copies of the model: use --strategy allreduce, or run one "
                           "rank");
  }
  // comm: set when training data-parallel over more than one rank.
  Communicator* comm = world && world->size() > 1 ? world : nullptr;
  const int rank = comm ? comm->rank() : 0, ranks = comm ? comm->size() : 1;
  // Parameter servers: the last ps_ranks ranks serve; the data is the workers' only.
  const bool ps = cfg.strategy == "ps";
  if (ps)
    MPIFLOW_RETURN_IF_ERROR(MakePsLayout(ranks, cfg.ps_ranks, cfg.backup_workers, {}).status());
  const bool server = ps && rank >= ranks - cfg.ps_ranks;
  const int data_ranks = ps ? ranks - cfg.ps_ranks : ranks;
  const int data_rank = server ? 0 : rank;
  std::ostream null_log(nullptr);
  std::ostream& log = rank == 0 ? out_log : null_log;
  // Local sharding: every rank holds only its share of the examples (see BatchStreamOptions).
  const bool local = cfg.data_sharding == "local" && data_ranks > 1;
  int64_t global_train = 0, global_test = 0;  // example counts over all ranks, when local
  ImageDataset train, test;
  if (cfg.dataset == "synthetic") {
    train = SyntheticDataset(cfg.synthetic_train, 10, static_cast<uint64_t>(cfg.seed));
    test = SyntheticDataset(cfg.synthetic_test, 10, static_cast<uint64_t>(cfg.seed) + 1);
  } else if (cfg.dataset == "hdf5") {  // --data-dir names the file (mpiflow-data convert)
    // With local sharding a rank reads only its part of each split (a hyperslab).
    for (bool is_train : {true, false}) {
      const char* split = is_train ? "train" : "test";
      int64_t begin = 0, count = -1;
      if (local) {
        StatusOr<int64_t> size = Hdf5SplitSize(cfg.data_dir, split);
        if (!size.ok()) return size.status();
        (is_train ? global_train : global_test) = *size;
        std::tie(begin, count) = BatchStream::ShardRange(*size, data_ranks, data_rank);
      }
      StatusOr<ImageDataset> d = ReadHdf5Split(cfg.data_dir, split, begin, count);
      if (!d.ok()) return d.status();
      (is_train ? train : test) = std::move(*d);
    }
  } else {
    StatusOr<ImageDataset> tr = LoadMnistDirectory(cfg.data_dir, true);
    if (!tr.ok()) return tr.status();
    StatusOr<ImageDataset> te = LoadMnistDirectory(cfg.data_dir, false);
    if (!te.ok()) return te.status();
    train = std::move(*tr);
    test = std::move(*te);
  }
  if (local && cfg.dataset != "hdf5") {  // already in memory: keep this rank's share
    global_train = train.count;
    global_test = test.count;
    train = SliceDataset(train, BatchStream::ShardRange(train.count, data_ranks, data_rank));
    test = SliceDataset(test, BatchStream::ShardRange(test.count, data_ranks, data_rank));
  }
  if (train.example_size() != 784) {
    return InvalidArgument("the models expect 28x28 images; '", cfg.data_dir, "' holds ",
                           train.rows, "x", train.cols);
  }

  const int64_t global_batch = cfg.batch_size * data_ranks;
  const int64_t per_epoch =
      local ? (BatchStream::ShardRange(global_train, data_ranks, 0).second + cfg.batch_size - 1) /
                  cfg.batch_size
            : (train.count + global_batch - 1) / global_batch;
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
  std::vector<Output> vars;
  for (const VariableInfo& v : root.graph()->variables()) {
    if (v.trainable) vars.push_back(Output(v.variable));
  }
  std::vector<Output> grads;
  MPIFLOW_RETURN_IF_ERROR(AddGradients(root, {m.loss}, vars, {}, &grads));
  GradientSync sync;  // with comm, but for ps
  // With ps: every rank builds the same graph; workers fetch `grads`, servers feed the averages
  // into `placeholders` and run the update ops of their shard.
  std::vector<Output> placeholders;
  if (ps) {
    for (const Output& v : vars) {
      if (v.dtype() != DType::kFloat32) {
        return InvalidArgument("--strategy ps: variable '", v.node->name(), "' is ",
                               DTypeName(v.dtype()), "; parameter servers hold float32 only");
      }
      placeholders.push_back(ops::Placeholder(root.WithOpName("ps/gradient_" + v.node->name()),
                                              DType::kFloat32, v.shape()));
    }
  } else if (comm) {
    GradientSyncOptions so;
    so.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(cfg.bucket_mb * (1 << 20)));
    so.algorithm = cfg.allreduce;
    StatusOr<GradientSync> added = AddGradientSync(root, m.loss, grads, vars, so);
    if (!added.ok()) return added.status();
    sync = std::move(*added);
    grads = sync.gradients;
  }
  StatusOr<TrainOp> train_op = ApplyGradients(root, ps ? placeholders : grads, vars, optimizer);
  if (!train_op.ok()) return train_op.status();
  Node* init = ops::InitOp(root);
  MPIFLOW_RETURN_IF_ERROR(root.status());
  if (comm)
    MPIFLOW_RETURN_IF_ERROR(CheckSameOnAllRanks(comm, *root.graph(), ConsistencyItems(cfg)));
  PsLayout layout;
  std::unique_ptr<Communicator> group;  // ps: the workers' (evaluation) or the servers'
  if (ps) {
    std::vector<int64_t> elements;
    for (const Output& v : vars) elements.push_back(v.shape().num_elements());
    StatusOr<PsLayout> l = MakePsLayout(ranks, cfg.ps_ranks, cfg.backup_workers, elements);
    if (!l.ok()) return l.status();
    layout = std::move(*l);
    StatusOr<std::unique_ptr<Communicator>> g = comm->Split(server ? 1 : 0, rank);
    if (!g.ok()) return g.status();
    group = std::move(*g);
  }
  Communicator* eval_comm = ps ? group.get() : comm;

  std::unique_ptr<std::ofstream> metrics;
  if (!cfg.output_dir.empty() && rank == 0) {
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
  so.communicator = ps ? nullptr : comm;
  so.timeline = timeline;
  Session session(root.graph(), so);
  MPIFLOW_RETURN_IF_ERROR(session.RunTargets({init}));

  // Checkpoints: resume before the first step, write after steps (rank 0).
  const std::string checkpoint_dir =
      !cfg.checkpoint_dir.empty()
          ? cfg.checkpoint_dir
          : (cfg.output_dir.empty() ? std::string("checkpoints") : cfg.output_dir + "/checkpoints");
  const bool checkpointing = cfg.checkpoint_every > 0 || cfg.checkpoint_seconds > 0;
  if (cfg.handle_signals) InstallPreemptionHandlers();
  g_stop_requested.store(false);
  if (server) {
    PsServing serving{cfg,    session, *root.graph(), *train_op,   placeholders,  vars,
                      layout, comm,    group.get(),   total_steps, checkpoint_dir};
    return ServeShard(serving);
  }
  TrainResult r;
  if (!cfg.resume.empty() && !ps) {
    StatusOr<std::string> path = ResolveResume(cfg, checkpoint_dir);
    if (!path.ok()) return path.status();
    StatusOr<Checkpoint> c = ReadCheckpoint(*path);
    if (!c.ok()) return c.status();
    if (c->counters.count("ranks") && c->counters["ranks"] != ranks) {
      return InvalidArgument("checkpoint '", *path, "' was written by a run of ",
                             c->counters["ranks"],
                             " ranks; resume it with the same number (the "
                             "data order depends on it), not ",
                             ranks);
    }
    MPIFLOW_RETURN_IF_ERROR(RestoreCheckpoint(*c, *root.graph(), session, *path));
    std::string changed;
    for (const auto& [k, v] : ConsistencyItems(cfg)) {
      auto it = c->attributes.find("option." + k);
      if (it != c->attributes.end() && it->second != v && k != "epochs" && k != "max-steps") {
        changed += StrCat(changed.empty() ? "" : ", ", k, " ", it->second, " -> ", v);
      }
    }
    if (!changed.empty()) {
      log << "mpiflow: warning: resuming with options that differ from the checkpoint's: "
          << changed << "\n";
    }
    r.steps = c->counters["step"];
    r.resumed_from = r.steps;
    r.last_checkpoint = *path;
    if (comm) {
      comm->SetReportNote(StrCat("last checkpoint: '", *path, "' (step ", r.steps,
                                 "): resume with --resume latest"));
    }
    session.set_run_counter(c->counters["run_counter"]);
    log << "mpiflow: resumed from '" << *path << "' at step " << r.steps << "\n";
  }

  // ps: the servers send the values to start from (and the step, when they resumed).
  std::unique_ptr<PsWorkerLink> link;
  std::vector<Tensor> ps_values(vars.size());
  PsReply reply;
  const std::string global_step_name = train_op->global_step.node->name();
  auto receive = [&]() -> Status {
    MPIFLOW_RETURN_IF_ERROR(link->Receive(&ps_values, &reply));
    for (size_t i = 0; i < vars.size(); ++i) {
      MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(vars[i].node->name(), ps_values[i]));
    }
    return session.WriteVariable(global_step_name, Tensor::Scalar<int64_t>(reply.version));
  };
  if (ps) {
    std::vector<Shape> shapes;
    for (const Output& v : vars) shapes.push_back(v.shape());
    link = std::make_unique<PsWorkerLink>(comm, layout, shapes);
    MPIFLOW_RETURN_IF_ERROR(receive());
    r.steps = reply.version;
    if (!cfg.resume.empty()) {
      r.resumed_from = r.steps;
      log << "mpiflow: the parameter servers resumed at step " << r.steps << "\n";
    }
  }

  BatchStreamOptions bo;
  bo.batch_size = cfg.batch_size;
  bo.seed = static_cast<uint64_t>(cfg.seed);
  bo.num_epochs = cfg.epochs;
  bo.prefetch = cfg.prefetch;
  bo.num_shards = data_ranks;
  bo.shard_index = data_rank;
  bo.first_batch = r.steps;  // a resume continues with the next global batch
  bo.local_shards = local;
  bo.global_count = global_train;
  BatchStream stream(&train, bo);
  MPIFLOW_CHECK(stream.batches_per_epoch() == per_epoch);

  int64_t parameters = 0;
  for (const Output& v : vars) parameters += v.shape().num_elements();
  log << "mpiflow: training " << cfg.model << " on " << cfg.dataset << " (" << train.count
      << " train, " << test.count << " test images), " << cfg.epochs << " epochs x " << per_epoch
      << " steps, batch " << cfg.batch_size << ", " << optimizer.name << " lr " << optimizer.lr.base
      << " (" << optimizer.lr.kind
      << (optimizer.lr.kind == "constant" ? ""
                                          : StrCat(" over ", optimizer.lr.decay_steps, " steps"))
      << "), " << cfg.threads << " thread(s), " << parameters << " parameters";
  if (ps) {
    log << "\nmpiflow: parameter servers: ranks " << layout.workers << "-" << ranks - 1
        << " serve, ranks 0-" << layout.workers - 1 << " work (global batch " << global_batch
        << "); each step averages the first " << layout.aggregate() << " of " << layout.workers
        << " pushes; shards of";
    for (int k = 0; k < layout.servers; ++k) {
      log << (k ? "," : "") << " " << layout.shard_elements[k] * 4 / 1024 << " KiB";
    }
  } else if (comm) {
    int64_t grad_bytes = 0;
    for (const Output& g : grads) grad_bytes += g.shape().num_elements() * DTypeSize(g.dtype());
    log << "\nmpiflow: data parallel over " << ranks << " ranks (global batch " << global_batch
        << "): " << grad_bytes / 1024 << " KiB of gradients in " << sync.buckets.size()
        << " bucket(s) of <= " << cfg.bucket_mb << " MiB, allreduce " << cfg.allreduce;
  }
  log << "\n";

  r.train_flops_per_example = m.train_flops_per_example;
  r.epochs = r.steps / per_epoch;
  constexpr int64_t kWarmupSteps = 20;
  double timed_seconds = 0, window_seconds = 0;
  int64_t timed_samples = 0, window_samples = 0;
  std::vector<Tensor> out;
  Batch b;
  int64_t epoch_done = r.epochs - 1;  // the last epoch evaluated
  auto last_save = Clock::now();
  // Adds where to resume from to an error that ends the run.
  auto failed = [&](Status st) {
    if (r.last_checkpoint.empty()) return st;
    return Status(st.code(), StrCat(st.message(), "; resume from '", r.last_checkpoint,
                                    "' (--resume latest)"));
  };
  bool cleaned_temporaries = false;
  auto save = [&]() -> Status {
    if (rank == 0) {
      MPIFLOW_RETURN_IF_ERROR(MakeDirs(checkpoint_dir));
      if (!cleaned_temporaries) {
        RemoveStaleTemporaries(checkpoint_dir);  // once per run: nobody else writes here
        cleaned_temporaries = true;
      }
      StatusOr<std::string> p =
          SaveTrainingCheckpoint(session, *root.graph(), cfg, checkpoint_dir, r.steps, ranks);
      if (!p.ok()) return p.status();
      log << "mpiflow: checkpoint '" << *p << "' (step " << r.steps << ")\n";
    }
    r.last_checkpoint = checkpoint_dir + "/" + CheckpointName(r.steps);
    last_save = Clock::now();
    if (comm) {
      comm->SetReportNote(StrCat("last checkpoint: '", r.last_checkpoint, "' (step ", r.steps,
                                 "): resume with --resume latest"));
    }
    return Status::OK();
  };
  const auto train_start = Clock::now();
  double eval_seconds = 0;
  RunStats stats;
  std::map<std::string, std::pair<double, int64_t>> op_seconds;  // op -> (seconds, kernel runs)
  std::vector<Session::Feed> feeds;
  std::vector<Output> ps_fetches = vars;  // ps: the gradients, then the loss
  if (ps) {
    ps_fetches = grads;
    ps_fetches.push_back(m.loss);
  }
  std::vector<Tensor> ps_grads(vars.size());
  while (r.steps < total_steps && !(ps && link->AllDone()) && stream.Next(&b)) {
    // ps: a straggler whose push was dropped skips to the batch of the version it now holds.
    while (ps && b.epoch * per_epoch + b.index < r.steps && stream.Next(&b)) {
    }
    TestHooks(rank, r.steps + 1);
    const auto t0 = Clock::now();
    stats.collect_node_times = cfg.profile && r.steps >= kWarmupSteps;
    feeds = {{m.images, b.images}, {m.labels, b.labels}};
    const int64_t steps_before = r.steps;
    int64_t n = b.global_examples;
    bool stop = false, checkpoint_now = false;
    if (ps) {
      double loss_sum = 0;
      if (b.examples > 0) {
        Status run = session.Run(feeds, ps_fetches, {}, &out, &stats);
        if (!run.ok()) {
          return Status(run.code(), StrCat("at step ", r.steps + 1, " (epoch ", b.epoch + 1,
                                           "): ", run.message()));
        }
        for (size_t i = 0; i < vars.size(); ++i) ps_grads[i] = out[i];
        loss_sum = static_cast<double>(*out.back().data<float>()) * b.examples;
      } else {  // a share of nothing: weight 0
        for (size_t i = 0; i < vars.size(); ++i)
          ps_grads[i] = Tensor(DType::kFloat32, vars[i].shape());
      }
      MPIFLOW_RETURN_IF_ERROR(link->Push(ps_grads, b.examples, loss_sum, g_stop_requested.load()));
      MPIFLOW_RETURN_IF_ERROR(receive());
      if (reply.non_finite) {
        return Status(Code::kAborted,
                      StrCat("the loss or a gradient is NaN or Inf (on some worker) at step ",
                             reply.version, ": lower the learning rate (--lr)"));
      }
      r.final_loss = reply.loss;
      stop = reply.stop;
      n = static_cast<int64_t>(reply.examples);
      r.steps = reply.version - 1;  // counted up below
    }
    if (!ps && comm) {
      feeds.push_back({sync.scale, Tensor::Scalar<float>(static_cast<float>(b.examples) /
                                                         static_cast<float>(b.global_examples))});
      feeds.push_back({sync.examples, Tensor::Scalar<float>(static_cast<float>(b.examples))});
      feeds.push_back({sync.stop, Tensor::Scalar<float>(g_stop_requested.load() ? 1.0f : 0.0f)});
      // Rank 0 keeps the checkpoint clock; its vote makes every rank agree on the step.
      const bool timed = rank == 0 && cfg.checkpoint_seconds > 0 &&
                         Seconds(Clock::now() - last_save) >= cfg.checkpoint_seconds;
      feeds.push_back({sync.checkpoint, Tensor::Scalar<float>(timed ? 1.0f : 0.0f)});
    }
    Status run =
        ps ? Status::OK()
           : session.Run(feeds, {comm ? sync.agreement : m.loss}, {train_op->train}, &out, &stats);
    if (!run.ok()) {
      return failed(
          Status(run.code(),
                 StrCat("at step ", r.steps + 1, " (epoch ", b.epoch + 1, "): ", run.message(),
                        run.code() == Code::kAborted ? "; lower the learning rate (--lr)" : "")));
    }
    for (const RunStats::NodeTime& t : stats.node_times) {
      auto& entry = op_seconds[t.node->op()];
      entry.first += t.seconds;
      ++entry.second;
    }
    if (!ps) {
      // With comm every rank has the same agreement (loss sum, examples, stop votes), so every
      // rank takes the same decisions below.
      const float* agreed = out[0].data<float>();
      r.final_loss = comm ? agreed[0] / std::max(agreed[1], 1.0f) : agreed[0];
      stop = comm ? agreed[2] > 0 : g_stop_requested.load();
      checkpoint_now = comm ? agreed[3] > 0
                            : cfg.checkpoint_seconds > 0 &&
                                  Seconds(Clock::now() - last_save) >= cfg.checkpoint_seconds;
    }
    const double dt = Seconds(Clock::now() - t0);
    if (!std::isfinite(r.final_loss)) {
      return failed(Status(Code::kAborted,
                           StrCat("the loss is NaN or Inf (", r.final_loss,
                                  comm ? ", on some rank" : "", ") at step ", r.steps + 1,
                                  " (epoch ", b.epoch + 1, "): lower the learning rate (--lr)")));
    }
    ++r.steps;
    // ps: the servers write the checkpoints.
    checkpoint_now = !ps && (checkpoint_now ||
                             (cfg.checkpoint_every > 0 && r.steps % cfg.checkpoint_every == 0));
    // ps: epochs by the version now held. A straggler may jump past an epoch's last batch, so
    // an epoch ends where the version crosses a multiple of per_epoch: every worker crosses
    // each once and evaluates (collectively) the same number of times.
    const bool crossed = ps && r.steps / per_epoch != steps_before / per_epoch;
    const int64_t epoch = !ps       ? b.epoch
                          : crossed ? r.steps / per_epoch - 1
                                    : (r.steps - 1) / per_epoch;
    if (r.steps > kWarmupSteps) {
      timed_seconds += dt;
      timed_samples += n;
    }
    window_seconds += dt;
    window_samples += n;
    const bool epoch_end =
        ps ? crossed || r.steps == total_steps : b.index == per_epoch - 1 || r.steps == total_steps;
    if (r.steps % cfg.log_every == 0 || epoch_end) {
      const double rate = window_samples / std::max(window_seconds, 1e-9);
      const double eta = (total_steps - r.steps) * global_batch / std::max(rate, 1e-9);
      char line[256];
      std::snprintf(line, sizeof(line),
                    "step %lld/%lld  epoch %lld/%lld  loss %.4f  %.1f samples/s  ETA %s\n",
                    static_cast<long long>(r.steps), static_cast<long long>(total_steps),
                    static_cast<long long>(epoch + 1), static_cast<long long>(cfg.epochs),
                    r.final_loss, rate, FormatDuration(eta).c_str());
      log << line << std::flush;
      if (metrics) {
        *metrics << "{\"step\":" << r.steps << ",\"epoch\":" << epoch + 1
                 << ",\"loss\":" << r.final_loss << ",\"samples_per_sec\":" << rate << "}\n";
      }
      window_seconds = 0;
      window_samples = 0;
    }
    if (epoch_end && epoch != epoch_done) {
      epoch_done = epoch;
      r.epochs = epoch + 1;
      if (cfg.eval) {
        const auto e0 = Clock::now();
        StatusOr<double> acc =
            Evaluate(session, m, test, cfg.eval_batch_size, eval_comm, local, global_test);
        if (!acc.ok()) return failed(acc.status());
        const double es = Seconds(Clock::now() - e0);
        eval_seconds += es;
        r.test_accuracy = *acc;
        char line[160];
        std::snprintf(line, sizeof(line),
                      "epoch %lld/%lld  test_accuracy %.4f  (%lld images, %.1f s)\n",
                      static_cast<long long>(epoch + 1), static_cast<long long>(cfg.epochs), *acc,
                      static_cast<long long>(test.count), es);
        log << line << std::flush;
        if (metrics) {
          *metrics << "{\"epoch\":" << epoch + 1 << ",\"test_accuracy\":" << *acc << "}\n";
        }
      }
    }
    // A preemption (every rank saw the same stop vote) always writes a checkpoint.
    if (!ps && ((checkpointing && checkpoint_now) || stop)) {
      MPIFLOW_RETURN_IF_ERROR(failed(save()));
    }
    if (stop) {
      r.preempted = true;
      log << "mpiflow: stopped by SIGTERM/SIGUSR1 after step " << r.steps
          << "; resume with --resume latest (exit code " << kExitPreempted << ")\n";
      break;
    }
  }
  if (!ps && checkpointing && !r.preempted && r.steps > 0 &&
      r.last_checkpoint != checkpoint_dir + "/" + CheckpointName(r.steps)) {
    MPIFLOW_RETURN_IF_ERROR(save());  // the final state, so that a resume of a done run is one
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
  r.ranks = ranks;
  if (ps) r.stale_dropped = reply.dropped;
  for (const VariableInfo& v : root.graph()->variables()) {
    // ps: a worker's slots were never updated (the servers hold them).
    if (ps && !v.trainable && v.variable->name() != global_step_name) continue;
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    r.variables.emplace_back(v.variable->name(), *t);
  }
  return r;
}

}  // namespace mpiflow
