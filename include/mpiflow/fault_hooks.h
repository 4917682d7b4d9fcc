// FaultHooks: the one interface through which tests inject failures (a rank killed, a rank that
// sleeps, a preemption signal, a kernel that fails, a checkpoint writer that dies half-way). Tests
// install an implementation (Train's `hooks`, WriteCheckpoint's); the library calls it at fixed
// points and never reads the environment for this. Not a callback API for users: only tests install
// one.
#pragma once

#include <cstdint>
#include <string>

#include "mpiflow/status.h"

namespace mpiflow {

class FaultHooks {
 public:
  virtual ~FaultHooks() = default;
  // On every rank (workers and parameter servers) before training step `step` (counted from 1);
  // step 0 is mpiflow-train's start-up, before MPI starts (rank is 0 in every process there).
  virtual void BeforeStep(int rank, int64_t step) {}
  // At each crash point of a checkpoint save, in this order: after each dataset, after the
  // flush, the fsync and the rename of the file (WriteCheckpoint); then after `latest`'s
  // temporary is written, after it is renamed, and after each old checkpoint is removed
  // (CheckpointManager). A test counts the calls to pick the point where the writer dies.
  virtual void AtCheckpointCrashPoint() {}
  // Before every kernel a Session runs (SessionOptions::hooks): an error fails that kernel, as
  // the kernel's own error would (node and op by name).
  virtual Status BeforeKernel(const std::string& node, const std::string& op) {
    return Status::OK();
  }
};

}  // namespace mpiflow
