// The parameter servers' layout and the worker's side of the exchange: push and receive (see
// parameter_server.h). The message format's helpers are ps_wire.cc; the server's side is
// ps_server_link.cc.
#include "parameter_server.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>

#include "ps_wire.h"

namespace mpiflow {

using namespace ps_wire;  // NOLINT: the message format's names (ps_wire.h)

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
                                const std::vector<int64_t>& variable_elements,
                                const std::vector<int64_t>& row_width) {
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
  l.row_width = row_width.empty() ? std::vector<int64_t>(n, 0) : row_width;
  if (static_cast<int>(l.row_width.size()) != n) {
    return Status(Code::kInternal, StrCat("parameter server layout: ", l.row_width.size(),
                                          " row widths for ", n, " variables"));
  }
  l.owner.assign(n, 0);
  l.shards.assign(servers, {});
  l.shard_elements.assign(servers, 0);
  l.split.assign(n, {});
  // Tables by rows first: server k of `parts` takes rows [k * rows / parts, (k + 1) * rows /
  // parts), so every server moves and updates its share of a step's rows.
  for (int v = 0; v < n; ++v) {
    if (servers == 1 || !l.Sparse(v)) continue;
    const int64_t rows = variable_elements[v] / l.row_width[v];
    const int parts = static_cast<int>(std::min<int64_t>(servers, rows));
    l.owner[v] = -1;
    for (int k = 0; k <= parts; ++k) l.split[v].push_back(k * rows / parts);
    for (int k = 0; k < parts; ++k) {
      l.shards[k].push_back(v);
      l.shard_elements[k] += (l.split[v][k + 1] - l.split[v][k]) * l.row_width[v];
    }
  }
  std::vector<int> order;
  for (int v = 0; v < n; ++v) {
    if (!l.Split(v)) order.push_back(v);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return variable_elements[a] > variable_elements[b]; });
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
  l.shard_dense_elements.assign(servers, 0);
  for (int v = 0; v < n; ++v) {
    if (!l.Sparse(v)) l.shard_dense_elements[l.owner[v]] += variable_elements[v];
  }
  for (int k = 0; k < servers; ++k) {
    if (static_cast<int>(l.shards[k].size()) > kMaxBodies) {
      return InvalidArgument("--strategy ps: parameter server ", k, " would hold ",
                             l.shards[k].size(), " variables, more than a push can tag (",
                             kMaxBodies, "): raise --ps-ranks");
    }
  }
  return l;
}

// ---- worker ---------------------------------------------------------------------------------

PsWorkerLink::PsWorkerLink(Communicator* comm, const PsLayout& layout, std::vector<Shape> shapes)
    : comm_(comm),
      layout_(layout),
      shapes_(std::move(shapes)),
      version_(layout.servers, 0),
      done_(layout.servers, 0),
      offset_(shapes_.size(), 0),
      slot_(shapes_.size(), 0),
      sent_(shapes_.size(), 0) {
  for (int k = 0; k < layout_.servers; ++k) {
    push_.emplace_back(DType::kFloat32, Shape{kHeader + layout_.shard_dense_elements[k]});
    push_.back().FillZero();  // a leave sends it as it is
    int64_t offset = kHeader;
    for (size_t j = 0; j < layout_.shards[k].size(); ++j) {
      const int v = layout_.shards[k][j];
      slot_[v] = static_cast<int>(j);
      if (layout_.Sparse(v)) continue;
      offset_[v] = offset;
      offset += shapes_[v].num_elements();
    }
    if (layout_.ShardSparse(k)) {  // an empty section until the first push (a leave's)
      const std::vector<int64_t> width = Widths(layout_, k);
      head_.emplace_back(
          DType::kFloat32,
          Shape{kHeader + SectionFloats(width, std::vector<int64_t>(width.size(), 0))});
      head_.back().FillZero();
      reply_.push_back(std::make_shared<Tensor>());
    } else {
      head_.emplace_back();
      reply_.push_back(
          std::make_shared<Tensor>(DType::kFloat32, Shape{kHeader + layout_.shard_elements[k]}));
    }
  }
}

bool PsWorkerLink::AllDone() const {
  return std::all_of(done_.begin(), done_.end(), [](char d) { return d != 0; });
}

Status PsWorkerLink::Receive(std::vector<Tensor>* values, std::vector<PsRows>* rows, PsReply* reply,
                             Communicator* group) {
  std::vector<int> from;  // servers still serving
  std::vector<std::shared_ptr<Work>> works;
  const bool leader = !group || group->rank() == 0;
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    if (leader) {
      works.push_back(layout_.ShardSparse(k)
                          ? comm_->RecvShaped(reply_[k], DType::kFloat32, Shape{-1},
                                              layout_.server_rank(k), kReplyTag)
                          : comm_->Recv(*reply_[k], layout_.server_rank(k), kReplyTag));
    }
    from.push_back(k);
  }
  const Clock::time_point start = Clock::now();
  for (size_t j = 0; j < works.size(); ++j) {
    const int k = from[j];
    comm_->WaitAnyWatched(
        {works[j]}, start,
        [&](double waited) {
          return StrCat("mpiflow: rank ", comm_->rank(), ": stall: worker has waited ",
                        static_cast<int64_t>(waited), " s for parameter server ", k, " (rank ",
                        layout_.server_rank(k), ") to answer its push of step ", version_[k]);
        },
        /*urgent=*/true);  // nothing else to do: the backend polls without naps
    MPIFLOW_RETURN_IF_ERROR(works[j]->status());
    received_bytes_ += static_cast<int64_t>(reply_[k]->bytes());
  }
  if (group) {  // the group's members take the leader's replies (hybrid: whole variables)
    for (int k : from) MPIFLOW_RETURN_IF_ERROR(group->Broadcast(*reply_[k], 0)->Wait());
  }
  for (auto& w : sends_) MPIFLOW_RETURN_IF_ERROR(w->Wait());  // done: the server replied
  sends_.clear();
  *reply = PsReply();
  rows->clear();
  bool have = false;
  int64_t newest = 0;
  for (int k : from) {
    const Tensor& t = *reply_[k];
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
    if (t.num_elements() < kHeader + layout_.shard_dense_elements[k]) {
      return Internal("parameter server ", k, " (rank ", layout_.server_rank(k), "): its reply of ",
                      t.num_elements(), " floats is shorter than the header and whole variables (",
                      kHeader + layout_.shard_dense_elements[k], ")");
    }
    int64_t offset = kHeader;
    for (int v : layout_.shards[k]) {
      if (layout_.Sparse(v)) continue;
      (*values)[v] = t.View(offset, shapes_[v]);  // no copy
      offset += shapes_[v].num_elements();
    }
    if (!layout_.ShardSparse(k)) continue;
    std::vector<SectionPart> parts;
    Status st = ReadSection(h + offset, t.num_elements() - offset, Widths(layout_, k),
                            RowCounts(layout_, k, ShardShapes(k)), &parts);
    if (!st.ok()) {
      return Internal("parameter server ", k, " (rank ", layout_.server_rank(k), "): its reply of ",
                      t.num_elements(), " floats is malformed: ", st.message());
    }
    for (size_t j = 0; j < parts.size(); ++j) {
      const int v = layout_.shards[k][j];
      if (!layout_.Sparse(v)) continue;
      PsRows r;
      r.variable = v;
      r.indices.resize(parts[j].n);
      const int64_t first = layout_.FirstRow(k, v);  // the section's rows count from it
      for (int64_t i = 0; i < parts[j].n; ++i) {
        r.indices[i] = first + GetCount(parts[j].indices + 2 * i);
      }
      std::vector<int64_t> dims = shapes_[v].dims();
      dims[0] = parts[j].n;
      r.values = t.View(parts[j].rows - h, Shape(dims));
      rows->push_back(std::move(r));
    }
  }
  reply->version = newest;
  return Status::OK();
}

std::vector<Shape> PsWorkerLink::ShardShapes(int k) const {
  std::vector<Shape> s;
  for (int v : layout_.shards[k]) s.push_back(layout_.PartShape(k, v, shapes_[v]));
  return s;
}

Status PsWorkerLink::Push(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices,
                          double examples, double loss_sum, bool stop, int64_t step,
                          const std::vector<std::vector<int64_t>>* wants) {
  if (!started_) MPIFLOW_RETURN_IF_ERROR(StartPush());
  MPIFLOW_RETURN_IF_ERROR(
      MakeHeads(grads, indices, examples, loss_sum, stop, /*weigh=*/false, wants));
  return SendAll(step, &grads);
}

Status PsWorkerLink::Pack(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices,
                          double examples, double loss_sum, bool stop) {
  if (!started_) MPIFLOW_RETURN_IF_ERROR(StartPush());  // the buffers are free
  return MakeHeads(grads, indices, examples, loss_sum, stop, /*weigh=*/true, nullptr);
}

Status PsWorkerLink::Send(int64_t step) { return SendAll(step, nullptr); }

Status PsWorkerLink::StartPush() {
  for (auto& work : sends_) MPIFLOW_RETURN_IF_ERROR(work->Wait());
  sends_.clear();
  std::fill(sent_.begin(), sent_.end(), 0);
  started_ = true;
  return Status::OK();
}

namespace {
Status CheckBody(int v, const Tensor& grad, const Shape& shape) {
  if (grad.dtype() != DType::kFloat32 || grad.shape() != shape) {
    return InvalidArgument("parameter server push: gradient ", v, " is ", DTypeName(grad.dtype()),
                           grad.shape().ToString(), ", its variable float32", shape.ToString());
  }
  return Status::OK();
}
}  // namespace

Status PsWorkerLink::PushBody(int v, const Tensor& grad) {
  if (!started_) return Internal("parameter server push: a body before StartPush");
  if (layout_.Sparse(v)) return Status::OK();  // its rows go in the heads
  const int k = layout_.owner[v];
  if (done_[k]) return Status::OK();
  MPIFLOW_RETURN_IF_ERROR(CheckBody(v, grad, shapes_[v]));
  std::shared_ptr<Work> send = comm_->Send(grad, layout_.server_rank(k), kBodyTag + slot_[v]);
  std::lock_guard<std::mutex> lock(mu_);
  sent_[v] = 1;
  sends_.push_back(std::move(send));
  return Status::OK();
}

Status PsWorkerLink::SendAll(int64_t step, const std::vector<Tensor>* grads) {
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    float* h = push_[k].data<float>();
    PutCount(h + kVersion, version_[k]);  // after a group's sum: its members held this version
    PutCount(h + kStep, step);
    for (int v : layout_.shards[k]) {  // the bodies not streamed yet
      if (layout_.Sparse(v) || sent_[v]) continue;
      Tensor body = push_[k].View(offset_[v], Shape{shapes_[v].num_elements()});
      if (grads) {
        MPIFLOW_RETURN_IF_ERROR(CheckBody(v, (*grads)[v], shapes_[v]));
        body = (*grads)[v];
      }
      sends_.push_back(comm_->Send(body, layout_.server_rank(k), kBodyTag + slot_[v]));
      sent_[v] = 1;
    }
    Tensor head = push_[k].View(0, Shape{kHeader});
    if (layout_.ShardSparse(k)) {
      std::memcpy(head_[k].data<float>(), h, kHeader * sizeof(float));
      head = head_[k];
    }
    pushed_bytes_ += static_cast<int64_t>(push_[k].bytes() + head.bytes()) - kHeader * 4;
    sends_.push_back(comm_->Send(head, layout_.server_rank(k), kPushTag));
  }
  started_ = false;
  return Status::OK();
}

Status PsWorkerLink::Leave(bool stop, bool non_finite, Communicator* group,
                           std::vector<Tensor>* values, std::vector<PsRows>* rows, PsReply* reply) {
  *reply = PsReply();
  if (AllDone()) return Status::OK();
  if (!group || group->rank() == 0) {
    MPIFLOW_RETURN_IF_ERROR(StartPush());
    for (int k = 0; k < layout_.servers; ++k) {
      if (done_[k]) continue;
      float* h = push_[k].data<float>();  // a leave's bodies are not read
      std::fill(h, h + kHeader, 0.0f);
      h[kStop] = stop ? 1.0f : 0.0f;
      h[kLeave] = 1.0f;
      h[kNonFinite] = non_finite ? 1.0f : 0.0f;
    }
    MPIFLOW_RETURN_IF_ERROR(Send(0));
  }
  rows->clear();
  return Receive(values, rows, reply, group);  // every server still serving: done
}

namespace {

// A sparse gradient's rows, each once: the distinct indices ascending, each with the sum of its
// rows in position order (the optimizers' own order, kernels/cpu/state_kernels.cc).
Status UniqueRows(const Tensor& values, const Tensor& indices, int64_t width, int64_t table_rows,
                  std::vector<int64_t>* rows, std::vector<float>* sums) {
  const int64_t n = indices.num_elements();
  if (values.dtype() != DType::kFloat32 || values.num_elements() != n * width ||
      (indices.dtype() != DType::kInt32 && indices.dtype() != DType::kInt64)) {
    return InvalidArgument("parameter server push: sparse rows ", DTypeName(values.dtype()),
                           values.shape().ToString(), " at indices ", DTypeName(indices.dtype()),
                           indices.shape().ToString(), " are not float32 [n, ", width,
                           "] at int32 or int64 [n]");
  }
  std::vector<std::pair<int64_t, int64_t>> order(n);  // (row, position)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r =
        indices.dtype() == DType::kInt32 ? indices.data<int32_t>()[i] : indices.data<int64_t>()[i];
    if (r < 0 || r >= table_rows) {
      return InvalidArgument("parameter server push: row ", r, " is out of range [0, ", table_rows,
                             ")");
    }
    order[i] = {r, i};
  }
  std::sort(order.begin(), order.end());
  rows->clear();
  sums->clear();
  const float* v = values.data<float>();  // [n, width]
  for (int64_t i = 0; i < n; ++i) {
    const float* row = v + order[i].second * width;
    if (rows->empty() || rows->back() != order[i].first) {
      rows->push_back(order[i].first);
      sums->insert(sums->end(), row, row + width);
    } else {
      float* sum = sums->data() + sums->size() - width;
      for (int64_t c = 0; c < width; ++c) sum[c] += row[c];
    }
  }
  return Status::OK();
}

}  // namespace

Status PsWorkerLink::MakeHeads(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices,
                               double examples, double loss_sum, bool stop, bool weigh,
                               const std::vector<std::vector<int64_t>>* wants) {
  const float w = static_cast<float>(examples);
  std::vector<std::vector<int64_t>> rows(shapes_.size());
  std::vector<std::vector<float>> sums(shapes_.size());
  for (size_t v = 0; v < shapes_.size(); ++v) {
    if (!layout_.Sparse(static_cast<int>(v))) continue;
    if (v >= indices.size()) {
      return InvalidArgument("parameter server push: no indices for sparse variable ", v);
    }
    MPIFLOW_RETURN_IF_ERROR(UniqueRows(grads[v], indices[v], layout_.row_width[v],
                                       shapes_[v].dim(0), &rows[v], &sums[v]));
  }
  if (wants && wants->size() != shapes_.size()) {
    return InvalidArgument("parameter server push: wants for ", wants->size(), " variables, not ",
                           shapes_.size());
  }
  // Server k's part of ascending rows `of` (of sparse variable v): [begin, end) in it, where its
  // range starts and ends.
  auto range = [&](int k, int v, const std::vector<int64_t>& of) {
    const int64_t first = layout_.FirstRow(k, v);
    const int64_t last = first + layout_.PartShape(k, v, shapes_[v]).dim(0);
    const auto b = std::lower_bound(of.begin(), of.end(), first);
    const auto e = std::lower_bound(b, of.end(), last);
    return std::pair<int64_t, int64_t>(b - of.begin(), e - of.begin());
  };
  for (int k = 0; k < layout_.servers; ++k) {
    if (done_[k]) continue;
    if (layout_.ShardSparse(k)) {  // sized by this push's rows (and wants)
      std::vector<int64_t> n, m;
      for (int v : layout_.shards[k]) {
        const bool sparse = layout_.Sparse(v);
        const auto [b, e] = sparse ? range(k, v, rows[v]) : std::pair<int64_t, int64_t>(0, 0);
        n.push_back(e - b);
        const auto [wb, we] =
            sparse && wants ? range(k, v, (*wants)[v]) : std::pair<int64_t, int64_t>(0, 0);
        m.push_back(we - wb);
      }
      const std::vector<int64_t> width = Widths(layout_, k);
      head_[k] = Tensor(DType::kFloat32, Shape{kHeader + SectionFloats(width, n) +
                                               (wants ? WantsFloats(width, m) : 0)});
    }
    float* h = push_[k].data<float>();
    std::fill(h, h + kHeader, 0.0f);
    h[kLoss] = static_cast<float>(loss_sum);
    h[kExamples] = w;
    h[kStop] = stop ? 1.0f : 0.0f;
    h[kRawBodies] = weigh ? 0.0f : 1.0f;
    h[kWants] = wants && layout_.ShardSparse(k) ? 1.0f : 0.0f;
    for (int v : layout_.shards[k]) {  // weighted bodies (hybrid: the group sums them)
      if (!weigh || layout_.Sparse(v)) continue;
      MPIFLOW_RETURN_IF_ERROR(CheckBody(v, grads[v], shapes_[v]));
      const float* src = grads[v].data<float>();
      float* p = h + offset_[v];
      const int64_t n = grads[v].num_elements();
      for (int64_t i = 0; i < n; ++i) p[i] = w * src[i];  // float32 [n]
    }
    if (!layout_.ShardSparse(k)) continue;
    float* p = head_[k].data<float>() + kHeader;
    for (int v : layout_.shards[k]) {  // the sparse section: its part's rows, from its first
      if (!layout_.Sparse(v)) continue;
      const auto [b, e] = range(k, v, rows[v]);
      const int64_t n = e - b, first = layout_.FirstRow(k, v), width = layout_.row_width[v];
      PutCount(p, n);
      p += 2;
      for (int64_t i = 0; i < n; ++i) PutCount(p + 2 * i, rows[v][b + i] - first);
      p += 2 * n;
      const float* sum = sums[v].data() + b * width;  // [n, width]
      for (int64_t i = 0; i < n * width; ++i) p[i] = w * sum[i];
      p += n * width;
    }
    if (!wants) continue;
    for (int v : layout_.shards[k]) {  // the wants: its part's rows, from its first
      if (!layout_.Sparse(v)) continue;
      const std::vector<int64_t>& want = (*wants)[v];
      const auto [b, e] = range(k, v, want);
      const int64_t first = layout_.FirstRow(k, v);
      PutCount(p, e - b);
      p += 2;
      for (int64_t i = b; i < e; ++i, p += 2) PutCount(p, want[i] - first);
    }
  }
  return Status::OK();
}

}  // namespace mpiflow
