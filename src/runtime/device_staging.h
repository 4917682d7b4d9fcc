// On a Session with a device: copying a node's inputs to the side its kernel runs on, and
// writing back the variables a CPU kernel updated in a copy. Private to src/runtime. Not the
// copies themselves (the Device does them) and not the choice of kernels (session.cc).
#pragma once

#include <vector>

#include "mpiflow/kernel.h"

namespace mpiflow {

// Replaces inputs[i] by a copy on the other side where the tensor is not where `kernel` (on the
// device when on_device) reads it: device memory for a device kernel (host memory for its host
// inputs), host memory for a CPU kernel. The copies go to `staged` (reserved so the pointers stay
// valid), with their input indices in `staged_input`.
Status StageInputs(Device& device, const Node& node, const OpKernel& kernel, bool on_device,
                   int num_inputs, const Tensor** inputs, std::vector<Tensor>* staged,
                   std::vector<int>* staged_input);

// A stateful op (Assign*, Apply*) that ran on a copy of a variable updated the copy: copies
// each such variable input back into the variable's own memory.
Status WriteBackVariables(Device& device, const Node& node, const std::vector<int>& in_slots,
                          const std::vector<Tensor>& values, const std::vector<Tensor>& staged,
                          const std::vector<int>& staged_input);

}  // namespace mpiflow
