// For the GoogleTest binaries CTest runs under mpiexec: mpi_test_main.cc's main() starts the
// world communicator before any test, runs every test on every rank, and exits with the worst
// result of any rank. Tests must issue the same collectives on every rank (use EXPECT, not an
// early return that only some ranks take).
// Also the helpers the distributed training tests share.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/trainer.h"

namespace mpiflow {
namespace test {
extern Communicator* world;  // set before the first test runs

// A small synthetic job: 640 training examples, batch 16, SGD 0.05, no prefetch, quiet.
TrainConfig SmallSyntheticJob();
// A 64-bit hash of the variables' bytes.
uint64_t HashVariables(const std::vector<std::pair<std::string, Tensor>>& variables);
// Whether ranks [0, first) of `world` passed the same value (every rank must call it).
bool SameOnRanks(uint64_t value, int first);
// Over float32 variables of `r`, each against the same-named one of `ref`: the worst
// |a - b| / max|b| (a name missing from `ref`, or a shape that differs, fails the test).
double WorstRelativeDiff(const TrainResult& r, const TrainResult& ref);
// The run `c` describes (synthetic data, a built-in model) through Train(model_fn, data, ...):
// the same graph from a function and the same examples in memory, for the strategies' tests
// that a C++ program's model trains under them as a model file does.
StatusOr<TrainResult> TrainThroughModelFn(const TrainConfig& c, Communicator* comm);
// The status is kAborted with `needle` in its message, and every rank has the same message.
void ExpectAbortedTogether(const Status& st, const std::string& needle);
}  // namespace test
}  // namespace mpiflow
