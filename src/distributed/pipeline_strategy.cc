// PipelineStrategy (see pipeline_strategy.h): the microbatch copies of the forward pass, the
// placement over stages, a step's feeds and agreement, and the whole-model checkpoint.
#include "pipeline_strategy.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "mpiflow/distributed.h"
#include "mpiflow/gradients.h"
#include "mpiflow/ops.h"
#include "strategy_util.h"

namespace mpiflow {
namespace {

// Copies the part of the graph between the inputs (placeholders) and `loss` under the prefix
// "microbatch_<m>/", each copy colocated with its original; variables and everything that does
// not depend on an input are shared. Returns the copy of `loss` and (original, copy) of every
// placeholder.
StatusOr<Output> CopyForward(Graph* g, Output loss, int m,
                             std::vector<std::pair<Output, Output>>* inputs) {
  const int n = loss.node->id() + 1;
  std::vector<char> to_loss(n, 0), from_input(n, 0);
  to_loss[loss.node->id()] = 1;
  for (int id = n - 1; id >= 0; --id) {
    if (!to_loss[id]) continue;
    for (const Output& in : g->node(id)->inputs()) to_loss[in.node->id()] = 1;
    // What the loss's nodes wait for runs with them (batch_norm's moving-statistics updates).
    for (const Node* c : g->node(id)->control_inputs()) to_loss[c->id()] = 1;
  }
  for (int id = 0; id < n; ++id) {
    const Node* node = g->node(id);
    from_input[id] = node->op() == "Placeholder";
    for (const Output& in : node->inputs()) from_input[id] |= from_input[in.node->id()];
  }
  std::map<const Node*, Node*> copy;
  auto mapped = [&](const Output& o) {
    auto it = copy.find(o.node);
    return it == copy.end() ? o : Output(it->second, o.index);
  };
  for (int id = 0; id < n; ++id) {
    Node* node = g->node(id);
    if (!to_loss[id] || !from_input[id]) continue;
    if (node->def().stateful && node->op() != "Placeholder") {
      return InvalidArgument("the pipeline copies the forward pass once per microbatch, but node '",
                             node->name(), "' (", node->op(),
                             ") has state; use --microbatches 1 for this model");
    }
    NodeSpec spec;
    spec.name = StrCat("microbatch_", m, "/", node->name());
    spec.op = node->op();
    for (const Output& in : node->inputs()) spec.inputs.push_back(mapped(in));
    for (Node* c : node->control_inputs()) {
      auto it = copy.find(c);
      spec.control_inputs.push_back(it == copy.end() ? c : it->second);
    }
    spec.attrs = node->attrs();
    spec.attrs[kColocateAttr] = node->colocation();
    spec.device = node->device();
    StatusOr<Node*> made = g->AddNode(std::move(spec));
    if (!made.ok()) return made.status();
    copy[node] = *made;
    if (node->op() == "Placeholder") inputs->emplace_back(Output(node), Output(*made));
  }
  return mapped(loss);
}

// Rows [begin, begin + count) of a batch-major tensor (one stand-in row 0 when count is 0:
// every copy of the forward pass runs, and a weight of 0 keeps it out of the loss).
Tensor Rows(const Tensor& t, int64_t begin, int64_t count) {
  std::vector<int64_t> dims = t.shape().dims();
  const int64_t rows = dims.empty() ? 1 : dims[0];
  const size_t row_bytes = rows > 0 ? t.bytes() / static_cast<size_t>(rows) : 0;
  if (count == 0) {
    begin = 0;
    count = 1;
  }
  dims[0] = count;
  Tensor out(t.dtype(), Shape(dims));
  std::memcpy(out.raw(), static_cast<const char*>(t.raw()) + begin * row_bytes,
              row_bytes * static_cast<size_t>(count));
  return out;
}

// A weight's gradient over the microbatches, sum_m X_m^T dY_m (an AddN of M MatMuls, as
// autodiff sums the copies' pieces), as one MatMul of the stacked rows, [X_1..X_M]^T
// [dY_1..dY_M]: one GEMM of the batch's rows instead of M of a microbatch's and their sum, and
// it runs after every microbatch's backward has sent its input gradient on (the stage before
// waits less). Any other gradient is returned as it is.
Output StackMicrobatchPieces(const Scope& root, Output grad) {
  if (!grad.valid()) return grad;  // no gradient: ApplyGradients says so, naming the variable
  const Node* sum = grad.node;
  if (sum->op() != "AddN" || sum->num_inputs() < 2) return grad;
  std::vector<Output> xs, dys;
  for (const Output& piece : sum->inputs()) {
    const Node* mm = piece.node;
    if (mm->op() != "MatMul" || !mm->attr<bool>("transpose_a") || mm->attr<bool>("transpose_b")) {
      return grad;
    }
    xs.push_back(mm->input(0));
    dys.push_back(mm->input(1));
  }
  const Scope s = root.NewSubScope("stacked_gradient").ColocatedWith(sum);
  return ops::MatMul(s, ops::Concat(s, xs, 0), ops::Concat(s, dys, 0), true, false);
}

}  // namespace

PipelineStrategy::PipelineStrategy(const StrategyEnv& env, PipelineOptions options)
    : env_(env),
      options_(options),
      rank_(env.comm ? env.comm->rank() : 0),
      ranks_(env.comm ? env.comm->size() : 1),
      stage_(rank_ % options.stages),
      replica_(rank_ / options.stages),
      replicas_(ranks_ / options.stages) {}

Status PipelineStrategy::AddStageSync(const Scope& root, const Placement* placement,
                                      const std::vector<Output>& variables,
                                      std::vector<Output>* grads) {
  for (int s = 0; s < options_.stages; ++s) {
    std::vector<int> mine;  // this stage's variables, in graph order
    for (size_t i = 0; i < variables.size(); ++i) {
      if ((placement ? placement->RankOf(variables[i].node) : 0) == s) {
        mine.push_back(static_cast<int>(i));
      }
    }
    if (mine.empty()) continue;
    std::vector<Output> g, v;
    for (int i : mine) {
      g.push_back((*grads)[i]);
      v.push_back(variables[i]);
    }
    // Every op of the stage's sync runs where the stage's variables live.
    const Scope ss = root.NewSubScope(StrCat("stage_", s)).ColocatedWith(v[0].node);
    StatusOr<GradientSync> sync = AddGradientSync(ss, Output(), g, v, GradientSyncOptions());
    if (!sync.ok()) return sync.status();
    for (size_t k = 0; k < mine.size(); ++k) (*grads)[mine[k]] = sync->gradients[k];
    stage_scales_.push_back(sync->scale);
  }
  return Status::OK();
}

Status PipelineStrategy::Build(const Scope& root, Output loss, const std::vector<Output>& variables,
                               const OptimizerOptions& optimizer) {
  Graph* g = root.graph();
  const int M = options_.microbatches;
  loss_ = loss;
  for (int id = 0; id < g->num_nodes(); ++id) {
    if (g->node(id)->op() == "CrossReplicaSum") {
      return InvalidArgument("node '", g->node(id)->name(),
                             "' sums over the replicas inside a step (batch_norm sync = true), "
                             "which the pipeline does not order across its stages: use "
                             "--strategy allreduce, or sync = false");
    }
  }
  if (M > 1) {
    // The batch's loss: sum_m w_m * loss_m over the microbatches' copies.
    const Scope s = root.NewSubScope("microbatches");
    std::vector<Output> terms;
    for (int m = 0; m < M; ++m) {
      Microbatch mb;
      StatusOr<Output> copy = CopyForward(g, loss, m, &mb.inputs);
      if (!copy.ok()) return copy.status();
      if (mb.inputs.empty()) {
        return InvalidArgument("the loss '", loss.name(),
                               "' depends on no placeholder: nothing "
                               "to cut into microbatches");
      }
      mb.weight = ops::Placeholder(s.WithOpName(StrCat("weight_", m)), DType::kFloat32, Shape{});
      terms.push_back(ops::Mul(s.ColocatedWith(copy->node), mb.weight, *copy));
      microbatches_.push_back(std::move(mb));
    }
    loss_ = ops::AddN(s.ColocatedWith(loss.node).WithOpName("loss"), terms);
    MPIFLOW_RETURN_IF_ERROR(root.status());
  }
  std::vector<Output> grads;
  MPIFLOW_RETURN_IF_ERROR(AddGradients(root, {loss_}, variables, {}, &grads));
  if (M > 1) {
    for (Output& grad : grads) grad = StackMicrobatchPieces(root, grad);
    MPIFLOW_RETURN_IF_ERROR(root.status());
  }
  // A replica's stages exchange tensors on a communicator of their own (no tag of another
  // protocol on the world's can meet them); a stage's replicas allreduce on theirs.
  if (options_.stages > 1) {
    StatusOr<std::unique_ptr<Communicator>> split = env_.comm->Split(replica_, stage_);
    if (!split.ok()) return split.status();
    rendezvous_ = std::move(*split);
  }
  if (replicas_ > 1) {
    StatusOr<std::unique_ptr<Communicator>> split = env_.comm->Split(stage_, replica_);
    if (!split.ok()) return split.status();
    stage_comm_ = std::move(*split);
  }
  PlacementOptions po;
  po.ranks = options_.stages;
  po.stages = options_.stages;
  po.roots = {loss};
  std::vector<int> stage_of;  // each variable's stage before the sync and updates were added
  if (replicas_ > 1) {
    std::unique_ptr<Placement> first;
    if (options_.stages > 1) {
      StatusOr<Placement> p = PlaceGraph(*g, po);
      if (!p.ok()) return p.status();
      first = std::make_unique<Placement>(std::move(*p));
      for (const Output& v : variables) stage_of.push_back(first->RankOf(v.node));
    }
    MPIFLOW_RETURN_IF_ERROR(AddStageSync(root, first.get(), variables, &grads));
  }
  StatusOr<TrainOp> t = ApplyGradients(root, grads, variables, optimizer);
  if (!t.ok()) return t.status();
  train_op_ = std::move(*t);
  if (options_.stages > 1) {
    StatusOr<Placement> p = PlaceGraph(*g, po);
    if (!p.ok()) return p.status();
    placement_ = std::make_shared<const Placement>(std::move(*p));
    for (size_t i = 0; i < stage_of.size(); ++i) {
      if (placement_->RankOf(variables[i].node) != stage_of[i]) {
        return Internal("the pipeline placed variable '", variables[i].name(), "' on stage ",
                        stage_of[i], " for its allreduce, then on stage ",
                        placement_->RankOf(variables[i].node));
      }
    }
    if (options_.print_placement && env_.log) {
      *env_.log << DescribePlacement(*g, *placement_, {loss});
    }
    // Every rank partitions its runs by its own placement: they must agree (as the graph must).
    MPIFLOW_RETURN_IF_ERROR(CheckSameOnAllRanks(
        env_.comm, *g, {{"placement", StrCat(std::hex, placement_->Fingerprint())}}));
  }
  stage_parameters_.assign(options_.stages, 0);
  for (const Output& v : variables) {
    stage_parameters_[placement_ ? placement_->RankOf(v.node) : 0] += v.shape().num_elements();
  }
  return Status::OK();
}

std::string PipelineStrategy::Describe(int64_t global_batch) const {
  const int S = options_.stages, M = options_.microbatches;
  std::string per_stage;
  for (int s = 0; s < S; ++s) {
    per_stage += StrCat(s ? ", " : "", stage_parameters_[s]);
  }
  const int64_t batch = global_batch / replicas_;
  const std::string replicated =
      replicas_ > 1 ? StrCat(" (", replicas_,
                             " replicas, each stage's gradients allreduced over its replicas; "
                             "global batch ",
                             global_batch, ")")
                    : std::string();
  return StrCat("pipeline of ", S, " stage(s) on ", ranks_, " rank(s)", replicated, ", ", M,
                " microbatch(es) of ~", (batch + M - 1) / M,
                " per batch (fill and drain; bubble (S-1)/(M+S-1) = ",
                static_cast<int>(100.0 * (S - 1) / (M + S - 1) + 0.5),
                "%); parameters per stage: ", per_stage);
}

void PipelineStrategy::ConfigureSession(SessionOptions* options) const {
  options->communicator = stage_comm_.get();  // the stage's allreduce (null: one replica)
  if (placement_) {
    options->placement = placement_;
    options->rendezvous = rendezvous_.get();
  }
}

bool PipelineStrategy::Reports(const VariableInfo& v) const {
  return !placement_ || placement_->RankOf(v.variable) == stage_;
}

Status PipelineStrategy::Start(Session& session, CheckpointManager& checkpoints,
                               const RunState& resumed) {
  checkpoints_ = &checkpoints;
  if (!resumed.resumed) return Status::OK();
  // Every stage reads the whole model's file and keeps its own variables.
  StatusOr<int64_t> step = strategy_util::ResumeWholeModel(
      session, checkpoints, resumed, env_.comm, *env_.log,
      [this](const Node* node) { return !placement_ || placement_->RankOf(node) == stage_; });
  if (!step.ok()) return step.status();
  step_ = *step;
  return Status::OK();
}

StatusOr<StepOutcome> PipelineStrategy::RunStep(Session& session, std::vector<Session::Feed> feeds,
                                                const Batch& batch, RunStats* stats) {
  if (!microbatches_.empty()) {
    // Each input cut into M runs of rows, as even as can be (the first n % M one longer).
    const int64_t n = feeds.empty() ? 0 : feeds[0].second.shape().dim(0);
    const int64_t M = static_cast<int64_t>(microbatches_.size());
    std::vector<Session::Feed> split;
    int64_t begin = 0;
    for (int64_t m = 0; m < M; ++m) {
      const int64_t count = n / M + (m < n % M ? 1 : 0);
      const Microbatch& mb = microbatches_[m];
      for (const auto& input : mb.inputs) {
        const Output& original = input.first;
        const Output& copy = input.second;
        auto fed = std::find_if(feeds.begin(), feeds.end(),
                                [&](const Session::Feed& f) { return f.first == original; });
        if (fed == feeds.end()) {
          return InvalidArgument("the pipeline's step is not fed '", original.name(), "'");
        }
        if (fed->second.shape().rank() == 0 || fed->second.shape().dim(0) != n) {
          return InvalidArgument(
              "the pipeline cuts its inputs into microbatches along their "
              "first dimension: '",
              original.name(), "' is fed ", fed->second.shape().ToString(), ", not ", n,
              " rows like the others");
        }
        split.push_back({copy, Rows(fed->second, begin, count)});
      }
      split.push_back(
          {mb.weight, Tensor::Scalar<float>(
                          n > 0 ? static_cast<float>(count) / static_cast<float>(n) : 0.0f)});
      begin += count;
    }
    feeds = std::move(split);
  }
  const float share = static_cast<float>(batch.examples) /
                      static_cast<float>(std::max<int64_t>(1, batch.global_examples));
  for (const Output& scale : stage_scales_) feeds.push_back({scale, Tensor::Scalar<float>(share)});
  Status run = session.Run(feeds, {loss_}, {train_op_.train}, &out_, stats);
  if (!run.ok()) return strategy_util::StepError(run, step_ + 1, batch, /*lr_hint=*/true);
  StepOutcome o;
  o.step = ++step_;
  const float loss = *out_[0].data<float>();
  o.loss = loss;
  o.examples = batch.global_examples;
  // One agreement over the world: a stop on any rank, a checkpoint by rank 0's clock, and (with
  // replicas) the mean loss from each replica's first stage: (loss * examples, examples).
  const bool counts = stage_ == 0;
  Tensor votes = Tensor::FromVector<float>(
      Shape{4}, {env_.stop && env_.stop->requested() ? 1.0f : 0.0f,
                 rank_ == 0 && checkpoints_ && checkpoints_->DueByTime() ? 1.0f : 0.0f,
                 counts ? loss * static_cast<float>(batch.examples) : 0.0f,
                 counts ? static_cast<float>(batch.examples) : 0.0f});
  if (env_.comm) MPIFLOW_RETURN_IF_ERROR(env_.comm->Allreduce(votes, {})->Wait());
  const float* agreed = votes.data<float>();
  o.stop = agreed[0] > 0;
  o.checkpoint = agreed[1] > 0;
  if (replicas_ > 1) o.loss = agreed[2] / std::max(agreed[3], 1.0f);
  return o;
}

Status PipelineStrategy::Save(Session& session, CheckpointManager& checkpoints,
                              const DataPosition& at) {
  // Rank 0 gathers every stage's variables (graph order, tag = position) and writes the whole
  // model, as one rank would.
  std::set<std::string> own;
  std::vector<std::pair<std::string, Tensor>> gathered;
  std::vector<std::shared_ptr<Work>> works;
  const std::vector<VariableInfo>& vars = session.graph().variables();
  for (size_t i = 0; i < vars.size(); ++i) {
    const Node* v = vars[i].variable;
    const int owner = placement_ ? placement_->RankOf(v) : 0;
    if (owner == stage_) own.insert(v->name());
    if (owner == 0) continue;
    // Replica 0 holds the file's values: its stage s is world rank s.
    if (rank_ == owner) {
      StatusOr<Tensor> t = session.ReadVariable(v->name());
      if (!t.ok()) return t.status();
      works.push_back(env_.comm->Send(*t, 0, static_cast<int>(i)));
    } else if (rank_ == 0) {
      Tensor t(v->output_dtype(0), v->output_shape(0));
      works.push_back(env_.comm->Recv(t, owner, static_cast<int>(i)));
      gathered.emplace_back(v->name(), t);
    }
  }
  for (const auto& w : works) MPIFLOW_RETURN_IF_ERROR(w->Wait());
  Status saved = WriteGathered(session, checkpoints, at, own, std::move(gathered));
  // Every stage learns whether the file is there before it goes on (a run that resumes at once
  // reads it on every rank).
  Tensor failed = Tensor::Scalar<int32_t>(saved.ok() ? 0 : 1);
  if (env_.comm) MPIFLOW_RETURN_IF_ERROR(env_.comm->Allreduce(failed, {})->Wait());
  MPIFLOW_RETURN_IF_ERROR(saved);
  if (*failed.data<int32_t>() > 0) {
    return Status(Code::kAborted,
                  StrCat("rank 0 could not write the checkpoint of step ", at.step));
  }
  if (rank_ != 0) checkpoints.MarkSaved(at.step);
  strategy_util::NoteCheckpoint(env_.comm, checkpoints.last(), at.step);
  return Status::OK();
}

Status PipelineStrategy::WriteGathered(Session& session, CheckpointManager& checkpoints,
                                       const DataPosition& at, const std::set<std::string>& own,
                                       std::vector<std::pair<std::string, Tensor>> gathered) {
  const std::vector<VariableInfo>& vars = session.graph().variables();
  if (rank_ == 0) {
    StatusOr<Checkpoint> c = strategy_util::Snapshot(session, at, ranks_, replicas_, &own);
    if (!c.ok()) return c.status();
    c->variables.insert(c->variables.end(), gathered.begin(), gathered.end());
    std::map<std::string, size_t> order;  // the graph's order, as one rank writes it
    for (size_t i = 0; i < vars.size(); ++i) order[vars[i].variable->name()] = i;
    std::sort(c->variables.begin(), c->variables.end(),
              [&](const auto& a, const auto& b) { return order[a.first] < order[b.first]; });
    StatusOr<std::string> p = checkpoints.Save(std::move(*c), at.step);
    if (!p.ok()) return p.status();
    *env_.log << "mpiflow: checkpoint '" << *p << "' (step " << at.step << ")\n";
  }
  return Status::OK();
}

}  // namespace mpiflow
