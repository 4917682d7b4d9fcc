// mpiflow-predict: a trained model's predictions for the test (or training) split, from a
// checkpoint. Under mpirun each rank predicts a share; rank 0 prints accuracy=X and the confusion
// matrix and writes the predictions as CSV (index,label,prediction,confidence).
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "mpiflow/communicator.h"
#include "mpiflow/predict.h"

namespace po = boost::program_options;

namespace {

constexpr const char* kTool = "mpiflow-predict";

int Usage(const std::string& why) {
  std::fprintf(stderr, "%s: %s (see --help)\n", kTool, why.c_str());
  return 2;
}

mpiflow::Status WriteCsv(const std::string& path, const mpiflow::PredictResult& r) {
  std::ofstream f(path);
  if (!f) return mpiflow::InvalidArgument("cannot write '", path, "'");
  f << "index,label,prediction,confidence\n";
  for (int64_t i = 0; i < r.count; ++i) {
    char line[96];
    std::snprintf(line, sizeof(line), "%lld,%d,%d,%.6f\n", static_cast<long long>(i), r.labels[i],
                  r.predictions[i], r.confidence[i]);
    f << line;
  }
  f.close();
  if (!f) return mpiflow::DataLoss("writing '", path, "' failed (disk full?)");
  return mpiflow::Status::OK();
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::PredictConfig config;
  mpiflow::TrainConfig& t = config.train;
  std::string dataset = "fashion-mnist", split = "test", output, job;
  po::options_description d("mpiflow-predict options");
  // clang-format off
  d.add_options()
    ("config", po::value(&job)->value_name("FILE"),
     "the training job file: its model, dataset, data-dir and seed (other keys are ignored); "
     "the command line wins")
    ("model", po::value(&t.model)->default_value(t.model), "the model trained: a built-in or a model file")
    ("checkpoint", po::value(&config.checkpoint)->value_name("PATH"),
     "a checkpoint file, or a checkpoint directory (its latest) (needed)")
    ("dataset", po::value(&dataset)->default_value(dataset), "fashion-mnist, hdf5 or synthetic")
    ("data-dir", po::value(&t.data_dir)->default_value(t.data_dir), "as mpiflow-train's")
    ("synthetic-train", po::value(&t.synthetic_train)->default_value(t.synthetic_train), "as mpiflow-train's")
    ("synthetic-test", po::value(&t.synthetic_test)->default_value(t.synthetic_test), "as mpiflow-train's")
    ("seed", po::value(&t.seed)->default_value(t.seed), "as mpiflow-train's (synthetic data depends on it)")
    ("split", po::value(&split)->default_value(split), "test or train")
    ("batch-size", po::value(&config.batch_size)->default_value(config.batch_size), "examples per run")
    ("threads", po::value(&t.threads)->default_value(t.threads), "threads one kernel may use")
    ("output", po::value(&output)->value_name("FILE"),
     "write index,label,prediction,confidence per example as CSV");
  // clang-format on
  po::options_description shown;
  shown.add(d).add(mpiflow::cli::StandardOptions());
  po::variables_map vm;
  if (!mpiflow::cli::CheckArguments(kTool, argc, argv)) return 2;
  po::positional_options_description none;
  if (!mpiflow::cli::ParseCommandLine(kTool, argc, argv, shown, none, &vm)) return 2;
  if (vm.count("help")) {
    std::cout << "Usage: mpiflow-predict --checkpoint PATH [--config JOB | --model M --dataset D "
                 "--data-dir DIR] [--output FILE]\n"
              << "Predicts the classes of a split with a trained model; prints accuracy=X and "
                 "the confusion matrix.\n\n"
              << shown << "\nExit codes: 0 done, 1 failed (the reason on stderr), 2 usage.\n";
    return 0;
  }
  if (vm.count("version")) {
    mpiflow::cli::PrintVersion(kTool);
    return 0;
  }
  if (!job.empty()) {
    std::ifstream f(job);
    if (!f) return Usage("cannot open job file '" + job + "'");
    std::stringstream in;
    in << f.rdbuf();
    if (!mpiflow::cli::PlaceholderIn(in.str()).empty()) return Usage("bad job file '" + job + "'");
    try {
      po::store(po::parse_config_file(in, d, /*allow_unregistered=*/true), vm);
      po::notify(vm);
    } catch (const po::error& e) {
      return Usage("in job file '" + job + "': " + e.what());
    }
  }
  if (config.checkpoint.empty()) return Usage("--checkpoint is needed");
  if (split != "test" && split != "train") return Usage("--split must be test or train");
  config.test_split = split == "test";
  mpiflow::StatusOr<mpiflow::DatasetKind> kind = mpiflow::ParseDataset(dataset);
  if (!kind.ok()) return Usage(kind.status().message());
  t.dataset = *kind;
  mpiflow::StatusOr<mpiflow::ModelSpec> spec = mpiflow::LoadModelSpec(t.model);
  if (!spec.ok()) return Usage(spec.status().message());

  mpiflow::Communicator* comm = nullptr;
  if (mpiflow::LaunchedWithSeveralRanks()) {
    mpiflow::StatusOr<mpiflow::Communicator*> world = mpiflow::WorldCommunicator();
    if (!world.ok()) {
      std::fprintf(stderr, "%s: %s\n", kTool, world.status().message().c_str());
      return 1;
    }
    comm = *world;
  }
  const int rank = comm ? comm->rank() : 0;
  mpiflow::StatusOr<mpiflow::PredictResult> r = mpiflow::Predict(config, comm);
  if (!r.ok()) {
    const std::string text = mpiflow::StrCat(kTool, ": error: ", r.status().message());
    // Every rank fails alike on bad input; anything else ends the job from here.
    if (comm && comm->size() > 1) comm->Abort(1, text);
    std::fprintf(stderr, "%s\n", text.c_str());
    return r.status().code() == mpiflow::Code::kInvalidArgument ? 2 : 1;
  }
  if (rank != 0) return 0;
  std::fprintf(stderr, "%s: %lld %s examples with '%s' (step %lld)\n", kTool,
               static_cast<long long>(r->count), split.c_str(), r->checkpoint.c_str(),
               static_cast<long long>(r->step));
  std::fputs(mpiflow::ConfusionText(*r).c_str(), stdout);
  std::printf("accuracy=%.4f correct=%lld examples=%lld\n", r->accuracy,
              static_cast<long long>(r->correct), static_cast<long long>(r->count));
  if (!output.empty()) {
    mpiflow::Status w = WriteCsv(output, *r);
    if (!w.ok()) {
      std::fprintf(stderr, "%s: %s\n", kTool, w.message().c_str());
      return 1;
    }
    std::fprintf(stderr, "%s: predictions in '%s'\n", kTool, output.c_str());
  }
  return 0;
}
