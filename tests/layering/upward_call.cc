// A kernels-layer source that calls into the io layer through a declaration of its own (so it
// compiles): linking the layer whole must fail on the undefined symbol. Built only by the test
// layers.upward_call.
#include <string>

#include "mpiflow/kernel.h"

namespace mpiflow {
Status MakeDirs(const std::string& path);  // io's, one layer up
Status ProbeUpwardCall() { return MakeDirs("/tmp"); }
}  // namespace mpiflow
