// TrainMain: mpiflow-train's whole command line (options, job file, MPI start-up, the summary
// line, exit codes), callable with fault hooks so that the failure tests can install theirs in
// a test binary (tests/faulty_train.cc). Not the training loop (trainer.h).
#pragma once

#include <string>

#include "mpiflow/communicator.h"
#include "mpiflow/fault_hooks.h"
#include "mpiflow/trainer.h"

namespace mpiflow {

int TrainMain(int argc, char** argv, FaultHooks* hooks);

// What mpiflow-train's command line and job file (--config) say, parsed into types and
// validated: the part of TrainMain before MPI starts (fuzz/fuzz_job_file.cc drives it).
struct TrainCommandLine {
  TrainConfig config;
  std::string config_file;   // "" without --config
  std::string timeline;      // --timeline, as given
  bool print_model = false;  // --print-model: print the model and exit
  CollectiveOptions collectives;
};
// Parses argv into *out. Returns kGoOn to go on, or the exit code to end with: 0 after --help
// or --version (printed on stdout), 2 for a bad option, value or job file (the reason on
// stderr).
inline constexpr int kGoOn = -1;
int ParseTrainCommandLine(int argc, char** argv, TrainCommandLine* out);

}  // namespace mpiflow
