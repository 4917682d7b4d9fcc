// Timeline: Chrome-trace events kept in memory, written once as a JSON object with a
// "traceEvents" array. Not streaming: a training run's events (a few per step) fit in memory.
#include "mpiflow/timeline.h"

#include <cstdio>
#include <fstream>
#include <sstream>

namespace mpiflow {

namespace {

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

double Micros(Timeline::Clock::time_point t) {
  return std::chrono::duration<double, std::micro>(t.time_since_epoch()).count();
}

const char* LaneName(int lane) {
  switch (lane) {
    case Timeline::kCompute:
      return "compute";
    case Timeline::kCommunication:
      return "communication";
    default:
      return "data";
  }
}

}  // namespace

Timeline::Timeline(std::string path, int rank) : path_(std::move(path)), rank_(rank) {
  for (int lane = 0; lane < 3; ++lane) {
    events_.push_back(StrCat("{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":", rank_,
                             ",\"tid\":", lane, ",\"args\":{\"name\":\"", LaneName(lane), "\"}}"));
  }
  events_.push_back(StrCat("{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":", rank_,
                           ",\"args\":{\"name\":\"rank ", rank_, "\"}}"));
}

Timeline::~Timeline() {
  if (!written_) (void)Write();
}

void Timeline::Add(const std::string& name, const char* category, Clock::time_point start,
                   Clock::time_point end, Lane lane, const std::string& args) {
  char times[96];
  std::snprintf(times, sizeof(times), "\"ts\":%.3f,\"dur\":%.3f", Micros(start),
                Micros(end) - Micros(start));
  std::string e =
      StrCat("{\"name\":\"", JsonEscape(name), "\",\"cat\":\"", category, "\",\"ph\":\"X\",", times,
             ",\"pid\":", rank_, ",\"tid\":", static_cast<int>(lane));
  if (!args.empty()) e += StrCat(",\"args\":{", args, "}");
  e += "}";
  std::lock_guard<std::mutex> lock(mu_);
  events_.push_back(std::move(e));
}

Status Timeline::Write() {
  std::lock_guard<std::mutex> lock(mu_);
  written_ = true;
  std::ofstream f(path_);
  if (!f) return Status(Code::kUnavailable, StrCat("cannot write timeline '", path_, "'"));
  f << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (size_t i = 0; i < events_.size(); ++i)
    f << events_[i] << (i + 1 < events_.size() ? ",\n" : "\n");
  f << "]}\n";
  f.close();
  if (!f) return Status(Code::kUnavailable, StrCat("cannot write timeline '", path_, "'"));
  return Status::OK();
}

Status MergeTimelines(const std::vector<std::string>& inputs, const std::string& out) {
  std::vector<std::string> events;
  for (const std::string& in : inputs) {
    std::ifstream f(in);
    if (!f) return Status(Code::kNotFound, StrCat("cannot read timeline '", in, "'"));
    std::string line;
    while (std::getline(f, line)) {
      if (line.empty() || line[0] != '{' || line.rfind("{\"displayTimeUnit\"", 0) == 0) continue;
      if (line.back() == ',') line.pop_back();
      events.push_back(line);
    }
  }
  std::ofstream f(out);
  if (!f) return Status(Code::kUnavailable, StrCat("cannot write timeline '", out, "'"));
  f << "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (size_t i = 0; i < events.size(); ++i)
    f << events[i] << (i + 1 < events.size() ? ",\n" : "\n");
  f << "]}\n";
  return f ? Status::OK() : Status(Code::kUnavailable, StrCat("cannot write timeline '", out, "'"));
}

}  // namespace mpiflow
