// Checkpoint write and read throughput for a model of a given size (default 100 MB of float32
// in 25 variables), median of several repetitions, against the disk's sequential write speed
// measured in the same run (a file of the same size written and fsynced, like `dd conv=fsync`).
//   build/benchmarks/mpiflow_checkpoint_bench [--mb 100] [--repeats 5] [--dir DIR]
// Read numbers include the page cache (the file was just written): they measure our code, not
// the disk; write numbers include the fsync.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mpiflow/checkpoint.h"

using namespace mpiflow;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Seconds to write `bytes` to a new file with write() in 4 MiB blocks, then fsync.
double DiskWrite(const std::string& path, int64_t bytes) {
  std::vector<char> block(4 << 20, 1);
  const auto t0 = Clock::now();
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  MPIFLOW_CHECK(fd >= 0);
  for (int64_t done = 0; done < bytes; done += static_cast<int64_t>(block.size())) {
    MPIFLOW_CHECK(::write(fd, block.data(), block.size()) == static_cast<ssize_t>(block.size()));
  }
  MPIFLOW_CHECK(::fsync(fd) == 0);
  ::close(fd);
  const double s = Since(t0);
  ::unlink(path.c_str());
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  double mb = 100;
  int repeats = 5;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--mb")
      mb = std::atof(argv[i + 1]);
    else if (a == "--repeats")
      repeats = std::atoi(argv[i + 1]);
    else if (a == "--dir")
      dir = argv[i + 1];
  }
  if (argc % 2 == 0 || mb <= 0 || repeats <= 0) {
    std::fprintf(stderr, "usage: %s [--mb 100] [--repeats 5] [--dir DIR]\n", argv[0]);
    return 2;
  }
  const int kVariables = 25;
  const int64_t per = static_cast<int64_t>(mb * 1e6 / 4 / kVariables);
  Checkpoint c;
  for (int v = 0; v < kVariables; ++v) {
    Tensor t(DType::kFloat32, Shape{per});
    for (int64_t i = 0; i < per; ++i) t.data<float>()[i] = static_cast<float>((i * 31 + v) % 1000);
    c.variables.emplace_back("layer_" + std::to_string(v) + "/kernel", t);
  }
  const int64_t bytes = per * 4 * kVariables;
  const std::string path = dir + "/mpiflow_checkpoint_bench.h5";
  std::vector<double> w, r, d;
  for (int k = 0; k < repeats; ++k) {
    d.push_back(DiskWrite(dir + "/mpiflow_checkpoint_bench.raw", bytes));
    auto t0 = Clock::now();
    Status s = WriteCheckpoint(path, c);
    w.push_back(Since(t0));
    MPIFLOW_CHECK(s.ok());
    t0 = Clock::now();
    StatusOr<Checkpoint> back = ReadCheckpoint(path);
    r.push_back(Since(t0));
    MPIFLOW_CHECK(back.ok() && back->variables.size() == c.variables.size());
    for (const auto& [name, t] : back->variables) {  // read back in name order
      if (name == c.variables[7].first) MPIFLOW_CHECK(t.BitEqual(c.variables[7].second));
    }
  }
  ::unlink(path.c_str());
  const double disk = bytes / 1e6 / Median(d), wr = bytes / 1e6 / Median(w),
               rd = bytes / 1e6 / Median(r);
  std::printf("checkpoint of %.1f MB (%d float32 variables), medians of %d, in %s:\n", bytes / 1e6,
              kVariables, repeats, dir.c_str());
  std::printf("  disk sequential write + fsync  %8.1f MB/s\n", disk);
  std::printf("  WriteCheckpoint (incl. fsync)  %8.1f MB/s  (%.2fx of the disk)\n", wr, wr / disk);
  std::printf("  ReadCheckpoint (page cache)    %8.1f MB/s\n", rd);
  return 0;
}
