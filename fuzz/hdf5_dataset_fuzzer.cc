// Fuzz target: the HDF5 dataset reader (Hdf5SplitSize, ReadHdf5Split whole and as a range) on a
// file of the input's bytes (the seeds are mpiflow-data files, mutated at the byte level).
#include "fuzz_util.h"
#include "mpiflow/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = mpiflow::fuzz::WriteTemp("data.h5", data, size);
  mpiflow::StatusOr<int64_t> n = mpiflow::Hdf5SplitSize(path, "train");
  if (!n.ok()) return 0;
  mpiflow::StatusOr<mpiflow::Dataset> all = mpiflow::ReadHdf5Split(path, "train");
  if (all.ok() && (all->is_float ? all->floats.size() : all->bytes.size()) !=
                      static_cast<size_t>(all->count * all->example_size())) {
    __builtin_trap();
  }
  (void)mpiflow::ReadHdf5Split(path, "train", 1, 2);
  return 0;
}
