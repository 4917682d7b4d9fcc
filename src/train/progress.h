// What a training run reports while it goes: the progress line and metrics.jsonl record every
// `log_every` steps, the evaluation line, throughput after warm-up, and the per-op profile
// table. Private to src/train. Not the loop (trainer.cc) and not the timeline (timeline.h).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <ostream>
#include <string>

#include "mpiflow/session.h"

namespace mpiflow {

// "m:ss" or "h:mm:ss"; "?" for a negative or non-finite number of seconds.
std::string FormatDuration(double seconds);

// metrics.jsonl for appending. A fresh run (resumed_step < 0) starts it empty; a resumed run
// keeps the records of the run so far up to its checkpoint (step records up to resumed_step,
// evaluations of the first `epochs_done` epochs: the resumed run writes the rest again),
// rewritten atomically, so a requeued job's loss curve goes on where it stopped.
StatusOr<std::unique_ptr<std::ofstream>> OpenMetrics(const std::string& path, int64_t resumed_step,
                                                     int64_t epochs_done);

class Progress {
 public:
  // Steps of a run left out of throughput and the profile: the first 20 (plans are built,
  // buffers and caches warm up), or half of a shorter run, so that every run of two steps or
  // more reports figures.
  static constexpr int64_t kWarmupSteps = 20;

  // A run from step `first_step` to `total_steps`.
  Progress(std::ostream& log, std::ostream* metrics, int64_t first_step, int64_t total_steps,
           int64_t epochs, int64_t global_batch)
      : log_(log),
        metrics_(metrics),
        total_(total_steps),
        epochs_(epochs),
        batch_(global_batch),
        timed_from_(first_step + std::min(kWarmupSteps, (total_steps - first_step) / 2)) {}

  // Whether the step after `step` is timed (and profiled).
  bool Timing(int64_t step) const { return step >= timed_from_; }

  // After step `step` of epoch `epoch` (from 0), which took `seconds` for `examples` at learning
  // rate `lr`; prints the line and writes the record when `print`.
  void Step(int64_t step, int64_t epoch, double loss, double lr, int64_t examples, double seconds,
            bool print);
  // After an evaluation that started at `start`; returns the seconds it took.
  double Evaluated(int64_t epoch, double accuracy, int64_t images,
                   std::chrono::steady_clock::time_point start);
  // Adds the kernel times of one step (RunStats::node_times).
  void AddKernelTimes(const RunStats& stats);
  // The profile table over the steps after warm-up, up to `last_step` (nothing when none was
  // timed).
  void PrintProfile(int64_t last_step);
  double samples_per_sec() const;

 private:
  std::ostream& log_;
  std::ostream* metrics_;  // null: no metrics file
  int64_t total_, epochs_, batch_;
  int64_t timed_from_;  // steps after this one are timed
  double timed_seconds_ = 0, window_seconds_ = 0;
  int64_t timed_samples_ = 0, window_samples_ = 0;
  std::map<std::string, std::pair<double, int64_t>> op_seconds_;  // op -> (seconds, runs)
};

}  // namespace mpiflow
