// What mpiflow-predict and mpiflow-export share on their command lines: the options that name a
// trained model, its data and its checkpoint, and the training job file they can be read from.
// Not what either tool does with them.
#pragma once

#include <boost/program_options.hpp>
#include <string>

#include "mpiflow/predict.h"

namespace mpiflow::cli {

struct ModelArgs {
  PredictConfig config;  // model, data, seed, threads; checkpoint; split; batch size
  std::string dataset = "fashion-mnist", split = "test", job;
};

// --config, --model, --checkpoint, --dataset, --data-dir, --synthetic-train/-test, --seed,
// --split, --threads, bound to *args.
boost::program_options::options_description ModelOptions(ModelArgs* args);

// After ParseCommandLine: adds the keys of --config's job file that `options` knows (the command
// line wins) and turns the words into types. Returns "" or what is wrong, for the tool's usage
// error.
std::string FinishModelOptions(const boost::program_options::options_description& options,
                               boost::program_options::variables_map* vm, ModelArgs* args);

}  // namespace mpiflow::cli
