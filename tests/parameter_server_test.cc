// Parameter-server training under mpiexec (CTest runs it with 1-4 ranks): the layout; with
// every worker waited for, W workers of batch B end with the weights of one process with batch
// W*B (workers hold every variable, each server its shard), the same bits on a rerun and after
// a resume from the servers' shard checkpoints; backup workers drop a straggler's push and
// training goes on; a NaN stops every rank with the same message; bad rank counts are errors.
#include "src/distributed/parameter_server.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "mpiflow/checkpoint.h"
#include "mpiflow/trainer.h"
#include "tests/fault_hooks.h"
#include "tests/mpi_test_main.h"

namespace mpiflow {
namespace {

Communicator*& comm = test::world;

TEST(PsLayout, BalancesBySizeLargestFirst) {
  // 100, 10, 60, 50, 5 elements on 2 servers: 100 -> s0, 60 -> s1, 50 -> s1, 10 -> s0, 5 -> s0.
  StatusOr<PsLayout> l = MakePsLayout(5, 2, 1, {100, 10, 60, 50, 5});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->workers, 3);
  EXPECT_EQ(l->aggregate(), 2);
  EXPECT_EQ(l->owner, (std::vector<int>{0, 0, 1, 1, 0}));
  EXPECT_EQ(l->shards[0], (std::vector<int>{0, 1, 4}));
  EXPECT_EQ(l->shards[1], (std::vector<int>{2, 3}));
  EXPECT_EQ(l->shard_elements, (std::vector<int64_t>{115, 110}));
  EXPECT_EQ(l->server_rank(1), 4);
  EXPECT_TRUE(l->IsServer(3));
  EXPECT_FALSE(l->IsServer(2));
}

TEST(PsLayout, BadCountsSayWhatToChange) {
  StatusOr<PsLayout> l = MakePsLayout(1, 1, 0, {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--strategy ps with --ps-ranks 1 needs at least 2 ranks "
                                      "(the servers and a worker); this job has 1"),
            std::string::npos)
      << l.status();
  l = MakePsLayout(4, 2, 2, {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--backup-workers 2 leaves no gradient to average: 2 "
                                      "worker(s) (4 ranks - 2 servers)"),
            std::string::npos)
      << l.status();
  EXPECT_FALSE(MakePsLayout(4, 0, 0, {4}).ok());
}

TrainConfig Base() {
  TrainConfig c = test::SmallSyntheticJob();
  c.strategy = StrategyKind::kParameterServer;
  // Two servers where a worker is left for them.
  c.ps.servers = comm->size() >= 4 ? 2 : 1;
  return c;
}

StatusOr<TrainResult> TrainWith(const TrainConfig& c, Communicator* with,
                                FaultHooks* hooks = nullptr) {
  std::ostringstream log;
  return Train(c, log, with, nullptr, hooks);
}

bool IsServer() { return comm->rank() >= comm->size() - Base().ps.servers; }

// A worker's variables are compared by name: a server holds only its shard.
using test::WorstRelativeDiff;

// The same variable bits on every worker (servers hold shards).
bool SameBitsOnEveryWorker(const TrainResult& r) {
  return test::SameOnRanks(r.ps_server ? 0 : test::HashVariables(r.variables),
                           comm->size() - Base().ps.servers);
}

bool NeedsMoreRanks(const StatusOr<TrainResult>& r) {
  if (comm->size() >= 2) return false;
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("needs at least 2 ranks"), std::string::npos) << r.status();
  return true;
}

void ExpectEquivalent(TrainConfig c, double tolerance) {
  StatusOr<TrainResult> dist = TrainWith(c, comm);
  if (NeedsMoreRanks(dist)) return;
  ASSERT_TRUE(dist.ok()) << dist.status();
  const int workers = comm->size() - c.ps.servers;
  TrainConfig one = c;
  one.strategy = StrategyKind::kNone;
  one.ps.servers = 1;
  one.batch_size = c.batch_size * workers;
  StatusOr<TrainResult> ref = TrainWith(one, nullptr);  // this process alone, all workers' batch
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(dist->steps, ref->steps);
  EXPECT_EQ(dist->ps_server, IsServer());
  EXPECT_EQ(dist->stale_dropped, 0);
  EXPECT_LE(WorstRelativeDiff(*dist, *ref), tolerance) << workers << " workers";
  EXPECT_NEAR(dist->final_loss, ref->final_loss, 1e-5 * std::fabs(ref->final_loss));
  if (!dist->ps_server) {
    EXPECT_NEAR(dist->test_accuracy, ref->test_accuracy, 1e-12);
    size_t trainable = 0;
    for (const auto& [name, t] : dist->variables) trainable += t.dtype() == DType::kFloat32;
    EXPECT_EQ(trainable, 6u);  // the MLP's three kernels and biases
  }
  EXPECT_TRUE(SameBitsOnEveryWorker(*dist));
}

TEST(ParameterServer, SameWeightsAsOneProcessWithTheWorkersBatch) {
  TrainConfig c = Base();
  c.max_steps = 12;
  ExpectEquivalent(c, 1e-6);
}

// A C++ program's model (Train(model_fn, data, ...)) under parameter servers: the same bits as
// the model file.
TEST(ParameterServer, AModelFunctionTrainsAsTheModelFile) {
  TrainConfig c = Base();
  c.max_steps = 6;
  StatusOr<TrainResult> file = TrainWith(c, comm);
  if (NeedsMoreRanks(file)) return;
  ASSERT_TRUE(file.ok()) << file.status();
  StatusOr<TrainResult> fn = test::TrainThroughModelFn(c, comm);
  ASSERT_TRUE(fn.ok()) << fn.status();
  EXPECT_EQ(fn->ps_server, file->ps_server);
  EXPECT_EQ(fn->steps, file->steps);
  EXPECT_EQ(WorstRelativeDiff(*fn, *file), 0.0);
}

// Momentum's slots live on the servers; 100 examples make the last batch partial and uneven.
TEST(ParameterServer, MomentumAndAnUnevenLastBatch) {
  TrainConfig c = Base();
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.synthetic_train = 100;
  c.epochs = 2;
  ExpectEquivalent(c, 1e-6);
}

TEST(ParameterServer, RerunIsBitIdentical) {
  TrainConfig c = Base();
  c.max_steps = 8;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.001;
  StatusOr<TrainResult> a = TrainWith(c, comm);
  if (NeedsMoreRanks(a)) return;
  StatusOr<TrainResult> b = TrainWith(c, comm);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(a->variables.size(), b->variables.size());
  for (size_t v = 0; v < a->variables.size(); ++v) {
    EXPECT_TRUE(a->variables[v].second.BitEqual(b->variables[v].second)) << a->variables[v].first;
  }
}

// Each server writes its shard; a resume from `latest` continues with the bits of an
// uninterrupted run, on workers (all variables) and servers (shards with Adam's slots).
TEST(ParameterServer, ResumeFromShardsIsBitIdentical) {
  if (comm->size() < 2) return;  // NeedsMoreRanks is covered above
  const std::string dir = ::testing::TempDir() + "/ps_resume_" + std::to_string(comm->size());
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());  // no checkpoint of an earlier run is left
  TrainConfig c = Base();
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.002;
  c.checkpoint.dir = dir + "/checkpoints";
  TrainConfig whole = c;
  whole.checkpoint.dir = dir + "/whole_checkpoints";
  whole.max_steps = 9;
  StatusOr<TrainResult> w = TrainWith(whole, comm);
  ASSERT_TRUE(w.ok()) << w.status();
  TrainConfig part = c;
  part.max_steps = 4;
  part.checkpoint.every_steps = 4;
  StatusOr<TrainResult> p = TrainWith(part, comm);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  const int servers = c.ps.servers;
  if (IsServer()) {
    const int k = comm->rank() - (comm->size() - servers);
    const std::string mine =
        StrCat(dir, "/checkpoints/ckpt-00000004.ps", k, "-of-", servers, ".h5");
    EXPECT_EQ(p->last_checkpoint, mine);
    StatusOr<Checkpoint> ck = ReadCheckpoint(mine);
    ASSERT_TRUE(ck.ok()) << ck.status();
    EXPECT_EQ(ck->counters["step"], 4);
    // Its shard's variables with their two Adam slots each, and the global step.
    EXPECT_EQ(ck->variables.size(), p->variables.size());
    bool has_step = false, has_slot = false;
    for (const auto& [name, t] : ck->variables) {
      has_step = has_step || name == "global_step";
      has_slot = has_slot || name.find("/adam_m") != std::string::npos;
    }
    EXPECT_TRUE(has_step);
    EXPECT_TRUE(has_slot);
  }
  std::ifstream latest(dir + "/checkpoints/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name, StrCat("ckpt-00000004.ps0-of-", servers, ".h5"));
  TrainConfig rest = c;
  rest.max_steps = 9;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 4);
  ASSERT_EQ(r->variables.size(), w->variables.size());
  for (size_t v = 0; v < r->variables.size(); ++v) {
    EXPECT_TRUE(r->variables[v].second.BitEqual(w->variables[v].second)) << r->variables[v].first;
  }
}

// One worker sleeps through a step: with a backup worker the others go on without it, its
// push is dropped as stale, and it catches up with the current values.
// Four ranks: 3 workers of batch 8 and 1 server to step 4, then 2 workers of batch 12 (the same
// global batch) and 2 servers, which re-shard the checkpoint's one shard between them: the
// workers of both runs end within rounding of a run that never stopped.
TEST(ParameterServer, ResumeOnAnotherServerCount) {
  if (comm->size() != 4) return;  // the shape needs four ranks
  const std::string dir = ::testing::TempDir() + "/ps_reshard";
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = Base();
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.ps.servers = 1;
  c.batch_size = 8;
  c.checkpoint.dir = dir + "/checkpoints";
  TrainConfig whole = c;
  whole.checkpoint.dir = dir + "/whole_checkpoints";
  whole.max_steps = 9;
  StatusOr<TrainResult> w = TrainWith(whole, comm);
  ASSERT_TRUE(w.ok()) << w.status();
  TrainConfig part = c;
  part.max_steps = 4;
  part.checkpoint.every_steps = 4;
  ASSERT_TRUE(TrainWith(part, comm).ok());
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig rest = c;
  rest.ps.servers = 2;
  rest.batch_size = 12;
  rest.max_steps = 9;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 4);
  EXPECT_EQ(r->steps, 9);
  EXPECT_EQ(r->ps_server, comm->rank() >= 2);
  if (comm->rank() < 2) {  // a worker in both runs
    EXPECT_LE(WorstRelativeDiff(*r, *w), 1e-6);
    EXPECT_NEAR(r->test_accuracy, w->test_accuracy, 1e-12);
  } else {  // each new server holds its shard's variables and their momentum slots
    size_t slots = 0;
    for (const auto& [name, t] : r->variables) slots += name.find("/momentum") != std::string::npos;
    EXPECT_GT(slots, 0u);
  }
}

TEST(ParameterServer, BackupWorkerLetsTheStepGoOnWithoutAStraggler) {
  if (comm->size() < 3) return;  // needs two workers
  TrainConfig c = Base();
  c.ps.servers = 1;
  c.ps.backup_workers = 1;
  c.max_steps = 12;
  test::InjectedFaults faults;
  faults.Add({test::InjectedFaults::Kind::kSleep, 1, 3, 0.5});  // rank 1 sleeps before step 3
  StatusOr<TrainResult> r = TrainWith(c, comm, &faults);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 12);
  EXPECT_TRUE(std::isfinite(r->final_loss));
  if (r->ps_server) {
    EXPECT_GE(r->stale_dropped, 1);
  }
}

TEST(ParameterServer, NanStopsEveryRankWithTheSameMessage) {
  if (comm->size() < 2) return;
  TrainConfig c = Base();
  c.optimizer.lr.base = 1e30;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_FALSE(r.ok());
  test::ExpectAbortedTogether(r.status(), "NaN or Inf");
}

}  // namespace
}  // namespace mpiflow
