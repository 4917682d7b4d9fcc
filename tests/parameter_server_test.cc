// Parameter-server training under mpiexec (CTest runs it with 1-4 ranks): the layout; with
// every worker waited for, W workers of batch B end with the weights of one process with batch
// W*B (workers hold every variable, each server its shard), the same bits on a rerun and after
// a resume from the servers' shard checkpoints; backup workers drop a straggler's push and
// training goes on; a NaN stops every rank with the same message; bad rank counts are errors.
// Asynchronous: one worker trains as synchronous to the bit; several train, account for every
// push (applied or dropped) and bound staleness; a preemption stops every rank and resumes;
// hybrid with one group trains as one process with the group's batch, with two it resumes.
#include "src/distributed/parameter_server.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "mpiflow/checkpoint.h"
#include "mpiflow/trainer.h"
#include "src/distributed/ps_wire.h"
#include "tests/bags.h"
#include "tests/fault_hooks.h"
#include "tests/mpi_test_main.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

Communicator*& comm = test::world;

ParameterServerOptions Opts(int servers, int backups, PsMode mode = PsMode::kSync) {
  ParameterServerOptions o;
  o.servers = servers;
  o.backup_workers = backups;
  o.mode = mode;
  return o;
}

TEST(PsLayout, BalancesBySizeLargestFirst) {
  // 100, 10, 60, 50, 5 elements on 2 servers: 100 -> s0, 60 -> s1, 50 -> s1, 10 -> s0, 5 -> s0.
  StatusOr<PsLayout> l = MakePsLayout(5, Opts(2, 1), {100, 10, 60, 50, 5});
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

// A table whose rows travel alone is split by rows over every server, near-equal parts, the
// whole variables placed after it onto the least loaded; a table of fewer rows than servers
// has a part of one row on as many; one server holds everything whole.
TEST(PsLayout, SplitsATableByRowsOverTheServers) {
  // Variable 0: 10 rows of 4 (40 elements); 1: 30 whole; 2: 2 rows of 3; 3: 7 whole.
  StatusOr<PsLayout> l = MakePsLayout(6, Opts(3, 0), {40, 30, 6, 7}, {4, 0, 3, 0});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->owner, (std::vector<int>{-1, 0, -1, 1}));
  EXPECT_EQ(l->split[0], (std::vector<int64_t>{0, 3, 6, 10}));
  EXPECT_EQ(l->split[2], (std::vector<int64_t>{0, 1, 2}));
  EXPECT_TRUE(l->split[1].empty());
  // The tables' parts: 12 + 3, 12 + 3, 16; then 30 onto server 0 (a tie: the lower index), 7
  // onto server 1.
  EXPECT_EQ(l->shards[0], (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(l->shards[1], (std::vector<int>{0, 2, 3}));
  EXPECT_EQ(l->shards[2], (std::vector<int>{0}));
  EXPECT_EQ(l->shard_elements, (std::vector<int64_t>{45, 22, 16}));
  EXPECT_EQ(l->shard_dense_elements, (std::vector<int64_t>{30, 7, 0}));
  EXPECT_TRUE(l->Holds(1, 2));
  EXPECT_FALSE(l->Holds(2, 2));
  EXPECT_FALSE(l->Holds(2, 1));
  EXPECT_EQ(l->FirstRow(2, 0), 6);
  EXPECT_EQ(l->PartShape(2, 0, Shape{10, 4}), (Shape{4, 4}));
  EXPECT_EQ(l->PartShape(1, 1, Shape{5, 6}), (Shape{5, 6}));
  StatusOr<PsLayout> one = MakePsLayout(2, Opts(1, 0), {40, 30}, {4, 0});
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->owner, (std::vector<int>{0, 0}));
  EXPECT_FALSE(one->Split(0));
}

TEST(PsLayout, BadCountsSayWhatToChange) {
  StatusOr<PsLayout> l = MakePsLayout(1, Opts(1, 0), {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--strategy ps with --ps-ranks 1 needs at least 2 ranks "
                                      "(the servers and a worker); this job has 1"),
            std::string::npos)
      << l.status();
  l = MakePsLayout(4, Opts(2, 2), {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--backup-workers 2 leaves no gradient to average: 2 "
                                      "worker(s) (4 ranks - 2 servers)"),
            std::string::npos)
      << l.status();
  EXPECT_FALSE(MakePsLayout(4, Opts(0, 0), {4}).ok());
  l = MakePsLayout(4, Opts(1, 1, PsMode::kAsync), {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--backup-workers applies to --ps-mode sync"),
            std::string::npos)
      << l.status();
  ParameterServerOptions o = Opts(1, 0);
  o.max_staleness = 2;
  l = MakePsLayout(4, o, {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--max-staleness applies to --ps-mode async or hybrid"),
            std::string::npos)
      << l.status();
  o = Opts(1, 0, PsMode::kAsync);
  o.group_size = 2;
  l = MakePsLayout(4, o, {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--group-size 2 needs --ps-mode hybrid"), std::string::npos)
      << l.status();
  o.mode = PsMode::kHybrid;
  o.group_size = 4;
  l = MakePsLayout(4, o, {4});
  ASSERT_FALSE(l.ok());
  EXPECT_NE(l.status().message().find("--group-size 4 is more than the 3 worker(s) (4 ranks - 1 "
                                      "servers)"),
            std::string::npos)
      << l.status();
}

// Hybrid groups: 5 workers in groups of 2 are 3 pushers, the leaders 0, 2 and 4 (the last group
// has one worker).
TEST(PsLayout, HybridGroupsTakeTheRestInTheLast) {
  ParameterServerOptions o = Opts(1, 0, PsMode::kHybrid);
  o.group_size = 2;
  StatusOr<PsLayout> l = MakePsLayout(6, o, {4});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->workers, 5);
  EXPECT_EQ(l->pushers(), 3);
  EXPECT_EQ(l->pusher_rank(2), 4);
  o.mode = PsMode::kAsync;
  o.group_size = 1;
  l = MakePsLayout(6, o, {4});
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->pushers(), 5);
  EXPECT_EQ(l->pusher_rank(3), 3);
}

// A message's sparse section: per sparse variable a row count, the indices, the rows (counts as
// two exact floats). Reading one checks that every count fits, every row is in its table, and
// nothing trails: a malformed message is an error, never a read past its end.
TEST(PsWire, SparseSectionsAreCheckedAsTheyAreRead) {
  using namespace ps_wire;  // NOLINT
  const std::vector<int64_t> width = {2, 0, 3}, rows = {10, 1, 70000000};
  std::vector<float> msg(SectionFloats(width, {2, 0, 1}));
  ASSERT_EQ(msg.size(), 2u + 2 * (2 + 2) + 2 + 1 * (2 + 3));
  float* p = msg.data();
  PutCount(p, 2);
  PutCount(p + 2, 9);
  PutCount(p + 4, 0);
  for (int i = 0; i < 4; ++i) p[6 + i] = 0.5f * i;
  p += 10;
  PutCount(p, 1);
  PutCount(p + 2, 69999999);  // above 2^24: two floats keep it exact
  for (int i = 0; i < 3; ++i) p[4 + i] = 7.0f;
  std::vector<SectionPart> parts;
  const int64_t n = static_cast<int64_t>(msg.size());
  ASSERT_TRUE(ReadSection(msg.data(), n, width, rows, &parts).ok());
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].n, 2);
  EXPECT_EQ(GetCount(parts[0].indices + 2), 0);
  EXPECT_EQ(parts[0].rows[3], 1.5f);
  EXPECT_EQ(parts[1].n, 0);
  EXPECT_EQ(GetCount(parts[2].indices), 69999999);
  EXPECT_EQ(parts[2].rows[2], 7.0f);
  EXPECT_EQ(ReadSection(msg.data(), n - 1, width, rows, &parts).message(),
            "variable 2's 1 rows do not fit the 4 floats left");
  EXPECT_EQ(ReadSection(msg.data(), n, width, {9, 1, 70000000}, &parts).message(),
            "variable 0's row 9 is out of range [0, 9)");
  msg.push_back(0.0f);
  EXPECT_EQ(ReadSection(msg.data(), n + 1, width, rows, &parts).message(),
            "1 floats after the sparse section");
  EXPECT_EQ(ReadSection(msg.data(), 1, width, rows, &parts).message(),
            "the sparse section ends before variable 0's row count");
}

// A push streams: the body of a variable's gradient (the tensor itself) leaves when PushBody is
// called (during the backward pass), before the rest of the push is made; the head comes last.
// Ranks 0 (a worker) and 1 (a server, here raw receives) of a two-rank communicator.
TEST(PsWire, ABodyLeavesBeforeItsHead) {
  using namespace ps_wire;  // NOLINT
  StatusOr<std::unique_ptr<Communicator>> two = comm->Split(comm->rank() < 2 ? 0 : 1, 0);
  ASSERT_TRUE(two.ok()) << two.status();
  if (comm->size() < 2 || comm->rank() >= 2) return;
  Communicator* c = two->get();
  StatusOr<PsLayout> layout = MakePsLayout(2, Opts(1, 0), {6, 3});
  ASSERT_TRUE(layout.ok()) << layout.status();
  const Tensor g0 = Tensor::FromVector<float>(Shape{2, 3}, {1, 2, 3, 4, 5, 6});
  const Tensor g1 = Tensor::FromVector<float>(Shape{3}, {-1, -2, -3});
  Tensor go(DType::kFloat32, Shape{1});
  if (c->rank() == 0) {
    PsWorkerLink link(c, *layout, {Shape{2, 3}, Shape{3}});
    ASSERT_TRUE(link.StartPush().ok());
    ASSERT_TRUE(link.PushBody(0, g0).ok());
    ASSERT_TRUE(c->Recv(go, 1, 1)->Wait().ok());  // the server has body 0: make the rest
    ASSERT_TRUE(link.Push({g0, g1}, {Tensor(), Tensor()}, 2.0, 0.5, false, 7).ok());
    EXPECT_EQ(link.pushed_bytes(), (kHeader + 6 + 3) * 4);
    return;
  }
  Tensor body0(DType::kFloat32, Shape{6}), body1(DType::kFloat32, Shape{3});
  Tensor head(DType::kFloat32, Shape{kHeader});
  std::shared_ptr<Work> first = c->Recv(body0, 0, kBodyTag + 0);
  const bool streamed = Work::WaitAnyFor({first}, 30.0) == 0;
  EXPECT_TRUE(streamed) << "body 0 did not leave before the push was made";
  ASSERT_TRUE(c->Send(go, 0, 1)->Wait().ok());
  ASSERT_EQ(Work::WaitAnyFor({first}, 30.0), 0u) << "body 0 never came";
  ASSERT_TRUE(first->status().ok()) << first->status();
  ASSERT_TRUE(c->Recv(body1, 0, kBodyTag + 1)->Wait().ok());
  ASSERT_TRUE(c->Recv(head, 0, kPushTag)->Wait().ok());
  EXPECT_TRUE(body0.BitEqual(Tensor::FromVector<float>(Shape{6}, {1, 2, 3, 4, 5, 6})));
  EXPECT_TRUE(body1.BitEqual(Tensor::FromVector<float>(Shape{3}, {-1, -2, -3})));
  const float* h = head.data<float>();
  EXPECT_EQ(h[kRawBodies], 1.0f);  // the gradients as computed: the server weighs them
  EXPECT_EQ(h[kExamples], 2.0f);
  EXPECT_EQ(h[kLoss], 0.5f);
  EXPECT_EQ(GetCount(h + kStep), 7);
}

// Replies by wants: a push may say which rows of a table its worker's next batch reads; the
// reply then carries those of them that changed since the worker last had every row, not every
// row that changed; a push without wants gets every changed row. Ranks 0 and 1 are workers, 2
// a server over a table of 6 rows of 2 that it updates by hand (row -= mean row).
TEST(PsWire, AReplyCarriesTheRowsTheNextBatchReads) {
  using namespace ps_wire;  // NOLINT
  StatusOr<std::unique_ptr<Communicator>> three = comm->Split(comm->rank() < 3 ? 0 : 1, 0);
  ASSERT_TRUE(three.ok()) << three.status();
  if (comm->size() < 3 || comm->rank() >= 3) return;
  Communicator* c = three->get();
  StatusOr<PsLayout> layout = MakePsLayout(3, Opts(1, 0), {12}, {2});
  ASSERT_TRUE(layout.ok()) << layout.status();
  const Shape shape{6, 2};
  using V = std::vector<int64_t>;
  using Rows = std::vector<V>;
  if (c->rank() < 2) {
    PsWorkerLink link(c, *layout, {shape});
    std::vector<Tensor> values(1);
    std::vector<PsRows> rows;
    PsReply reply;
    auto indices = [&] {  // the rows the last reply carried
      std::vector<int64_t> got;
      for (const PsRows& r : rows) got.insert(got.end(), r.indices.begin(), r.indices.end());
      return got;
    };
    auto push = [&](int64_t row, const Rows* wants) {
      return link.Push({Tensor::FromVector<float>(Shape{1, 2}, {1, 1})},
                       {Tensor::FromVector<int64_t>(Shape{1}, {row})}, 1.0, 0.0, false, 0, wants);
    };
    ASSERT_TRUE(link.Receive(&values, &rows, &reply).ok());
    EXPECT_EQ(indices(), (V{0, 1, 2, 3, 4, 5}));  // the start: every row
    const Rows wants1 = c->rank() == 0 ? Rows{{1, 3}} : Rows{{0}};
    ASSERT_TRUE(push(c->rank() == 0 ? 1 : 4, &wants1).ok());  // rows 1 and 4 change
    ASSERT_TRUE(link.Receive(&values, &rows, &reply).ok());
    EXPECT_EQ(indices(), (c->rank() == 0 ? V{1} : V{}));
    const Rows wants2 = {{4}};
    ASSERT_TRUE(push(c->rank() == 0 ? 3 : 0, c->rank() == 0 ? nullptr : &wants2).ok());
    ASSERT_TRUE(link.Receive(&values, &rows, &reply).ok());  // rows 0 and 3 changed too
    EXPECT_EQ(indices(), (c->rank() == 0 ? V{0, 1, 3, 4} : V{4}));
    if (c->rank() == 0) {
      ASSERT_EQ(rows.size(), 1u);
      // Row 4: 0.4 - (1 + 0) / 2 (step 1: worker 1's row 4 over both workers' examples).
      EXPECT_FLOAT_EQ(rows[0].values.data<float>()[6], 0.4f - 0.5f);
    }
    ASSERT_TRUE(push(2, &wants1).ok());  // the last step's reply holds every changed row
    ASSERT_TRUE(link.Receive(&values, &rows, &reply).ok());
    EXPECT_TRUE(reply.done);
    EXPECT_EQ(indices(), (c->rank() == 0 ? V{2} : V{0, 1, 2, 3, 4}));
    return;
  }
  Tensor table(DType::kFloat32, shape);  // float32 [6, 2]: row r is (r / 10, r / 10)
  for (int i = 0; i < 12; ++i) table.data<float>()[i] = static_cast<float>(i / 2) / 10;
  PsShardReader read;
  read.whole = [](int, Tensor) { return Status::OK(); };
  read.rows = [&](int, const std::vector<int64_t>& rows) -> StatusOr<Tensor> {
    Tensor out(DType::kFloat32, Shape{static_cast<int64_t>(rows.size()), 2});
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int k = 0; k < 2; ++k)
        out.data<float>()[i * 2 + k] = table.data<float>()[rows[i] * 2 + k];
    }
    return out;
  };
  PsServerLink link(c, *layout, 0, {shape}, read);
  ASSERT_TRUE(link.Start(0, false).ok());
  for (int step = 1; step <= 3; ++step) {
    std::vector<Tensor> mean;
    double loss = 0, examples = 0;
    bool votes = false, finite = true;
    ASSERT_TRUE(link.Gather(&mean, &loss, &examples, &votes, &finite).ok());
    const Tensor& at = link.indices(0);
    for (int64_t i = 0; i < at.num_elements(); ++i) {
      for (int k = 0; k < 2; ++k) {
        table.data<float>()[at.data<int64_t>()[i] * 2 + k] -= mean[0].data<float>()[i * 2 + k];
      }
    }
    PsReply reply;
    reply.done = step == 3;
    ASSERT_TRUE(link.Publish(reply).ok());
  }
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

void ExpectEquivalent(TrainConfig c, double tolerance, size_t trainable_variables = 6) {
  StatusOr<TrainResult> dist = TrainWith(c, comm);
  if (NeedsMoreRanks(dist)) return;
  ASSERT_TRUE(dist.ok()) << dist.status();
  const int workers = comm->size() - c.ps.servers;
  TrainConfig one = c;
  one.strategy = StrategyKind::kNone;
  one.ps = ParameterServerOptions();
  one.stragglers = StragglerOptions();
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
    EXPECT_EQ(trainable, trainable_variables);  // the MLP's: three kernels and biases
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
void ExpectResumeFromShardsBitIdentical(TrainConfig c, const std::string& name) {
  const std::string dir = StrCat(::testing::TempDir(), "/ps_resume_", name, "_", comm->size());
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());  // no checkpoint of an earlier run is left
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

TEST(ParameterServer, ResumeFromShardsIsBitIdentical) {
  if (comm->size() < 2) return;  // NeedsMoreRanks is covered above
  TrainConfig c = Base();
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.002;
  ExpectResumeFromShardsBitIdentical(c, "mlp");
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

// With one server (which holds every variable) and SGD (no slots): whether every rank, the
// server included, holds the same float32 variables to the bit.
bool EveryRankHoldsTheServersValues(const TrainResult& r) {
  std::vector<std::pair<std::string, Tensor>> values;
  for (const auto& v : r.variables) {
    if (v.second.dtype() == DType::kFloat32) values.push_back(v);
  }
  std::sort(values.begin(), values.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return test::SameOnRanks(test::HashVariables(values), comm->size());
}

// A straggler's push is dropped and answered at once with the current values (the rows that
// changed since its last reply, for a table): every worker ends with the server's values, dense
// (whose replies leave from the server's variables) and by rows.
TEST(ParameterServer, BackupWorkerLetsTheStepGoOnWithoutAStraggler) {
  if (comm->size() < 3) return;  // needs two workers
  const std::string path = ::testing::TempDir() + "/ps_backup_bags.h5";
  ASSERT_TRUE(test::BagsFile(comm, path).ok());
  TrainConfig bags = Base();
  test::UseBags(&bags, path);
  for (TrainConfig c : {Base(), bags}) {
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
    EXPECT_TRUE(EveryRankHoldsTheServersValues(*r)) << c.model;
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

// --straggler-ranks: the listed ranks sleep the delay, or with jitter a reproducible time in
// [0, 2 x delay) that changes from step to step; the others never.
TEST(Stragglers, DelayIsFixedOrReproduciblyJittered) {
  StragglerOptions s;
  s.ranks = {1, 3};
  s.delay_ms = 40;
  EXPECT_EQ(s.DelayMs(0, 5, 42), 0.0);
  EXPECT_EQ(s.DelayMs(1, 5, 42), 40.0);
  EXPECT_EQ(s.DelayMs(3, 6, 42), 40.0);
  s.jitter = true;
  double lo = 80, hi = 0;
  for (int64_t step = 1; step <= 200; ++step) {
    const double d = s.DelayMs(1, step, 42);
    EXPECT_EQ(d, s.DelayMs(1, step, 42));
    EXPECT_GE(d, 0.0);
    EXPECT_LT(d, 80.0);
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_LT(lo, 10.0);  // 200 draws spread over the range
  EXPECT_GT(hi, 70.0);
  EXPECT_NE(s.DelayMs(1, 7, 42), s.DelayMs(3, 7, 42));
  EXPECT_NE(s.DelayMs(1, 7, 42), s.DelayMs(1, 7, 43));
}

// With a backup worker and a worker that sleeps 3 s before every step, every update averages
// the other workers' pushes: the straggler's are never waited for (none is averaged) and the
// run ends (the straggler's last push is answered with done). The others' 8 steps take well
// under a second even under a sanitizer (3 s would allow 375 ms a step).
TEST(ParameterServer, BackupWorkerNeverWaitsForAnInjectedStraggler) {
  if (comm->size() < 3) return;  // needs two workers
  TrainConfig c = Base();
  c.ps.servers = 1;
  c.ps.backup_workers = 1;
  c.max_steps = 8;
  c.stragglers.ranks = {1};
  c.stragglers.delay_ms = 3000;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 8);
  if (r->ps_server) {
    const int workers = comm->size() - 1;
    ASSERT_EQ(r->applied_per_pusher.size(), static_cast<size_t>(workers));
    for (int w = 0; w < workers; ++w) {
      EXPECT_EQ(r->applied_per_pusher[w], w == 1 ? 0 : 8) << "worker " << w;
    }
  }
}

// bag_small.ini on the bags of tests/bags.h: its table (50 x 8) has a sparse gradient.
TrainConfig BagJob(const std::string& path) {
  TrainConfig c = Base();
  test::UseBags(&c, path);
  return c;
}

// Only the rows a step touches travel, and the workers' copies of the table stay the servers'
// to the bit: W workers train as one process with batch W*B (SGD, the rows' or the whole
// table; lazy Adam by rows), uneven last batches included (100 examples, batch 8 * W).
TEST(ParameterServer, SparseTableTrainsAsOneProcessByRows) {
  const std::string path = ::testing::TempDir() + "/ps_bags.h5";
  ASSERT_TRUE(test::BagsFile(comm, path).ok());
  TrainConfig c = BagJob(path);
  for (SparseSync how : {SparseSync::kAuto, SparseSync::kDense}) {
    c.ps.sparse = how;
    ExpectEquivalent(c, 1e-6, 5);
  }
  c.ps.sparse = SparseSync::kAuto;
  c.optimizer.kind = OptimizerKind::kAdam;  // lazy: the rows' moments only, as one process
  c.optimizer.lr.base = 0.01;
  ExpectEquivalent(c, 1e-5, 5);
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log, comm);
  if (NeedsMoreRanks(r)) return;
  ASSERT_TRUE(r.ok()) << r.status();
  if (!r->ps_server) {
    EXPECT_GE(r->test_accuracy, 0.75);  // 4 classes: 0.25 by chance
  }
  if (comm->rank() == 0) {
    EXPECT_NE(log.str().find("only the rows a step touches travel for 'embed/embeddings'"),
              std::string::npos)
        << log.str();
  }
  // A resumed run's workers take the whole table from the servers' first reply.
  if (comm->size() >= 2) ExpectResumeFromShardsBitIdentical(c, "bags");
  // Asynchronous: with one worker, synchronous training to the bit; with several, their copies
  // of the table are kept by the rows that changed since each one's last reply, and the run
  // trains (the order of the pushes is the machine's: twice chance, not the synchronous 0.75).
  TrainConfig a = c;
  a.ps.mode = PsMode::kAsync;
  StatusOr<TrainResult> async = TrainWith(a, comm);
  ASSERT_TRUE(async.ok()) << async.status();
  if (comm->size() == 2) {
    ASSERT_EQ(async->variables.size(), r->variables.size());
    for (size_t v = 0; v < r->variables.size(); ++v) {
      EXPECT_TRUE(async->variables[v].second.BitEqual(r->variables[v].second))
          << r->variables[v].first;
    }
  } else if (!async->ps_server) {
    std::printf("rank %d: asynchronous test accuracy %.4f\n", comm->rank(), async->test_accuracy);
    EXPECT_GE(async->test_accuracy, 0.5);
  }
}

// Four ranks. A table split by rows over two servers (with lazy Adam's slots) resumes on one
// server, which takes the shards' parts merged, and then on two again, each taking its rows of
// the merged table: the workers end within rounding of a run that never stopped (3 workers of
// batch 8 for the middle part, 2 of 12 otherwise). Each server's file holds its rows of the
// table and of the slots, which say where they start.
TEST(ParameterServer, SplitTableResumesOnAnotherServerCount) {
  if (comm->size() != 4) return;  // two servers and two workers, then one and three
  const std::string path = ::testing::TempDir() + "/ps_split_bags.h5";
  ASSERT_TRUE(test::BagsFile(comm, path).ok());
  const std::string dir = ::testing::TempDir() + "/ps_split_resume";
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = BagJob(path);
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.01;
  c.ps.servers = 2;
  c.batch_size = 12;
  c.eval = false;
  c.checkpoint.dir = dir + "/checkpoints";
  c.checkpoint.every_steps = 3;
  TrainConfig whole = c;
  whole.checkpoint.dir = dir + "/whole_checkpoints";
  whole.max_steps = 9;
  StatusOr<TrainResult> w = TrainWith(whole, comm);
  ASSERT_TRUE(w.ok()) << w.status();
  TrainConfig part = c;
  part.max_steps = 3;
  StatusOr<TrainResult> p = TrainWith(part, comm);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  if (p->ps_server) {
    const int k = comm->rank() - 2;
    ASSERT_EQ(p->row_slices.count("embed/embeddings"), 1u);
    EXPECT_EQ(p->row_slices.at("embed/embeddings").first, 25 * k);
    StatusOr<Checkpoint> ck = ReadCheckpoint(p->last_checkpoint);
    ASSERT_TRUE(ck.ok()) << ck.status();
    EXPECT_EQ(ck->row_slices.size(), 3u);  // the table and Adam's two slots
    for (const std::string name : {"embed/embeddings", "embed/embeddings/adam_m"}) {
      ASSERT_EQ(ck->row_slices.count(name), 1u) << name;
      EXPECT_EQ(ck->row_slices.at(name).first, 25 * k) << name;
      EXPECT_EQ(ck->row_slices.at(name).rows, 50) << name;
    }
    std::map<std::string, Tensor> stored(ck->variables.begin(), ck->variables.end());
    ASSERT_EQ(stored.count("embed/embeddings"), 1u);
    EXPECT_EQ(stored.at("embed/embeddings").shape(), (Shape{25, 8}));
  }
  TrainConfig middle = c;
  middle.ps.servers = 1;
  middle.batch_size = 8;
  middle.max_steps = 6;
  middle.checkpoint.resume = "latest";
  StatusOr<TrainResult> m = TrainWith(middle, comm);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->resumed_from, 3);
  if (m->ps_server) {
    EXPECT_TRUE(m->row_slices.empty());
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig rest = c;
  rest.max_steps = 9;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 6);
  EXPECT_EQ(r->steps, 9);
  EXPECT_LE(WorstRelativeDiff(*r, *w), 1e-5);  // a worker's table, or a server's rows of it
  EXPECT_TRUE(SameBitsOnEveryWorker(*r));
}

// The bytes on the wire, counted: every bag holds words 1-4, so each push carries those four
// rows of the table (not its 50) and each reply the four the update changed; the first reply
// all 50. Each message: the header, the shard's whole variables, and per sparse table a row
// count, then (index, row) per row, all float32 (an index or count in two floats). With two
// servers the table is split by rows (0-24, 25-49): words 1-4 travel to and from server 0
// only, server 1's messages carry its count of no rows, and the first replies 25 rows each.
TEST(ParameterServer, APushAndAReplyMoveOnlyTheTouchedRows) {
  if (comm->size() < 2) return;
  const std::string path = ::testing::TempDir() + "/ps_same_bags.h5";
  ASSERT_TRUE(test::BagsFile(comm, path, /*same_words=*/true).ok());
  TrainConfig c = BagJob(path);
  c.epochs = 1;
  c.eval = false;
  const int servers = c.ps.servers, workers = comm->size() - servers;
  const int64_t steps = (100 + 8 * workers - 1) / (8 * workers);
  // Variables: the table (50 x 8, rows of 8), hidden 8 x 16 and 16, logits 16 x 4 and 4.
  const std::vector<int64_t> elements = {400, 128, 16, 64, 4};
  StatusOr<PsLayout> by_rows = MakePsLayout(comm->size(), c.ps, elements, {8, 0, 0, 0, 0});
  StatusOr<PsLayout> whole = MakePsLayout(comm->size(), c.ps, elements);
  ASSERT_TRUE(by_rows.ok()) << by_rows.status();
  ASSERT_TRUE(whole.ok()) << whole.status();
  if (servers == 2) {
    EXPECT_EQ(by_rows->owner[0], -1);
    EXPECT_EQ(by_rows->split[0], (std::vector<int64_t>{0, 25, 50}));
  }
  // A message to or from every server: rows [first, last) of the table, of those each holds.
  auto floats = [&](int64_t first, int64_t last, bool sparse) {
    const PsLayout& l = sparse ? *by_rows : *whole;
    int64_t f = 0;
    for (int k = 0; k < servers; ++k) {
      f += kPsHeaderFloats + l.shard_dense_elements[k];  // the whole table too, unless sparse
      if (sparse && l.Holds(k, 0)) {
        const int64_t begin = l.FirstRow(k, 0), end = begin + (l.Split(0) ? 25 : 50);
        f += 2 + std::max<int64_t>(0, std::min(last, end) - std::max(first, begin)) * (2 + 8);
      }
    }
    return f;
  };
  for (SparseSync how : {SparseSync::kAuto, SparseSync::kDense}) {
    c.ps.sparse = how;
    const bool sparse = how != SparseSync::kDense;
    StatusOr<TrainResult> r = TrainWith(c, comm);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->steps, steps);
    if (r->ps_server) continue;
    // Every push but the last also says the rows the next batch reads (1-4): per server that
    // holds a part of the table, a count and the indices in its range.
    int64_t wants = 0;
    for (int k = 0; sparse && k < servers; ++k) {
      if (!by_rows->Holds(k, 0)) continue;
      const int64_t begin = by_rows->FirstRow(k, 0), end = begin + (by_rows->Split(0) ? 25 : 50);
      wants +=
          2 + 2 * std::max<int64_t>(0, std::min<int64_t>(5, end) - std::max<int64_t>(1, begin));
    }
    EXPECT_EQ(r->ps_pushed_bytes, 4 * (steps * floats(1, 5, sparse) + (steps - 1) * wants))
        << SparseSyncName(how);
    EXPECT_EQ(r->ps_received_bytes, 4 * (floats(0, 50, sparse) + steps * floats(1, 5, sparse)))
        << SparseSyncName(how);
  }
}

TrainConfig Async(PsMode mode = PsMode::kAsync) {
  TrainConfig c = Base();
  c.ps.mode = mode;
  return c;
}

int64_t Sum(const std::vector<int64_t>& v) {
  int64_t s = 0;
  for (int64_t x : v) s += x;
  return s;
}

// One worker: each push is applied to the values it was computed on, as a synchronous step
// does, so asynchronous training is synchronous training to the bit, on the worker and the
// servers (Adam's slots and step included; on 3 ranks over two servers), with an uneven last
// batch.
TEST(AsyncParameterServer, OneWorkerTrainsAsSynchronousToTheBit) {
  if (comm->size() < 2 || comm->size() > 3) return;
  TrainConfig c = Base();
  c.ps.servers = comm->size() - 1;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.002;
  c.synthetic_train = 100;
  c.epochs = 2;
  StatusOr<TrainResult> sync = TrainWith(c, comm);
  ASSERT_TRUE(sync.ok()) << sync.status();
  c.ps.mode = PsMode::kAsync;
  StatusOr<TrainResult> async = TrainWith(c, comm);
  ASSERT_TRUE(async.ok()) << async.status();
  EXPECT_EQ(async->steps, 14);
  EXPECT_EQ(async->steps, sync->steps);
  ASSERT_EQ(async->variables.size(), sync->variables.size());
  for (size_t v = 0; v < async->variables.size(); ++v) {
    EXPECT_TRUE(async->variables[v].second.BitEqual(sync->variables[v].second))
        << async->variables[v].first;
  }
  EXPECT_EQ(async->final_loss, sync->final_loss);
  EXPECT_EQ(async->test_accuracy, sync->test_accuracy);
  EXPECT_EQ(async->ps_updates, 14);
  ASSERT_EQ(async->staleness.size(), static_cast<size_t>(kStalenessBuckets));
  EXPECT_EQ(async->staleness[0], 14);
  if (async->ps_server) {
    EXPECT_EQ(async->applied_per_pusher, std::vector<int64_t>{14});
  }
}

// Several workers: every worker's every push is applied (no bound on staleness), the
// histogram counts each once, and some push was stale (the second push of the run was computed
// on the first values, which the first push had already changed).
TEST(AsyncParameterServer, WorkersPushAtTheirOwnPaceAndEveryPushIsApplied) {
  if (comm->size() < 3) return;
  TrainConfig c = Async();
  c.max_steps = 15;
  c.stragglers.ranks = {1};
  c.stragglers.delay_ms = 10;
  c.stragglers.jitter = true;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 15);
  EXPECT_EQ(r->stale_dropped, 0);
  const int workers = comm->size() - c.ps.servers;
  if (r->ps_server) {
    EXPECT_EQ(r->applied_per_pusher, std::vector<int64_t>(workers, 15));
    EXPECT_EQ(r->ps_updates, 15 * workers);
    EXPECT_EQ(Sum(r->staleness), r->ps_updates);
    EXPECT_LT(r->staleness[0], r->ps_updates);
  } else {
    EXPECT_TRUE(std::isfinite(r->final_loss));
    EXPECT_GT(r->test_accuracy, 0.5);
  }
}

// --max-staleness 0: only pushes computed on the server's current values are applied; the rest
// are counted as dropped (each server decides for its shard), and every push is one or the other.
TEST(AsyncParameterServer, MaxStalenessDropsStalePushesAndCountsThem) {
  if (comm->size() < 3) return;
  TrainConfig c = Async();
  c.ps.max_staleness = 0;
  c.max_steps = 12;
  c.stragglers.ranks = {1};
  c.stragglers.delay_ms = 20;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 12);
  if (r->ps_server) {
    const int workers = comm->size() - c.ps.servers;
    EXPECT_GE(r->stale_dropped, 1);
    EXPECT_EQ(r->staleness[0], r->ps_updates);  // nothing staler was applied
    EXPECT_EQ(Sum(r->applied_per_pusher), r->ps_updates);
    EXPECT_EQ(r->ps_updates + r->stale_dropped, 12 * workers);
  }
}

// SIGTERM on worker 0 before its step 5: its push carries the stop, the servers answer every
// later push with stop and done, the workers that heard it from one server leave the others,
// and every rank ends preempted after the servers checkpoint the data step all workers passed;
// a resume from it finishes the run.
TEST(AsyncParameterServer, PreemptionStopsEveryRankAndTheRunResumes) {
  if (comm->size() < 3) return;
  const std::string dir = ::testing::TempDir() + "/async_preempt_" + std::to_string(comm->size());
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = Async();
  c.checkpoint.dir = dir;
  c.epochs = 2;
  test::InjectedFaults faults;
  faults.Add({test::InjectedFaults::Kind::kSigterm, 0, 5});
  StatusOr<TrainResult> r = TrainWith(c, comm, &faults);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->preempted);
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  std::ifstream latest(dir + "/latest");
  std::string name;
  latest >> name;
  EXPECT_EQ(name.rfind("ckpt-", 0), 0u) << name;
  TrainConfig rest = c;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> b = TrainWith(rest, comm);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(b->preempted);
  EXPECT_GE(b->resumed_from, 0);
  EXPECT_LT(b->resumed_from, 5 + 1);  // worker 0 stopped after its step 5
  EXPECT_TRUE(test::SameOnRanks(static_cast<uint64_t>(b->resumed_from), comm->size()));
  const int workers = comm->size() - c.ps.servers;
  EXPECT_EQ(b->steps, 2 * (640 / (16 * workers) + (640 % (16 * workers) ? 1 : 0)));
  if (!b->ps_server) {
    EXPECT_GT(b->test_accuracy, 0.5);
  }
}

TEST(AsyncParameterServer, NanStopsEveryRankWithTheSameMessage) {
  if (comm->size() < 2) return;
  TrainConfig c = Async();
  c.optimizer.lr.base = 1e30;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_FALSE(r.ok());
  test::ExpectAbortedTogether(r.status(), "NaN or Inf");
}

// Hybrid with every worker in one group: one push per step of the group's summed gradient, so
// it trains as one process with the group's batch (the allreduce's sum order: to 1e-6).
TEST(HybridParameterServer, OneGroupTrainsAsOneProcessWithTheGroupsBatch) {
  if (comm->size() < 2) return;
  TrainConfig c = Async(PsMode::kHybrid);
  c.ps.group_size = comm->size() - c.ps.servers;
  c.max_steps = 12;
  ExpectEquivalent(c, 1e-6);
}

// Hybrid with two groups on 4 ranks (workers {0, 1} and {2}, one server): it trains, and a run
// stopped at step 6 with a checkpoint resumes there and finishes.
TEST(HybridParameterServer, TwoGroupsTrainAndResume) {
  if (comm->size() != 4) return;
  const std::string dir = ::testing::TempDir() + "/hybrid_resume";
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = Async(PsMode::kHybrid);
  c.ps.servers = 1;
  c.ps.group_size = 2;
  c.checkpoint.dir = dir;
  c.optimizer.kind = OptimizerKind::kMomentum;  // its slots resume too
  c.optimizer.lr.base = 0.01;
  TrainConfig part = c;
  part.max_steps = 6;
  part.checkpoint.every_steps = 3;
  StatusOr<TrainResult> p = TrainWith(part, comm);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->steps, 6);
  if (p->ps_server) {
    EXPECT_EQ(p->applied_per_pusher, (std::vector<int64_t>{6, 6}));
    EXPECT_EQ(p->last_checkpoint, dir + "/ckpt-00000006.ps0-of-1.h5");
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig rest = c;
  rest.max_steps = 12;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 6);
  EXPECT_EQ(r->steps, 12);
  if (r->ps_server) {
    EXPECT_EQ(r->applied_per_pusher, (std::vector<int64_t>{6, 6}));
  } else {
    EXPECT_TRUE(std::isfinite(r->final_loss));
    EXPECT_GT(r->test_accuracy, 0.7);  // 0.89-1.0 measured
  }
  // The two members of a group hold the same values (the leader's broadcast replies).
  const uint64_t h = r->ps_server ? 0 : test::HashVariables(r->variables);
  EXPECT_TRUE(test::SameOnRanks(comm->rank() < 2 ? h : 0, 2));
}

}  // namespace
}  // namespace mpiflow
