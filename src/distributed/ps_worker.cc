// ParameterServerStrategy, the graph both sides build and the worker's side of a step (steps 1
// and 5 in ps_strategy.h; asynchronous and hybrid: RunAsyncStep). The server's side is
// ps_server.cc.
#include <algorithm>
#include <utility>

#include "mpiflow/gradients.h"
#include "ps_strategy.h"
#include "strategy_util.h"

namespace mpiflow {

ParameterServerStrategy::ParameterServerStrategy(const StrategyEnv& env,
                                                 ParameterServerOptions options)
    : env_(env),
      options_(options),
      rank_(env.comm ? env.comm->rank() : 0),
      ranks_(env.comm ? env.comm->size() : 1),
      server_(rank_ >= ranks_ - options.servers) {}

Status ParameterServerStrategy::Build(const Scope& root, Output loss,
                                      const std::vector<Output>& variables,
                                      const OptimizerOptions& optimizer) {
  variables_ = variables;
  // A worker's own state (batch_norm's moving statistics) would never reach the servers, whose
  // checkpoints would keep their initial values: refused until servers hold it.
  for (int id = 0; id < root.graph()->num_nodes(); ++id) {
    if (root.graph()->node(id)->op() == "CrossReplicaSum") {
      return InvalidArgument("--strategy ps: node '", root.graph()->node(id)->name(),
                             "' sums over the replicas inside a step (batch_norm sync = true), "
                             "which parameter servers do not do: use --strategy allreduce");
    }
  }
  for (const VariableInfo& v : root.graph()->variables()) {
    if (!v.trainable) {
      return InvalidArgument("--strategy ps: the model's non-trainable variable '",
                             v.variable->name(),
                             "' (batch_norm's moving statistics) is not kept by parameter "
                             "servers yet: train this model with --strategy allreduce");
    }
  }
  MPIFLOW_RETURN_IF_ERROR(AddGradients(root, {loss}, variables, {}, &gradients_));
  // An embedding's table travels by the rows a step touches when its gradient is sparse and the
  // optimizer updates only those rows (hybrid groups sum whole pushes: whole tables).
  const bool by_rows = options_.sparse != SparseSync::kDense && options_.mode != PsMode::kHybrid &&
                       (optimizer.kind == OptimizerKind::kSgd ||
                        (optimizer.lazy_sparse && (optimizer.kind == OptimizerKind::kMomentum ||
                                                   optimizer.kind == OptimizerKind::kAdam)));
  std::vector<int64_t> elements, widths;
  std::vector<Output> applied;  // what the servers' updates read
  for (size_t i = 0; i < variables.size(); ++i) {
    const Output& v = variables[i];
    const Output& g = gradients_[i];
    if (v.dtype() != DType::kFloat32) {
      return InvalidArgument("--strategy ps: variable '", v.node->name(), "' is ",
                             DTypeName(v.dtype()), "; parameter servers hold float32 only");
    }
    const Shape& shape = v.shape();
    const bool rows = by_rows && g.valid() && g.node->op() == "IndexedSlices" &&
                      shape.rank() >= 1 && shape.IsFullyDefined() && shape.dim(0) > 0;
    const std::string name = "ps/gradient_" + v.node->name();
    fetch_at_.push_back(fetches_.size());
    if (rows) {
      std::vector<int64_t> dims = shape.dims();
      dims[0] = -1;
      placeholders_.push_back(
          ops::Placeholder(root.WithOpName(name + "/values"), DType::kFloat32, Shape(dims)));
      index_placeholders_.push_back(
          ops::Placeholder(root.WithOpName(name + "/indices"), DType::kInt64, Shape{-1}));
      applied.push_back(
          ops::IndexedSlices(root, placeholders_.back(), index_placeholders_.back(), v));
      fetches_.push_back(g.node->input(0));
      fetches_.push_back(g.node->input(1));
      widths.push_back(shape.num_elements() / shape.dim(0));
    } else {
      placeholders_.push_back(ops::Placeholder(root.WithOpName(name), DType::kFloat32, shape));
      index_placeholders_.emplace_back();
      applied.push_back(placeholders_.back());
      fetches_.push_back(g);
      widths.push_back(0);
    }
    elements.push_back(shape.num_elements());
  }
  fetches_.push_back(loss);
  body_of_fetch_.assign(fetches_.size(), -1);
  for (size_t v = 0; v < variables.size(); ++v) {
    if (widths[v] == 0) body_of_fetch_[fetch_at_[v]] = static_cast<int>(v);
  }
  MPIFLOW_RETURN_IF_ERROR(root.status());
  StatusOr<TrainOp> t = ApplyGradients(root, applied, variables, optimizer);
  if (!t.ok()) return t.status();
  train_op_ = std::move(*t);
  StatusOr<PsLayout> l = MakePsLayout(ranks_, options_, elements, widths);
  if (!l.ok()) return l.status();
  layout_ = std::move(*l);
  FindLookups(*root.graph());
  return Status::OK();
}

void ParameterServerStrategy::FindLookups(const Graph& graph) {
  lookup_ids_.assign(variables_.size(), {});
  lookups_known_ = false;
  // The nodes a worker's step runs: what its fetches depend on.
  std::vector<char> in_step(graph.num_nodes(), 0);
  std::vector<const Node*> stack;
  for (const Output& f : fetches_) stack.push_back(f.node);
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (in_step[n->id()]) continue;
    in_step[n->id()] = 1;
    for (int i = 0; i < n->num_inputs(); ++i) stack.push_back(n->input(i).node);
    for (const Node* c : n->control_inputs()) stack.push_back(c);
  }
  bool any = false;
  for (size_t v = 0; v < variables_.size(); ++v) {
    if (!layout_.Sparse(static_cast<int>(v))) continue;
    any = true;
    for (int id = 0; id < graph.num_nodes(); ++id) {
      const Node* n = graph.node(id);
      if (!in_step[id]) continue;
      for (int i = 0; i < n->num_inputs(); ++i) {
        if (n->input(i).node != variables_[v].node) continue;
        if (i == 0 && (n->op() == "EmbeddingBag" || n->op() == "Gather")) {
          lookup_ids_[v].push_back(n->input(1));
        } else if (!(i == 2 && n->op() == "EmbeddingBagGrad")) {  // that reads its shape only
          return;  // read otherwise (densely): its every changed row must travel
        }
      }
    }
  }
  lookups_known_ = any;
}

StatusOr<bool> ParameterServerStrategy::NextRows(Session& session) {
  // The inputs NextFeeds gave are for this step's push only.
  const std::vector<Session::Feed> next = std::exchange(next_feeds_, {});
  if (!lookups_known_ || next.empty()) return false;
  std::vector<Output> ids;
  for (const auto& of : lookup_ids_) ids.insert(ids.end(), of.begin(), of.end());
  std::vector<Tensor> values;
  // Not a step: the run counter (which seeds a step's randomness) stays as it was.
  const int64_t counter = session.run_counter();
  Status st = session.Run(next, ids, {}, &values);
  session.set_run_counter(counter);
  MPIFLOW_RETURN_IF_ERROR(st);
  next_rows_.assign(variables_.size(), {});
  size_t at = 0;
  for (size_t v = 0; v < variables_.size(); ++v) {
    std::vector<int64_t>& rows = next_rows_[v];
    const int64_t table = variables_[v].shape().rank() > 0 ? variables_[v].shape().dim(0) : 0;
    for (size_t i = 0; i < lookup_ids_[v].size(); ++i, ++at) {
      const Tensor& t = values[at];
      for (int64_t e = 0; e < t.num_elements(); ++e) {
        // EmbeddingBag truncates a float id and skips a negative one (padding); an id past the
        // table (or NaN) is the step's error to report, not ours.
        double x = -1;
        switch (t.dtype()) {
          case DType::kFloat32:
            x = t.data<float>()[e];
            break;
          case DType::kFloat64:
            x = t.data<double>()[e];
            break;
          case DType::kInt32:
            x = t.data<int32_t>()[e];
            break;
          case DType::kInt64:
            x = static_cast<double>(t.data<int64_t>()[e]);
            break;
          default:
            break;
        }
        if (x >= 0 && x < static_cast<double>(table)) rows.push_back(static_cast<int64_t>(x));
      }
    }
    std::sort(rows.begin(), rows.end());
    rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  }
  return true;
}

std::string ParameterServerStrategy::Describe(int64_t global_batch) const {
  std::string s = StrCat("parameter servers (", PsModeName(options_.mode), "): ranks ",
                         layout_.workers, "-", ranks_ - 1, " serve, ranks 0-", layout_.workers - 1,
                         " work (global batch ", global_batch, "); ");
  const std::string bound =
      options_.max_staleness >= 0
          ? StrCat(", dropped when more than ", options_.max_staleness, " updates stale")
          : std::string();
  if (options_.mode == PsMode::kSync) {
    s += StrCat("each step averages the first ", layout_.aggregate(), " of ", layout_.workers,
                " pushes");
  } else if (options_.mode == PsMode::kAsync) {
    s += StrCat("each worker's push is applied as it arrives", bound);
  } else {
    const int last = layout_.workers - (layout_.pushers() - 1) * layout_.group_size;
    s += StrCat(layout_.pushers(), " group(s) of ", layout_.group_size,
                last == layout_.group_size ? "" : StrCat(" (the last of ", last, ")"),
                " average by allreduce, each group's push is applied as it arrives", bound);
  }
  s += "; shards of";
  for (int k = 0; k < layout_.servers; ++k) {
    s += StrCat(k ? "," : "", " ", layout_.shard_elements[k] * 4 / 1024, " KiB");
  }
  std::string by_rows;
  for (size_t i = 0; i < variables_.size(); ++i) {
    const int v = static_cast<int>(i);
    if (!layout_.Sparse(v)) continue;
    by_rows += StrCat(by_rows.empty() ? "" : ", ", "'", variables_[v].node->name(), "'");
    if (layout_.Split(v)) {
      by_rows += StrCat(" (split by rows over ", layout_.split[v].size() - 1, " servers)");
    }
  }
  if (!by_rows.empty()) {
    s += StrCat("; only the rows a step touches travel for ", by_rows,
                lookups_known_ ? ", and back only those the worker's next batch reads" : "");
  }
  return s;
}

std::string ParameterServerStrategy::checkpoint_shard() const {
  return server_
             ? CheckpointManager::ShardSuffix(rank_ - (ranks_ - options_.servers), options_.servers)
             : "";
}

bool ParameterServerStrategy::Reports(const VariableInfo& v) const {
  return server_ || v.trainable || v.variable == train_op_.global_step.node;
}

StatusOr<RunState> ParameterServerStrategy::ResumeState(CheckpointManager& checkpoints) {
  // Every rank takes part whatever its own --resume says (the start-up check then names a
  // --resume that differs between ranks, rather than some ranks waiting here).
  const int server0 = ranks_ - options_.servers;
  RunState s;
  if (rank_ == server0 && !checkpoints.options().resume.empty()) {
    StatusOr<RunState> peeked = checkpoints.PeekResumeState();
    if (!peeked.ok()) return peeked.status();
    s = *peeked;
  }
  Tensor t = Tensor::FromVector<int64_t>(
      Shape{9},
      {s.resumed ? 1 : 0, s.position.step, s.position.epoch, s.position.example,
       s.position.per_shard ? 1 : 0, s.has_position ? 1 : 0, s.ranks, s.data_ranks, s.run_counter});
  MPIFLOW_RETURN_IF_ERROR(env_.comm->Broadcast(t, server0)->Wait());
  const int64_t* v = t.data<int64_t>();
  s.resumed = v[0] != 0;
  s.position = {v[1], v[2], v[3], v[4] != 0};
  s.has_position = v[5] != 0;
  s.ranks = v[6];
  s.data_ranks = v[7];
  s.run_counter = v[8];
  return s;
}

Status ParameterServerStrategy::Start(Session& session, CheckpointManager& checkpoints,
                                      const RunState& resumed) {
  StatusOr<std::unique_ptr<Communicator>> g = env_.comm->Split(server_ ? 1 : 0, rank_);
  if (!g.ok()) return g.status();
  group_ = std::move(*g);
  if (options_.mode == PsMode::kHybrid) {  // collective over every rank; servers take none
    g = env_.comm->Split(server_ ? layout_.pushers() : rank_ / layout_.group_size, rank_);
    if (!g.ok()) return g.status();
    if (!server_) hybrid_ = std::move(*g);
  }
  if (options_.mode != PsMode::kSync && checkpoints.options().every_seconds > 0) {
    return InvalidArgument(
        "--checkpoint-seconds: asynchronous parameter servers checkpoint by "
        "step (--checkpoint-every), at a data step every worker has passed; "
        "use that instead");
  }
  local_step_ = resumed.position.step;
  session.set_run_counter(resumed.run_counter);
  if (server_) {  // Serve sends the starting values
    return resumed.resumed ? Restore(session, checkpoints, resumed) : Status::OK();
  }
  std::vector<Shape> shapes;
  for (const Output& v : variables_) shapes.push_back(v.shape());
  link_ = std::make_unique<PsWorkerLink>(env_.comm, layout_, shapes);
  values_.resize(variables_.size());
  pushed_.resize(variables_.size());
  pushed_indices_.resize(variables_.size());
  MPIFLOW_RETURN_IF_ERROR(Receive(session));  // the servers send the values to start from
  // A whole variable from a shard of whole variables is a view of a reply buffer that every
  // reply lands in: the variable lives there, and the next replies need no copy (nothing runs
  // while a reply is received). Rows and sparse shards' variables are written as they come.
  for (size_t i = 0; i < variables_.size(); ++i) {
    const int v = static_cast<int>(i);
    if (layout_.Sparse(v) || layout_.ShardSparse(layout_.owner[v])) continue;
    MPIFLOW_RETURN_IF_ERROR(session.ShareVariable(variables_[i].node->name(), values_[i]));
  }
  if (options_.mode == PsMode::kSync && reply_.version != resumed.position.step) {
    return Status(Code::kInternal, StrCat("the parameter servers started at step ", reply_.version,
                                          ", server 0 resumed step ", resumed.position.step));
  }
  if (resumed.resumed) {
    *env_.log << "mpiflow: the parameter servers resumed at step " << reply_.version << "\n";
  }
  return Status::OK();
}

Status ParameterServerStrategy::TakeValues(Session& session) {
  for (size_t i = 0; i < variables_.size(); ++i) {
    if (layout_.Sparse(static_cast<int>(i)) || !values_[i].allocated()) continue;
    MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(variables_[i].node->name(), values_[i]));
  }
  for (const PsRows& r : rows_) {  // the rows that changed since this worker's last values
    MPIFLOW_RETURN_IF_ERROR(
        session.WriteVariableRows(variables_[r.variable].node->name(), r.indices, r.values));
  }
  return Status::OK();
}

Status ParameterServerStrategy::Receive(Session& session) {
  MPIFLOW_RETURN_IF_ERROR(link_->Receive(&values_, &rows_, &reply_, hybrid_.get()));
  MPIFLOW_RETURN_IF_ERROR(TakeValues(session));
  // Asynchronous servers' version counts updates; their global_step is updates / pushers.
  const int64_t step =
      options_.mode == PsMode::kSync ? reply_.version : reply_.version / layout_.pushers();
  return session.WriteVariable(train_op_.global_step.node->name(), Tensor::Scalar<int64_t>(step));
}

Status ParameterServerStrategy::RunGraph(Session& session, const std::vector<Session::Feed>& feeds,
                                         const Batch& batch, RunStats* stats, bool whole) {
  if (whole) return session.Run(feeds, fetches_, {}, &out_, stats);
  MPIFLOW_RETURN_IF_ERROR(link_->StartPush());
  return session.Run(feeds, fetches_, {}, &out_, stats, [this](size_t i, const Tensor& value) {
    const int v = body_of_fetch_[i];
    return v < 0 ? Status::OK() : link_->PushBody(v, value);
  });
}

void ParameterServerStrategy::TakeGradients(const Batch& batch) {
  for (size_t i = 0; i < variables_.size(); ++i) {
    const bool rows = layout_.Sparse(static_cast<int>(i));
    if (batch.examples > 0) {
      pushed_[i] = out_[fetch_at_[i]];
      if (rows) pushed_indices_[i] = out_[fetch_at_[i] + 1];
    } else if (rows) {  // a share of nothing: no rows
      std::vector<int64_t> dims = variables_[i].shape().dims();
      dims[0] = 0;
      pushed_[i] = Tensor(DType::kFloat32, Shape(dims));
      pushed_indices_[i] = Tensor(DType::kInt64, Shape{0});
    } else {  // weight 0 (zeros: 0 x a stray NaN in fresh memory would still be NaN)
      pushed_[i] = Tensor(DType::kFloat32, variables_[i].shape());
      pushed_[i].FillZero();
    }
  }
}

StatusOr<StepOutcome> ParameterServerStrategy::RunStep(Session& session,
                                                       std::vector<Session::Feed> feeds,
                                                       const Batch& batch, RunStats* stats) {
  if (options_.mode != PsMode::kSync) return RunAsyncStep(session, std::move(feeds), batch, stats);
  if (batch.examples > 0) {
    Status run = RunGraph(session, feeds, batch, stats, /*whole=*/false);
    if (!run.ok()) return strategy_util::StepError(run, reply_.version + 1, batch, false);
  }
  TakeGradients(batch);
  const double loss_sum =
      batch.examples > 0 ? static_cast<double>(*out_.back().data<float>()) * batch.examples : 0;
  StatusOr<bool> wants = NextRows(session);
  if (!wants.ok()) return wants.status();
  MPIFLOW_RETURN_IF_ERROR(link_->Push(pushed_, pushed_indices_, batch.examples, loss_sum,
                                      env_.stop && env_.stop->requested(), 0,
                                      *wants ? &next_rows_ : nullptr));
  MPIFLOW_RETURN_IF_ERROR(Receive(session));
  if (reply_.non_finite) {
    return Status(Code::kAborted,
                  StrCat("the loss or a gradient is NaN or Inf (on some worker) at step ",
                         reply_.version, ": lower the learning rate (--lr)"));
  }
  StepOutcome o;
  o.step = reply_.version;
  o.loss = reply_.loss;
  o.examples = static_cast<int64_t>(reply_.examples);
  o.stop = reply_.stop;
  o.done = link_->AllDone();
  o.stale_dropped = reply_.dropped;
  o.ps_pushed_bytes = link_->pushed_bytes();
  o.ps_received_bytes = link_->received_bytes();
  return o;
}

StatusOr<StepOutcome> ParameterServerStrategy::RunAsyncStep(Session& session,
                                                            std::vector<Session::Feed> feeds,
                                                            const Batch& batch, RunStats* stats) {
  const int64_t step = local_step_ + 1;
  if (batch.examples > 0) {
    Status run = RunGraph(session, feeds, batch, stats, /*whole=*/hybrid_ != nullptr);
    if (!run.ok()) return strategy_util::StepError(run, step, batch, false);
  }
  TakeGradients(batch);
  const double loss_sum =
      batch.examples > 0 ? static_cast<double>(*out_.back().data<float>()) * batch.examples : 0;
  const bool vote = env_.stop && env_.stop->requested();
  if (hybrid_) {  // the group sums its packed pushes; the leader sends the sum
    MPIFLOW_RETURN_IF_ERROR(link_->Pack(pushed_, pushed_indices_, batch.examples, loss_sum, vote));
    for (int k = 0; k < layout_.servers; ++k) {
      if (link_->Done(k)) continue;
      AllreduceOptions sum;
      sum.name = "hybrid group push";
      MPIFLOW_RETURN_IF_ERROR(hybrid_->Allreduce(link_->push_buffers()[k], sum)->Wait());
    }
    if (hybrid_->rank() == 0) MPIFLOW_RETURN_IF_ERROR(link_->Send(step));
  } else {
    StatusOr<bool> wants = NextRows(session);
    if (!wants.ok()) return wants.status();
    MPIFLOW_RETURN_IF_ERROR(link_->Push(pushed_, pushed_indices_, batch.examples, loss_sum, vote,
                                        step, *wants ? &next_rows_ : nullptr));
  }
  MPIFLOW_RETURN_IF_ERROR(Receive(session));
  local_step_ = step;
  if ((reply_.stop || reply_.non_finite || reply_.done) && !link_->AllDone()) {
    // Told by some servers only: the others learn it from this worker's leave (and may answer
    // with a NaN or a stop of their own).
    PsReply left;
    MPIFLOW_RETURN_IF_ERROR(
        link_->Leave(reply_.stop, reply_.non_finite, hybrid_.get(), &values_, &rows_, &left));
    MPIFLOW_RETURN_IF_ERROR(TakeValues(session));  // a server that had answered with wants only
    reply_.non_finite = reply_.non_finite || left.non_finite;
    reply_.stop = reply_.stop || left.stop;
  }
  if (reply_.non_finite) {
    return Status(Code::kAborted, kAsyncNonFinite);
  }
  StepOutcome o;
  o.step = step;
  o.loss = reply_.loss;
  o.examples = static_cast<int64_t>(reply_.examples);
  o.stop = reply_.stop;
  o.done = link_->AllDone();
  o.stale_dropped = reply_.dropped;
  o.ps_pushed_bytes = link_->pushed_bytes();
  o.ps_received_bytes = link_->received_bytes();
  o.updates = reply_.updates;
  o.staleness = reply_.staleness;
  return o;
}

}  // namespace mpiflow
