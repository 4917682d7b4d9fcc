// Fuzz target: the IDX reader (LoadIdx) on an images file and a labels file cut from one input:
// byte 0's low bit names them .gz (zlib reads them, compressed or not), bytes 1-2 (big-endian)
// are the images file's length, the rest is the two files.
#include <algorithm>

#include "fuzz_util.h"
#include "mpiflow/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const size_t rest = size - 3;
  const size_t cut = std::min<size_t>(rest, static_cast<size_t>(data[1]) << 8 | data[2]);
  const std::string ext = (data[0] & 1) ? ".gz" : "";
  const std::string images = mpiflow::fuzz::WriteTemp("images" + ext, data + 3, cut);
  const std::string labels = mpiflow::fuzz::WriteTemp("labels" + ext, data + 3 + cut, rest - cut);
  mpiflow::StatusOr<mpiflow::Dataset> d = mpiflow::LoadIdx(images, labels, 10);
  if (d.ok() && d->count > 0) {  // what was read is consistent
    if (d->bytes.size() != static_cast<size_t>(d->count * d->example_size())) __builtin_trap();
    for (int32_t label : d->labels) {
      if (label < 0 || label >= 10) __builtin_trap();
    }
  }
  return 0;
}
