// The failure tests' FaultHooks: kill, sleep or raise SIGTERM on a chosen rank before a chosen
// step, fail the first kernel of a chosen step on a chosen rank, or end a checkpoint writer at a
// chosen crash point. Installed by in-process tests and by
// tests/faulty_train.cc (mpiflow-train with `--inject` specs). Not part of the library.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "mpiflow/fault_hooks.h"

namespace mpiflow {
namespace test {

class InjectedFaults : public FaultHooks {
 public:
  enum class Kind { kKill, kSigterm, kSleep, kFail };
  struct Fault {
    Kind kind;
    int rank;
    int64_t step;
    double seconds = 0;
  };
  void Add(Fault f) { faults_.push_back(f); }
  // Exit with 9 at the `point`-th checkpoint crash point reached (from 1).
  void CrashCheckpointAt(int point) { crash_point_ = point; }
  // "kill:RANK:STEP", "sigterm:RANK:STEP", "fail:RANK:STEP" or "sleep:RANK:STEP:SECONDS"; false
  // when malformed.
  bool Parse(const std::string& spec) {
    char kind[16] = {};
    int rank = -1;
    long long step = -1;
    double seconds = 0;
    const int n = std::sscanf(spec.c_str(), "%15[a-z]:%d:%lld:%lf", kind, &rank, &step, &seconds);
    const std::string k = kind;
    if (n == 3 && k == "kill") return Added({Kind::kKill, rank, step});
    if (n == 3 && k == "sigterm") return Added({Kind::kSigterm, rank, step});
    if (n == 3 && k == "fail") return Added({Kind::kFail, rank, step});
    if (n == 4 && k == "sleep") return Added({Kind::kSleep, rank, step, seconds});
    return false;
  }

  void BeforeStep(int rank, int64_t step) override {
    rank_ = rank;
    step_ = step;
    for (const Fault& f : faults_) {
      if (f.rank != rank || f.step != step) continue;
      if (f.kind == Kind::kFail) {
        fail_next_kernel_ = true;
        continue;
      }
      if (f.kind == Kind::kKill) {
        std::fprintf(stderr, "mpiflow: rank %d: injected fault: SIGKILL at step %lld\n", rank,
                     static_cast<long long>(step));
        std::fflush(stderr);
        raise(SIGKILL);
      } else if (f.kind == Kind::kSigterm) {
        raise(SIGTERM);
      } else {
        std::this_thread::sleep_for(std::chrono::duration<double>(f.seconds));
      }
    }
  }
  // The first kernel after a "fail" fault's step begins fails.
  Status BeforeKernel(const std::string& node, const std::string& op) override {
    if (!fail_next_kernel_.exchange(false)) return Status::OK();  // executor threads call too
    return Internal("injected kernel failure in node '", node, "' (", op, ") on rank ", rank_,
                    " at step ", step_);
  }
  // Ends the process abruptly (as a kill would) at the chosen crash point.
  void AtCheckpointCrashPoint() override {
    if (++crash_points_ == crash_point_) std::_Exit(9);
  }

 private:
  bool Added(Fault f) {
    faults_.push_back(f);
    return true;
  }
  std::vector<Fault> faults_;
  int crash_point_ = -1;
  int rank_ = 0;
  int64_t step_ = 0;
  std::atomic<bool> fail_next_kernel_{false};
  int crash_points_ = 0;  // reached so far
};

}  // namespace test
}  // namespace mpiflow
