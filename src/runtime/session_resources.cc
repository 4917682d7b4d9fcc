// VariableStore and CommunicatorResource (see session_resources.h).
#include "session_resources.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "mpiflow/timeline.h"

namespace mpiflow {

VariableResource::Slot* VariableStore::GetOrCreate(const std::string& name, DType dtype,
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

VariableResource::Slot* VariableStore::Find(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(name);
  return it == slots_.end() ? nullptr : it->second.get();
}

bool VariableStore::OwnsBuffer(const Buffer* b) const {
  if (!b) return false;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& kv : slots_) {
    if (kv.second->value.buffer() == b) return true;
  }
  return false;
}

void VariableStore::MarkPart(const Slot* slot) {
  std::lock_guard<std::mutex> lock(mu_);
  parts_.push_back(slot);
}

bool VariableStore::IsPart(const Slot* slot) const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::find(parts_.begin(), parts_.end(), slot) != parts_.end();
}

bool VariableStore::IsPartBuffer(const Buffer* b) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (const Slot* slot : parts_) {
    if (b && slot->value.buffer() == b) return true;
  }
  return false;
}

Status CommunicatorResource::StartAllreduce(const std::string& key, Tensor packed,
                                            const std::string& algorithm, const std::string& name,
                                            const std::string& compression) {
  AllreduceOptions o;
  o.op = ReduceOp::kSum;
  o.name = name;
  StatusOr<AllreduceCompression> wire = ParseAllreduceCompression(compression);
  if (!wire.ok()) return wire.status();
  o.compression = *wire;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = parsed_.find(algorithm);
    if (it == parsed_.end()) {
      StatusOr<AllreduceAlgorithm> a = ParseAllreduceAlgorithm(algorithm);
      if (!a.ok()) return a.status();
      it = parsed_.emplace(algorithm, *a).first;
    }
    o.algorithm = it->second;
  }
  std::shared_ptr<Work> work = comm_->Allreduce(std::move(packed), o);
  std::lock_guard<std::mutex> lock(mu_);
  in_flight_[key] = std::move(work);
  return Status::OK();
}

Status CommunicatorResource::WaitAllreduce(const std::string& key) {
  std::shared_ptr<Work> work;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = in_flight_.find(key);
    if (it != in_flight_.end()) work = it->second;
  }
  if (!work) return NotFound("no allreduce of '", key, "' was started");
  const auto t0 = std::chrono::steady_clock::now();
  const bool was_done = work->Completed();
  Status s = work->Wait();
  if (Timeline* tl = comm_->timeline()) {
    if (!was_done) {
      tl->Add("wait " + key, "wait", t0, std::chrono::steady_clock::now(), Timeline::kCompute);
    }
  }
  return s;
}

Status CommunicatorResource::Allgather(Tensor in, Tensor out) {
  return comm_->Allgather(std::move(in), std::move(out))->Wait();
}

}  // namespace mpiflow
