// What a training run reports while it goes: the progress line and metrics.jsonl record every
// `log_every` steps, the evaluation line, throughput after warm-up, and the per-op profile
// table. Private to src/train. Not the loop (trainer.cc) and not the timeline (timeline.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <ostream>
#include <string>

#include "mpiflow/session.h"

namespace mpiflow {

// "m:ss" or "h:mm:ss"; "?" for a negative or non-finite number of seconds.
std::string FormatDuration(double seconds);

class Progress {
 public:
  static constexpr int64_t kWarmupSteps = 20;  // steps left out of throughput and the profile

  Progress(std::ostream& log, std::ostream* metrics, int64_t total_steps, int64_t epochs,
           int64_t global_batch)
      : log_(log), metrics_(metrics), total_(total_steps), epochs_(epochs), batch_(global_batch) {}

  // After step `step` of epoch `epoch` (from 0), which took `seconds` for `examples`; prints the
  // line and writes the record when `print`.
  void Step(int64_t step, int64_t epoch, double loss, int64_t examples, double seconds, bool print);
  // After an evaluation that started at `start`; returns the seconds it took.
  double Evaluated(int64_t epoch, double accuracy, int64_t images,
                   std::chrono::steady_clock::time_point start);
  // Adds the kernel times of one step (RunStats::node_times).
  void AddKernelTimes(const RunStats& stats);
  // The profile table over the steps after warm-up (nothing when none was timed).
  void PrintProfile(int64_t steps);
  double samples_per_sec() const;

 private:
  std::ostream& log_;
  std::ostream* metrics_;  // null: no metrics file
  int64_t total_, epochs_, batch_;
  double timed_seconds_ = 0, window_seconds_ = 0;
  int64_t timed_samples_ = 0, window_samples_ = 0;
  std::map<std::string, std::pair<double, int64_t>> op_seconds_;  // op -> (seconds, runs)
};

}  // namespace mpiflow
