// FaultHooks: the one interface through which tests inject failures (a rank killed, a rank that
// sleeps, a preemption signal, a checkpoint writer that dies half-way). Tests install an
// implementation (Train's `hooks`, WriteCheckpoint's); the library calls it at fixed points and
// never reads the environment for this. Not a callback API for users: only tests install one.
#pragma once

#include <cstdint>

namespace mpiflow {

class FaultHooks {
 public:
  virtual ~FaultHooks() = default;
  // On every rank (workers and parameter servers) before training step `step` (counted from 1).
  virtual void BeforeStep(int rank, int64_t step) {}
  // At the `point`-th crash point of a checkpoint write (counted from 1 within the write): after
  // each dataset, after the flush, after the fsync, after the rename.
  virtual void AtCheckpointCrashPoint(int point) {}
};

}  // namespace mpiflow
