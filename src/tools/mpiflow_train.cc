// mpiflow-train: the command-line front end of Train(). Options come from the command line and
// an optional INI job file (--config); the command line wins. Exit codes: 0 done, 1 training
// failed (the reason on stderr), 2 bad options or job file.
#include <boost/program_options.hpp>
#include <fstream>
#include <iostream>

#include "mpiflow/trainer.h"

namespace po = boost::program_options;
using mpiflow::TrainConfig;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

po::options_description Options(TrainConfig* c, std::string* config_file, std::string* lr_kind) {
  po::options_description d("mpiflow-train options (also valid as keys of an INI job file)");
  // clang-format off
  d.add_options()
    ("help,h", "print this help and exit")
    ("config", po::value(config_file)->value_name("FILE"),
     "INI job file with any of these options as key = value (jobs/*.ini); the command line wins")
    ("model", po::value(&c->model)->default_value(c->model), "mlp or cnn")
    ("dataset", po::value(&c->dataset)->default_value(c->dataset),
     "fashion-mnist (IDX files in --data-dir) or synthetic")
    ("data-dir", po::value(&c->data_dir)->default_value(c->data_dir),
     "directory with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]")
    ("epochs", po::value(&c->epochs)->default_value(c->epochs), "passes over the training set")
    ("batch-size", po::value(&c->batch_size)->default_value(c->batch_size),
     "examples per step (per rank)")
    ("max-steps", po::value(&c->max_steps)->default_value(c->max_steps),
     "stop after this many steps (-1: run every epoch)")
    ("optimizer", po::value(&c->optimizer.name)->default_value(c->optimizer.name),
     "sgd, momentum, rmsprop or adam")
    ("lr", po::value(&c->optimizer.lr.base)->default_value(c->optimizer.lr.base),
     "base learning rate")
    ("lr-schedule", po::value(lr_kind)->default_value(c->optimizer.lr.kind),
     "constant, step or cosine")
    ("warmup-steps", po::value(&c->optimizer.lr.warmup_steps)->default_value(0),
     "linear learning-rate warm-up steps")
    ("decay-steps", po::value(&c->optimizer.lr.decay_steps)->default_value(0),
     "step: steps between decays; cosine: steps to decay over; 0: the whole run")
    ("decay-rate", po::value(&c->optimizer.lr.decay_rate)->default_value(0.1),
     "step schedule: factor per decay")
    ("momentum", po::value(&c->optimizer.momentum)->default_value(c->optimizer.momentum),
     "momentum optimizer coefficient")
    ("nesterov", po::value(&c->optimizer.nesterov)->default_value(false),
     "Nesterov momentum (true/false)")
    ("threads", po::value(&c->threads)->default_value(c->threads),
     "threads one kernel may use (OpenBLAS and mpiflow's own); the environment is ignored")
    ("inter-op-threads", po::value(&c->inter_op_threads)->default_value(c->inter_op_threads),
     "graph nodes run concurrently")
    ("seed", po::value(&c->seed)->default_value(c->seed),
     "seeds initial weights, shuffling and dropout: same seed, same result")
    ("output-dir", po::value(&c->output_dir)->default_value("mpiflow-out"),
     "where metrics.jsonl and graph.mpg go")
    ("log-every", po::value(&c->log_every)->default_value(c->log_every),
     "progress line on stderr every N steps")
    ("eval", po::value(&c->eval)->default_value(true), "test accuracy after each epoch")
    ("profile", po::value(&c->profile)->default_value(false),
     "time every kernel after the first 20 steps and print ms/step per op type at the end")
    ("eval-batch-size", po::value(&c->eval_batch_size)->default_value(c->eval_batch_size),
     "examples per evaluation step")
    ("prefetch", po::value(&c->prefetch)->default_value(c->prefetch),
     "batches prepared ahead on a background thread")
    ("synthetic-train", po::value(&c->synthetic_train)->default_value(c->synthetic_train),
     "training examples when --dataset=synthetic")
    ("synthetic-test", po::value(&c->synthetic_test)->default_value(c->synthetic_test),
     "test examples when --dataset=synthetic");
  // clang-format on
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  TrainConfig config;
  config.optimizer.name = "adam";
  config.optimizer.lr.base = 0.001;
  std::string config_file, lr_kind;
  po::options_description desc = Options(&config, &config_file, &lr_kind);
  po::variables_map vm;
  try {
    const int style = po::command_line_style::unix_style ^ po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(argc, argv).options(desc).style(style).run(), vm);
    if (vm.count("help")) {
      std::cout << "Usage: mpiflow-train [options]\n"
                << "Trains a model on Fashion-MNIST (or synthetic data) and prints one summary "
                   "line on stdout.\nExit codes: 0 done, 1 training failed, 2 bad options.\n\n"
                << desc << "\nExample:\n  mpiflow-train --config jobs/fashion_mlp.ini --epochs 1\n";
      return 0;
    }
    if (vm.count("config")) {
      const std::string file = vm["config"].as<std::string>();
      std::ifstream in(file);
      if (!in) {
        std::cerr << "mpiflow-train: cannot open job file '" << file << "'\n";
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
  config.optimizer.lr.kind = lr_kind;
  mpiflow::Status valid = mpiflow::ValidateTrainConfig(config);
  if (!valid.ok()) {
    std::cerr << "mpiflow-train: " << valid.message() << (config_file.empty() ? "" : " (job file '")
              << config_file << (config_file.empty() ? "" : "')") << "\n";
    return kExitUsage;
  }
  mpiflow::StatusOr<mpiflow::TrainResult> r = mpiflow::Train(config, std::cerr);
  if (!r.ok()) {
    std::cerr << "mpiflow-train: error: " << r.status() << "\n";
    return kExitFailed;
  }
  std::printf(
      "summary: model=%s epochs=%lld steps=%lld test_accuracy=%.4f samples_per_sec=%.1f "
      "peak_rss_mib=%.0f\n",
      config.model.c_str(), static_cast<long long>(r->epochs), static_cast<long long>(r->steps),
      r->test_accuracy, r->samples_per_sec, r->peak_rss_mib);
  return 0;
}
