// PipelineStrategy: model parallelism. The model's forward ops are cut into S stages, one per
// rank (placement.h: hints, colocation, then the cost model); the Session of each rank runs its
// stage and exchanges activations and their gradients with the neighbouring stages by Send/Recv
// (src/runtime/rendezvous.h). A batch is cut into M microbatches that flow through the stages
// GPipe-style (fill and drain):
//   1. Build copies the forward pass once per microbatch (nodes "microbatch_<m>/...", colocated
//      with their originals, so each copy runs on its original's stage); the loss of the batch is
//      sum_m w_m * loss_m, with w_m = (examples of microbatch m) / (examples of the batch), fed
//      each step, which is the batch's mean loss when each loss_m is its microbatch's mean;
//   2. its gradients (autodiff sums each variable's M pieces on the variable's stage) feed one
//      optimizer update per batch;
//   3. in a step every stage runs its part as a dataflow: microbatch m+1's forward runs while
//      microbatch m's activations travel on (ready nodes run in graph order, and the copies of
//      the forward pass come before every gradient op), and a stage's backward ops run as their
//      gradients arrive: the fill-and-drain schedule, with a bubble of (S-1)/(M+S-1);
//   4. after the run, one allreduce of (stop vote, checkpoint vote) over the stages makes every
//      rank take the same decisions; the loss is fetched by every rank (sent from the last
//      stage).
// The original forward pass stays in the graph for evaluation (it runs across the stages too).
// Checkpoints hold the whole model: rank 0 gathers every stage's variables and writes the file
// a one-rank run would, so a run resumes on any number of stages (or any other strategy).
// 2-D layout: R x S ranks run R replicas of the pipeline (rank = replica * S + stage), each on
// its own shard of the global batch (the replica is the data rank). The ranks of one replica
// exchange activations on a communicator of their own; the R ranks of one stage allreduce that
// stage's gradients on theirs (AddGradientSync without an agreement, its ops colocated with the
// stage's variables, so only that stage runs them), scaled by the replica's share of the global
// batch; the step's agreement (stop, checkpoint, the loss) is the world's allreduce of step 4.
// Private to src/distributed. Not the placer and not the executor.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "mpiflow/placement.h"
#include "mpiflow/strategy.h"

namespace mpiflow {

class PipelineStrategy : public Strategy {
 public:
  PipelineStrategy(const StrategyEnv& env, PipelineOptions options);
  int data_ranks() const override { return replicas_; }
  int data_rank() const override { return replica_; }
  Status Build(const Scope& root, Output loss, const std::vector<Output>& variables,
               const OptimizerOptions& optimizer) override;
  std::string Describe(int64_t global_batch) const override;
  void ConfigureSession(SessionOptions* options) const override;
  Status Start(Session& session, CheckpointManager& checkpoints, const RunState& resumed) override;
  Communicator* eval_comm() const override { return nullptr; }
  StatusOr<StepOutcome> RunStep(Session& session, std::vector<Session::Feed> feeds,
                                const Batch& batch, RunStats* stats) override;
  Status Save(Session& session, CheckpointManager& checkpoints, const DataPosition& at) override;
  bool Reports(const VariableInfo& v) const override;

 private:
  // Rank 0: its own variables (`own`) and those `gathered` from the other stages, in the graph's
  // order, as the checkpoint of the run at `at`. Other ranks: nothing.
  Status WriteGathered(Session& session, CheckpointManager& checkpoints, const DataPosition& at,
                       const std::set<std::string>& own,
                       std::vector<std::pair<std::string, Tensor>> gathered);
  struct Microbatch {
    std::vector<std::pair<Output, Output>> inputs;  // (original placeholder, this copy's)
    Output weight;                                  // scalar float32 w_m, fed
  };

  // Adds each stage's allreduce of its gradients over the replicas (replicas_ > 1), replacing
  // `grads` by the reduced ones; `placement` places the graph's nodes so far (null: one stage).
  Status AddStageSync(const Scope& root, const Placement* placement,
                      const std::vector<Output>& variables, std::vector<Output>* grads);

  StrategyEnv env_;
  PipelineOptions options_;
  int rank_ = 0, ranks_ = 1;     // in the world
  int stage_ = 0, replica_ = 0;  // rank_ = replica_ * stages + stage_
  int replicas_ = 1;
  std::shared_ptr<const Placement> placement_;  // over the stages (a rank of `rendezvous_`)
  std::unique_ptr<Communicator> rendezvous_;    // this replica's stages' Send/Recv
  std::unique_ptr<Communicator> stage_comm_;    // this stage's replicas' allreduce (replicas_ > 1)
  std::vector<Output> stage_scales_;            // per stage with variables: the replica's share
  std::vector<Microbatch> microbatches_;        // empty when M = 1
  Output loss_;                                 // the batch's loss
  TrainOp train_op_;
  std::vector<Tensor> out_;
  int64_t step_ = 0;
  CheckpointManager* checkpoints_ = nullptr;
  std::vector<int64_t> stage_parameters_;  // per stage
};

}  // namespace mpiflow
