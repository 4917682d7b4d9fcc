// main() of the MPI test binaries; see mpi_test_main.h.
#include "tests/mpi_test_main.h"

#include <gtest/gtest.h>

#include <cstdio>

namespace mpiflow {
namespace test {
Communicator* world = nullptr;
}  // namespace test
}  // namespace mpiflow

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mpiflow::StatusOr<mpiflow::Communicator*> c = mpiflow::WorldCommunicator();
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 1;
  }
  mpiflow::test::world = *c;
  const int rc = RUN_ALL_TESTS();
  // Every rank exits with the worst result, so mpiexec reports a failure seen on any rank.
  mpiflow::Tensor t = mpiflow::Tensor::FromVector<int32_t>(mpiflow::Shape{1}, {rc});
  mpiflow::AllreduceOptions o;
  o.op = mpiflow::ReduceOp::kMax;
  (void)mpiflow::test::world->Allreduce(t, o)->Wait();
  return t.data<int32_t>()[0];
}
