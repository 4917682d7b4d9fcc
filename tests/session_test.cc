// Session: pruning (only what a fetch needs runs), plan caching, feeds, errors that name the
// node, variables (by rows, in shared storage), fetches told as they are computed, and the
// parallel executor agreeing with the sequential one.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>

#include "mpiflow/gradients.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

using testing::F32;

TEST(SessionTest, RunsOnlyWhatTheFetchNeeds) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s, F32({2}, {1, 2}));
  Output b = ops::Exp(s, a);                          // needed
  Output unrelated = ops::Square(s, ops::Neg(s, a));  // not needed for b
  (void)unrelated;
  Session session(s.graph());
  std::vector<Tensor> out;
  RunStats stats;
  ASSERT_TRUE(session.Run({}, {b}, {}, &out, &stats).ok());
  EXPECT_EQ(stats.kernels_run, 2);  // Const and Exp
  ASSERT_TRUE(session.Run({}, {unrelated}, {}, &out, &stats).ok());
  EXPECT_EQ(stats.kernels_run, 3);  // Const, Neg, Square
}

TEST(SessionTest, TimesEveryKernelWhenAsked) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s.WithOpName("a"), F32({2}, {1, 2}));
  Output b = ops::Exp(s.WithOpName("b"), a);
  Session session(s.graph());
  std::vector<Tensor> out;
  RunStats stats;
  ASSERT_TRUE(session.Run({}, {b}, {}, &out, &stats).ok());
  EXPECT_TRUE(stats.node_times.empty()) << "off unless asked";
  stats.collect_node_times = true;
  ASSERT_TRUE(session.Run({}, {b}, {}, &out, &stats).ok());
  ASSERT_EQ(stats.node_times.size(), 2u);
  EXPECT_EQ(stats.node_times[0].node->name(), "a");
  EXPECT_EQ(stats.node_times[1].node->name(), "b");
  EXPECT_GE(stats.node_times[1].seconds, 0.0);
}

TEST(SessionTest, FeedsCutTheGraph) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s, F32({2}, {1, 2}));
  Output b = ops::Neg(s, a);
  Output c = ops::Square(s, b);
  Session session(s.graph());
  std::vector<Tensor> out;
  RunStats stats;
  ASSERT_TRUE(session.Run({{b, F32({2}, {3, 4})}}, {c}, {}, &out, &stats).ok());
  EXPECT_EQ(stats.kernels_run, 1);  // only Square: Const and Neg are cut off by the feed
  testing::ExpectNear(out[0], {2}, {9, 16});
}

TEST(SessionTest, ReusesCachedPlans) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{-1});
  Output y = ops::Square(s, x);
  Session session(s.graph());
  std::vector<Tensor> out;
  RunStats stats;
  ASSERT_TRUE(session.Run({{x, F32({2}, {1, 2})}}, {y}, {}, &out, &stats).ok());
  EXPECT_FALSE(stats.plan_cache_hit);
  ASSERT_TRUE(session.Run({{x, F32({3}, {1, 2, 3})}}, {y}, {}, &out, &stats).ok());
  EXPECT_TRUE(stats.plan_cache_hit);
  testing::ExpectNear(out[0], {3}, {1, 4, 9});
  EXPECT_EQ(session.num_cached_plans(), 1);
  ASSERT_TRUE(session.Run({{x, F32({1}, {5})}}, {y, x}, {}, &out, &stats).ok());
  EXPECT_FALSE(stats.plan_cache_hit);
  EXPECT_EQ(session.num_cached_plans(), 2);
}

TEST(SessionTest, ErrorsNameTheNode) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s.WithOpName("x"), DType::kFloat32, Shape{-1, 3});
  Output y = ops::Exp(s.WithOpName("y"), x);
  Session session(s.graph());
  std::vector<Tensor> out;
  EXPECT_EQ(
      session.Run({{x, Tensor::FromVector<int32_t>({1, 3}, {1, 2, 3})}}, {y}, {}, &out).message(),
      "feed 'x:0' expects dtype float32 but was given int32");
  EXPECT_EQ(session.Run({{x, F32({3}, {1, 2, 3})}}, {y}, {}, &out).message(),
            "feed 'x:0' expects shape [?,3] but was given [3]");
  EXPECT_EQ(session.Run({y}, &out).message(),
            "Placeholder 'x' (float32[?,3]) must be fed: the fetches depend on it");
  EXPECT_EQ(s.graph()->FindOutput("nope:0").status().message(),
            "no node named 'nope' in the graph");
  EXPECT_EQ(s.graph()->FindOutput("y:3").status().message(), "node 'y' has no output 3 (it has 1)");
  EXPECT_EQ(session.Run({Output()}, &out).message(), "fetch 0 is invalid (an op failed to build?)");
  Scope other = Scope::NewRootScope();
  Output foreign = ops::Const(other.WithOpName("foreign"), F32({1}, {1}));
  EXPECT_EQ(session.Run({foreign}, &out).message(),
            "fetch 0 ('foreign') is not a node of this graph");
}

TEST(SessionTest, CycleIsAnErrorNamingTheNode) {
  Scope s = Scope::NewRootScope();
  Node* a = ops::NoOp(s.WithOpName("a"));
  Node* b = ops::Group(s.WithOpName("b"), {a});
  ASSERT_TRUE(s.graph()->AddControlEdge(b, a).ok());  // a -> b -> a
  Session session(s.graph());
  EXPECT_EQ(session.RunTargets({b}).message(),
            "the graph has a cycle through node 'a' (NoOp); nodes on or behind it: a, b");
}

TEST(SessionTest, VariablesInitAssignAndCopiesOnFetch) {
  Scope s = Scope::NewRootScope();
  Output v = ops::Variable(s.WithOpName("v"), ops::Const(s, F32({2}, {1, 2})));
  Output add = ops::AssignAdd(s, v, ops::Const(s, F32({2}, {10, 10})));
  Session session(s.graph());
  std::vector<Tensor> out;
  Status st = session.Run({ops::Square(s, v)}, &out);
  EXPECT_EQ(st.message(),
            "node 'Square' (Square) reads variable 'v' before it was initialized: run the init op "
            "(ops::InitOp) first, or restore a checkpoint");
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  ASSERT_TRUE(session.Run({v}, &out).ok());
  Tensor before = out[0];
  ASSERT_TRUE(session.Run({add}, &out).ok());
  testing::ExpectNear(out[0], {2}, {11, 12});
  testing::ExpectNear(before, {2}, {1, 2});  // an earlier fetch is a copy, not a view
  ASSERT_TRUE(session.WriteVariable("v", F32({2}, {5, 6})).ok());
  testing::ExpectNear(*session.ReadVariable("v"), {2}, {5, 6});
  EXPECT_EQ(session.WriteVariable("v", F32({3}, {1, 2, 3})).message(),
            "variable 'v' is float32[2]; the value is float32[3]");
  EXPECT_EQ(session.ReadVariable("w").status().message(), "no variable named 'w'");
}

// Rows of a variable in and out by index (a parameter server's worker keeps an embedding
// table current by the rows that changed); a row out of range names the variable.
TEST(SessionTest, VariableRowsReadAndWriteByIndex) {
  Scope s = Scope::NewRootScope();
  ops::Variable(s.WithOpName("t"), ops::Const(s, F32({3, 2}, {1, 2, 3, 4, 5, 6})));
  Session session(s.graph());
  EXPECT_EQ(session.ReadVariableRows("t", {0}).status().message(),
            "variable 't' is not initialized (or does not exist)");
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  StatusOr<Tensor> rows = session.ReadVariableRows("t", {2, 0});
  ASSERT_TRUE(rows.ok()) << rows.status();
  testing::ExpectNear(*rows, {2, 2}, {5, 6, 1, 2});
  ASSERT_TRUE(session.WriteVariableRows("t", {1, 2}, F32({2, 2}, {7, 8, 9, 10})).ok());
  testing::ExpectNear(*session.ReadVariable("t"), {3, 2}, {1, 2, 7, 8, 9, 10});
  EXPECT_EQ(session.ReadVariableRows("t", {3}).status().message(),
            "row 3 of variable 't' is out of range [0, 3)");
  EXPECT_EQ(session.WriteVariableRows("t", {0}, F32({1, 3}, {1, 2, 3})).message(),
            "rows for variable 't' must be float32[1,2], got float32[1,3]");
}

TEST(SessionTest, SharedStorageIsTheVariable) {
  Scope s = Scope::NewRootScope();
  Output t = ops::Variable(s.WithOpName("t"), ops::Const(s, F32({2, 2}, {1, 2, 3, 4})));
  Output add = ops::AssignAdd(s, t, ops::Const(s, F32({2, 2}, {10, 10, 10, 10})));
  Session session(s.graph());
  Tensor message(DType::kFloat32, Shape{6});  // [2 floats of header, the variable's 4]
  message.FillZero();
  EXPECT_EQ(session.ShareVariable("t", message.View(2, Shape{2, 2})).message(),
            "variable 't' is not initialized (or does not exist)");
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  EXPECT_EQ(session.ShareVariable("t", message.View(2, Shape{4})).message(),
            "variable 't' is float32[2,2]; the storage offered is float32[4]");
  ASSERT_TRUE(session.ShareVariable("t", message.View(2, Shape{2, 2})).ok());
  testing::ExpectNear(message, {6}, {0, 0, 1, 2, 3, 4});  // the value moved in
  ASSERT_TRUE(session.RunTargets({add.node}).ok());       // an update writes the storage
  testing::ExpectNear(message, {6}, {0, 0, 11, 12, 13, 14});
  float* m = message.data<float>();
  m[3] = 7;  // a message received into the storage is the variable's value
  testing::ExpectNear(*session.ReadVariable("t"), {2, 2}, {11, 7, 13, 14});
  // Reading into or writing from the storage itself copies nothing and changes nothing.
  ASSERT_TRUE(session.ReadVariableInto("t", message.View(2, Shape{2, 2})).ok());
  ASSERT_TRUE(session.WriteVariable("t", message.View(2, Shape{2, 2})).ok());
  testing::ExpectNear(message, {6}, {0, 0, 11, 7, 13, 14});
  // Other tensors still copy, into the storage.
  ASSERT_TRUE(session.WriteVariable("t", F32({2, 2}, {5, 6, 7, 8})).ok());
  testing::ExpectNear(message, {6}, {0, 0, 5, 6, 7, 8});
}

// A session that keeps some rows of a variable (a parameter server's part of a table): reads,
// writes and sparse updates see those rows, indexed from 0; the graph's shape is not checked
// against them, and the rest is gone.
TEST(SessionTest, KeepRowsHoldsAPartOfAVariable) {
  Scope s = Scope::NewRootScope();
  Output t = ops::Variable(s.WithOpName("t"), ops::Const(s, F32({4, 2}, {1, 2, 3, 4, 5, 6, 7, 8})));
  Output rows = ops::Placeholder(s.WithOpName("rows"), DType::kFloat32, Shape{-1, 2});
  Output at = ops::Placeholder(s.WithOpName("at"), DType::kInt64, Shape{-1});
  Output step = ops::SparseApplyGradientDescent(s, t, ops::Const(s, F32({}, {1})), rows, at);
  Session session(s.graph());
  EXPECT_EQ(session.KeepRows("t", 1, 3).message(),
            "variable 't' is not initialized (or does not exist)");
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  EXPECT_EQ(session.KeepRows("t", 2, 5).message(),
            "rows [2, 5) of variable 't' [4,2]: not a range of its rows");
  ASSERT_TRUE(session.KeepRows("t", 1, 3).ok());
  testing::ExpectNear(*session.ReadVariable("t"), {2, 2}, {3, 4, 5, 6});
  EXPECT_EQ(session.KeepRows("t", 0, 1).message(), "variable 't' keeps some of its rows already");
  // Row 1 of the part is the variable's row 2.
  ASSERT_TRUE(
      session
          .Run({{rows, F32({1, 2}, {1, 1})}, {at, Tensor::FromVector<int64_t>(Shape{1}, {1})}}, {},
               {step.node}, nullptr)
          .ok());
  testing::ExpectNear(*session.ReadVariable("t"), {2, 2}, {3, 4, 4, 5});
  Status out =
      session.Run({{rows, F32({1, 2}, {1, 1})}, {at, Tensor::FromVector<int64_t>(Shape{1}, {2})}},
                  {}, {step.node}, nullptr);
  EXPECT_NE(out.message().find("index 2 at position 0 is out of range [0, 2)"), std::string::npos)
      << out;
  EXPECT_EQ(session.WriteVariable("t", F32({4, 2}, {0, 0, 0, 0, 0, 0, 0, 0})).message(),
            "variable 't' is float32[2,2]; the value is float32[4,2]");
  ASSERT_TRUE(session.WriteVariable("t", F32({2, 2}, {9, 9, 9, 9})).ok());
  testing::ExpectNear(*session.ReadVariableRows("t", {1}), {1, 2}, {9, 9});
  // An empty range keeps no row: the variable's memory is freed (another server's variable).
  ops::Variable(s.WithOpName("u"), ops::Const(s, F32({3}, {1, 2, 3})));
  Session other(s.graph());
  ASSERT_TRUE(other.RunTargets({ops::InitOp(s)}).ok());
  ASSERT_TRUE(other.KeepRows("u", 0, 0).ok());
  StatusOr<Tensor> none = other.ReadVariable("u");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->shape(), (Shape{0}));
  EXPECT_EQ(none->bytes(), 0u);
}

// Session::FetchReady: each fetch is told once, as soon as it is computed (a fed one after the
// last kernel), with the value the outputs get; a variable's as a copy; an error ends the run.
TEST(SessionTest, FetchesAreToldAsTheyAreComputed) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s.WithOpName("x"), DType::kFloat32, Shape{2});
  Output v = ops::Variable(s.WithOpName("v"), ops::Const(s, F32({2}, {1, 2})));
  Output a = ops::Mul(s.WithOpName("a"), x, v);
  Output b = ops::Add(s.WithOpName("b"), a, a);
  for (int threads : {1, 3}) {
    SessionOptions o;
    o.inter_op_threads = threads;
    Session session(s.graph(), o);
    ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
    std::mutex mu;
    std::vector<std::pair<size_t, Tensor>> told;
    Session::FetchReady ready = [&](size_t i, const Tensor& t) {
      std::lock_guard<std::mutex> lock(mu);
      told.emplace_back(i, t);
      return Status::OK();
    };
    std::vector<Tensor> out;
    ASSERT_TRUE(
        session.Run({{x, F32({2}, {3, 4})}}, {b, x, a, v, b}, {}, &out, nullptr, ready).ok());
    ASSERT_EQ(told.size(), 5u) << threads << " thread(s)";
    std::vector<int> seen(5, 0);
    for (const auto& [i, t] : told) {
      ++seen[i];
      EXPECT_TRUE(t.BitEqual(out[i])) << "fetch " << i;
    }
    EXPECT_EQ(seen, std::vector<int>({1, 1, 1, 1, 1}));
    EXPECT_EQ(told.back().first, 1u);  // x is fed: told after the kernels
    if (threads == 1) {                // the sequential executor: in the order they were computed
      EXPECT_EQ(told[0].first, 3u);    // v
      EXPECT_EQ(told[1].first, 2u);    // a
    }
    testing::ExpectNear(out[0], {2}, {6, 16});
    for (const auto& [i, t] : told) {
      if (i == 3) {  // a copy: writing the variable leaves it as it was
        ASSERT_TRUE(session.WriteVariable("v", F32({2}, {9, 9})).ok());
        testing::ExpectNear(t, {2}, {1, 2});
      }
    }
    Status st = session.Run({{x, F32({2}, {3, 4})}}, {b}, {}, &out, nullptr,
                            [](size_t, const Tensor&) { return InvalidArgument("stop here"); });
    EXPECT_EQ(st.message(), "stop here");
  }
}

TEST(SessionTest, ParallelExecutorMatchesSequentialBitForBit) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{-1, 8});
  std::vector<Output> branches;
  for (int i = 0; i < 6; ++i) {
    Output w = ops::Variable(s, ops::GlorotUniform(s, Shape{8, 8}, i));
    branches.push_back(ops::Tanh(s, ops::MatMul(s, x, w)));
  }
  Output loss = ops::Sum(s, ops::Square(s, ops::AddN(s, branches)), {});
  std::vector<Output> vars;
  for (const VariableInfo& v : s.graph()->variables()) vars.push_back(Output(v.variable));
  std::vector<Output> grads;
  ASSERT_TRUE(AddGradients(s, {loss}, vars, {}, &grads).ok());
  Tensor xv(DType::kFloat32, Shape{4, 8});
  for (int i = 0; i < 32; ++i) xv.data<float>()[i] = 0.1f * (i % 7) - 0.3f;
  std::vector<std::vector<Tensor>> results;
  for (int threads : {1, 3}) {
    SessionOptions o;
    o.inter_op_threads = threads;
    Session session(s.graph(), o);
    ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
    std::vector<Tensor> out;
    ASSERT_TRUE(session.Run({{x, xv}}, grads, {}, &out).ok());
    results.push_back(out);
  }
  for (size_t i = 0; i < grads.size(); ++i) EXPECT_TRUE(results[0][i].BitEqual(results[1][i]));
}

TEST(AutodiffTest, SumsFanInAndSkipsUnrelatedNodes) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat64, Shape{2});
  Output y = ops::Add(s, ops::Mul(s, x, x), ops::Exp(s, x));  // dy/dx = 2x + e^x
  Output unrelated = ops::Placeholder(s, DType::kFloat64, Shape{2});
  Output z = ops::Square(s, unrelated);
  std::vector<Output> g;
  const int before = s.graph()->num_nodes();
  ASSERT_TRUE(AddGradients(s, {ops::Sum(s, y, {})}, {x, unrelated}, {}, &g).ok());
  EXPECT_FALSE(g[1].valid()) << "no path from 'unrelated' to y";
  for (int id = before; id < s.graph()->num_nodes(); ++id) {
    EXPECT_NE(s.graph()->node(id)->op(), "Square") << "no gradient ops for nodes off the path";
  }
  (void)z;
  Tensor out = testing::RunOne(s, g[0], {{x, testing::F64({2}, {0, 1})}});
  testing::ExpectNear(out, {2}, {1, 2 + std::exp(1.0)}, 1e-12);
}

TEST(AutodiffTest, MissingGradientIsAnErrorNamingTheNode) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{2, 2});
  Output y = ops::Sum(s, ops::SumToShapeOf(s, x, x), {});
  std::vector<Output> g;
  Status st = AddGradients(s, {y}, {x}, {}, &g);
  EXPECT_EQ(st.message(),
            "no gradient is defined for op SumToShapeOf (node 'SumToShapeOf'), which lies on a "
            "path from the xs to the ys");
}

}  // namespace
}  // namespace mpiflow
