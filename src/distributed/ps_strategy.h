// ParameterServerStrategy: training through parameter servers, synchronous with backup workers,
// asynchronous, or hybrid (synchronous groups pushing asynchronously): parameter_server.h has
// the three protocols as numbered steps.
// The last `servers` ranks hold the variables, sharded by size (PsLayout; an embedding table
// updated by rows split by rows over them, each server keeping its range); the other ranks are
// workers. Every rank builds the same graph: the gradients (fetched by workers), a float32
// placeholder per variable for the averaged gradient, and the optimizer's updates from those
// placeholders (run by the server that holds the variable, or by each server for its rows of a
// split table). The wire protocol is
// parameter_server.h's; the worker's side is ps_worker.cc, the server's ps_server.cc.
//
// One synchronous step, as the two sides see it:
//   1. a worker runs the graph for its share of the batch and pushes its gradients (each on its
//      way as soon as the backward pass has it) with its examples, its loss sum and its stop vote
//      to every server (which weighs each push by its examples);
//   2. each server averages the first N = workers - backup_workers pushes of the current version
//      (a straggler's older push is dropped and answered at once with the current values);
//   3. the servers agree among themselves (max over them) on stop, the checkpoint clock of
//      server 0 and NaN, so that they stop, checkpoint and fail together;
//   4. each server runs its shard's update ops, writes its shard's checkpoint when due (server 0
//      points `latest` at the step once every shard is written), and publishes the new values
//      with the step's loss, examples and decisions to the N workers it averaged;
//   5. a worker takes the values (and the version, which is the global step) from every server
//      (of a table that travels by rows, the changed rows its next batch reads, which its push
//      named, or every changed row when the push named none);
//      a straggler whose push was dropped skips ahead to the batch of the version it now holds.
// Asynchronous and hybrid: a worker (hybrid: a group) walks through its own share of every
// global batch at its own pace; each server applies each push as it arrives (ServeAsync) and
// answers that pusher alone. The step a worker reports is its own data step; the servers'
// version counts updates, and their global_step (the learning-rate schedule's clock) is
// updates / pushers, so that a schedule spans the run as it does synchronously.
// Private to src/distributed.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "mpiflow/strategy.h"
#include "parameter_server.h"

namespace mpiflow {

// What every rank of an asynchronous run says when a push held a NaN or Inf.
inline constexpr char kAsyncNonFinite[] =
    "the loss or a gradient is NaN or Inf (in some worker's push): lower the learning rate (--lr)";

class ParameterServerStrategy : public Strategy {
 public:
  ParameterServerStrategy(const StrategyEnv& env, ParameterServerOptions options);
  int data_ranks() const override { return ranks_ - options_.servers; }
  int data_rank() const override { return server_ ? 0 : rank_; }
  bool serves() const override { return server_; }
  Status Build(const Scope& root, Output loss, const std::vector<Output>& variables,
               const OptimizerOptions& optimizer) override;
  std::string Describe(int64_t global_batch) const override;
  std::string checkpoint_shard() const override;
  // Server 0 reads the resumed checkpoint's state and broadcasts it to every rank (a server
  // that fails ends the job, so nobody waits for ever; a worker never reads a file).
  StatusOr<RunState> ResumeState(CheckpointManager& checkpoints) override;
  // The servers restore their shards (from every shard of the resumed step, so that a run
  // resumes on another number of servers); the workers receive the values to start from.
  Status Start(Session& session, CheckpointManager& checkpoints, const RunState& resumed) override;
  // Synchronous workers evaluate together; asynchronous ones each on their own (they reach an
  // epoch's end at different times, or not at all after a stop).
  Communicator* eval_comm() const override {
    return options_.mode == PsMode::kSync ? group_.get() : nullptr;
  }
  // A worker's step (ps_worker.cc).
  StatusOr<StepOutcome> RunStep(Session& session, std::vector<Session::Feed> feeds,
                                const Batch& batch, RunStats* stats) override;
  // The servers write the checkpoints (in Serve): a worker has nothing to save.
  Status Save(Session& session, CheckpointManager& checkpoints, const DataPosition& at) override {
    return Status::OK();
  }
  // A worker: the next batch's rows of each table that travels by rows, sent with its push
  // (the replies then carry only those rows).
  void NextFeeds(std::vector<Session::Feed> next) override { next_feeds_ = std::move(next); }
  // A server's run (ps_server.cc).
  StatusOr<ServeOutcome> Serve(Session& session, CheckpointManager& checkpoints,
                               const DataPlan& plan, int64_t total_steps) override;
  // A worker's optimizer slots were never updated (the servers hold them).
  bool Reports(const VariableInfo& v) const override;

 private:
  Status Receive(Session& session);     // worker: values and version from the servers
  Status TakeValues(Session& session);  // worker: values_ and rows_ into its variables
  // Worker: the step's gradients from out_ (none for an empty share of the batch) into pushed_
  // and, for a variable whose rows travel alone, its rows' indices into pushed_indices_.
  void TakeGradients(const Batch& batch);
  // Build: per table whose rows travel alone, the ids its lookups in a worker's step read
  // (EmbeddingBag and Gather of it); none when anything else in the step reads a table.
  void FindLookups(const Graph& graph);
  // Worker: the rows the next batch (next_feeds_) reads of each such table, ascending, each
  // once; false when they are not known (no next batch, or lookups not found).
  StatusOr<bool> NextRows(Session& session);
  // A worker's asynchronous (or hybrid) step.
  StatusOr<StepOutcome> RunAsyncStep(Session& session, std::vector<Session::Feed> feeds,
                                     const Batch& batch, RunStats* stats);
  // A worker's forward and backward pass; unless `whole` (a hybrid group sums whole pushes),
  // each whole variable's gradient leaves for its server as the backward pass computes it.
  Status RunGraph(Session& session, const std::vector<Session::Feed>& feeds, const Batch& batch,
                  RunStats* stats, bool whole);
  // A server's asynchronous run.
  StatusOr<ServeOutcome> ServeAsync(Session& session, CheckpointManager& checkpoints,
                                    const DataPlan& plan, int64_t total_steps);
  // A server's outcome before its first step: where it starts, what it resumed from.
  ServeOutcome ServeStart(const CheckpointManager& checkpoints, const DataPlan& plan) const;
  // A server's outcome after its last step: its counts and its shard's (and slots') values.
  Status ServeEnd(Session& session, const PsServerLink& link, ServeOutcome* r) const;
  // Server k's shard: its variables' shapes and update ops, in shard order; their values.
  void ShardOf(int k, std::vector<Shape>* shapes, std::vector<Node*>* updates) const;
  // How server k's link reads its shard's values from the session.
  PsShardReader ShardReader(Session& session, int k) const;
  // The feeds of server k's update ops for the mean gradient (and a sparse one's indices).
  void UpdateFeeds(int k, const std::vector<Tensor>& mean, const PsServerLink& link,
                   std::vector<Session::Feed>* feeds) const;
  // A server: writes its shard's checkpoint of the run at `at` (global_step `global_step`),
  // and server 0 points `latest` at it once every shard is written.
  StatusOr<std::string> SaveShard(Session& session, CheckpointManager& checkpoints,
                                  const DataPosition& at, int64_t global_step);
  std::set<std::string> OwnVariables(const Graph& graph) const;  // server: shard, slots, step
  // A server's part of a table split by rows: the variable (the table or one of its slots)
  // keeps rows [begin, end) of its `rows`.
  struct Part {
    std::string name;
    int64_t begin = 0, end = 0, rows = 0;
  };
  std::vector<Part> PartsOf(const Graph& graph, int k) const;
  // Server k's session keeps its parts' rows of split tables, and no row of the variables
  // other servers own (only the scalars: they have no rows).
  Status KeepOwnRows(Session& session, int k) const;
  // Server: restores its variables from the resumed checkpoint (which must hold `resumed`'s step).
  Status Restore(Session& session, CheckpointManager& checkpoints, const RunState& resumed);

  StrategyEnv env_;
  ParameterServerOptions options_;
  int rank_ = 0, ranks_ = 1;
  bool server_ = false;
  std::vector<Output> variables_, gradients_;
  // Per variable, what the server feeds its update: the mean gradient; for a variable whose
  // rows travel alone (layout_.Sparse), the rows' values [-1, ...] and their indices [-1].
  std::vector<Output> placeholders_, index_placeholders_;
  // A worker's: per variable its gradient (or a sparse one's values and indices), then the loss;
  // fetch_at_[v]: where variable v's starts.
  std::vector<Output> fetches_;
  std::vector<size_t> fetch_at_;
  std::vector<int> body_of_fetch_;  // per fetch: the variable whose whole gradient it is, or -1
  TrainOp train_op_;
  PsLayout layout_;
  std::unique_ptr<Communicator> group_;   // the workers' (evaluation) or the servers'
  std::unique_ptr<Communicator> hybrid_;  // hybrid: this worker's group (rank 0 leads)
  // Worker side.
  std::unique_ptr<PsWorkerLink> link_;
  std::vector<Tensor> values_, pushed_, pushed_indices_;  // indexed like variables_
  std::vector<PsRows> rows_;                              // the sparse rows the servers sent
  std::vector<std::vector<Output>> lookup_ids_;  // per variable: its lookups' ids (FindLookups)
  bool lookups_known_ = false;                   // every table that travels by rows has them
  std::vector<Session::Feed> next_feeds_;        // NextFeeds
  std::vector<std::vector<int64_t>> next_rows_;  // per variable: NextRows's
  std::vector<Tensor> out_;                      // fetches_' values, reused
  PsReply reply_;
  int64_t local_step_ = 0;  // async: this worker's data steps so far
};

}  // namespace mpiflow
