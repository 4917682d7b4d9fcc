// The parameter-server exchange (see parameter_server.h): layout, the worker's push/receive,
// the server's gather/publish (sync) and wait/answer (async). Every message is float32
// [kHeader + shard elements].
#include "parameter_server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>

namespace mpiflow {

namespace {

constexpr int kPushTag = 7001;   // worker -> server: gradients
constexpr int kReplyTag = 7002;  // server -> worker: values

// The header's fields (float32 each; counters as two floats, exact below 2^48).
enum Field {
  kVersion = 0,     // [0, 1]: the values' version (push: the one computed on)
  kLoss = 2,        // push: loss sum; reply: mean loss
  kExamples = 3,    // push: examples; reply: examples the update used
  kStop = 4,        // preemption vote / decision
  kDone = 5,        // reply: push no more
  kNonFinite = 6,   // a NaN or Inf: training failed
  kDropped = 7,     // reply: stale pushes dropped so far
  kStep = 8,        // [8, 9] push: the pusher's data step (async)
  kLeave = 10,      // push: no gradient, the pusher is done (async)
  kUpdates = 11,    // [11, 12] reply: updates applied (async)
  kStaleness = 16,  // [16, 32) reply: the staleness histogram (async)
  kHeader = kStaleness + kStalenessBuckets
};

void PutCount(float* h, int64_t v) {
  h[0] = static_cast<float>(v >> 24);
  h[1] = static_cast<float>(v & ((int64_t{1} << 24) - 1));
}
int64_t GetCount(const float* h) {
  return (static_cast<int64_t>(h[0]) << 24) + static_cast<int64_t>(h[1]);
}

using Clock = std::chrono::steady_clock;

std::string List(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += StrCat(i ? ", " : "", v[i]);
  return s;
}

}  // namespace

Status ValidateParameterServerOptions(const ParameterServerOptions& o) {
  if (o.servers < 1) return InvalidArgument("--ps-ranks must be >= 1, got ", o.servers);
  if (o.backup_workers < 0) {
    return InvalidArgument("--backup-workers must be >= 0, got ", o.backup_workers);
  }
  if (o.backup_workers > 0 && o.mode != PsMode::kSync) {
    return InvalidArgument("--backup-workers applies to --ps-mode sync (with ", PsModeName(o.mode),
                           " no server waits for a push): leave it at 0, or bound staleness "
                           "with --max-staleness");
  }
  if (o.max_staleness < -1) {
    return InvalidArgument("--max-staleness must be >= 0 (or -1: no bound), got ", o.max_staleness);
  }
  if (o.max_staleness >= 0 && o.mode == PsMode::kSync) {
    return InvalidArgument(
        "--max-staleness applies to --ps-mode async or hybrid (a synchronous "
        "step drops every stale push already)");
  }
  if (o.group_size < 1) return InvalidArgument("--group-size must be >= 1, got ", o.group_size);
  if (o.group_size > 1 && o.mode != PsMode::kHybrid) {
    return InvalidArgument("--group-size ", o.group_size, " needs --ps-mode hybrid");
  }
  return Status::OK();
}

StatusOr<PsLayout> MakePsLayout(int ranks, const ParameterServerOptions& o,
                                const std::vector<int64_t>& variable_elements) {
  const int servers = o.servers, backups = o.backup_workers;
  MPIFLOW_RETURN_IF_ERROR(ValidateParameterServerOptions(o));
  if (ranks < servers + 1) {
    return InvalidArgument("--strategy ps with --ps-ranks ", servers, " needs at least ",
                           servers + 1, " ranks (the servers and a worker); this job has ", ranks,
                           ": start more ranks or lower --ps-ranks");
  }
  PsLayout l;
  l.servers = servers;
  l.workers = ranks - servers;
  l.backups = backups;
  if (backups >= l.workers) {
    return InvalidArgument("--backup-workers ", backups,
                           " leaves no gradient to average: ", l.workers, " worker(s) (", ranks,
                           " ranks - ", servers, " servers); it must be below the worker count");
  }
  l.mode = o.mode;
  if (o.mode == PsMode::kHybrid) {
    if (o.group_size > l.workers) {
      return InvalidArgument("--group-size ", o.group_size, " is more than the ", l.workers,
                             " worker(s) (", ranks, " ranks - ", servers, " servers)");
    }
    l.group_size = o.group_size;
  }
  const int n = static_cast<int>(variable_elements.size());
  std::vector<int> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return variable_elements[a] > variable_elements[b]; });
  l.owner.assign(n, 0);
  l.shards.assign(servers, {});
  l.shard_elements.assign(servers, 0);
  for (int v : order) {
    int best = 0;
    for (int k = 1; k < servers; ++k) {
      if (l.shard_elements[k] < l.shard_elements[best]) best = k;
    }
    l.owner[v] = best;
    l.shard_elements[best] += variable_elements[v];
    l.shards[best].push_back(v);
  }
  for (auto& s : l.shards) std::sort(s.begin(), s.end());
  return l;
}

// ---- worker ---------------------------------------------------------------------------------

PsWorkerLink::PsWorkerLink(Communicator* comm, const PsLayout& layout, std::vector<Shape> shapes)
    : comm_(comm),
      layout_(layout),
      shapes_(std::move(shapes)),
      version_(layout.servers, 0),
      done_(layout.servers, 0) {
  for (int k = 0; k < layout_.servers; ++k) {
    push_.emplace_back(DType::kFloat32, Shape{kHeader + layout_.shard_elements[k]});
    reply_.emplace_back(DType::kFloat32, Shape{kHeader + layout_.shard_elements[k]});
  }
}

bool PsWorkerLink::AllDone() const {
  return std::all_of(done_.begin(), done_.end(), [](char d) { return d != 0; });
}

Status PsWorkerLink::Receive(std::vector<Tensor>* values, PsReply* reply) {
  return Receive(values, reply, nullptr);
}

Status PsWorkerLink::Receive(std::vector<Tensor>* values, PsReply* reply, Communicator* group) {
  std::vector<std::pair<int, Tensor>> in;  // (server, its reply buffer)
  std::vector<std::shared_ptr<Work>> works;
  const bool leader = !group || group->rank() == 0;
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    if (leader) works.push_back(comm_->Recv(reply_[k], layout_.server_rank(k), kReplyTag));
    in.emplace_back(k, reply_[k]);
  }
  const Clock::time_point start = Clock::now();
  for (size_t j = 0; j < works.size(); ++j) {
    const int k = in[j].first;
    comm_->WaitAnyWatched({works[j]}, start, [&](double waited) {
      return StrCat("mpiflow: rank ", comm_->rank(), ": stall: worker has waited ",
                    static_cast<int64_t>(waited), " s for parameter server ", k, " (rank ",
                    layout_.server_rank(k), ") to answer its push of step ", version_[k]);
    });
    MPIFLOW_RETURN_IF_ERROR(works[j]->status());
  }
  if (group) {  // the group's members take the leader's replies
    for (auto& [k, t] : in) MPIFLOW_RETURN_IF_ERROR(group->Broadcast(t, 0)->Wait());
  }
  for (auto& w : sends_) MPIFLOW_RETURN_IF_ERROR(w->Wait());  // done: the server replied
  sends_.clear();
  *reply = PsReply();
  bool have = false;
  int64_t newest = 0;
  for (const auto& [k, t] : in) {
    const float* h = t.data<float>();
    version_[k] = GetCount(h + kVersion);
    newest = std::max(newest, version_[k]);
    if (!have || k == 0) {
      reply->loss = h[kLoss];
      reply->examples = h[kExamples];
      reply->dropped = static_cast<int64_t>(h[kDropped]);
      reply->updates = GetCount(h + kUpdates);
      for (int b = 0; b < kStalenessBuckets; ++b) {
        reply->staleness[b] = static_cast<int64_t>(h[kStaleness + b]);
      }
      have = true;
    }
    reply->stop = reply->stop || h[kStop] != 0;
    reply->done = reply->done || h[kDone] != 0;
    reply->non_finite = reply->non_finite || h[kNonFinite] != 0;
    if (h[kDone] != 0) done_[k] = 1;
    int64_t offset = kHeader;
    for (int v : layout_.shards[k]) {
      (*values)[v] = t.View(offset, shapes_[v]);  // no copy
      offset += shapes_[v].num_elements();
    }
  }
  reply->version = newest;
  return Status::OK();
}

Status PsWorkerLink::Push(const std::vector<Tensor>& grads, double examples, double loss_sum,
                          bool stop, int64_t step) {
  MPIFLOW_RETURN_IF_ERROR(Pack(grads, examples, loss_sum, stop));
  return Send(step);
}

Status PsWorkerLink::Send(int64_t step) {
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    float* h = push_[k].data<float>();
    PutCount(h + kVersion, version_[k]);  // after a group's sum: its members held this version
    PutCount(h + kStep, step);
    sends_.push_back(comm_->Send(push_[k], layout_.server_rank(k), kPushTag));
  }
  return Status::OK();
}

Status PsWorkerLink::Leave(bool stop, bool non_finite, Communicator* group, PsReply* reply) {
  *reply = PsReply();
  if (AllDone()) return Status::OK();
  if (!group || group->rank() == 0) {
    for (auto& work : sends_) MPIFLOW_RETURN_IF_ERROR(work->Wait());
    sends_.clear();
    for (int k = 0; k < layout_.servers; ++k) {
      if (done_[k]) continue;
      float* h = push_[k].data<float>();
      std::fill(h, h + kHeader, 0.0f);
      h[kStop] = stop ? 1.0f : 0.0f;
      h[kLeave] = 1.0f;
      h[kNonFinite] = non_finite ? 1.0f : 0.0f;
    }
    MPIFLOW_RETURN_IF_ERROR(Send(0));
  }
  std::vector<Tensor> ignored(shapes_.size());
  return Receive(&ignored, reply, group);  // every server still serving answers done
}

Status PsWorkerLink::Pack(const std::vector<Tensor>& grads, double examples, double loss_sum,
                          bool stop) {
  const float w = static_cast<float>(examples);
  for (auto& work : sends_) MPIFLOW_RETURN_IF_ERROR(work->Wait());  // the buffers are free
  sends_.clear();
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    Tensor& t = push_[k];
    float* h = t.data<float>();
    std::fill(h, h + kHeader, 0.0f);
    h[kLoss] = static_cast<float>(loss_sum);
    h[kExamples] = w;
    h[kStop] = stop ? 1.0f : 0.0f;
    float* p = h + kHeader;
    for (int v : layout_.shards[k]) {
      const Tensor& g = grads[v];
      if (g.dtype() != DType::kFloat32 || g.shape() != shapes_[v]) {
        return InvalidArgument("parameter server push: gradient ", v, " is ", DTypeName(g.dtype()),
                               g.shape().ToString(), ", its variable float32",
                               shapes_[v].ToString());
      }
      const float* src = g.data<float>();
      const int64_t n = g.num_elements();
      for (int64_t i = 0; i < n; ++i) p[i] = w * src[i];  // float32 [n]
      p += n;
    }
  }
  return Status::OK();
}

// ---- server ---------------------------------------------------------------------------------

PsServerLink::PsServerLink(Communicator* comm, const PsLayout& layout, int server,
                           std::vector<Shape> shapes)
    : comm_(comm),
      layout_(layout),
      server_(server),
      shapes_(std::move(shapes)),
      recvs_(layout.pushers()),
      applied_(layout.pushers(), 0) {
  for (int p = 0; p < layout_.pushers(); ++p) {
    inbox_.emplace_back(DType::kFloat32, Shape{kHeader + layout_.shard_elements[server_]});
  }
}

PsServerLink::~PsServerLink() { (void)Flush(); }

Status PsServerLink::Flush() {
  for (auto& w : sends_) MPIFLOW_RETURN_IF_ERROR(w->Wait());
  sends_.clear();
  return Status::OK();
}

// The inbox is free again: its last push was averaged (Gather), applied or dropped before this.
void PsServerLink::PostRecv(int pusher) {
  recvs_[pusher] = comm_->Recv(inbox_[pusher], layout_.pusher_rank(pusher), kPushTag);
}

Status PsServerLink::Reply(int pusher) {
  sends_.push_back(comm_->Send(current_, layout_.pusher_rank(pusher), kReplyTag));
  return Status::OK();
}

Tensor PsServerLink::Message(const std::vector<Tensor>& values, const PsReply& reply) const {
  Tensor t(DType::kFloat32, Shape{kHeader + layout_.shard_elements[server_]});
  float* h = t.data<float>();
  std::fill(h, h + kHeader, 0.0f);
  PutCount(h + kVersion, version_);
  h[kLoss] = static_cast<float>(reply.loss);
  h[kExamples] = static_cast<float>(reply.examples);
  h[kStop] = reply.stop ? 1.0f : 0.0f;
  h[kDone] = reply.done ? 1.0f : 0.0f;
  h[kNonFinite] = reply.non_finite ? 1.0f : 0.0f;
  h[kDropped] = static_cast<float>(dropped_);
  PutCount(h + kUpdates, reply.updates);
  for (int b = 0; b < kStalenessBuckets && b < static_cast<int>(reply.staleness.size()); ++b) {
    h[kStaleness + b] = static_cast<float>(reply.staleness[b]);
  }
  float* p = h + kHeader;
  for (size_t j = 0; j < values.size(); ++j) {
    std::memcpy(p, values[j].data<float>(), values[j].bytes());
    p += values[j].num_elements();
  }
  return t;
}

Status PsServerLink::Start(int64_t version, const std::vector<Tensor>& values, bool done) {
  PsReply r;
  r.done = done;
  version_ = version - 1;  // Publish counts it up
  gathered_.resize(layout_.pushers());
  std::iota(gathered_.begin(), gathered_.end(), 0);
  const Status st = Publish(values, r);
  gathered_.clear();
  return st;
}

Status PsServerLink::Gather(std::vector<Tensor>* mean, double* loss, double* examples,
                            bool* stop_votes) {
  gathered_.clear();
  *stop_votes = false;
  std::vector<std::shared_ptr<Work>> live;
  std::vector<int> who;
  const Clock::time_point start = Clock::now();
  while (static_cast<int>(gathered_.size()) < layout_.aggregate()) {
    live.clear();
    who.clear();
    for (int w = 0; w < layout_.pushers(); ++w) {
      if (recvs_[w]) {
        live.push_back(recvs_[w]);
        who.push_back(w);
      }
    }
    if (live.empty()) {
      return Status(Code::kInternal, "parameter server: no worker left to gather from");
    }
    const int w = who[comm_->WaitAnyWatched(live, start, [&](double waited) {
      std::vector<int> missing;
      for (int q : who) {
        if (!recvs_[q]->Completed()) missing.push_back(q);
      }
      return StrCat("mpiflow: rank ", comm_->rank(), ": stall: parameter server ", server_,
                    " has waited ", static_cast<int64_t>(waited), " s at step ", version_, " for ",
                    layout_.aggregate() - static_cast<int>(gathered_.size()),
                    " more push(es); not arrived: worker(s) ", List(missing));
    })];
    Status st = recvs_[w]->status();
    recvs_[w] = nullptr;
    if (!st.ok()) return st;
    const float* h = inbox_[w].data<float>();
    const int64_t v = GetCount(h + kVersion);
    *stop_votes = *stop_votes || h[kStop] != 0;
    if (v == version_) {
      gathered_.push_back(w);  // its receive is posted again after the reply
    } else if (v < version_) {
      ++dropped_;  // a straggler's: answer with the current values at once
      MPIFLOW_RETURN_IF_ERROR(Reply(w));
      PostRecv(w);
    } else {
      return Status(Code::kInternal, StrCat("parameter server ", server_, ": worker ", w,
                                            " pushed version ", v, " ahead of ", version_));
    }
  }
  // Sum in worker order, whatever the arrival order: the same bits every run without backups.
  std::sort(gathered_.begin(), gathered_.end());
  const std::vector<int>& shard = layout_.shards[server_];
  mean->assign(shard.size(), Tensor());
  double loss_sum = 0, total = 0;
  for (int w : gathered_) {
    loss_sum += inbox_[w].data<float>()[kLoss];
    total += inbox_[w].data<float>()[kExamples];
    ++applied_[w];
  }
  const float inv = total > 0 ? static_cast<float>(1.0 / total) : 0.0f;
  int64_t offset = kHeader;
  for (size_t j = 0; j < shard.size(); ++j) {
    Tensor m(DType::kFloat32, shapes_[j]);
    float* out = m.data<float>();  // float32 [n]
    const int64_t n = m.num_elements();
    std::fill(out, out + n, 0.0f);
    for (int w : gathered_) {
      const float* in = inbox_[w].data<float>() + offset;
      for (int64_t i = 0; i < n; ++i) out[i] += in[i];
    }
    for (int64_t i = 0; i < n; ++i) out[i] *= inv;
    offset += n;
    (*mean)[j] = std::move(m);
  }
  *loss = total > 0 ? loss_sum / total : 0;
  *examples = total;
  return Status::OK();
}

Status PsServerLink::Publish(const std::vector<Tensor>& values, PsReply reply) {
  ++version_;
  if (values.size() != shapes_.size()) {
    return Status(Code::kInternal, StrCat("parameter server ", server_, ": ", values.size(),
                                          " values for a shard of ", shapes_.size()));
  }
  current_ = Message(values, reply);  // sends in flight keep the previous one alive
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(),
                              [](const std::shared_ptr<Work>& w) { return w->Completed(); }),
               sends_.end());
  for (int w : gathered_) {
    MPIFLOW_RETURN_IF_ERROR(Reply(w));
    if (!reply.done) PostRecv(w);
  }
  if (reply.done) {  // everyone else pushes once more (or has): tell them too
    for (int w = 0; w < layout_.pushers(); ++w) {
      if (!recvs_[w]) continue;
      MPIFLOW_RETURN_IF_ERROR(recvs_[w]->Wait());
      recvs_[w] = nullptr;
      MPIFLOW_RETURN_IF_ERROR(Reply(w));
    }
    MPIFLOW_RETURN_IF_ERROR(Flush());
  }
  return Status::OK();
}

Status PsServerLink::WaitPush(PsPush* push) {
  std::vector<std::shared_ptr<Work>> live;
  std::vector<int> who;
  for (int p = 0; p < layout_.pushers(); ++p) {
    if (recvs_[p]) {
      live.push_back(recvs_[p]);
      who.push_back(p);
    }
  }
  if (live.empty()) return Status(Code::kInternal, "parameter server: no pusher left to wait for");
  const int p = who[comm_->WaitAnyWatched(live, Clock::now(), [&](double waited) {
    return StrCat("mpiflow: rank ", comm_->rank(), ": stall: parameter server ", server_,
                  " has waited ", static_cast<int64_t>(waited), " s after update ", version_,
                  " for any push; none has arrived from rank(s) ", [&] {
                    std::vector<int> ranks;
                    for (int q : who) ranks.push_back(layout_.pusher_rank(q));
                    return List(ranks);
                  }());
  })];
  Status st = recvs_[p]->status();
  recvs_[p] = nullptr;
  if (!st.ok()) return st;
  const float* h = inbox_[p].data<float>();
  push->pusher = p;
  push->version = GetCount(h + kVersion);
  push->step = GetCount(h + kStep);
  push->loss_sum = h[kLoss];
  push->examples = h[kExamples];
  push->stop = h[kStop] != 0;
  push->leave = h[kLeave] != 0;
  push->non_finite = h[kNonFinite] != 0;
  if (push->version > version_) {
    return Status(Code::kInternal,
                  StrCat("parameter server ", server_, ": rank ", layout_.pusher_rank(p),
                         " pushed version ", push->version, " ahead of ", version_));
  }
  return Status::OK();
}

void PsServerLink::MeanOf(const PsPush& push, std::vector<Tensor>* mean) const {
  const float inv = push.examples > 0 ? static_cast<float>(1.0 / push.examples) : 0.0f;
  mean->assign(shapes_.size(), Tensor());
  int64_t offset = kHeader;
  for (size_t j = 0; j < shapes_.size(); ++j) {
    Tensor m(DType::kFloat32, shapes_[j]);
    float* out = m.data<float>();  // float32 [n]
    const float* in = inbox_[push.pusher].data<float>() + offset;
    const int64_t n = m.num_elements();
    for (int64_t i = 0; i < n; ++i) out[i] = (0.0f + in[i]) * inv;  // Gather's arithmetic
    offset += n;
    (*mean)[j] = std::move(m);
  }
}

Status PsServerLink::Answer(int pusher, const std::vector<Tensor>& values, PsReply reply) {
  current_ = Message(values, reply);
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(),
                              [](const std::shared_ptr<Work>& w) { return w->Completed(); }),
               sends_.end());
  MPIFLOW_RETURN_IF_ERROR(Reply(pusher));
  if (!reply.done) PostRecv(pusher);
  return Status::OK();
}

}  // namespace mpiflow
