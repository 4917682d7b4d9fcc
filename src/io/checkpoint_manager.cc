// CheckpointManager: names, the atomic write through WriteCheckpoint, `latest`, rotation,
// temporaries, and which file a resume reads (see checkpoint_manager.h). Not the HDF5 format.
#include "mpiflow/checkpoint_manager.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <vector>

namespace mpiflow {

using Clock = std::chrono::steady_clock;

Status ValidateCheckpointOptions(const CheckpointOptions& o) {
  if (o.every_steps < 0) {
    return InvalidArgument("--checkpoint-every must be >= 0 (0: off), got ", o.every_steps);
  }
  if (o.every_seconds < 0) {
    return InvalidArgument("--checkpoint-seconds must be >= 0 (0: off), got ", o.every_seconds);
  }
  if (o.keep < 1) return InvalidArgument("--keep-checkpoints must be >= 1, got ", o.keep);
  return Status::OK();
}

Status MakeDirs(const std::string& path) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (!cur.empty() && ::mkdir(cur.c_str(), 0755) != 0) {
        struct stat st;
        if (errno != EEXIST) {
          return Status(Code::kUnavailable,
                        StrCat("cannot create directory '", cur, "': ", std::strerror(errno)));
        }
        if (::stat(cur.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) {
          return Status(Code::kUnavailable, StrCat("cannot create directory '", cur,
                                                   "': a file of that name exists (move it, or "
                                                   "name another directory)"));
        }
      }
    }
    if (i < path.size()) cur += path[i];
  }
  return Status::OK();
}

void SetRunState(const RunState& s, Checkpoint* c) {
  c->counters["step"] = s.position.step;
  c->counters["epoch"] = s.position.epoch;
  c->counters["example"] = s.position.example;
  c->counters["per_shard"] = s.position.per_shard ? 1 : 0;
  c->counters["ranks"] = s.ranks;
  c->counters["data_ranks"] = s.data_ranks;
  c->counters["run_counter"] = s.run_counter;
}

RunState GetRunState(const Checkpoint& c) {
  auto get = [&c](const char* name, int64_t otherwise) {
    auto it = c.counters.find(name);
    return it == c.counters.end() ? otherwise : it->second;
  };
  RunState s;
  s.resumed = true;
  s.position.step = get("step", 0);
  s.position.per_shard = get("per_shard", 0) != 0;
  s.has_position = c.counters.count("epoch") && c.counters.count("example");
  s.position.epoch = get("epoch", 0);
  s.position.example = get("example", 0);
  s.ranks = get("ranks", 0);
  s.data_ranks = get("data_ranks", s.ranks);
  s.run_counter = get("run_counter", 0);
  return s;
}

CheckpointManager::CheckpointManager(CheckpointOptions options, std::string shard,
                                     FaultHooks* hooks)
    : options_(std::move(options)),
      shard_(std::move(shard)),
      hooks_(hooks),
      last_save_(Clock::now()) {}

void CheckpointManager::SetAttributes(std::map<std::string, std::string> attributes) {
  attributes_ = std::move(attributes);
}

bool CheckpointManager::DueAtStep(int64_t step) const {
  return options_.every_steps > 0 && step % options_.every_steps == 0;
}

bool CheckpointManager::DueByTime() const {
  return options_.every_seconds > 0 &&
         std::chrono::duration<double>(Clock::now() - last_save_).count() >= options_.every_seconds;
}

std::string CheckpointManager::FileName(int64_t step, const std::string& shard) {
  char name[40];
  std::snprintf(name, sizeof(name), "ckpt-%08lld", static_cast<long long>(step));
  return name + shard + ".h5";
}

std::string CheckpointManager::ShardSuffix(int server, int servers) {
  return StrCat(".ps", server, "-of-", servers);
}

Status CheckpointManager::PointLatest(int64_t step, const std::string& shard) const {
  const std::string latest = options_.dir + "/latest", tmp = latest + ".tmp";
  {
    std::ofstream f(tmp);
    f << FileName(step, shard) << "\n";
    if (!f.flush()) return Status(Code::kUnavailable, StrCat("cannot write '", tmp, "'"));
  }
  CrashPoint();
  if (std::rename(tmp.c_str(), latest.c_str()) != 0) {
    return Status(Code::kUnavailable,
                  StrCat("cannot rename '", tmp, "' to '", latest, "': ", std::strerror(errno)));
  }
  CrashPoint();
  return Status::OK();
}

// Removes the temporary files of checkpoint writers that were killed ("ckpt-*<shard>.h5.tmp.*").
// Without a shard, only unsharded names (a server's temporaries are not ours to remove).
void CheckpointManager::RemoveStaleTemporaries() const {
  DIR* d = opendir(options_.dir.c_str());
  if (!d) return;
  std::vector<std::string> stale;
  const std::string mark = shard_ + ".h5.tmp.";
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind("ckpt-", 0) == 0 && n.find(mark) != std::string::npos &&
        (!shard_.empty() || n.find(".ps") == std::string::npos)) {
      stale.push_back(n);
    }
  }
  closedir(d);
  for (const std::string& n : stale) std::remove((options_.dir + "/" + n).c_str());
}

StatusOr<std::string> CheckpointManager::Save(Checkpoint c, int64_t step, bool point_latest) {
  MPIFLOW_RETURN_IF_ERROR(MakeDirs(options_.dir));
  if (!cleaned_) {  // once per run: nobody else writes this role's files here
    RemoveStaleTemporaries();
    cleaned_ = true;
  }
  for (const auto& [k, v] : attributes_) c.attributes[k] = v;
  c.counters["step"] = step;
  const std::string path = PathOf(step);
  MPIFLOW_RETURN_IF_ERROR(WriteCheckpoint(path, c, hooks_));
  if (point_latest) MPIFLOW_RETURN_IF_ERROR(PointLatest(step, shard_));
  // Prune: this role's checkpoints of the steps before the newest `keep`.
  for (int64_t old = step - 1, kept = 1; old >= 0; --old) {
    const std::string p = PathOf(old);
    if (::access(p.c_str(), F_OK) != 0) continue;
    if (++kept > options_.keep) {
      std::remove(p.c_str());
      CrashPoint();
    }
    if (kept > options_.keep + 64) break;
  }
  MarkSaved(step);
  return path;
}

void CheckpointManager::MarkSaved(int64_t step) {
  last_ = PathOf(step);
  last_step_ = step;
  last_save_ = Clock::now();
}

StatusOr<std::string> CheckpointManager::ResumePath() const {
  std::string path = options_.resume;
  if (path == "latest") {
    std::ifstream f(options_.dir + "/latest");
    std::string name;
    if (!(f >> name)) {
      return Status(Code::kNotFound, StrCat("--resume latest: no '", options_.dir,
                                            "/latest' (no checkpoint written there yet?)"));
    }
    path = options_.dir + "/" + name;
  }
  return path;
}

namespace {

// The number of servers P of a path ending in ".ps0-of-<P>.h5" (0: it does not).
int ShardCountOf(const std::string& path) {
  const std::string first = ".ps0-of-", ext = ".h5";
  const size_t at = path.rfind(first);
  if (at == std::string::npos || path.size() < ext.size() ||
      path.compare(path.size() - ext.size(), ext.size(), ext) != 0) {
    return 0;
  }
  const std::string digits =
      path.substr(at + first.size(), path.size() - ext.size() - at - first.size());
  if (digits.empty() || digits.size() > 6 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return 0;
  }
  return std::stoi(digits);
}

// A table split by rows over a run's shards, put together from its slices: every row once.
StatusOr<Tensor> JoinRows(const std::string& path, const std::string& name,
                          std::vector<std::pair<RowSlice, Tensor>>* pieces) {
  std::sort(pieces->begin(), pieces->end(),
            [](const auto& a, const auto& b) { return a.first.first < b.first.first; });
  const RowSlice& any = pieces->front().first;
  const Tensor& t0 = pieces->front().second;
  std::vector<int64_t> dims = t0.shape().dims();
  dims[0] = any.rows;
  Tensor whole(t0.dtype(), Shape(dims));  // [rows, ...]
  const size_t row_bytes = t0.shape().dim(0) > 0 ? t0.bytes() / t0.shape().dim(0) : 0;
  int64_t next = 0;
  for (const auto& [slice, t] : *pieces) {
    std::vector<int64_t> d = t.shape().dims();
    d[0] = any.rows;
    if (slice.rows != any.rows || t.dtype() != t0.dtype() || Shape(d) != whole.shape() ||
        slice.first != next) {
      return InvalidArgument("checkpoint '", path, "': the parts of '", name,
                             "' in its shards do not make its ", any.rows, " rows once each (",
                             slice.first != next
                                 ? StrCat("rows from ", next, " are missing or ", "twice")
                                 : std::string("their shapes differ"),
                             "): the shards are not of one run");
    }
    if (t.bytes()) {
      std::memcpy(static_cast<char*>(whole.raw()) + next * row_bytes, t.raw(), t.bytes());
    }
    next += t.shape().dim(0);
  }
  if (next != any.rows) {
    return InvalidArgument("checkpoint '", path, "': the parts of '", name, "' in its shards hold ",
                           next, " of its ", any.rows, " rows: the shards are not of one run");
  }
  return whole;
}

}  // namespace

StatusOr<std::pair<std::string, int>> CheckpointManager::ResumeTarget() const {
  StatusOr<std::string> path = ResumePath();
  if (!path.ok()) return path.status();
  const int servers = shard_.empty() ? 0 : ShardCountOf(*path);
  if (!shard_.empty() && servers == 0) {
    const std::string now = shard_.substr(shard_.find("-of-") + 4);
    return InvalidArgument("--resume '", *path, "': not server 0's shard of a run with --ps-ranks ",
                           now,
                           " (a name ending in '.ps0-of-<servers>.h5'); resume a "
                           "parameter-server run from its own checkpoints");
  }
  return std::make_pair(*path, servers);
}

StatusOr<RunState> CheckpointManager::PeekResumeState() const {
  StatusOr<std::pair<std::string, int>> target = ResumeTarget();
  if (!target.ok()) return target.status();
  ReadOptions metadata;
  metadata.metadata_only = true;
  StatusOr<Checkpoint> c = ReadCheckpoint(target->first, metadata);
  if (!c.ok()) return c.status();
  return GetRunState(*c);
}

StatusOr<Checkpoint> CheckpointManager::LoadForResume(std::string* changed) {
  StatusOr<std::pair<std::string, int>> target = ResumeTarget();
  if (!target.ok()) return target.status();
  const std::string* path = &target->first;
  const int servers = target->second;
  StatusOr<Checkpoint> c = ReadCheckpoint(*path);
  if (!c.ok()) return c.status();
  if (servers > 0) {
    // A sharded run is named by shard 0's file: read the step's other shards and merge them
    // (the global step is in every shard; the first one read is kept), and put the tables
    // split by rows together from their slices.
    const std::string stem = path->substr(0, path->rfind(".ps0-of-"));
    std::set<std::string> names;
    for (const auto& v : c->variables) names.insert(v.first);
    std::map<std::string, std::vector<std::pair<RowSlice, Tensor>>> slices;
    for (const auto& v : c->variables) {
      auto it = c->row_slices.find(v.first);
      if (it != c->row_slices.end()) slices[v.first].emplace_back(it->second, v.second);
    }
    for (int k = 1; k < servers; ++k) {
      const std::string other = StrCat(stem, ShardSuffix(k, servers), ".h5");
      StatusOr<Checkpoint> part = ReadCheckpoint(other);
      if (!part.ok()) return part.status();
      if (part->counters["step"] != c->counters["step"]) {
        return InvalidArgument("checkpoint shard '", other, "' holds step ", part->counters["step"],
                               ", shard 0 step ", c->counters["step"], ": the shards of '", *path,
                               "' are not of one step");
      }
      for (auto& v : part->variables) {
        auto it = part->row_slices.find(v.first);
        if (it != part->row_slices.end()) slices[v.first].emplace_back(it->second, v.second);
        if (names.insert(v.first).second) c->variables.push_back(std::move(v));
      }
    }
    for (auto& [name, pieces] : slices) {
      StatusOr<Tensor> whole = JoinRows(*path, name, &pieces);
      if (!whole.ok()) return whole.status();
      for (auto& v : c->variables) {
        if (v.first == name) v.second = std::move(*whole);
      }
      c->row_slices.erase(name);
    }
  }
  changed->clear();
  for (const auto& [k, v] : attributes_) {
    if (k.rfind("option.", 0) != 0 || k == "option.epochs" || k == "option.max-steps" ||
        k == "option.resume") {
      continue;
    }
    auto it = c->attributes.find(k);
    if (it != c->attributes.end() && it->second != v) {
      *changed += StrCat(changed->empty() ? "" : ", ", k.substr(7), " ", it->second, " -> ", v);
    }
  }
  last_ = *path;
  last_step_ = c->counters["step"];
  return c;
}

}  // namespace mpiflow
