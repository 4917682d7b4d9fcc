// mpiflow-train's command line (TrainMain), the front end of Train(). Options come from the command
// line and an optional INI job file (--config); the command line wins. Under mpirun/srun with
// several ranks it starts the communicator and trains data-parallel. Exit codes: 0 done, 1 training
// failed (the reason on stderr), 2 bad options or job file, 3 the stall inspector gave up,
// 75 preempted (SIGTERM/SIGUSR1) after writing a checkpoint: requeue and --resume latest.
#include "train_main.h"

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "mpiflow/communicator.h"
#include "mpiflow/signals.h"
#include "mpiflow/timeline.h"
#include "mpiflow/trainer.h"

namespace po = boost::program_options;
using mpiflow::TrainConfig;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// A default as a person writes it: Boost would print 0.1 as 0.10000000000000001.
std::string Text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

// The options that arrive as text and are parsed into types after reading (ParseTyped).
struct CommandLine {
  std::string config_file, lr_kind = "constant", timeline, allreduce_rules;
  bool print_model = false;
  std::string optimizer = "adam", model = "mlp", dataset = "fashion-mnist", strategy = "auto",
              allreduce = "auto", sparse_sync = "auto", data_sharding = "global", ps_mode = "sync",
              device = "auto", precision = "fp32", allreduce_compression = "none", straggler_ranks;
  mpiflow::CollectiveOptions collectives;
};

// *out = parse(text), or the parse error.
template <typename T, typename Parse>
mpiflow::Status ParseInto(T* out, Parse parse, const std::string& text) {
  auto value = parse(text);
  if (!value.ok()) return value.status();
  *out = *value;
  return mpiflow::Status::OK();
}

// "1,3" -> {1, 3}: ranks, each a non-negative integer.
mpiflow::StatusOr<std::vector<int>> ParseRankList(const std::string& option,
                                                  const std::string& text) {
  std::vector<int> ranks;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    size_t used = 0;
    int v = -1;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0) {
      return mpiflow::InvalidArgument(option, " '", text, "': '", item,
                                      "' is not a rank (a list of ranks: 1,3)");
    }
    ranks.push_back(v);
  }
  return ranks;
}

// The text options into the config's enums; the first bad one is the error.
mpiflow::Status ParseTyped(const CommandLine& cl, TrainConfig* c) {
  c->model = cl.model;
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->dataset, mpiflow::ParseDataset, cl.dataset));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->strategy, mpiflow::ParseStrategy, cl.strategy));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->device, mpiflow::ParseDeviceChoice, cl.device));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->precision, mpiflow::ParseMathPrecision, cl.precision));
  MPIFLOW_RETURN_IF_ERROR(
      ParseInto(&c->allreduce.algorithm, mpiflow::ParseAllreduceAlgorithm, cl.allreduce));
  MPIFLOW_RETURN_IF_ERROR(
      ParseInto(&c->allreduce.sparse, mpiflow::ParseSparseSync, cl.sparse_sync));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->allreduce.compression, mpiflow::ParseAllreduceCompression,
                                    cl.allreduce_compression));
  c->ps.sparse = c->allreduce.sparse;  // one option for both strategies
  MPIFLOW_RETURN_IF_ERROR(
      ParseInto(&c->data_sharding, mpiflow::ParseDataSharding, cl.data_sharding));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->optimizer.kind, mpiflow::ParseOptimizer, cl.optimizer));
  MPIFLOW_RETURN_IF_ERROR(ParseInto(&c->ps.mode, mpiflow::ParsePsMode, cl.ps_mode));
  if (!cl.straggler_ranks.empty()) {
    MPIFLOW_RETURN_IF_ERROR(ParseInto(
        &c->stragglers.ranks,
        [](const std::string& t) { return ParseRankList("--straggler-ranks", t); },
        cl.straggler_ranks));
  }
  return ParseInto(&c->optimizer.lr.kind, mpiflow::ops::ParseLearningRateSchedule, cl.lr_kind);
}

po::options_description Options(TrainConfig* c, CommandLine* cl) {
  std::string* config_file = &cl->config_file;
  std::string* lr_kind = &cl->lr_kind;
  mpiflow::CollectiveOptions* co = &cl->collectives;
  po::options_description d("mpiflow-train options (also valid as keys of an INI job file)");
  // clang-format off
  {
    po::options_description g("General");
    g.add_options()
      ("help,h", "print this help and exit")
      ("version", "print mpiflow's version and exit")
      ("config", po::value(config_file)->value_name("FILE"),
       "INI job file with any of these options as key = value (jobs/*.ini); the command line wins");
    d.add(g);
  }
  {
    po::options_description g("Model and data");
    g.add_options()
      ("model", po::value(&cl->model)->default_value(cl->model),
       "a built-in model (mlp, cnn, wide_mlp, embed_bag: models/*.ini) or a model file of your own "
       "(models/README.md)")
      ("print-model", po::bool_switch(&cl->print_model),
       "print the model's layers, output shapes and parameter counts for the data, and exit")
      ("dataset", po::value(&cl->dataset)->default_value(cl->dataset),
       "fashion-mnist (IDX files in --data-dir), hdf5 (--data-dir is a file from mpiflow-data "
       "convert), synthetic, or wordnet-lexname (WordNet's glosses as word ids, 45 classes: "
       "../shared/datasets/wordnet-lexname.md; for --model embed_bag)")
      ("data-dir", po::value(&c->data_dir)->default_value(c->data_dir),
       "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]; for wordnet-lexname "
       "WordNet's data.noun ... (default there: /usr/share/wordnet)")
      ("synthetic-train", po::value(&c->synthetic_train)->default_value(c->synthetic_train),
       "training examples when --dataset=synthetic")
      ("synthetic-test", po::value(&c->synthetic_test)->default_value(c->synthetic_test),
       "test examples when --dataset=synthetic")
      ("data-sharding", po::value(&cl->data_sharding)->default_value(cl->data_sharding),
       "global: every rank loads all training data and takes its part of each global batch (N "
       "ranks train like one with N x the batch); local: each rank reads only its share (an HDF5 "
       "hyperslab) and shuffles within it, for data larger than memory")
      ("prefetch", po::value(&c->prefetch)->default_value(c->prefetch),
       "batches prepared ahead on a background thread")
      ("seed", po::value(&c->seed)->default_value(c->seed),
       "seeds initial weights, shuffling and dropout: same seed, same result");
    d.add(g);
  }
  {
    po::options_description g("Training");
    g.add_options()
      ("epochs", po::value(&c->epochs)->default_value(c->epochs), "passes over the training set")
      ("batch-size", po::value(&c->batch_size)->default_value(c->batch_size),
       "examples per step (per rank)")
      ("max-steps", po::value(&c->max_steps)->default_value(c->max_steps),
       "stop after this many steps (-1: run every epoch)")
      ("eval", po::value(&c->eval)->default_value(true, "true"), "test accuracy after each epoch")
      ("eval-batch-size", po::value(&c->eval_batch_size)->default_value(c->eval_batch_size),
       "examples per evaluation step")
      ("device", po::value(&cl->device)->default_value(cl->device),
       "gpu: each rank uses its node's GPU number (node-local rank mod GPUs), with CUDA kernels "
       "where an op has one; cpu; or auto: gpu where this build has CUDA and a GPU is visible")
      ("precision", po::value(&cl->precision)->default_value(cl->precision),
       "with --device gpu, the matrix products' arithmetic: fp32, tf32, or bf16 / fp16 (inputs "
       "rounded for the tensor cores, float32 sums; weights and activations stay float32); "
       "convolutions: fp32, else TF32")
      ("threads", po::value(&c->threads)->default_value(c->threads),
       "threads one kernel may use (OpenBLAS and mpiflow's own); the environment is ignored")
      ("inter-op-threads", po::value(&c->inter_op_threads)->default_value(c->inter_op_threads),
       "graph nodes run concurrently");
    d.add(g);
  }
  {
    po::options_description g("Optimizer and learning rate");
    g.add_options()
      ("optimizer", po::value(&cl->optimizer)->default_value(cl->optimizer),
       "sgd, momentum, rmsprop or adam")
      ("lr", po::value(&c->optimizer.lr.base)->default_value(c->optimizer.lr.base, Text(c->optimizer.lr.base)),
       "base learning rate")
      ("lr-schedule", po::value(lr_kind)->default_value(*lr_kind),
       "constant, step or cosine")
      ("warmup-steps", po::value(&c->optimizer.lr.warmup_steps)->default_value(0),
       "linear learning-rate warm-up steps")
      ("decay-steps", po::value(&c->optimizer.lr.decay_steps)->default_value(0),
       "step: steps between decays; cosine: steps to decay over; 0: the whole run")
      ("decay-rate", po::value(&c->optimizer.lr.decay_rate)->default_value(0.1, "0.1"),
       "step schedule: factor per decay")
      ("momentum", po::value(&c->optimizer.momentum)->default_value(c->optimizer.momentum, Text(c->optimizer.momentum)),
       "momentum optimizer coefficient")
      ("nesterov", po::value(&c->optimizer.nesterov)->default_value(false, "false"),
       "Nesterov momentum (true/false)")
      ("lazy-sparse", po::value(&c->optimizer.lazy_sparse)->default_value(true, "true"),
       "a sparse gradient (embedding_bag's table) updates only its rows and their momentum or "
       "Adam moments; false: momentum and Adam update every row, as dense");
    d.add(g);
  }
  {
    po::options_description g("Distribution over ranks");
    g.add_options()
      ("strategy", po::value(&cl->strategy)->default_value(cl->strategy),
       "auto (pipeline with --pipeline-stages > 1, else allreduce under several ranks), "
       "allreduce, ps (parameter servers: see --ps-ranks), pipeline (model parallelism: see "
       "--pipeline-stages), or none (one rank only)")
      ("pipeline-stages", po::value(&c->pipeline.stages)->default_value(c->pipeline.stages),
       "model parallelism: cut the model into N stages, one per rank (by the cost model of "
       "FLOPs and transfer bytes, or the model's device hints); run with mpirun -np N")
      ("microbatches", po::value(&c->pipeline.microbatches)->default_value(c->pipeline.microbatches),
       "with --strategy pipeline: each batch flows through the stages as M microbatches "
       "(GPipe fill and drain; gradients summed, one update per batch); on one rank: gradient "
       "accumulation")
      ("print-placement",
       po::value(&c->pipeline.print_placement)->default_value(false, "false")->implicit_value(true, "true"),
       "with --strategy pipeline: print every node's device and the bytes that cross each cut")
      ("ps-ranks", po::value(&c->ps.servers)->default_value(c->ps.servers),
       "with --strategy ps: the last N ranks are parameter servers, each holding a share of the "
       "variables (balanced by size); the other ranks are workers")
      ("backup-workers", po::value(&c->ps.backup_workers)->default_value(c->ps.backup_workers),
       "with --strategy ps: each step uses the first (workers - N) gradients to arrive and drops "
       "the stragglers' (synchronous training that does not wait for the slowest N)")
      ("ps-mode", po::value(&cl->ps_mode)->default_value(cl->ps_mode),
       "with --strategy ps: sync (each step averages the workers' pushes), async (each push is "
       "applied when it arrives), or hybrid (groups of --group-size workers average by allreduce "
       "and push asynchronously)")
      ("max-staleness", po::value(&c->ps.max_staleness)->default_value(c->ps.max_staleness),
       "with --ps-mode async or hybrid: drop a push computed on values more than N updates "
       "older than the server's (-1: apply every push)")
      ("group-size", po::value(&c->ps.group_size)->default_value(c->ps.group_size),
       "with --ps-mode hybrid: workers per group (the last group takes the rest)")
      ("straggler-ranks", po::value(&cl->straggler_ranks)->value_name("LIST"),
       "experiments: these ranks (e.g. 1,3) sleep --straggler-delay-ms before every step")
      ("straggler-delay-ms", po::value(&c->stragglers.delay_ms)->default_value(0, "0"),
       "the stragglers' sleep per step, in milliseconds")
      ("straggler-jitter",
       po::value(&c->stragglers.jitter)->default_value(false, "false")->implicit_value(true, "true"),
       "sleep a random time in [0, 2 x --straggler-delay-ms) instead, drawn from --seed, the rank "
       "and the step")
      ("bucket-mb", po::value(&c->allreduce.bucket_mb)->default_value(c->allreduce.bucket_mb, Text(c->allreduce.bucket_mb)),
       "gradient fusion bucket size in MiB: each bucket's allreduce starts as soon as its "
       "gradients exist")
      ("allreduce-compression",
       po::value(&cl->allreduce_compression)->default_value(cl->allreduce_compression),
       "float32 gradients on the wire as none (float32), bf16 or fp16: half the bytes, converted "
       "inside the ring's chunks (sums stay float32; the ring or hier algorithm)")
      ("allreduce", po::value(&cl->allreduce)->default_value(cl->allreduce),
       "allreduce algorithm for gradient buckets: auto (see --allreduce-rules), native (the MPI "
       "library's MPI_Allreduce), ring, hd (halving-doubling), rd (recursive doubling), hier "
       "(a ring inside each node, then across nodes, then inside again)")
      ("sparse-sync", po::value(&cl->sparse_sync)->default_value(cl->sparse_sync),
       "sparse gradients (an embedding's rows) with --strategy allreduce: allgather (every "
       "rank's touched rows; lazy optimizers update only those), dense (scattered into the "
       "table's shape and allreduced), or auto (allgather when it moves fewer bytes); with "
       "--strategy ps (sync, async): anything but dense moves only the rows a step touches "
       "(with sgd, or momentum and adam, which update only those rows)")
      ("allreduce-rules", po::value(&cl->allreduce_rules)->value_name("RULES"),
       "what auto picks, first match wins: e.g. rd:<=32768,ring (algorithm[:<=bytes][@>=ranks])")
      ("stall-warning-seconds", po::value(&co->stall_warning_seconds)
                                    ->default_value(co->stall_warning_seconds, Text(co->stall_warning_seconds)),
       "a collective waiting this long prints which ranks have not arrived")
      ("stall-abort-seconds", po::value(&co->stall_abort_seconds)
                                  ->default_value(co->stall_abort_seconds, Text(co->stall_abort_seconds)),
       "... and after this long aborts the job (exit code 3)");
    d.add(g);
  }
  {
    po::options_description g("Checkpoints and preemption");
    g.add_options()
      ("checkpoint-dir", po::value(&c->checkpoint.dir)->value_name("DIR"),
       "where checkpoints go (default: <output-dir>/checkpoints): ckpt-<step>.h5 and 'latest'")
      ("checkpoint-every", po::value(&c->checkpoint.every_steps)->default_value(0),
       "write an HDF5 checkpoint every N steps (0: off)")
      ("checkpoint-seconds", po::value(&c->checkpoint.every_seconds)->default_value(0, "0"),
       "... and/or every N seconds (0: off)")
      ("keep-checkpoints", po::value(&c->checkpoint.keep)->default_value(c->checkpoint.keep),
       "keep the newest N checkpoints")
      ("resume", po::value(&c->checkpoint.resume)->value_name("latest|FILE"),
       "continue from the latest checkpoint in --checkpoint-dir, or from FILE, exactly where it "
       "stopped");
    d.add(g);
  }
  {
    po::options_description g("Output and diagnostics");
    g.add_options()
      ("output-dir", po::value(&c->output_dir)->default_value("mpiflow-out"),
       "where metrics.jsonl and graph.mpg go")
      ("log-every", po::value(&c->log_every)->default_value(c->log_every),
       "progress line on stderr every N steps")
      ("profile", po::value(&c->profile)->default_value(false, "false"),
       "time every kernel after the first 20 steps and print ms/step per op type at the end")
      ("timeline", po::value(&cl->timeline)->value_name("FILE"),
       "write a Chrome-trace JSON (Perfetto, chrome://tracing) of ops, buckets, allreduces and "
       "waits; '%r' in FILE becomes the rank, and rank 0 merges all ranks into FILE with %r -> all");
    d.add(g);
  }
  // clang-format on
  return d;
}

// Bytes as MiB with one decimal.
std::string Mib(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(bytes) / (1 << 20));
  return b;
}

// The staleness histogram as "0:12,1:40,...,15+:3" (empty buckets left out).
std::string StalenessText(const std::vector<int64_t>& h) {
  std::string s;
  for (size_t b = 0; b < h.size(); ++b) {
    if (h[b] == 0) continue;
    s += mpiflow::StrCat(s.empty() ? "" : ",", b, b + 1 == h.size() ? "+" : "", ":", h[b]);
  }
  return s.empty() ? "none" : s;
}

}  // namespace

int mpiflow::ParseTrainCommandLine(int argc, char** argv, TrainCommandLine* out) {
  TrainConfig config;
  config.optimizer.lr.base = 0.001;
  CommandLine cl;
  std::string& config_file = cl.config_file;
  po::options_description desc = Options(&config, &cl);
  po::variables_map vm;
  if (!mpiflow::cli::CheckArguments("mpiflow-train", argc, argv)) return kExitUsage;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).style(mpiflow::cli::kStyle).run(),
              vm);
    if (vm.count("version")) {
      mpiflow::cli::PrintVersion("mpiflow-train");
      return 0;
    }
    if (vm.count("help")) {
      std::cout
          << "Usage: mpiflow-train [options]\n"
          << "Trains a model (built in or from a model file) on Fashion-MNIST, an HDF5 file or "
             "synthetic data and prints one summary "
             "line on stdout.\nExit codes: 0 done, 1 training failed, 2 bad options, 3 "
             "stalled, 75 preempted (checkpoint written: requeue with --resume latest).\n\n"
          << desc << "\nExample:\n  mpiflow-train --config jobs/fashion_mlp.ini --epochs 1\n";
      return 0;
    }
    if (vm.count("config")) {
      const std::string file = vm["config"].as<std::string>();
      std::ifstream f(file);
      if (!f) {
        std::cerr << "mpiflow-train: cannot open job file '" << file << "'\n";
        return kExitUsage;
      }
      std::stringstream in;
      in << f.rdbuf();
      const std::string bad = mpiflow::cli::PlaceholderIn(in.str());
      if (!bad.empty()) {
        std::cerr << "mpiflow-train: in job file '" << file << "': '" << bad
                  << "' is not a value any option takes\n";
        return kExitUsage;
      }
      try {
        po::store(po::parse_config_file(in, desc, false), vm);
      } catch (const po::error& e) {
        std::cerr << "mpiflow-train: in job file '" << file << "': " << e.what() << "\n";
        return kExitUsage;
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "mpiflow-train: " << e.what() << " (see --help)\n";
    return kExitUsage;
  }
  mpiflow::Status typed = ParseTyped(cl, &config);
  if (!typed.ok()) {
    std::cerr << "mpiflow-train: " << typed.message() << (config_file.empty() ? "" : " (job file '")
              << config_file << (config_file.empty() ? "" : "')") << "\n";
    return kExitUsage;
  }
  if (!cl.allreduce_rules.empty()) {
    auto rules = mpiflow::ParseAllreduceRules(cl.allreduce_rules);
    if (!rules.ok()) {
      std::cerr << "mpiflow-train: --allreduce-rules: " << rules.status().message() << "\n";
      return kExitUsage;
    }
    cl.collectives.allreduce_rules = *rules;
  }
  const mpiflow::CollectiveOptions& co = cl.collectives;
  if (!(co.stall_warning_seconds > 0) || !(co.stall_abort_seconds > co.stall_warning_seconds)) {
    std::cerr << "mpiflow-train: --stall-warning-seconds (" << co.stall_warning_seconds
              << ") must be positive and below --stall-abort-seconds (" << co.stall_abort_seconds
              << ")\n";
    return kExitUsage;
  }
  mpiflow::Status valid = mpiflow::ValidateTrainConfig(config);
  if (!valid.ok()) {
    std::cerr << "mpiflow-train: " << valid.message() << (config_file.empty() ? "" : " (job file '")
              << config_file << (config_file.empty() ? "" : "')") << "\n";
    return kExitUsage;
  }
  // A model file with a mistake is a usage error too, told before MPI starts.
  mpiflow::StatusOr<mpiflow::ModelSpec> spec = mpiflow::LoadModelSpec(config.model);
  if (!spec.ok()) {
    std::cerr << "mpiflow-train: " << spec.status().message() << "\n";
    return kExitUsage;
  }
  out->config = config;
  out->config_file = config_file;
  out->print_model = cl.print_model;
  out->timeline = cl.timeline;
  out->collectives = cl.collectives;
  return kGoOn;
}

int mpiflow::TrainMain(int argc, char** argv, mpiflow::FaultHooks* hooks) {
  // First thing: a SIGTERM/SIGUSR1 from here on (MPI start-up, data loading) stops the run
  // after its first step with a checkpoint and exit 75, never with 143.
  mpiflow::StopToken stop;
  mpiflow::ScopedPreemptionSignals signals(&stop);
  if (hooks) hooks->BeforeStep(0, 0);
  TrainCommandLine parsed;
  const int code = ParseTrainCommandLine(argc, argv, &parsed);
  if (code != kGoOn) return code;
  const TrainConfig& config = parsed.config;
  TrainCommandLine& cl = parsed;
  if (cl.print_model) {
    mpiflow::StatusOr<std::string> text = mpiflow::ModelSummary(config);
    if (!text.ok()) {
      std::cerr << "mpiflow-train: " << text.status().message() << "\n";
      return text.status().code() == mpiflow::Code::kInvalidArgument ? kExitUsage : kExitFailed;
    }
    std::cout << *text;
    return 0;
  }

  // Parameter servers need a server and a worker: say so before starting MPI for one rank.
  const bool ps = config.strategy == mpiflow::StrategyKind::kParameterServer;
  if (ps && !mpiflow::LaunchedWithSeveralRanks()) {
    std::cerr << "mpiflow-train: " << mpiflow::CheckParameterServerRanks(1, config.ps).message()
              << " (start it with mpirun -np N or srun)\n";
    return kExitUsage;
  }
  // Several ranks: start the communicator (its thread initialises MPI).
  mpiflow::Communicator* comm = nullptr;
  if (mpiflow::LaunchedWithSeveralRanks() || config.strategy == mpiflow::StrategyKind::kAllReduce ||
      ps || config.pipeline.stages > 1) {
    if (!cl.timeline.empty() && cl.timeline.find("%r") == std::string::npos) {
      cl.timeline += ".rank%r.json";
    }
    cl.collectives.timeline_path = cl.timeline;
    mpiflow::StatusOr<mpiflow::Communicator*> world = mpiflow::WorldCommunicator(cl.collectives);
    if (!world.ok()) {
      std::cerr << "mpiflow-train: " << world.status().message() << "\n";
      return world.status().code() == mpiflow::Code::kInvalidArgument ? kExitUsage : kExitFailed;
    }
    comm = *world;
    if (comm->size() > 1 &&
        config.strategy == mpiflow::StrategyKind::kNone) {  // the same answer on every rank
      if (comm->rank() == 0) {
        std::cerr << "mpiflow-train: --strategy none under " << comm->size()
                  << " ranks would train separate copies of the model: use --strategy "
                     "allreduce (the default), or run one rank\n";
      }
      return kExitUsage;
    }
  }
  std::unique_ptr<mpiflow::Timeline> local_timeline;
  mpiflow::Timeline* timeline = comm ? comm->timeline() : nullptr;
  if (!comm && !cl.timeline.empty()) {
    std::string path = cl.timeline;
    const size_t at = path.find("%r");
    if (at != std::string::npos) path.replace(at, 2, "0");
    local_timeline = std::make_unique<mpiflow::Timeline>(path, 0);
    timeline = local_timeline.get();
  }
  const int rank = comm ? comm->rank() : 0;
  mpiflow::StatusOr<mpiflow::TrainResult> r =
      mpiflow::Train(config, std::cerr, comm, timeline, hooks);
  if (!r.ok()) {
    const std::string prefix = comm && comm->size() > 1
                                   ? mpiflow::StrCat("mpiflow-train: rank ", rank, ": error: ")
                                   : std::string("mpiflow-train: error: ");
    if (comm && comm->size() > 1 && r.status().code() != mpiflow::Code::kAborted) {
      // This rank's own failure: the others would wait for it forever, so end the job.
      comm->Abort(kExitFailed, prefix + r.status().ToString());
    }
    // One write, so that the lines of several ranks do not interleave.
    std::fprintf(stderr, "%s%s\n", prefix.c_str(), r.status().ToString().c_str());
    std::fflush(stderr);
    return kExitFailed;
  }
  if (timeline) {
    mpiflow::Status w = timeline->Write();
    if (!w.ok()) std::cerr << "mpiflow-train: " << w.message() << "\n";
    if (comm && comm->size() > 1) {
      (void)comm->Barrier()->Wait();
      if (rank == 0) {
        std::vector<std::string> files;
        for (int q = 0; q < comm->size(); ++q) {
          std::string f = cl.timeline;
          f.replace(f.find("%r"), 2, std::to_string(q));
          files.push_back(f);
        }
        std::string merged = cl.timeline;
        merged.replace(merged.find("%r"), 2, "all");
        w = mpiflow::MergeTimelines(files, merged);
        std::cerr << "mpiflow-train: "
                  << (w.ok() ? "timeline of all ranks in '" + merged + "'" : w.message()) << "\n";
      }
    }
  }
  if (r->preempted) return mpiflow::kExitPreempted;  // every rank: a job script can requeue
  if (rank != 0) return 0;
  const std::string ps_fields =
      ps ? mpiflow::StrCat(
               " ps_ranks=", config.ps.servers, " ps_mode=", mpiflow::PsModeName(config.ps.mode),
               " backup_workers=", config.ps.backup_workers, " stale_dropped=", r->stale_dropped,
               " pushed_mib=", Mib(r->ps_pushed_bytes), " received_mib=", Mib(r->ps_received_bytes),
               config.ps.mode == mpiflow::PsMode::kSync
                   ? std::string()
                   : mpiflow::StrCat(" updates=", r->ps_updates,
                                     " staleness=", StalenessText(r->staleness)))
      : config.strategy == mpiflow::StrategyKind::kPipeline || config.pipeline.stages > 1
          ? mpiflow::StrCat(" stages=", config.pipeline.stages,
                            " microbatches=", config.pipeline.microbatches)
          : std::string();
  std::printf(
      "summary: model=%s epochs=%lld steps=%lld test_accuracy=%.4f samples_per_sec=%.1f "
      "peak_rss_mib=%.0f ranks=%d%s\n",
      config.model.c_str(), static_cast<long long>(r->epochs), static_cast<long long>(r->steps),
      r->test_accuracy, r->samples_per_sec, r->peak_rss_mib, r->ranks, ps_fields.c_str());
  return 0;
}
