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

// A tool's whole command line: ModelOptions, the tool's `own` options and --help/--version;
// then the job file's keys (the command line wins), typed into *args. --help prints `usage`, the
// options and the exit codes. Returns -1 to go on, else the exit code to end with: 0 after
// --help or --version, 2 after a usage error ("TOOL: what (see --help)" on stderr).
int ParseModelCommandLine(const char* tool, int argc, char** argv,
                          const boost::program_options::options_description& own,
                          const std::string& usage, ModelArgs* args);

}  // namespace mpiflow::cli
