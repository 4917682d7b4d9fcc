// What the fuzz targets share: a file of the input's bytes for the readers that take a path.
// Each target is one LLVMFuzzerTestOneInput; built with -DMPIFLOW_FUZZ=ON (clang) it is a
// libFuzzer program, otherwise replay_main.cc runs it over files (the corpus and the crash
// regressions, in every CTest run). Not a library: fuzz targets only.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

namespace mpiflow {
namespace fuzz {

// Writes `size` bytes to /tmp/mpiflow-fuzz-<pid>-<name> (one file per name and process,
// overwritten each call) and returns its path.
inline std::string WriteTemp(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = "/tmp/mpiflow-fuzz-" + std::to_string(::getpid()) + "-" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace fuzz
}  // namespace mpiflow
