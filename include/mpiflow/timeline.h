// Timeline: a Chrome-trace JSON recorder (loads in Perfetto and chrome://tracing). Each rank
// writes its own file with pid = rank; timestamps are CLOCK_MONOTONIC microseconds, shared by
// every process on a node, so MergeTimelines lines ranks up without any clock exchange.
// Not a profiler: callers decide what to record (ops, bucket packing, collectives, waits).
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include "mpiflow/status.h"

namespace mpiflow {

class Timeline {
 public:
  using Clock = std::chrono::steady_clock;
  // Lanes within a rank's track.
  enum Lane { kCompute = 0, kCommunication = 1, kData = 2 };

  Timeline(std::string path, int rank);
  ~Timeline();  // writes the file if Write was not called
  Timeline(const Timeline&) = delete;
  Timeline& operator=(const Timeline&) = delete;

  // A complete event ("ph":"X"). `category` groups events ("op", "bucket", "allreduce", "wait");
  // `args` is a JSON object body without braces ("\"bytes\":4096"), or empty. Thread-safe.
  void Add(const std::string& name, const char* category, Clock::time_point start,
           Clock::time_point end, Lane lane, const std::string& args = "");
  Status Write();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int rank_;
  std::mutex mu_;
  std::vector<std::string> events_;  // serialised, in arrival order
  bool written_ = false;
};

// Concatenates per-rank timeline files into one trace at `out`.
Status MergeTimelines(const std::vector<std::string>& inputs, const std::string& out);

}  // namespace mpiflow
