// Input staging and variable write-back for a Session with a device (device_staging.h).
#include "device_staging.h"

namespace mpiflow {

Status StageInputs(Device& device, const Node& node, const OpKernel& kernel, bool on_device,
                   int num_inputs, const Tensor** inputs, std::vector<Tensor>* staged,
                   std::vector<int>* staged_input) {
  if (!kernel.TouchesMemory()) return Status::OK();
  for (int i = 0; i < num_inputs; ++i) {
    const Tensor& t = *inputs[i];
    if (!t.allocated()) continue;
    const bool want_host = !on_device || kernel.host_input(i);
    if (t.on_host() == want_host) continue;
    if (staged->empty()) staged->reserve(num_inputs);
    StatusOr<Tensor> copy = device.CopyAcross(t);
    if (!copy.ok()) {
      return Status(copy.status().code(), StrCat("input ", i, " of node '", node.name(), "' (",
                                                 node.op(), "): ", copy.status().message()));
    }
    staged->push_back(std::move(copy).value());
    staged_input->push_back(i);
    inputs[i] = &staged->back();
  }
  return Status::OK();
}

Status WriteBackVariables(Device& device, const Node& node, const std::vector<int>& in_slots,
                          const std::vector<Tensor>& values, const std::vector<Tensor>& staged,
                          const std::vector<int>& staged_input) {
  if (!node.def().stateful) return Status::OK();
  for (size_t k = 0; k < staged.size(); ++k) {
    const int i = staged_input[k];
    if (node.input(i).node->op() != "Variable") continue;
    MPIFLOW_RETURN_IF_ERROR(device.CopyInto(staged[k], values[in_slots[i]]));
  }
  return Status::OK();
}

}  // namespace mpiflow
