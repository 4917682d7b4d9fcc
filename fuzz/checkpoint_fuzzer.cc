// Fuzz target: the checkpoint reader (ReadCheckpoint) on an HDF5 file of the input's bytes
// (the seeds are real checkpoints, mutated at the byte level).
#include "fuzz_util.h"
#include "mpiflow/checkpoint.h"
#include "mpiflow/checkpoint_manager.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mpiflow::fuzz::WriteTemp("ckpt.h5", data, size);
  mpiflow::StatusOr<mpiflow::Checkpoint> c = mpiflow::ReadCheckpoint(path);
  if (c.ok()) {
    (void)mpiflow::GetRunState(*c);
    for (const auto& [name, t] : c->variables) {
      if (t.num_elements() < 0) __builtin_trap();
    }
  }
  return 0;
}
