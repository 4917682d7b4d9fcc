// The parameter-server exchange (see parameter_server.h): layout, the worker's push/receive,
// the server's gather/publish. Every message is float32 [8 header + shard elements].
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
constexpr int kHeader = 8;

// Versions travel as two floats (exact below 2^24 each).
void PutVersion(float* h, int64_t v) {
  h[0] = static_cast<float>(v >> 24);
  h[1] = static_cast<float>(v & ((int64_t{1} << 24) - 1));
}
int64_t GetVersion(const float* h) {
  return (static_cast<int64_t>(h[0]) << 24) + static_cast<int64_t>(h[1]);
}

using Clock = std::chrono::steady_clock;

std::string List(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += StrCat(i ? ", " : "", v[i]);
  return s;
}

}  // namespace

StatusOr<PsLayout> MakePsLayout(int ranks, int servers, int backups,
                                const std::vector<int64_t>& variable_elements) {
  if (servers < 1) return InvalidArgument("--ps-ranks must be >= 1, got ", servers);
  if (backups < 0) return InvalidArgument("--backup-workers must be >= 0, got ", backups);
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
  std::vector<std::pair<int, Tensor>> in;  // (server, its reply buffer)
  std::vector<std::shared_ptr<Work>> works;
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    works.push_back(comm_->Recv(reply_[k], layout_.server_rank(k), kReplyTag));
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
  for (auto& w : sends_) MPIFLOW_RETURN_IF_ERROR(w->Wait());  // done: the server replied
  sends_.clear();
  bool have = false;
  int64_t newest = 0;
  for (const auto& [k, t] : in) {
    const float* h = t.data<float>();
    version_[k] = GetVersion(h);
    newest = std::max(newest, version_[k]);
    if (!have || k == 0) {
      reply->loss = h[2];
      reply->examples = h[3];
      reply->stop = h[4] != 0;
      reply->dropped = static_cast<int64_t>(h[7]);
      have = true;
    }
    reply->done = reply->done || h[5] != 0;
    reply->non_finite = reply->non_finite || h[6] != 0;
    if (h[5] != 0) done_[k] = 1;
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
                          bool stop) {
  const float w = static_cast<float>(examples);
  for (auto& work : sends_) MPIFLOW_RETURN_IF_ERROR(work->Wait());  // the buffers are free
  sends_.clear();
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    Tensor& t = push_[k];
    float* h = t.data<float>();
    std::fill(h, h + kHeader, 0.0f);
    PutVersion(h, version_[k]);
    h[2] = static_cast<float>(loss_sum);
    h[3] = w;
    h[4] = stop ? 1.0f : 0.0f;
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
    sends_.push_back(comm_->Send(t, layout_.server_rank(k), kPushTag));
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
      recvs_(layout.workers) {
  for (int w = 0; w < layout_.workers; ++w) {
    inbox_.emplace_back(DType::kFloat32, Shape{kHeader + layout_.shard_elements[server_]});
  }
}

PsServerLink::~PsServerLink() {
  for (auto& w : sends_) (void)w->Wait();
}

// The inbox is free again: its last push was averaged (Gather) or dropped before this.
void PsServerLink::PostRecv(int worker) {
  recvs_[worker] = comm_->Recv(inbox_[worker], worker, kPushTag);
}

Status PsServerLink::Reply(int worker) {
  sends_.push_back(comm_->Send(current_, worker, kReplyTag));
  return Status::OK();
}

Status PsServerLink::Start(int64_t version, const std::vector<Tensor>& values, bool done) {
  PsReply r;
  r.done = done;
  version_ = version - 1;  // Publish counts it up
  gathered_.resize(layout_.workers);
  std::iota(gathered_.begin(), gathered_.end(), 0);
  return Publish(values, r);
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
    for (int w = 0; w < layout_.workers; ++w) {
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
    const int64_t v = GetVersion(h);
    *stop_votes = *stop_votes || h[4] != 0;
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
    loss_sum += inbox_[w].data<float>()[2];
    total += inbox_[w].data<float>()[3];
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
  Tensor t(DType::kFloat32, Shape{kHeader + layout_.shard_elements[server_]});
  float* h = t.data<float>();
  PutVersion(h, version_);
  h[2] = static_cast<float>(reply.loss);
  h[3] = static_cast<float>(reply.examples);
  h[4] = reply.stop ? 1.0f : 0.0f;
  h[5] = reply.done ? 1.0f : 0.0f;
  h[6] = reply.non_finite ? 1.0f : 0.0f;
  h[7] = static_cast<float>(dropped_);
  float* p = h + kHeader;
  if (values.size() != shapes_.size()) {
    return Status(Code::kInternal, StrCat("parameter server ", server_, ": ", values.size(),
                                          " values for a shard of ", shapes_.size()));
  }
  for (size_t j = 0; j < values.size(); ++j) {
    std::memcpy(p, values[j].data<float>(), values[j].bytes());
    p += values[j].num_elements();
  }
  current_ = t;  // sends in flight keep the previous one alive
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(),
                              [](const std::shared_ptr<Work>& w) { return w->Completed(); }),
               sends_.end());
  for (int w : gathered_) {
    MPIFLOW_RETURN_IF_ERROR(Reply(w));
    if (!reply.done) PostRecv(w);
  }
  if (reply.done) {  // everyone else pushes once more (or has): tell them too
    for (int w = 0; w < layout_.workers; ++w) {
      if (!recvs_[w]) continue;
      MPIFLOW_RETURN_IF_ERROR(recvs_[w]->Wait());
      recvs_[w] = nullptr;
      MPIFLOW_RETURN_IF_ERROR(Reply(w));
    }
    for (auto& w : sends_) MPIFLOW_RETURN_IF_ERROR(w->Wait());
    sends_.clear();
  }
  return Status::OK();
}

}  // namespace mpiflow
