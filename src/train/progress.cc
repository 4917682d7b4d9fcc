// Progress lines, metrics records and the profile table (see progress.h).
#include "progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <utility>
#include <vector>

namespace mpiflow {

std::string FormatDuration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  if (t >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(t / 3600),
                  static_cast<long long>(t / 60 % 60), static_cast<long long>(t % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld", static_cast<long long>(t / 60),
                  static_cast<long long>(t % 60));
  }
  return buf;
}

namespace {

// The integer after "key": in a metrics record, or -1.
int64_t Field(const std::string& line, const char* key) {
  const std::string k = StrCat("\"", key, "\":");
  const size_t at = line.find(k);
  return at == std::string::npos ? -1 : std::atoll(line.c_str() + at + k.size());
}

}  // namespace

StatusOr<std::unique_ptr<std::ofstream>> OpenMetrics(const std::string& path, int64_t resumed_step,
                                                     int64_t epochs_done) {
  if (resumed_step >= 0) {
    std::ifstream in(path);
    std::string kept, line;
    while (std::getline(in, line)) {
      const int64_t step = Field(line, "step"), epoch = Field(line, "epoch");
      const bool keep = step >= 0 ? step <= resumed_step : epoch <= epochs_done;
      if (keep && !line.empty()) kept += line + "\n";
    }
    const std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << kept;
      if (!out.flush()) return Status(Code::kUnavailable, StrCat("cannot write '", tmp, "'"));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
      return Status(Code::kUnavailable, StrCat("cannot rename '", tmp, "' to '", path, "'"));
    }
  }
  auto out =
      std::make_unique<std::ofstream>(path, resumed_step >= 0 ? std::ios::app : std::ios::trunc);
  if (!*out) return Status(Code::kUnavailable, StrCat("cannot write '", path, "'"));
  return out;
}

void Progress::Step(int64_t step, int64_t epoch, double loss, double lr, int64_t examples,
                    double seconds, bool print) {
  if (step > timed_from_) {
    timed_seconds_ += seconds;
    timed_samples_ += examples;
  }
  window_seconds_ += seconds;
  window_samples_ += examples;
  if (!print) return;
  const double rate = window_samples_ / std::max(window_seconds_, 1e-9);
  const double eta = (total_ - step) * batch_ / std::max(rate, 1e-9);
  char line[256];
  std::snprintf(line, sizeof(line),
                "step %lld/%lld  epoch %lld/%lld  loss %.4f  %.1f samples/s  ETA %s\n",
                static_cast<long long>(step), static_cast<long long>(total_),
                static_cast<long long>(epoch + 1), static_cast<long long>(epochs_), loss, rate,
                FormatDuration(eta).c_str());
  log_ << line << std::flush;
  if (metrics_) {
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    char time[32];
    std::snprintf(time, sizeof(time), "%.3f", now);  // wall clock, seconds since 1970
    *metrics_ << "{\"step\":" << step << ",\"epoch\":" << epoch + 1 << ",\"loss\":" << loss
              << ",\"lr\":" << lr << ",\"samples_per_sec\":" << rate << ",\"time\":" << time
              << "}\n";
  }
  window_seconds_ = 0;
  window_samples_ = 0;
}

double Progress::Evaluated(int64_t epoch, double accuracy, int64_t images,
                           std::chrono::steady_clock::time_point start) {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char line[160];
  std::snprintf(line, sizeof(line),
                "epoch %lld/%lld  test_accuracy %.4f  (%lld examples, %.1f s)\n",
                static_cast<long long>(epoch + 1), static_cast<long long>(epochs_), accuracy,
                static_cast<long long>(images), seconds);
  log_ << line << std::flush;
  if (metrics_) {
    *metrics_ << "{\"epoch\":" << epoch + 1 << ",\"test_accuracy\":" << accuracy << "}\n";
  }
  return seconds;
}

void Progress::AddKernelTimes(const RunStats& stats) {
  for (const RunStats::NodeTime& t : stats.node_times) {
    auto& entry = op_seconds_[t.node->op()];
    entry.first += t.seconds;
    ++entry.second;
  }
}

void Progress::PrintProfile(int64_t last_step) {
  if (timed_seconds_ <= 0) return;
  std::vector<std::pair<double, std::string>> rows;
  double kernel_seconds = 0;
  for (const auto& [op, e] : op_seconds_) {
    rows.emplace_back(e.first, op);
    kernel_seconds += e.first;
  }
  std::sort(rows.rbegin(), rows.rend());
  const int64_t steps = last_step - timed_from_;
  char line[160];
  std::snprintf(line, sizeof(line), "profile: %lld steps, %.3f ms/step, %.3f ms/step in kernels\n",
                static_cast<long long>(steps), 1e3 * timed_seconds_ / steps,
                1e3 * kernel_seconds / steps);
  log_ << line;
  for (const auto& [seconds, op] : rows) {
    std::snprintf(line, sizeof(line), "  %-36s %9.3f ms/step %5.1f%%  (%lld runs/step)\n",
                  op.c_str(), 1e3 * seconds / steps, 100 * seconds / timed_seconds_,
                  static_cast<long long>(op_seconds_[op].second / steps));
    log_ << line;
  }
}

double Progress::samples_per_sec() const {
  return timed_seconds_ > 0 ? timed_samples_ / timed_seconds_ : 0;
}

}  // namespace mpiflow
