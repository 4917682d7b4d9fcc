// KernelRegistry (lookup by op, device, dtype). The built-in CPU kernels, and in a CUDA build
// the CUDA ones, are registered explicitly on first use of the registry, not by static
// registrars.
#include "cpu/cpu_util.h"
#ifdef MPIFLOW_WITH_CUDA
#include "cuda/cuda_kernels.h"
#endif

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
#ifdef MPIFLOW_WITH_CUDA
    cuda::RegisterCudaKernels(*r);
#endif
    return r;
  }();
  return *registry;
}

void KernelRegistry::Register(const std::string& op, const std::string& device, DType dtype,
                              KernelFactory factory, std::vector<int> host_inputs) {
  factories_[{op, device, dtype}] = Entry{std::move(factory), std::move(host_inputs)};
}

DType KernelDType(const Node& node) {
  if (node.num_inputs() > 0) return node.input(0).dtype();
  if (node.num_outputs() > 0) return node.output_dtype(0);
  return DType::kInvalid;
}

const KernelRegistry::Entry* KernelRegistry::Find(const std::string& device,
                                                  const Node& node) const {
  auto it = factories_.find({node.op(), device, KernelDType(node)});
  if (it == factories_.end()) it = factories_.find({node.op(), device, DType::kInvalid});
  return it == factories_.end() ? nullptr : &it->second;
}

bool KernelRegistry::Has(const std::string& device, const Node& node) const {
  return Find(device, node) != nullptr;
}

StatusOr<std::unique_ptr<OpKernel>> KernelRegistry::Create(const std::string& device,
                                                           const KernelInitContext& ctx) const {
  const Entry* e = Find(device, ctx.node);
  if (!e) {
    return NotFound("no ", device, " kernel for op ", ctx.node.op(), " with dtype ",
                    DTypeName(KernelDType(ctx.node)), " (node '", ctx.node.name(), "')");
  }
  StatusOr<std::unique_ptr<OpKernel>> k = e->factory(ctx);
  if (k.ok()) k.value()->host_inputs_ = e->host_inputs;
  return k;
}

}  // namespace mpiflow
