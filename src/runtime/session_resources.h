// The per-Session resources the runtime owns and hands to kernels (kernel.h's interfaces): the
// variables' storage, and the collective ops' view of the Session's communicator (the Work of
// each bucket in flight between its AllreduceStart and AllreduceWait). Private to src/runtime.
// Not kernels, and not the communicator itself (communicator.h).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/kernel.h"

namespace mpiflow {

class VariableStore : public VariableResource {
 public:
  Slot* GetOrCreate(const std::string& name, DType dtype, const Shape& shape) override;
  Slot* Find(const std::string& name);
  bool OwnsBuffer(const Buffer* b) const;
  // Session::KeepRows: the slot holds some rows of its variable only (its value is shaped by
  // them, not as the graph says); whether b is such a slot's memory.
  void MarkPart(const Slot* slot);
  bool IsPart(const Slot* slot) const;
  bool IsPartBuffer(const Buffer* b) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Slot>> slots_;
  std::vector<const Slot*> parts_;
};

class CommunicatorResource : public CollectiveResource {
 public:
  explicit CommunicatorResource(Communicator* comm) : comm_(comm) {}
  Status StartAllreduce(const std::string& key, Tensor packed, const std::string& algorithm,
                        const std::string& name, const std::string& compression) override;
  Status WaitAllreduce(const std::string& key) override;
  Status Allgather(Tensor in, Tensor out) override;
  int ranks() const override { return comm_->size(); }
  Timeline* timeline() override { return comm_->timeline(); }

 private:
  Communicator* comm_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Work>> in_flight_;  // by bucket
  std::map<std::string, AllreduceAlgorithm> parsed_;        // algorithm names seen
};

}  // namespace mpiflow
