// ParameterServerStrategy, the server's side (steps 2-4 in ps_strategy.h): restore this
// server's shard when resuming, send the starting values, then per step gather the first N
// pushes, agree with the other servers, apply, checkpoint, publish (Serve); or, asynchronous,
// apply and answer each push as it comes (ServeAsync).
#include <algorithm>
#include <cmath>

#include "ps_strategy.h"
#include "strategy_util.h"

namespace mpiflow {

// This server's variables: its shard, their optimizer slots ("<variable>/<slot>"), the global
// step, and on server 0 any other variable that is not trainable.
std::set<std::string> ParameterServerStrategy::OwnVariables(const Graph& graph) const {
  const int k = layout_.ServerIndex(rank_);
  const std::string global_step = train_op_.global_step.node->name();
  std::set<std::string> own = {global_step};
  for (int v : layout_.shards[k]) own.insert(variables_[v].node->name());
  for (const VariableInfo& vi : graph.variables()) {
    const std::string& name = vi.variable->name();
    if (vi.trainable || name == global_step) continue;
    bool holds = k == 0;
    for (size_t v = 0; v < variables_.size(); ++v) {
      if (name.rfind(variables_[v].node->name() + "/", 0) == 0) {
        holds = layout_.Holds(k, static_cast<int>(v));
      }
    }
    if (holds) own.insert(name);
  }
  return own;
}

// Server k's part of each table split by rows: the table and its optimizer slots, by name,
// with the first row of the part and the table's rows.
std::vector<ParameterServerStrategy::Part> ParameterServerStrategy::PartsOf(const Graph& graph,
                                                                            int k) const {
  std::vector<Part> parts;
  for (int v : layout_.shards[k]) {
    if (!layout_.Split(v)) continue;
    const std::string& table = variables_[v].node->name();
    const Shape& shape = variables_[v].shape();
    const int64_t first = layout_.FirstRow(k, v);
    const int64_t end = first + layout_.PartShape(k, v, shape).dim(0);
    for (const VariableInfo& vi : graph.variables()) {
      const std::string& name = vi.variable->name();
      if (name == table || (!vi.trainable && name.rfind(table + "/", 0) == 0)) {  // slots
        parts.push_back({name, first, end, shape.dim(0)});
      }
    }
  }
  return parts;
}

Status ParameterServerStrategy::Restore(Session& session, CheckpointManager& checkpoints,
                                        const RunState& resumed) {
  std::string changed;  // servers do not warn: the workers' rank 0 logs
  StatusOr<Checkpoint> c = checkpoints.LoadForResume(&changed);
  if (!c.ok()) return c.status();
  // Every shard of the step, merged: first the whole graph is checked, then this server takes
  // its own variables (which another server count may have placed elsewhere).
  const std::string& path = checkpoints.last();
  MPIFLOW_RETURN_IF_ERROR(strategy_util::SameStep(path, resumed, GetRunState(*c)));
  MPIFLOW_RETURN_IF_ERROR(RestoreCheckpoint(*c, session.graph(), path).status());
  const std::set<std::string> own = OwnVariables(session.graph());
  std::vector<std::pair<std::string, Tensor>> values;
  for (auto& v : c->variables) {
    if (own.count(v.first)) values.push_back(std::move(v));
  }
  MPIFLOW_RETURN_IF_ERROR(strategy_util::WriteVariables(session, values));
  strategy_util::NoteCheckpoint(env_.comm, path, resumed.position.step);
  return Status::OK();
}

ServeOutcome ParameterServerStrategy::ServeStart(const CheckpointManager& checkpoints,
                                                 const DataPlan& plan) const {
  ServeOutcome r;
  r.steps = plan.start().step;
  if (!checkpoints.options().resume.empty()) {
    r.resumed_from = r.steps;
    r.last_checkpoint = checkpoints.last();
  }
  return r;
}

Status ParameterServerStrategy::KeepOwnRows(Session& session, int k) const {
  for (const Part& p : PartsOf(session.graph(), k)) {  // the rest of a split table is not ours
    MPIFLOW_RETURN_IF_ERROR(session.KeepRows(p.name, p.begin, p.end));
  }
  const std::set<std::string> own = OwnVariables(session.graph());
  for (const VariableInfo& v : session.graph().variables()) {  // none of another server's
    const Shape& shape = v.variable->output_shape(0);
    if (own.count(v.variable->name()) || shape.rank() == 0) continue;
    MPIFLOW_RETURN_IF_ERROR(session.KeepRows(v.variable->name(), 0, 0));
  }
  return Status::OK();
}

void ParameterServerStrategy::ShardOf(int k, std::vector<Shape>* shapes,
                                      std::vector<Node*>* updates) const {
  for (int v : layout_.shards[k]) {
    shapes->push_back(layout_.PartShape(k, v, variables_[v].shape()));
    updates->push_back(train_op_.updates[v]);
  }
}

PsShardReader ParameterServerStrategy::ShardReader(Session& session, int k) const {
  PsShardReader r;
  r.whole = [this, &session, k](int j, Tensor out) {
    return session.ReadVariableInto(variables_[layout_.shards[k][j]].node->name(), out);
  };
  r.rows = [this, &session, k](int j, const std::vector<int64_t>& rows) {
    return session.ReadVariableRows(variables_[layout_.shards[k][j]].node->name(), rows);
  };
  return r;
}

void ParameterServerStrategy::UpdateFeeds(int k, const std::vector<Tensor>& mean,
                                          const PsServerLink& link,
                                          std::vector<Session::Feed>* feeds) const {
  feeds->clear();
  const std::vector<int>& shard = layout_.shards[k];
  for (size_t j = 0; j < shard.size(); ++j) {
    feeds->push_back({placeholders_[shard[j]], mean[j]});
    if (layout_.Sparse(shard[j])) {
      feeds->push_back({index_placeholders_[shard[j]], link.indices(static_cast<int>(j))});
    }
  }
}

Status ParameterServerStrategy::ServeEnd(Session& session, const PsServerLink& link,
                                         ServeOutcome* r) const {
  r->stale_dropped = link.dropped();
  r->applied_per_pusher = link.applied_per_pusher();
  const std::set<std::string> own = OwnVariables(session.graph());
  for (const VariableInfo& v : session.graph().variables()) {
    if (!own.count(v.variable->name())) continue;
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    if (!t.ok()) return t.status();
    r->variables.emplace_back(v.variable->name(), *t);
  }
  for (const Part& p : PartsOf(session.graph(), layout_.ServerIndex(rank_))) {
    r->row_slices[p.name] = {p.begin, p.rows};
  }
  return Status::OK();
}

StatusOr<std::string> ParameterServerStrategy::SaveShard(Session& session,
                                                         CheckpointManager& checkpoints,
                                                         const DataPosition& at,
                                                         int64_t global_step) {
  const std::set<std::string> own = OwnVariables(session.graph());
  MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(train_op_.global_step.node->name(),
                                                Tensor::Scalar<int64_t>(global_step)));
  StatusOr<Checkpoint> c = strategy_util::Snapshot(session, at, ranks_, layout_.workers, &own);
  if (!c.ok()) return c.status();
  for (const Part& p : PartsOf(session.graph(), layout_.ServerIndex(rank_))) {
    c->row_slices[p.name] = {p.begin, p.rows};
  }
  StatusOr<std::string> p = checkpoints.Save(std::move(*c), at.step, /*point_latest=*/false);
  if (!p.ok()) return p.status();
  // Every shard is whole before server 0 moves `latest` to this step.
  MPIFLOW_RETURN_IF_ERROR(group_->Barrier()->Wait());
  if (layout_.ServerIndex(rank_) == 0) {
    MPIFLOW_RETURN_IF_ERROR(
        checkpoints.PointLatest(at.step, CheckpointManager::ShardSuffix(0, layout_.servers)));
  }
  strategy_util::NoteCheckpoint(env_.comm, *p, at.step);
  return p;
}

StatusOr<ServeOutcome> ParameterServerStrategy::Serve(Session& session,
                                                      CheckpointManager& checkpoints,
                                                      const DataPlan& plan, int64_t total_steps) {
  const int k = layout_.ServerIndex(rank_);
  MPIFLOW_RETURN_IF_ERROR(KeepOwnRows(session, k));
  if (options_.mode != PsMode::kSync) return ServeAsync(session, checkpoints, plan, total_steps);
  const std::string global_step = train_op_.global_step.node->name();
  ServeOutcome r = ServeStart(checkpoints, plan);
  std::vector<Shape> shapes;
  std::vector<Node*> updates;
  ShardOf(k, &shapes, &updates);
  std::vector<Tensor> mean;
  PsServerLink link(env_.comm, layout_, k, shapes, ShardReader(session, k));
  for (size_t j = 0; j < shapes.size(); ++j) {  // the replies carry the variables' own memory
    Tensor storage = link.Storage(static_cast<int>(j));
    if (!storage.allocated()) continue;
    MPIFLOW_RETURN_IF_ERROR(
        session.ShareVariable(variables_[layout_.shards[k][j]].node->name(), storage));
  }
  bool done = r.steps >= total_steps;
  MPIFLOW_RETURN_IF_ERROR(link.Start(r.steps, done));
  Communicator* servers = group_.get();
  std::vector<Session::Feed> feeds;
  while (!done) {
    if (env_.hooks) env_.hooks->BeforeStep(rank_, r.steps + 1);
    double loss = 0, examples = 0;
    bool votes = false, finite = true;
    MPIFLOW_RETURN_IF_ERROR(link.Gather(&mean, &loss, &examples, &votes, &finite));
    // Step 3: the servers agree (max over them) so that they stop, checkpoint and fail together.
    const bool stop_vote = votes || (env_.stop && env_.stop->requested());
    const bool timed = k == 0 && checkpoints.DueByTime();
    Tensor flags = Tensor::FromVector<float>(
        Shape{3}, {stop_vote ? 1.0f : 0.0f, timed ? 1.0f : 0.0f, finite ? 0.0f : 1.0f});
    AllreduceOptions max;
    max.op = ReduceOp::kMax;
    max.name = "parameter server agreement";
    MPIFLOW_RETURN_IF_ERROR(servers->Allreduce(flags, max)->Wait());
    const bool stop = flags.data<float>()[0] > 0, timed_all = flags.data<float>()[1] > 0;
    const bool non_finite = flags.data<float>()[2] > 0;
    if (!non_finite) {  // step 4: apply
      MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(global_step, Tensor::Scalar<int64_t>(r.steps)));
      UpdateFeeds(k, mean, link, &feeds);
      MPIFLOW_RETURN_IF_ERROR(link.Flush());  // no reply reads the values (Storage) as they change
      MPIFLOW_RETURN_IF_ERROR(session.Run(feeds, {}, updates, nullptr));
    }
    const int64_t next = r.steps + 1;
    done = stop || non_finite || next >= total_steps;
    const bool save = !non_finite && (stop || (checkpoints.options().enabled() &&
                                               (timed_all || done || checkpoints.DueAtStep(next))));
    if (save) {
      StatusOr<std::string> p = SaveShard(session, checkpoints, plan.At(next), next);
      if (!p.ok()) return p.status();
      r.last_checkpoint = *p;
    }
    PsReply reply;
    reply.loss = loss;
    reply.examples = examples;
    reply.stop = stop;
    reply.done = done;
    reply.non_finite = non_finite;
    MPIFLOW_RETURN_IF_ERROR(link.Publish(reply));
    r.steps = next;
    r.final_loss = loss;
    r.preempted = stop;
    if (non_finite) {
      return Status(Code::kAborted,
                    StrCat("the loss or a gradient is NaN or Inf (on some worker) at step ", next,
                           ": lower the learning rate (--lr)"));
    }
  }
  MPIFLOW_RETURN_IF_ERROR(ServeEnd(session, link, &r));
  return r;
}

// Steps 1-6 of the asynchronous protocol in parameter_server.h.
StatusOr<ServeOutcome> ParameterServerStrategy::ServeAsync(Session& session,
                                                           CheckpointManager& checkpoints,
                                                           const DataPlan& plan,
                                                           int64_t total_steps) {
  const int k = layout_.ServerIndex(rank_);
  const std::string global_step = train_op_.global_step.node->name();
  const int pushers = layout_.pushers();
  ServeOutcome r = ServeStart(checkpoints, plan);
  std::vector<Shape> shapes;
  std::vector<Node*> updates;
  ShardOf(k, &shapes, &updates);
  std::vector<Tensor> mean;
  // The version counts updates; global_step is updates / pushers (see ps_strategy.h).
  StatusOr<Tensor> gs = session.ReadVariable(global_step);
  if (!gs.ok()) return gs.status();
  int64_t version = *gs->data<int64_t>() * pushers;
  PsServerLink link(env_.comm, layout_, k, shapes, ShardReader(session, k));
  int active = r.steps >= total_steps ? 0 : pushers;
  MPIFLOW_RETURN_IF_ERROR(link.Start(version, active == 0));
  std::vector<int64_t> last_step(pushers, r.steps);  // each pusher's data steps pushed
  std::vector<double> examples_at(pushers, 0);       // `applied_examples` at its last answer
  double applied_examples = 0;
  // The step of this run's last checkpoint (a resumed run's is its start).
  int64_t saved_at = checkpoints.options().resume.empty() ? -1 : r.steps;
  bool stopping = false, failing = false;
  PsReply reply;  // updates and staleness so far
  std::vector<Session::Feed> feeds;
  auto save_at = [&](int64_t step) -> Status {
    StatusOr<std::string> p =
        SaveShard(session, checkpoints, plan.At(step), link.version() / pushers);
    if (!p.ok()) return p.status();
    r.last_checkpoint = *p;
    saved_at = step;
    return Status::OK();
  };
  while (active > 0) {
    if (env_.hooks) env_.hooks->BeforeStep(rank_, link.version() + 1);
    PsPush push;
    MPIFLOW_RETURN_IF_ERROR(link.WaitPush(&push));
    const int p = push.pusher;
    stopping = stopping || push.stop || (env_.stop && env_.stop->requested());
    failing = failing || push.non_finite;
    if (!push.leave) {
      bool finite = true;
      link.MeanOf(push, &mean, &finite);
      failing = failing || !finite;
      const int64_t staleness = link.version() - push.version;
      if (failing || push.examples == 0) {
        // no update: the run has failed, or the worker's share of the batch was empty (a
        // zero gradient would still move momentum and Adam)
      } else if (options_.max_staleness >= 0 && staleness > options_.max_staleness) {
        link.Dropped();
      } else {
        MPIFLOW_RETURN_IF_ERROR(
            session.WriteVariable(global_step, Tensor::Scalar<int64_t>(link.version() / pushers)));
        UpdateFeeds(k, mean, link, &feeds);
        MPIFLOW_RETURN_IF_ERROR(session.Run(feeds, {}, updates, nullptr));
        link.Applied(p);
        ++reply.updates;
        ++reply.staleness[std::min<int64_t>(staleness, kStalenessBuckets - 1)];
        applied_examples += push.examples;
      }
      last_step[p] = push.step;
      reply.loss = push.examples > 0 ? push.loss_sum / push.examples : 0;
    }
    reply.examples = applied_examples - examples_at[p];
    examples_at[p] = applied_examples;
    reply.stop = stopping;
    reply.non_finite = failing;
    reply.done = push.leave || stopping || failing || push.step >= total_steps;
    MPIFLOW_RETURN_IF_ERROR(link.Answer(p, reply));
    if (reply.done) --active;
    // A checkpoint at a data step every pusher has passed. Every server passes the same steps
    // (each push goes to all of them), and the decision reads nothing else, so that all
    // servers save alike (a stop or a NaN may reach them at different times).
    const int64_t passed = *std::min_element(last_step.begin(), last_step.end());
    if (passed > std::max<int64_t>(saved_at, plan.start().step) &&
        checkpoints.options().enabled() && checkpoints.DueAtStep(passed)) {
      MPIFLOW_RETURN_IF_ERROR(save_at(passed));
    }
  }
  MPIFLOW_RETURN_IF_ERROR(link.Flush());
  // Step 6's end: the servers agree on stop and NaN (a stop or a NaN may have reached one of
  // them only, when every pusher's last push had been answered by the others), then write
  // alike: after a stop, the last step every pusher passed (always, so that the run resumes);
  // after a NaN, nothing (its push was never applied, but other shards may hold its step).
  Tensor flags =
      Tensor::FromVector<float>(Shape{2}, {stopping ? 1.0f : 0.0f, failing ? 1.0f : 0.0f});
  AllreduceOptions max;
  max.op = ReduceOp::kMax;
  max.name = "parameter server agreement";
  MPIFLOW_RETURN_IF_ERROR(group_->Allreduce(flags, max)->Wait());
  stopping = flags.data<float>()[0] > 0;
  failing = flags.data<float>()[1] > 0;
  if (failing) return Status(Code::kAborted, kAsyncNonFinite);
  const int64_t passed = *std::min_element(last_step.begin(), last_step.end());
  if (passed != saved_at && (stopping || (checkpoints.options().enabled() && passed > saved_at))) {
    MPIFLOW_RETURN_IF_ERROR(save_at(passed));
  }
  r.steps = passed;
  r.final_loss = reply.loss;
  r.preempted = stopping;
  r.updates = reply.updates;
  r.staleness = reply.staleness;
  MPIFLOW_RETURN_IF_ERROR(ServeEnd(session, link, &r));
  return r;
}

}  // namespace mpiflow
