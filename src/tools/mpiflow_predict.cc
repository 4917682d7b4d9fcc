// mpiflow-predict: a trained model's predictions for the test (or training) split, from a
// checkpoint. Under mpirun each rank predicts a share; rank 0 prints accuracy=X and the confusion
// matrix and writes the predictions as CSV (index,label,prediction,confidence) or, for a name
// ending in .h5, HDF5 (the same columns as arrays, and every class's probability).
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>

#include "cli.h"
#include "model_cli.h"
#include "mpiflow/communicator.h"
#include "mpiflow/crash_report.h"
#include "mpiflow/data.h"
#include "mpiflow/predict.h"

namespace po = boost::program_options;

namespace {

constexpr const char* kTool = "mpiflow-predict";

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

bool EndsWith(const std::string& s, const std::string& end) {
  return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

// /labels, /predictions (count) int32, /confidence (count) and /probabilities (count, classes)
// float32; the attribute `classes` when the data names them.
mpiflow::Status WriteHdf5(const std::string& path, const mpiflow::PredictResult& r) {
  using mpiflow::DType;
  using mpiflow::Shape;
  using mpiflow::Tensor;
  auto column = [&](DType dtype, const void* values, const Shape& shape) {
    Tensor t(dtype, shape);
    std::copy_n(static_cast<const char*>(values), t.num_elements() * 4,
                static_cast<char*>(t.raw()));
    return t;
  };
  static_assert(sizeof(float) == 4 && sizeof(int32_t) == 4, "4-byte columns");
  return mpiflow::WriteHdf5Arrays(
      path,
      {{"labels", column(DType::kInt32, r.labels.data(), Shape{r.count})},
       {"predictions", column(DType::kInt32, r.predictions.data(), Shape{r.count})},
       {"confidence", column(DType::kFloat32, r.confidence.data(), Shape{r.count})},
       {"probabilities",
        column(DType::kFloat32, r.probabilities.data(), Shape{r.count, r.num_classes})}},
      r.class_names);
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::InstallCrashReport("mpiflow-predict");
  mpiflow::cli::ModelArgs args;
  mpiflow::PredictConfig& config = args.config;
  std::string output;
  po::options_description d("mpiflow-predict options");
  // clang-format off
  d.add_options()
    ("batch-size", po::value(&config.batch_size)->default_value(config.batch_size), "examples per run")
    ("output", po::value(&output)->value_name("FILE"),
     "write the predictions: FILE.csv as index,label,prediction,confidence per example; FILE.h5 "
     "as HDF5 arrays labels, predictions, confidence and probabilities (count, classes)");
  // clang-format on
  const int rc = mpiflow::cli::ParseModelCommandLine(
      kTool, argc, argv, d,
      "Usage: mpiflow-predict --checkpoint PATH [--config JOB | --model M --dataset D --data-dir "
      "DIR] [--output FILE]\nPredicts the classes of a split with a trained model; prints "
      "accuracy=X and the confusion matrix.\n",
      &args);
  if (rc >= 0) return rc;
  const bool hdf5 = EndsWith(output, ".h5") || EndsWith(output, ".hdf5");
  config.probabilities = hdf5;
  const std::string& split = args.split;

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
    mpiflow::Status w = hdf5 ? WriteHdf5(output, *r) : WriteCsv(output, *r);
    if (!w.ok()) {
      std::fprintf(stderr, "%s: %s\n", kTool, w.message().c_str());
      return 1;
    }
    std::fprintf(stderr, "%s: predictions in '%s'\n", kTool, output.c_str());
  }
  return 0;
}
