// KernelRegistry (lookup by op, device, dtype) and VariableStore. The built-in CPU kernels are
// registered explicitly on first use of the registry, not by static registrars.
#include "kernels/cpu/cpu_util.h"

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

void CollectiveState::Put(const std::string& key, std::shared_ptr<Work> work) {
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_[key] = std::move(work);
}

std::shared_ptr<Work> CollectiveState::Get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = in_flight_.find(key);
  return it == in_flight_.end() ? nullptr : it->second;
}

VariableStore::Slot* VariableStore::GetOrCreate(const std::string& name, DType dtype,
                                                const Shape& shape) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = slots_[name];
  if (!slot) {
    slot = std::make_unique<Slot>();
    slot->name = name;
    slot->value = Tensor::Unallocated(dtype, shape);
  }
  return slot.get();
}

VariableStore::Slot* VariableStore::Find(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : it->second.get();
}

std::vector<const VariableStore::Slot*> VariableStore::slots() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const Slot*> out;
  for (const auto& kv : slots_) out.push_back(kv.second.get());
  return out;
}

bool VariableStore::OwnsBuffer(const Buffer* b) const {
  if (!b) return false;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& kv : slots_) {
    if (kv.second->value.buffer() == b) return true;
  }
  return false;
}

}  // namespace mpiflow
