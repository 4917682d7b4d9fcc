// The parameter servers' exchange, the server's side (see parameter_server.h): gather and
// publish (sync), wait and answer (async), the replies' messages with each worker's changed
// rows. The worker's side and the layout are parameter_server.cc.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "parameter_server.h"
#include "ps_wire.h"

namespace mpiflow {

using namespace ps_wire;  // NOLINT: the message format's names (ps_wire.h)

// ---- server ---------------------------------------------------------------------------------

namespace {
// What a push's bodies are multiplied by (header `h`): see kRawBodies.
float BodyWeight(const float* h) { return h[kRawBodies] != 0 ? h[kExamples] : 1.0f; }

// Nonzero when one of p[0, n) is NaN or Inf (all exponent bits set); integer ops, vectorized.
uint32_t NonFinite(const float* p, int64_t n) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof(bits));
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  return bad;
}
}  // namespace

PsServerLink::PsServerLink(Communicator* comm, const PsLayout& layout, int server,
                           std::vector<Shape> shapes, PsShardReader read)
    : comm_(comm),
      layout_(layout),
      server_(server),
      shapes_(std::move(shapes)),
      width_(Widths(layout, server)),
      read_(std::move(read)),
      parts_(layout.pushers()),
      wants_(layout.pushers()),
      recvs_(layout.pushers()),
      applied_(layout.pushers(), 0),
      sent_(layout.pushers(), -1),
      row_version_(shapes_.size()),
      indices_(shapes_.size()) {
  for (int p = 0; p < layout_.pushers(); ++p) {
    inbox_.push_back(std::make_shared<Tensor>(
        DType::kFloat32, Shape{kHeader + layout_.shard_dense_elements[server_]}));
    head_.push_back(std::make_shared<Tensor>());
  }
  bodies_.resize(layout_.pushers());
  if (layout_.mode == PsMode::kSync && !layout_.ShardSparse(server_)) {
    published_ = Tensor(DType::kFloat32, Shape{kHeader + layout_.shard_elements[server_]});
  }
  // Every row starts at version 0, which every worker lacks (it has received nothing: -1).
  for (size_t j = 0; j < shapes_.size(); ++j) {
    if (width_[j] > 0) row_version_[j].assign(shapes_[j].dim(0), 0);
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
  const int src = layout_.pusher_rank(pusher);
  int64_t offset = kHeader;
  bodies_[pusher].clear();
  for (size_t j = 0; j < shapes_.size(); ++j) {  // the bodies, each where Gather reads it
    if (width_[j] > 0) continue;
    const int64_t n = shapes_[j].num_elements();
    bodies_[pusher].push_back(
        comm_->Recv(inbox_[pusher]->View(offset, Shape{n}), src, kBodyTag + static_cast<int>(j)));
    offset += n;
  }
  recvs_[pusher] = layout_.ShardSparse(server_)
                       ? comm_->RecvShaped(head_[pusher], DType::kFloat32, Shape{-1}, src, kPushTag)
                       : comm_->Recv(inbox_[pusher]->View(0, Shape{kHeader}), src, kPushTag);
}

Status PsServerLink::Arrived(int p, Clock::time_point start) {
  for (const std::shared_ptr<Work>& body : bodies_[p]) {
    comm_->WaitAnyWatched(
        {body}, start,
        [&](double waited) {
          return StrCat("mpiflow: rank ", comm_->rank(), ": stall: parameter server ", server_,
                        " has waited ", static_cast<int64_t>(waited), " s for the gradients of ",
                        "rank ", layout_.pusher_rank(p), "'s push, whose header has arrived");
        },
        /*urgent=*/true);
    MPIFLOW_RETURN_IF_ERROR(body->status());
  }
  bodies_[p].clear();
  if (!layout_.ShardSparse(server_)) return Status::OK();
  if (head_[p]->num_elements() < kHeader) {
    return Internal("parameter server ", server_, ": the push's head of ", head_[p]->num_elements(),
                    " floats from rank ", layout_.pusher_rank(p), " is shorter than the header (",
                    kHeader, " floats)");
  }
  std::memcpy(inbox_[p]->data<float>(), head_[p]->data<float>(), kHeader * sizeof(float));
  return Status::OK();
}

Status PsServerLink::Reply(int pusher, bool whole, std::vector<std::pair<int64_t, Tensor>>* cache) {
  const int64_t since = layout_.ShardSparse(server_) ? sent_[pusher] : 0;
  // Only the rows its next batch reads, when its push said which (they are all it reads before
  // it pushes again, telling its next wants, or asks for every row).
  const std::vector<std::vector<int64_t>>* wants =
      !whole && !wants_[pusher].empty() ? &wants_[pusher] : nullptr;
  Tensor message;
  if (cache && !wants) {
    for (const auto& [v, t] : *cache) {
      if (v == since) message = t;
    }
  }
  if (!message.allocated()) {
    StatusOr<Tensor> m = Message(since, wants);
    if (!m.ok()) return m.status();
    message = std::move(*m);
    if (cache && !wants) cache->emplace_back(since, message);
  }
  // A worker holds every row as of `since` and the rows it was sent as of now.
  if (!wants) sent_[pusher] = version_;
  sends_.push_back(comm_->Send(message, layout_.pusher_rank(pusher), kReplyTag));
  return Status::OK();
}

Tensor PsServerLink::Storage(int j) const {
  if (!published_.allocated()) return Tensor();
  int64_t offset = kHeader;
  for (int i = 0; i < j; ++i) offset += shapes_[i].num_elements();
  return published_.View(offset, shapes_[j]);
}

StatusOr<Tensor> PsServerLink::Message(int64_t since,
                                       const std::vector<std::vector<int64_t>>* wants) {
  // The sparse variables' rows that changed since `since` (of those wanted, with wants).
  std::vector<std::vector<int64_t>> rows(shapes_.size());
  std::vector<int64_t> n(shapes_.size(), 0);
  for (size_t j = 0; j < shapes_.size(); ++j) {
    if (wants) {
      for (int64_t r : (*wants)[j]) {
        if (row_version_[j][r] > since) rows[j].push_back(r);
      }
    } else {
      for (size_t r = 0; r < row_version_[j].size(); ++r) {
        if (row_version_[j][r] > since) rows[j].push_back(static_cast<int64_t>(r));
      }
    }
    n[j] = static_cast<int64_t>(rows[j].size());
  }
  Tensor t;
  if (published_.allocated()) {  // its header changes: no send of it may be in flight
    MPIFLOW_RETURN_IF_ERROR(Flush());
    t = published_;
  } else {
    t = Tensor(DType::kFloat32,
               Shape{kHeader + layout_.shard_dense_elements[server_] + SectionFloats(width_, n)});
  }
  float* h = t.data<float>();
  std::fill(h, h + kHeader, 0.0f);
  PutCount(h + kVersion, version_);
  h[kLoss] = static_cast<float>(reply_.loss);
  h[kExamples] = static_cast<float>(reply_.examples);
  h[kStop] = reply_.stop ? 1.0f : 0.0f;
  h[kDone] = reply_.done ? 1.0f : 0.0f;
  h[kNonFinite] = reply_.non_finite ? 1.0f : 0.0f;
  h[kDropped] = static_cast<float>(dropped_);
  PutCount(h + kUpdates, reply_.updates);
  for (int b = 0; b < kStalenessBuckets && b < static_cast<int>(reply_.staleness.size()); ++b) {
    h[kStaleness + b] = static_cast<float>(reply_.staleness[b]);
  }
  int64_t offset = kHeader;
  for (size_t j = 0; j < shapes_.size(); ++j) {  // the whole variables, float32 [elements]
    if (width_[j] > 0) continue;
    MPIFLOW_RETURN_IF_ERROR(read_.whole(static_cast<int>(j), t.View(offset, shapes_[j])));
    offset += shapes_[j].num_elements();
  }
  float* p = h + offset;
  for (size_t j = 0; j < shapes_.size(); ++j) {  // the sparse section
    if (width_[j] == 0) continue;
    PutCount(p, n[j]);
    p += 2;
    for (int64_t i = 0; i < n[j]; ++i) PutCount(p + 2 * i, rows[j][i]);
    p += 2 * n[j];
    StatusOr<Tensor> r = read_.rows(static_cast<int>(j), rows[j]);
    if (!r.ok()) return r.status();
    if (r->num_elements() != n[j] * width_[j]) {
      return Internal("parameter server ", server_, ": read ", r->num_elements(), " floats for ",
                      n[j], " rows of ", width_[j]);
    }
    std::memcpy(p, r->data<float>(), r->bytes());  // float32 [n, width]
    p += r->num_elements();
  }
  return t;
}

Status PsServerLink::ReadParts(int p) {
  const Tensor& t = *head_[p];  // [header + sparse section + wants] (Arrived checked the header)
  std::vector<SectionPart> section;
  wants_[p].clear();
  if (layout_.ShardSparse(server_)) {
    const bool wants = t.data<float>()[kWants] != 0;
    const std::vector<int64_t> rows = RowCounts(layout_, server_, shapes_);
    const int64_t left = t.num_elements() - kHeader;
    int64_t used = 0;
    Status st = ReadSection(t.data<float>() + kHeader, left, width_, rows, &section,
                            wants ? &used : nullptr);
    if (st.ok() && wants) {
      st = ReadWants(t.data<float>() + kHeader + used, left - used, width_, rows, &wants_[p]);
    }
    if (!st.ok()) {
      return Internal("parameter server ", server_, ": the push's head of ", t.num_elements(),
                      " floats from rank ", layout_.pusher_rank(p),
                      " is malformed: ", st.message());
    }
  }
  parts_[p].assign(shapes_.size(), SectionPart());
  for (size_t j = 0; j < section.size(); ++j) parts_[p][j] = section[j];
  return Status::OK();
}

void PsServerLink::MarkRows() {
  for (size_t j = 0; j < shapes_.size(); ++j) {
    if (width_[j] == 0 || !indices_[j].allocated()) continue;
    const int64_t* r = indices_[j].data<int64_t>();
    for (int64_t i = 0; i < indices_[j].num_elements(); ++i) row_version_[j][r[i]] = version_;
  }
}

Status PsServerLink::Start(int64_t version, bool done) {
  PsReply r;
  r.done = done;
  version_ = version - 1;  // Publish counts it up
  gathered_.resize(layout_.pushers());
  std::iota(gathered_.begin(), gathered_.end(), 0);
  const Status st = Publish(r);
  gathered_.clear();
  return st;
}

Status PsServerLink::Gather(std::vector<Tensor>* mean, double* loss, double* examples,
                            bool* stop_votes, bool* finite) {
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
    const int w = who[comm_->WaitAnyWatched(
        live, start,
        [&](double waited) {
          std::vector<int> missing;
          for (int q : who) {
            if (!recvs_[q]->Completed()) missing.push_back(q);
          }
          return StrCat("mpiflow: rank ", comm_->rank(), ": stall: parameter server ", server_,
                        " has waited ", static_cast<int64_t>(waited), " s at step ", version_,
                        " for ", layout_.aggregate() - static_cast<int>(gathered_.size()),
                        " more push(es); not arrived: worker(s) ", List(missing));
        },
        // Urgent: the push is wanted at once (its server has nothing else to do). The backend
        // polls without naps unless its node runs more ranks than cores (then 50 us naps).
        /*urgent=*/true)];
    Status st = recvs_[w]->status();
    recvs_[w] = nullptr;
    if (!st.ok()) return st;
    MPIFLOW_RETURN_IF_ERROR(Arrived(w, start));
    const float* h = inbox_[w]->data<float>();
    const int64_t v = GetCount(h + kVersion);
    *stop_votes = *stop_votes || h[kStop] != 0;
    if (v == version_) {
      MPIFLOW_RETURN_IF_ERROR(ReadParts(w));
      gathered_.push_back(w);  // its receive is posted again after the reply
    } else if (v < version_) {
      ++dropped_;  // a straggler's: answer with the current values at once (every changed
      // row: it skips ahead to another batch than the one it told)
      MPIFLOW_RETURN_IF_ERROR(Reply(w, /*whole=*/true));
      PostRecv(w);
    } else {
      return Status(Code::kInternal, StrCat("parameter server ", server_, ": worker ", w,
                                            " pushed version ", v, " ahead of ", version_));
    }
  }
  // Sum in worker order, whatever the arrival order: the same bits every run without backups.
  std::sort(gathered_.begin(), gathered_.end());
  mean->assign(shapes_.size(), Tensor());
  double loss_sum = 0, total = 0;
  for (int w : gathered_) {
    loss_sum += inbox_[w]->data<float>()[kLoss];
    total += inbox_[w]->data<float>()[kExamples];
    ++applied_[w];
  }
  const float inv = total > 0 ? static_cast<float>(1.0 / total) : 0.0f;
  uint32_t bad = 0;  // nonzero once a mean value is NaN or Inf
  // Per gathered push, what its bodies are multiplied by: its examples for raw gradients (the
  // worker's weighting, done here: the same float product), 1 for a hybrid group's weighted sum.
  std::vector<float> weight;
  for (int w : gathered_) weight.push_back(BodyWeight(inbox_[w]->data<float>()));
  int64_t offset = kHeader;
  for (size_t j = 0; j < shapes_.size(); ++j) {
    if (width_[j] > 0) {  // the pushes' rows one after another: the optimizer sums repeats
      int64_t rows = 0;
      for (int w : gathered_) rows += parts_[w][j].n;
      std::vector<int64_t> dims = shapes_[j].dims();
      dims[0] = rows;
      Tensor m(DType::kFloat32, Shape(dims));
      Tensor at(DType::kInt64, Shape{rows});
      float* out = m.data<float>();  // float32 [rows, width]
      int64_t* idx = at.data<int64_t>();
      for (int w : gathered_) {
        const SectionPart& part = parts_[w][j];
        for (int64_t i = 0; i < part.n; ++i) *idx++ = GetCount(part.indices + 2 * i);
        const int64_t n = part.n * width_[j];
        for (int64_t i = 0; i < n; ++i) out[i] = (0.0f + part.rows[i]) * inv;
        bad |= NonFinite(out, n);
        out += n;
      }
      (*mean)[j] = std::move(m);
      indices_[j] = std::move(at);
      continue;
    }
    // In place, in the first gathered push's inbox (its receive is posted again after the
    // update): ((0 + w0 * first) + w1 * second ...) * inv, a block at a time while in cache.
    Tensor m = inbox_[gathered_[0]]->View(offset, shapes_[j]);
    float* out = m.data<float>();  // float32 [n]
    const int64_t n = m.num_elements();
    constexpr int64_t kBlock = 2048;
    for (int64_t b = 0; b < n; b += kBlock) {
      const int64_t e = std::min(n, b + kBlock);
      for (size_t g = 0; g < gathered_.size(); ++g) {
        const float* in = inbox_[gathered_[g]]->data<float>() + offset;
        const float wg = weight[g];
        if (g == 0) {
          for (int64_t i = b; i < e; ++i) out[i] = 0.0f + wg * in[i];
        } else {
          for (int64_t i = b; i < e; ++i) out[i] += wg * in[i];
        }
      }
      for (int64_t i = b; i < e; ++i) out[i] *= inv;
      bad |= NonFinite(out + b, e - b);  // while the block is in cache
    }
    offset += n;
    (*mean)[j] = m;
  }
  *loss = total > 0 ? loss_sum / total : 0;
  *examples = total;
  *finite = std::isfinite(*loss) && bad == 0;
  return Status::OK();
}

Status PsServerLink::Publish(PsReply reply) {
  ++version_;
  MarkRows();  // the step's rows (none at the start)
  for (Tensor& t : indices_) t = Tensor();
  reply_ = reply;
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(),
                              [](const std::shared_ptr<Work>& w) { return w->Completed(); }),
               sends_.end());
  std::vector<std::pair<int64_t, Tensor>> cache;  // the messages by the version they follow
  const bool whole = reply.done || reply.stop || reply.non_finite;  // the last values a worker has
  for (int w : gathered_) {
    MPIFLOW_RETURN_IF_ERROR(Reply(w, whole, &cache));
    if (!reply.done) PostRecv(w);
  }
  if (reply.done) {  // everyone else pushes once more (or has): tell them too
    for (int w = 0; w < layout_.pushers(); ++w) {
      if (!recvs_[w]) continue;
      MPIFLOW_RETURN_IF_ERROR(recvs_[w]->Wait());
      recvs_[w] = nullptr;
      MPIFLOW_RETURN_IF_ERROR(Arrived(w, Clock::now()));
      MPIFLOW_RETURN_IF_ERROR(Reply(w, /*whole=*/true, &cache));
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
  MPIFLOW_RETURN_IF_ERROR(Arrived(p, Clock::now()));
  const float* h = inbox_[p]->data<float>();
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
  if (!push->leave) MPIFLOW_RETURN_IF_ERROR(ReadParts(p));
  return Status::OK();
}

void PsServerLink::MeanOf(const PsPush& push, std::vector<Tensor>* mean, bool* finite) {
  const float inv = push.examples > 0 ? static_cast<float>(1.0 / push.examples) : 0.0f;
  const float weight = BodyWeight(inbox_[push.pusher]->data<float>());
  uint32_t bad = 0;
  mean->assign(shapes_.size(), Tensor());
  int64_t offset = kHeader;
  for (size_t j = 0; j < shapes_.size(); ++j) {
    if (width_[j] > 0) {
      const SectionPart& part = parts_[push.pusher][j];
      std::vector<int64_t> dims = shapes_[j].dims();
      dims[0] = part.n;
      Tensor m(DType::kFloat32, Shape(dims));
      Tensor at(DType::kInt64, Shape{part.n});
      float* out = m.data<float>();  // float32 [n, width]
      for (int64_t i = 0; i < part.n; ++i) at.data<int64_t>()[i] = GetCount(part.indices + 2 * i);
      for (int64_t i = 0; i < part.n * width_[j]; ++i) out[i] = (0.0f + part.rows[i]) * inv;
      bad |= NonFinite(out, part.n * width_[j]);
      (*mean)[j] = std::move(m);
      indices_[j] = std::move(at);
      continue;
    }
    Tensor m = inbox_[push.pusher]->View(offset, shapes_[j]);  // in place, as Gather
    float* out = m.data<float>();                              // float32 [n]
    const int64_t n = m.num_elements();
    for (int64_t i = 0; i < n; ++i) out[i] = (0.0f + weight * out[i]) * inv;  // Gather's arithmetic
    bad |= NonFinite(out, n);
    offset += n;
    (*mean)[j] = std::move(m);
  }
  *finite = std::isfinite(push.loss_sum) && bad == 0;
}

void PsServerLink::Applied(int pusher) {
  ++version_;
  ++applied_[pusher];
  MarkRows();
}

Status PsServerLink::Answer(int pusher, PsReply reply) {
  reply_ = reply;
  for (Tensor& t : indices_) t = Tensor();  // marked by Applied, if it was applied
  sends_.erase(std::remove_if(sends_.begin(), sends_.end(),
                              [](const std::shared_ptr<Work>& w) { return w->Completed(); }),
               sends_.end());
  MPIFLOW_RETURN_IF_ERROR(Reply(pusher, reply.done || reply.stop || reply.non_finite));
  if (!reply.done) PostRecv(pusher);
  return Status::OK();
}

}  // namespace mpiflow
