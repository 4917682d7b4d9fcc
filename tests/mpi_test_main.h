// For the GoogleTest binaries CTest runs under mpiexec: mpi_test_main.cc's main() starts the
// world communicator before any test, runs every test on every rank, and exits with the worst
// result of any rank. Tests must issue the same collectives on every rank (use EXPECT, not an
// early return that only some ranks take).
#pragma once

#include "mpiflow/communicator.h"

namespace mpiflow {
namespace test {
extern Communicator* world;  // set before the first test runs
}  // namespace test
}  // namespace mpiflow
