// KernelRegistry (lookup by op, device, dtype). The built-in CPU kernels are registered
// explicitly on first use of the registry, not by static registrars.
#include "cpu/cpu_util.h"

namespace mpiflow {

KernelRegistry& KernelRegistry::Global() {
  static KernelRegistry* registry = [] {
    auto* r = new KernelRegistry();
    RegisterArrayKernels(*r);
    RegisterMathKernels(*r);
    RegisterMatMulKernels(*r);
    RegisterNnKernels(*r);
    RegisterConvKernels(*r);
    RegisterStateKernels(*r);
    RegisterCollectiveKernels(*r);
    return r;
  }();
  return *registry;
}

void KernelRegistry::Register(const std::string& op, const std::string& device, DType dtype,
                              KernelFactory factory) {
  factories_[{op, device, dtype}] = std::move(factory);
}

DType KernelDType(const Node& node) {
  if (node.num_inputs() > 0) return node.input(0).dtype();
  if (node.num_outputs() > 0) return node.output_dtype(0);
  return DType::kInvalid;
}

StatusOr<std::unique_ptr<OpKernel>> KernelRegistry::Create(const std::string& device,
                                                           const KernelInitContext& ctx) const {
  const DType dtype = KernelDType(ctx.node);
  auto it = factories_.find({ctx.node.op(), device, dtype});
  if (it == factories_.end()) it = factories_.find({ctx.node.op(), device, DType::kInvalid});
  if (it == factories_.end()) {
    return NotFound("no ", device, " kernel for op ", ctx.node.op(), " with dtype ",
                    DTypeName(dtype), " (node '", ctx.node.name(), "')");
  }
  return it->second(ctx);
}

}  // namespace mpiflow
