// Fuzz target: the CSV and NumPy readers (ReadCsvDataset, ReadNpyDataset, ReadNpzDataset).
// Byte 0's low bit picks CSV (the rest is the file); else its bit 1 picks .npz (the rest is the
// archive, read for x_train and y_train) or .npy: bytes 1-2 (big-endian) are the features
// file's length, the rest is the features file and the labels file.
#include <algorithm>

#include "fuzz_util.h"
#include "mpiflow/data.h"

namespace {

void CheckConsistent(const mpiflow::StatusOr<mpiflow::Dataset>& d) {
  if (!d.ok()) return;
  const size_t values = static_cast<size_t>(d->count * d->example_size());
  if ((d->is_float ? d->floats.size() : d->bytes.size()) != values) __builtin_trap();
  if (d->labels.size() != static_cast<size_t>(d->count)) __builtin_trap();
  for (int32_t label : d->labels) {
    if (label < 0 || label >= d->num_classes) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  if ((data[0] & 1) == 0) {
    const std::string csv = mpiflow::fuzz::WriteTemp("data.csv", data + 1, size - 1);
    CheckConsistent(mpiflow::ReadCsvDataset(csv, data[1] % 3));
    return 0;
  }
  if (data[0] & 2) {
    const std::string npz = mpiflow::fuzz::WriteTemp("data.npz", data + 1, size - 1);
    CheckConsistent(mpiflow::ReadNpzDataset(npz, "x_train", "y_train"));
    return 0;
  }
  const size_t rest = size - 3;
  const size_t cut = std::min<size_t>(rest, static_cast<size_t>(data[1]) << 8 | data[2]);
  const std::string x = mpiflow::fuzz::WriteTemp("x.npy", data + 3, cut);
  const std::string y = mpiflow::fuzz::WriteTemp("y.npy", data + 3 + cut, rest - cut);
  CheckConsistent(mpiflow::ReadNpyDataset(x, y));
  return 0;
}
