// The strategies whose ranks each hold every variable (one process; synchronous allreduce):
// what they share is the checkpoint role (rank 0 writes the whole run, every rank resumes from
// it) and the optimizer's update op. Private to src/distributed. Not a parameter server, whose
// variables are sharded (ps_strategy.h).
#pragma once

#include "mpiflow/distributed.h"
#include "mpiflow/strategy.h"

namespace mpiflow {

class ReplicatedStrategy : public Strategy {
 public:
  explicit ReplicatedStrategy(const StrategyEnv& env);
  int data_ranks() const override { return ranks_; }
  int data_rank() const override { return rank_; }
  Communicator* eval_comm() const override { return env_.comm; }
  // Resumes the whole run from `checkpoints` when asked (every rank reads the same file).
  Status Start(Session& session, CheckpointManager& checkpoints, const RunState& resumed) override;
  // Rank 0 writes the whole run; the others record that it exists.
  Status Save(Session& session, CheckpointManager& checkpoints, const DataPosition& at) override;

 protected:
  // Adds the optimizer's updates of `gradients` to `variables` as train_op_.
  Status AddUpdates(const Scope& root, const std::vector<Output>& gradients,
                    const std::vector<Output>& variables, const OptimizerOptions& optimizer);

  StrategyEnv env_;
  int rank_ = 0, ranks_ = 1;
  std::vector<Tensor> out_;  // a step's fetched values, reused
  int64_t step_ = 0;         // the global step the variables hold
  TrainOp train_op_;
  CheckpointManager* checkpoints_ = nullptr;  // set by Start
};

// One process: gradients applied as they are.
class LocalStrategy : public ReplicatedStrategy {
 public:
  using ReplicatedStrategy::ReplicatedStrategy;
  Status Build(const Scope& root, Output loss, const std::vector<Output>& variables,
               const OptimizerOptions& optimizer) override;
  std::string Describe(int64_t global_batch) const override { return ""; }
  StatusOr<StepOutcome> RunStep(Session& session, std::vector<Session::Feed> feeds,
                                const Batch& batch, RunStats* stats) override;

 private:
  Output loss_;
};

// Synchronous data parallelism: gradient buckets allreduced while the backward pass goes on
// (AddGradientSync, distributed.h), and the per-step agreement packed into the last bucket.
class AllReduceStrategy : public ReplicatedStrategy {
 public:
  AllReduceStrategy(const StrategyEnv& env, AllReduceOptions options);
  Status Build(const Scope& root, Output loss, const std::vector<Output>& variables,
               const OptimizerOptions& optimizer) override;
  std::string Describe(int64_t global_batch) const override;
  StatusOr<StepOutcome> RunStep(Session& session, std::vector<Session::Feed> feeds,
                                const Batch& batch, RunStats* stats) override;

 private:
  AllReduceOptions options_;
  GradientSync sync_;
  int64_t gradient_bytes_ = 0;
};

}  // namespace mpiflow
