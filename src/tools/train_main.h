// TrainMain: mpiflow-train's whole command line (options, job file, MPI start-up, the summary
// line, exit codes), callable with fault hooks so that the failure tests can install theirs in
// a test binary (tests/faulty_train.cc). Not the training loop (trainer.h).
#pragma once

#include "mpiflow/fault_hooks.h"

namespace mpiflow {

int TrainMain(int argc, char** argv, FaultHooks* hooks);

}  // namespace mpiflow
