// The model, data and checkpoint options of mpiflow-predict and mpiflow-export (model_cli.h).
#include "model_cli.h"

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.h"

namespace po = boost::program_options;

namespace mpiflow::cli {

po::options_description ModelOptions(ModelArgs* a) {
  TrainConfig& t = a->config.train;
  po::options_description d("the trained model and its data");
  // clang-format off
  d.add_options()
    ("config", po::value(&a->job)->value_name("FILE"),
     "the training job file: its model, dataset, data-dir and seed (other keys are ignored); "
     "the command line wins")
    ("model", po::value(&t.model)->default_value(t.model), "the model trained: a built-in or a model file")
    ("checkpoint", po::value(&a->config.checkpoint)->value_name("PATH"),
     "a checkpoint file, or a checkpoint directory (its latest) (needed)")
    ("dataset", po::value(&a->dataset)->default_value(a->dataset), "fashion-mnist, hdf5, synthetic or wordnet-lexname")
    ("data-dir", po::value(&t.data_dir)->default_value(t.data_dir), "as mpiflow-train's")
    ("synthetic-train", po::value(&t.synthetic_train)->default_value(t.synthetic_train), "as mpiflow-train's")
    ("synthetic-test", po::value(&t.synthetic_test)->default_value(t.synthetic_test), "as mpiflow-train's")
    ("seed", po::value(&t.seed)->default_value(t.seed), "as mpiflow-train's (synthetic data depends on it)")
    ("split", po::value(&a->split)->default_value(a->split), "test or train")
    ("threads", po::value(&t.threads)->default_value(t.threads), "threads one kernel may use");
  // clang-format on
  return d;
}

namespace {

// The job file's keys that `options` knows, then the words typed: "" or what is wrong.
std::string FinishModelOptions(const po::options_description& options, po::variables_map* vm,
                               ModelArgs* a) {
  if (!a->job.empty()) {
    std::ifstream f(a->job);
    if (!f) return "cannot open job file '" + a->job + "'";
    std::stringstream in;
    in << f.rdbuf();
    if (!PlaceholderIn(in.str()).empty()) return "bad job file '" + a->job + "'";
    try {
      po::store(po::parse_config_file(in, options, /*allow_unregistered=*/true), *vm);
      po::notify(*vm);
    } catch (const po::error& e) {
      return "in job file '" + a->job + "': " + e.what();
    }
  }
  if (a->config.checkpoint.empty()) return "--checkpoint is needed";
  if (a->split != "test" && a->split != "train") return "--split must be test or train";
  a->config.test_split = a->split == "test";
  StatusOr<DatasetKind> kind = ParseDataset(a->dataset);
  if (!kind.ok()) return kind.status().message();
  a->config.train.dataset = *kind;
  StatusOr<ModelSpec> spec = LoadModelSpec(a->config.train.model);
  if (!spec.ok()) return spec.status().message();
  return "";
}

}  // namespace

int ParseModelCommandLine(const char* tool, int argc, char** argv,
                          const po::options_description& own, const std::string& usage,
                          ModelArgs* args) {
  const po::options_description model = ModelOptions(args);
  po::options_description shown;
  shown.add(model).add(own).add(StandardOptions());
  po::variables_map vm;
  po::positional_options_description none;
  if (!CheckArguments(tool, argc, argv) || !ParseCommandLine(tool, argc, argv, shown, none, &vm)) {
    return 2;
  }
  if (vm.count("help")) {
    std::cout << usage << "\n"
              << shown << "\nExit codes: 0 done, 1 failed (the reason on stderr), 2 usage.\n";
    return 0;
  }
  if (vm.count("version")) {
    PrintVersion(tool);
    return 0;
  }
  const std::string bad = FinishModelOptions(model, &vm, args);
  if (!bad.empty()) {
    std::fprintf(stderr, "%s: %s (see --help)\n", tool, bad.c_str());
    return 2;
  }
  return -1;
}

}  // namespace mpiflow::cli
