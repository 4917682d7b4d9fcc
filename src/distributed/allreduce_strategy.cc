// AllReduceStrategy: synchronous data parallelism. Every rank holds every variable; each step
// the gradient buckets are allreduced inside the Session run (AllreduceStart/Wait ops added by
// AddGradientSync), and the step agreement rides in the last bucket:
//   1. each rank feeds scale = its examples / the global batch's, its example count, its stop
//      vote (a preemption signal) and its checkpoint vote (rank 0 keeps the clock);
//   2. the buckets sum scale * gradient (the global batch's mean gradient) and the agreement
//      (loss * examples, examples, stop votes, checkpoint votes);
//   3. every rank reads the same sums, so all take the same decisions after the step: the mean
//      loss, stop if any rank was signalled, checkpoint if rank 0's clock said so; a NaN or Inf
//      in a reduced gradient fails the step on every rank together.
#include "mpiflow/gradients.h"
#include "replicated_strategy.h"
#include "strategy_util.h"

namespace mpiflow {

AllReduceStrategy::AllReduceStrategy(const StrategyEnv& env, AllReduceOptions options)
    : ReplicatedStrategy(env), options_(options) {}

Status AllReduceStrategy::Build(const Scope& root, Output loss,
                                const std::vector<Output>& variables,
                                const OptimizerOptions& optimizer) {
  std::vector<Output> grads;
  MPIFLOW_RETURN_IF_ERROR(AddGradients(root, {loss}, variables, {}, &grads));
  GradientSyncOptions so;
  so.bucket_bytes = std::max<int64_t>(1, static_cast<int64_t>(options_.bucket_mb * (1 << 20)));
  so.algorithm = options_.algorithm;
  so.sparse = options_.sparse;
  so.ranks = ranks_;
  so.compression = options_.compression;
  StatusOr<GradientSync> added = AddGradientSync(root, loss, grads, variables, so);
  if (!added.ok()) return added.status();
  sync_ = std::move(*added);
  for (const std::vector<int>& bucket : sync_.buckets) {
    for (int i : bucket) {
      gradient_bytes_ += sync_.gradients[i].shape().num_elements() * DTypeSize(grads[i].dtype());
    }
  }
  return AddUpdates(root, sync_.gradients, variables, optimizer);
}

std::string AllReduceStrategy::Describe(int64_t global_batch) const {
  return StrCat(
      "data parallel over ", ranks_, " ranks (global batch ", global_batch,
      "): ", gradient_bytes_ / 1024, " KiB of gradients in ", sync_.buckets.size(),
      " bucket(s) of <= ", options_.bucket_mb, " MiB, allreduce ",
      AllreduceAlgorithmName(options_.algorithm),
      options_.compression == AllreduceCompression::kNone
          ? std::string()
          : StrCat(" with ", AllreduceCompressionName(options_.compression), " on the wire"),
      sync_.gathered.empty()
          ? std::string()
          : StrCat(", ", sync_.gathered.size(), " sparse gradient(s) by allgather"));
}

StatusOr<StepOutcome> AllReduceStrategy::RunStep(Session& session, std::vector<Session::Feed> feeds,
                                                 const Batch& batch, RunStats* stats) {
  const float share =
      static_cast<float>(batch.examples) / static_cast<float>(batch.global_examples);
  const bool stop_vote = env_.stop && env_.stop->requested();
  // Rank 0 keeps the checkpoint clock; its vote makes every rank agree on the step.
  const bool checkpoint_vote = rank_ == 0 && checkpoints_ && checkpoints_->DueByTime();
  feeds.push_back({sync_.scale, Tensor::Scalar<float>(share)});
  feeds.push_back({sync_.examples, Tensor::Scalar<float>(static_cast<float>(batch.examples))});
  feeds.push_back({sync_.stop, Tensor::Scalar<float>(stop_vote ? 1.0f : 0.0f)});
  feeds.push_back({sync_.checkpoint, Tensor::Scalar<float>(checkpoint_vote ? 1.0f : 0.0f)});
  Status run = session.Run(feeds, {sync_.agreement}, {train_op_.train}, &out_, stats);
  if (!run.ok()) return strategy_util::StepError(run, step_ + 1, batch, /*lr_hint=*/true);
  // Every rank holds the same sums: (loss * examples, examples, stop votes, checkpoint votes).
  const float* agreed = out_[0].data<float>();
  StepOutcome o;
  o.step = ++step_;
  o.loss = agreed[0] / std::max(agreed[1], 1.0f);
  o.examples = batch.global_examples;
  o.stop = agreed[2] > 0;
  o.checkpoint = agreed[3] > 0;
  return o;
}

}  // namespace mpiflow
