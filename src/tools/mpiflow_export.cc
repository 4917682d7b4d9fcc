// mpiflow-export: a trained model (its model file and a checkpoint) as an ONNX file that other
// runtimes load, checked by ONNX's checker; optionally a batch of inputs and mpiflow's outputs
// in ONNX's test-data layout, to compare a runtime's results with. One process (no MPI).
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <boost/program_options.hpp>
#include <cstdio>

#include "cli.h"
#include "model_cli.h"
#include "mpiflow/crash_report.h"
#include "onnx_export.h"

namespace po = boost::program_options;

namespace {

constexpr const char* kTool = "mpiflow-export";

int Usage(const std::string& why) {
  std::fprintf(stderr, "%s: %s (see --help)\n", kTool, why.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::InstallCrashReport("mpiflow-export");
  mpiflow::cli::ModelArgs args;
  mpiflow::OnnxExportOptions o;
  po::options_description d("mpiflow-export options");
  // clang-format off
  d.add_options()
    ("onnx", po::value(&o.path)->value_name("FILE"), "write the model as ONNX to FILE (needed)")
    ("test-data", po::value(&o.test_data_dir)->value_name("DIR"),
     "also write the split's first examples and mpiflow's outputs for them as DIR/input_0.pb "
     "(features), DIR/output_0.pb (logits), DIR/output_1.pb (probabilities)")
    ("test-examples", po::value(&o.test_examples)->default_value(o.test_examples),
     "how many examples --test-data holds");
  // clang-format on
  const int rc = mpiflow::cli::ParseModelCommandLine(
      kTool, argc, argv, d,
      "Usage: mpiflow-export --onnx FILE --checkpoint PATH [--config JOB | --model M --dataset D "
      "--data-dir DIR] [--test-data DIR]\nWrites a trained model's inference path as ONNX "
      "(opset 13, or 17 with layer_norm): input `features`, outputs `logits` and "
      "`probabilities`.\nThe data gives the input shape and the classes, as for training.\n",
      &args);
  if (rc >= 0) return rc;
  if (o.path.empty()) return Usage("--onnx FILE is needed");
  if (o.test_examples < 1) return Usage("--test-examples must be >= 1");

  mpiflow::StatusOr<std::unique_ptr<mpiflow::TrainedModel>> trained =
      mpiflow::LoadTrainedModel(args.config);
  mpiflow::StatusOr<mpiflow::OnnxExportResult> r =
      trained.ok() ? mpiflow::ExportOnnx(**trained, o)
                   : mpiflow::StatusOr<mpiflow::OnnxExportResult>(trained.status());
  if (!r.ok()) {
    std::fprintf(stderr, "%s: error: %s\n", kTool, r.status().message().c_str());
    return r.status().code() == mpiflow::Code::kInvalidArgument ? 2 : 1;
  }
  std::fprintf(stderr, "%s: '%s' (step %lld of '%s') -> '%s'\n", kTool,
               (*trained)->checkpoint.c_str(), static_cast<long long>((*trained)->step),
               (*trained)->spec.source.c_str(), o.path.c_str());
  std::printf("onnx=%s opset=%d nodes=%lld parameters=%lld bytes=%lld checker=passed\n",
              o.path.c_str(), r->opset, static_cast<long long>(r->nodes),
              static_cast<long long>(r->parameters), static_cast<long long>(r->bytes));
  if (r->test_examples > 0) {
    std::printf("test_data=%s examples=%lld\n", o.test_data_dir.c_str(),
                static_cast<long long>(r->test_examples));
  }
  return 0;
}
