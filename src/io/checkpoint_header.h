// The checkpoint file's checksum header: the first line of its 512-byte HDF5 user block,
// "mpiflow-checkpoint <format> size=<bytes> crc32=<hex>", the CRC-32 of every byte after the
// block (checkpoint.h says why). Private to src/io. Not the HDF5 layout (checkpoint.cc).
#pragma once

#include <string>

#include "mpiflow/checkpoint.h"

namespace mpiflow {
namespace checkpoint_header {

// Writes the header of the closed HDF5 file `tmp` (the target's name is `path`, for errors).
Status WriteHeader(const std::string& tmp, const std::string& path);
// Before HDF5 reads `path`: its header's size and CRC match the file (format 2), or it is a
// format 1 file that the caller trusts. Errors say what is wrong and what to do.
Status CheckHeader(const std::string& path, const ReadOptions& options);

}  // namespace checkpoint_header
}  // namespace mpiflow
