// The gradient synchroniser without MPI: a fake Communicator (it "sums" over N identical ranks
// by multiplying by N, gathers N copies, and records what it was asked) checks the bucket
// layout, the packed values and their scale, zero-copy views, the NaN error, the step
// agreement, that the executor starts a bucket's allreduce before the backward pass is over,
// and which sparse gradients go by allgather and what they gather. Also the timeline.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mpiflow/communicator.h"
#include "mpiflow/distributed.h"
#include "mpiflow/gradients.h"
#include "mpiflow/models.h"
#include "mpiflow/ops.h"
#include "mpiflow/session.h"
#include "mpiflow/timeline.h"

namespace mpiflow {
namespace {

// Behaves like `ranks` ranks that all hold this rank's values: Allreduce (sum) multiplies by
// the rank count. Completes every call at once.
class FakeCommunicator : public Communicator {
 public:
  explicit FakeCommunicator(int ranks) : ranks_(ranks) {}
  int rank() const override { return 0; }
  int size() const override { return ranks_; }
  std::shared_ptr<Work> Allreduce(Tensor t, AllreduceOptions o) override {
    calls.push_back(o.name);
    bytes.push_back(static_cast<int64_t>(t.bytes()));
    float* p = t.data<float>();
    for (int64_t i = 0; i < t.num_elements(); ++i) p[i] *= static_cast<float>(ranks_);
    return Finished();
  }
  std::shared_ptr<Work> ReduceScatter(Tensor, Tensor, ReduceOp) override { return Finished(); }
  // Every "rank" sends this rank's block.
  std::shared_ptr<Work> Allgather(Tensor in, Tensor out) override {
    calls.push_back(StrCat("allgather ", in.bytes(), " B"));
    for (int r = 0; r < ranks_; ++r) {
      std::memcpy(static_cast<char*>(out.raw()) + r * in.bytes(), in.raw(), in.bytes());
    }
    return Finished();
  }
  std::shared_ptr<Work> Broadcast(Tensor, int) override { return Finished(); }
  std::shared_ptr<Work> Barrier() override { return Finished(); }
  std::shared_ptr<Work> Send(Tensor, int, int) override { return Finished(); }
  std::shared_ptr<Work> Recv(Tensor, int, int) override { return Finished(); }
  StatusOr<std::unique_ptr<Communicator>> Split(int, int) override {
    return Unimplemented("FakeCommunicator::Split");
  }
  [[noreturn]] void Abort(int code, const std::string&) override { std::abort(); }
  Timeline* timeline() override { return nullptr; }
  void SetReportNote(const std::string&) override {}
  const CollectiveOptions& options() const override { return options_; }

  std::vector<std::string> calls;
  std::vector<int64_t> bytes;

 private:
  static std::shared_ptr<Work> Finished() {
    auto w = std::make_shared<Work>();
    w->Finish(Status::OK());
    return w;
  }
  int ranks_;
  CollectiveOptions options_;
};

struct Built {
  Scope root = Scope::NewRootScope();
  Model model;
  std::vector<Output> vars, grads;
  GradientSync sync;
  Node* init = nullptr;
};

std::unique_ptr<Built> Build(int64_t bucket_bytes, const std::string& model = "mlp") {
  auto b = std::make_unique<Built>();
  StatusOr<Model> m = BuildModel(b->root, model, ModelInput{Shape{28, 28, 1}, 10}, 7);
  EXPECT_TRUE(m.ok());
  b->model = *m;
  for (const VariableInfo& v : b->root.graph()->variables()) {
    if (v.trainable) b->vars.push_back(v.variable);  // not batch_norm's moving statistics
  }
  EXPECT_TRUE(AddGradients(b->root, {b->model.loss}, b->vars, {}, &b->grads).ok());
  GradientSyncOptions o;
  o.bucket_bytes = bucket_bytes;
  StatusOr<GradientSync> sync = AddGradientSync(b->root, b->model.loss, b->grads, b->vars, o);
  EXPECT_TRUE(sync.ok()) << sync.status();
  b->sync = *sync;
  b->init = ops::InitOp(b->root);
  return b;
}

std::vector<Session::Feed> Feeds(const Built& b, float scale, float image_value = 0.5f) {
  Tensor images(DType::kFloat32, Shape{8, 28, 28, 1});
  for (int64_t i = 0; i < images.num_elements(); ++i) {
    images.data<float>()[i] = image_value * static_cast<float>(i % 7) / 7.0f;
  }
  Tensor labels = Tensor::FromVector<int32_t>(Shape{8}, {0, 1, 2, 3, 4, 5, 6, 7});
  return {{b.model.features, images},
          {b.model.labels, labels},
          {b.sync.scale, Tensor::Scalar<float>(scale)},
          {b.sync.examples, Tensor::Scalar<float>(8.0f)},
          {b.sync.stop, Tensor::Scalar<float>(1.0f)},
          {b.sync.checkpoint, Tensor::Scalar<float>(0.0f)}};
}

TEST(GradientSync, BucketsFollowTheGraphAndCloseAtTheSize) {
  // MLP gradients in creation order: dense_3 (bias 40 B, kernel 10 KiB), dense_2 (bias 1 KiB,
  // kernel 256 KiB), dense_1 (bias 1 KiB, kernel 784 KiB). 100 KiB buckets: the 256 KiB and
  // the 784 KiB kernels each close one, and the step agreement rides in the last.
  std::unique_ptr<Built> b = Build(100 << 10);
  std::vector<std::vector<std::string>> names;
  for (const auto& bucket : b->sync.buckets) {
    names.emplace_back();
    for (int i : bucket) names.back().push_back(b->vars[i].node->name());
  }
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], (std::vector<std::string>{"dense_3/bias", "dense_3/kernel", "dense_2/bias",
                                                "dense_2/kernel"}));
  EXPECT_EQ(names[1], (std::vector<std::string>{"dense_1/bias", "dense_1/kernel"}));
}

TEST(GradientSync, AveragedGradientsAreViewsOfTheScaledSum) {
  std::unique_ptr<Built> b = Build(1 << 20);
  auto fake = std::make_unique<FakeCommunicator>(4);
  SessionOptions so;
  so.communicator = fake.get();
  Session synced(b->root.graph(), so), plain(b->root.graph());
  ASSERT_TRUE(synced.RunTargets({b->init}).ok());
  ASSERT_TRUE(plain.RunTargets({b->init}).ok());
  std::vector<Tensor> got, want;
  std::vector<Output> fetch = b->sync.gradients;
  fetch.push_back(b->sync.agreement);
  ASSERT_TRUE(synced.Run(Feeds(*b, 0.25f), fetch, {}, &got).ok());
  std::vector<Session::Feed> feeds = Feeds(*b, 0.25f);
  feeds.resize(2);
  ASSERT_TRUE(plain.Run(feeds, b->grads, {}, &want).ok());
  // 4 ranks x scale 1/4 x the local gradient: the local gradient, to rounding.
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].shape(), want[i].shape());
    for (int64_t k = 0; k < want[i].num_elements(); ++k) {
      ASSERT_NEAR(got[i].data<float>()[k], want[i].data<float>()[k],
                  1e-6f * (1 + std::fabs(want[i].data<float>()[k])))
          << b->vars[i].node->name() << "[" << k << "]";
    }
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got[i].raw()) % 64, 0u);  // aligned views
  }
  // The gradients share one buffer (views of the bucket), in bucket order.
  EXPECT_EQ(got[0].buffer(), got[5].buffer());
  // The agreement is unscaled: loss * 8 examples, 8 examples, one stop vote, no checkpoint
  // vote, times 4 ranks.
  std::vector<Tensor> loss;
  ASSERT_TRUE(plain.Run(feeds, {b->model.loss}, {}, &loss).ok());
  const float* a = got.back().data<float>();
  EXPECT_NEAR(a[0], 4 * 8 * *loss[0].data<float>(), 1e-4);
  EXPECT_EQ(a[1], 32.0f);
  EXPECT_EQ(a[2], 4.0f);
  EXPECT_EQ(a[3], 0.0f);
  // 1.05 MB of gradients cross 1 MiB only with the last one: one bucket, one allreduce.
  EXPECT_EQ(fake->calls, (std::vector<std::string>{"bucket 0/1 (run 1)"}));
}

// The ops of one step's run on 2 (fake) ranks, in the order they ran.
std::vector<std::string> OpsInRunOrder(const Built& b) {
  FakeCommunicator fake(2);
  SessionOptions so;
  so.communicator = &fake;
  Session session(b.root.graph(), so);
  EXPECT_TRUE(session.RunTargets({b.init}).ok());
  RunStats stats;
  stats.collect_node_times = true;
  std::vector<Tensor> out;
  EXPECT_TRUE(session.Run(Feeds(b, 0.5f), b.sync.gradients, {}, &out, &stats).ok());
  std::vector<std::string> ops;
  for (const auto& t : stats.node_times) ops.push_back(t.node->op());
  return ops;
}

TEST(GradientSync, TheFirstBucketStartsBeforeTheBackwardPassEnds) {
  const std::vector<std::string> ops = OpsInRunOrder(*Build(100 << 10));
  int first_start = -1, last_matmul = -1, first_wait = -1;
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::string& op = ops[i];
    if (op == "AllreduceStart" && first_start < 0) first_start = static_cast<int>(i);
    if (op == "AllreduceWait" && first_wait < 0) first_wait = static_cast<int>(i);
    if (op == "MatMul") last_matmul = static_cast<int>(i);
  }
  EXPECT_GE(first_start, 0);
  EXPECT_LT(first_start, last_matmul);  // bucket 0 is on the wire while dense_1's gradient runs
  EXPECT_GT(first_wait, last_matmul);   // and nobody waits until the compute is done
}

// batch_norm sync = true sums statistics over the ranks in the forward pass and their gradients
// in the backward pass: every one of those collectives is done before any bucket starts, so
// all ranks issue them in one order.
TEST(GradientSync, InStepCollectivesFinishBeforeTheFirstBucket) {
  std::unique_ptr<Built> b = Build(4 << 10, MPIFLOW_SOURCE_DIR "/tests/data/models/sync_bn.ini");
  const std::vector<std::string> ops = OpsInRunOrder(*b);
  int sums = 0, first_start = -1, last_sum = -1;
  for (size_t i = 0; i < ops.size(); ++i) {
    const std::string& op = ops[i];
    if (op == "AllreduceStart" && first_start < 0) first_start = static_cast<int>(i);
    if (op == "CrossReplicaSum") last_sum = static_cast<int>(i), ++sums;
  }
  EXPECT_EQ(sums, 4);  // two layers, forward and backward
  EXPECT_GE(first_start, 0);
  EXPECT_LT(last_sum, first_start);
  EXPECT_GT(b->sync.buckets.size(), 1u);
}

TEST(GradientSync, NonFiniteGradientNamesTheVariable) {
  std::unique_ptr<Built> b = Build(1 << 20);
  FakeCommunicator fake(2);
  SessionOptions so;
  so.communicator = &fake;
  Session session(b->root.graph(), so);
  ASSERT_TRUE(session.RunTargets({b->init}).ok());
  std::vector<Tensor> out;
  const Status s = session.Run(Feeds(*b, 0.5f, NAN), b->sync.gradients, {}, &out);
  EXPECT_EQ(s.code(), Code::kAborted);
  EXPECT_NE(s.message().find("the averaged gradient of 'dense_"), std::string::npos) << s;
  EXPECT_NE(s.message().find("' holds NaN or Inf"), std::string::npos) << s;
}

TEST(GradientSync, WithoutACommunicatorTheOpsSaySo) {
  std::unique_ptr<Built> b = Build(1 << 20);
  Session session(b->root.graph());
  ASSERT_TRUE(session.RunTargets({b->init}).ok());
  std::vector<Tensor> out;
  const Status s = session.Run(Feeds(*b, 0.5f), b->sync.gradients, {}, &out);
  EXPECT_NE(s.message().find("needs a Session with a communicator"), std::string::npos) << s;
}

// A table (rows, 2) looked up by `ids` (a placeholder of `ids_shape`), a loss that weighs the
// rows, and the table's gradient (an IndexedSlices) synchronised with `o`.
struct SparseBuilt {
  Scope root = Scope::NewRootScope();
  Output ids, table, loss, grad;
  GradientSync sync;
  Node* init = nullptr;
  Status status;
};
std::unique_ptr<SparseBuilt> BuildSparse(int64_t rows, const Shape& ids_shape,
                                         GradientSyncOptions o) {
  auto b = std::make_unique<SparseBuilt>();
  Scope& s = b->root;
  std::vector<float> init(static_cast<size_t>(rows * 2));
  for (size_t k = 0; k < init.size(); ++k) init[k] = 0.1f * static_cast<float>(k);
  b->table = ops::Variable(s.WithOpName("table"),
                           ops::Const(s, Tensor::FromVector<float>(Shape{rows, 2}, init)));
  b->ids = ops::Placeholder(s.WithOpName("ids"), DType::kInt32, ids_shape);
  Output weights = ops::Const(s, Tensor::FromVector<float>(Shape{2}, {1.0f, -2.0f}));
  b->loss = ops::Sum(s, ops::Mul(s, ops::Gather(s, b->table, b->ids), weights), {0, 1});
  std::vector<Output> grads;
  b->status = AddGradients(s, {b->loss}, {b->table}, {}, &grads);
  if (!b->status.ok()) return b;
  b->grad = grads[0];
  StatusOr<GradientSync> sync = AddGradientSync(s, b->loss, grads, {b->table}, o);
  if (!sync.ok()) {
    b->status = sync.status();
    return b;
  }
  b->sync = *sync;
  b->init = ops::InitOp(s);
  return b;
}

std::vector<Session::Feed> SparseFeeds(const SparseBuilt& b, const std::vector<int32_t>& ids,
                                       float scale) {
  return {{b.ids, Tensor::FromVector<int32_t>(Shape{static_cast<int64_t>(ids.size())}, ids)},
          {b.sync.scale, Tensor::Scalar<float>(scale)},
          {b.sync.examples, Tensor::Scalar<float>(1.0f)},
          {b.sync.stop, Tensor::Scalar<float>(0.0f)},
          {b.sync.checkpoint, Tensor::Scalar<float>(0.0f)}};
}

// auto gathers when ranks * rows sent * (row + 1) < the table's elements; allgather and dense
// force the choice; a gathered gradient joins no bucket.
TEST(GradientSync, SparseGradientsGoByAllgatherWhenThatMovesLess) {
  GradientSyncOptions o;
  o.ranks = 4;
  // 4 ranks x 3 rows x (2 + 1) = 36 < 100 x 2: gathered.
  std::unique_ptr<SparseBuilt> few = BuildSparse(100, Shape{3}, o);
  ASSERT_TRUE(few->status.ok()) << few->status;
  EXPECT_EQ(few->sync.gathered, std::vector<int>{0});
  ASSERT_EQ(few->sync.buckets.size(), 1u);
  EXPECT_TRUE(few->sync.buckets[0].empty());  // the agreement's bucket alone
  EXPECT_EQ(few->sync.gradients[0].node->op(), "IndexedSlices");
  // 4 x 6 x 3 = 72 >= 30 x 2: dense, in a bucket.
  std::unique_ptr<SparseBuilt> many = BuildSparse(30, Shape{6}, o);
  ASSERT_TRUE(many->status.ok()) << many->status;
  EXPECT_TRUE(many->sync.gathered.empty());
  EXPECT_EQ(many->sync.buckets[0], std::vector<int>{0});
  // A batch of unknown size has no bound: gathered.
  EXPECT_EQ(BuildSparse(30, Shape{-1}, o)->sync.gathered, std::vector<int>{0});
  o.sparse = SparseSync::kAllgather;
  EXPECT_EQ(BuildSparse(30, Shape{6}, o)->sync.gathered, std::vector<int>{0});
  o.sparse = SparseSync::kDense;
  EXPECT_TRUE(BuildSparse(100, Shape{3}, o)->sync.gathered.empty());
  EXPECT_EQ(*ParseSparseSync("allgather"), SparseSync::kAllgather);
  EXPECT_EQ(ParseSparseSync("sparse").status().message(),
            "--sparse-sync must be auto, allgather or dense, got 'sparse'");
}

// On 3 (fake, identical) ranks with scale 1/2: every rank's scaled rows, in rank order, and the
// gradient they make is 3/2 of the local one, the same as the dense route's.
TEST(GradientSync, GatheredRowsAreEveryRanksScaledRows) {
  GradientSyncOptions o;
  o.ranks = 3;
  o.sparse = SparseSync::kAllgather;
  std::unique_ptr<SparseBuilt> b = BuildSparse(10, Shape{-1}, o);
  ASSERT_TRUE(b->status.ok()) << b->status;
  FakeCommunicator fake(3);
  SessionOptions so;
  so.communicator = &fake;
  Session session(b->root.graph(), so);
  ASSERT_TRUE(session.RunTargets({b->init}).ok());
  Node* slices = b->sync.gradients[0].node;
  std::vector<Tensor> got;
  ASSERT_TRUE(session
                  .Run(SparseFeeds(*b, {4, 7, 4}, 0.5f),
                       {slices->input(0), slices->input(1), b->sync.gradients[0]}, {}, &got)
                  .ok());
  // Each id's row of dLoss/dTable is the weights (1, -2); times the scale 1/2.
  const std::vector<float> rows = {0.5f, -1, 0.5f, -1, 0.5f, -1};
  std::vector<float> want_values;
  std::vector<int32_t> want_ids;
  for (int r = 0; r < 3; ++r) {
    want_values.insert(want_values.end(), rows.begin(), rows.end());
    want_ids.insert(want_ids.end(), {4, 7, 4});
  }
  EXPECT_EQ(got[0].shape(), (Shape{9, 2}));
  EXPECT_EQ(got[0].ToVector<float>(), want_values);
  EXPECT_EQ(got[1].ToVector<int32_t>(), want_ids);
  // Dense: row 4 twice, row 7 once, x 3 ranks x 1/2.
  std::vector<float> dense(20, 0.0f);
  for (auto [row, times] : {std::pair<int, float>{4, 2}, {7, 1}}) {
    dense[row * 2] = 1.5f * times;
    dense[row * 2 + 1] = -3.0f * times;
  }
  EXPECT_EQ(got[2].ToVector<float>(), dense);
  // The row counts (one int64), then 3 rows of (index, 2 floats): 2 int64 words each.
  EXPECT_EQ(fake.calls,
            (std::vector<std::string>{"bucket 0/1 (run 1)", "allgather 8 B", "allgather 48 B"}));
  // A NaN among the rows stops the step, naming the variable.
  Session bad(b->root.graph(), so);
  ASSERT_TRUE(bad.RunTargets({b->init}).ok());
  std::vector<Session::Feed> feeds = SparseFeeds(*b, {4}, NAN);
  const Status s = bad.Run(feeds, {b->sync.gradients[0]}, {}, &got);
  EXPECT_EQ(s.code(), Code::kAborted);
  EXPECT_EQ(s.message(),
            "the gathered sparse gradient of 'table' holds NaN or Inf (every rank gathers the "
            "same rows, so every rank stops here together)");
}

TEST(Timeline, WritesAndMergesChromeTraceEvents) {
  const std::string dir = ::testing::TempDir();
  const auto t0 = Timeline::Clock::now();
  {
    Timeline a(dir + "/tl.0.json", 0), b(dir + "/tl.1.json", 1);
    a.Add("bucket 0/1", "allreduce", t0, t0 + std::chrono::microseconds(250),
          Timeline::kCommunication, "\"bytes\":4096");
    b.Add("MatMul \"x\"", "op", t0, t0 + std::chrono::microseconds(10), Timeline::kCompute);
    ASSERT_TRUE(a.Write().ok());
  }  // b writes itself on destruction
  ASSERT_TRUE(MergeTimelines({dir + "/tl.0.json", dir + "/tl.1.json"}, dir + "/tl.all.json").ok());
  std::ifstream f(dir + "/tl.all.json");
  std::stringstream text;
  text << f.rdbuf();
  const std::string s = text.str();
  EXPECT_EQ(s.rfind("{\"displayTimeUnit\":\"ms\",\"traceEvents\":[", 0), 0u);
  EXPECT_NE(s.find("\"name\":\"bucket 0/1\",\"cat\":\"allreduce\",\"ph\":\"X\""),
            std::string::npos);
  EXPECT_NE(s.find("\"dur\":250.000,\"pid\":0,\"tid\":1,\"args\":{\"bytes\":4096}"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("\"name\":\"MatMul \\\"x\\\"\""), std::string::npos);  // escaped
  EXPECT_NE(s.find("\"args\":{\"name\":\"rank 1\"}"), std::string::npos);
  EXPECT_EQ(s.substr(s.size() - 4), "\n]}\n");
  EXPECT_EQ(MergeTimelines({dir + "/missing.json"}, dir + "/x.json").message(),
            "cannot read timeline '" + dir + "/missing.json'");
}

}  // namespace
}  // namespace mpiflow
