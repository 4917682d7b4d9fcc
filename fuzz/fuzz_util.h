// What the fuzz targets share: a file of the input's bytes for the readers that take a path.
// Each target is one LLVMFuzzerTestOneInput; built with -DMPIFLOW_FUZZ=ON (clang) it is a
// libFuzzer program, otherwise replay_main.cc runs it over files (the corpus and the crash
// regressions, in every CTest run). Not a library: fuzz targets only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

namespace mpiflow {
namespace fuzz {

// Writes `size` bytes to the file `name` (overwritten each call) in a folder of this process's
// own, and returns its path: /proc/self/fd/<n>/<name>, where n is the folder's descriptor. The
// path is the same in every run and process: libFuzzer learns from the strings a reader compares
// (an error message holds the path), and a path that held the pid sent runs of the same build
// on different inputs. The folder is still one per process, for parallel jobs (-jobs).
inline std::string WriteTemp(const std::string& name, const uint8_t* data, size_t size) {
  static const int folder = [] {
    char pattern[] = "/tmp/mpiflow-fuzz-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    return made == nullptr ? -1 : ::open(made, O_PATH | O_DIRECTORY | O_CLOEXEC);
  }();
  if (folder < 0) {
    std::perror("mpiflow fuzz: cannot make a folder under /tmp");
    std::abort();
  }
  const std::string path = "/proc/self/fd/" + std::to_string(folder) + "/" + name;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

}  // namespace fuzz
}  // namespace mpiflow
