// Optimizers against their update rules computed here step by step, learning-rate schedules
// against closed forms, and the sparse (Gather) path that updates only touched rows: SGD, and
// momentum and Adam lazily (their slots too), against the rules row by row.
#include "mpiflow/optimizer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "tests/test_util.h"

namespace mpiflow {
namespace {

using testing::F64;

// loss = 0.5 * sum(w^2), so the gradient is w itself. Returns w after `steps` updates.
std::vector<double> Train(const OptimizerOptions& o, int steps, int64_t* global_step) {
  Scope s = Scope::NewRootScope();
  Output w = ops::Variable(s.WithOpName("w"), ops::Const(s, F64({2}, {1.0, -2.0})));
  Output loss =
      ops::Mul(s, ops::Sum(s, ops::Square(s, w), {}), ops::ScalarConst(s, 0.5, DType::kFloat64));
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  EXPECT_TRUE(t.ok()) << t.status();
  Session session(s.graph());
  EXPECT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  for (int i = 0; i < steps; ++i) EXPECT_TRUE(session.RunTargets({t->train}).ok());
  std::vector<Tensor> out;
  EXPECT_TRUE(session.Run({w, t->global_step}, &out).ok());
  *global_step = *out[1].data<int64_t>();
  return out[0].ToVector<double>();
}

std::vector<double> Reference(const OptimizerOptions& o, int steps) {
  std::vector<double> w = {1.0, -2.0}, a(2, 0), m(2, 0), v(2, 0);
  const double lr = o.lr.base;
  for (int t = 1; t <= steps; ++t) {
    for (int i = 0; i < 2; ++i) {
      const double g = w[i];
      if (o.kind == OptimizerKind::kSgd) {
        w[i] -= lr * g;
      } else if (o.kind == OptimizerKind::kMomentum) {
        a[i] = o.momentum * a[i] + g;
        w[i] -= o.nesterov ? lr * (g + o.momentum * a[i]) : lr * a[i];
      } else if (o.kind == OptimizerKind::kRmsprop) {
        m[i] = o.rho * m[i] + (1 - o.rho) * g * g;
        a[i] = o.rmsprop_momentum * a[i] + lr * g / std::sqrt(m[i] + o.epsilon);
        w[i] -= a[i];
      } else {
        m[i] = o.beta1 * m[i] + (1 - o.beta1) * g;
        v[i] = o.beta2 * v[i] + (1 - o.beta2) * g * g;
        const double lr_t = lr * std::sqrt(1 - std::pow(o.beta2, t)) / (1 - std::pow(o.beta1, t));
        w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + o.epsilon);
      }
    }
  }
  return w;
}

TEST(OptimizerTest, UpdatesMatchTheirRules) {
  for (const char* name : {"sgd", "momentum", "nesterov", "rmsprop", "adam"}) {
    SCOPED_TRACE(name);
    OptimizerOptions o;
    o.kind = *ParseOptimizer(std::string(name) == "nesterov" ? "momentum" : name);
    o.nesterov = std::string(name) == "nesterov";
    o.lr.base = 0.1;
    o.rmsprop_momentum = 0.5;
    int64_t step = 0;
    const std::vector<double> got = Train(o, 3, &step), want = Reference(o, 3);
    EXPECT_EQ(step, 3);
    // the learning rate passes through float32, so agreement is to float32 precision
    for (int i = 0; i < 2; ++i) EXPECT_NEAR(got[i], want[i], 1e-7) << "element " << i;
    EXPECT_NE(got[0], 1.0) << "the variable moved";
  }
}

TEST(OptimizerTest, BadOptionsAreRejected) {
  OptimizerOptions o;
  EXPECT_EQ(ParseOptimizer("adagrad").status().message(),
            "optimizer must be sgd, momentum, rmsprop or adam, got 'adagrad'");
  o.kind = OptimizerKind::kSgd;
  o.lr.base = -1;
  EXPECT_EQ(ValidateOptimizerOptions(o).message(), "learning rate must be positive, got -1");
  EXPECT_EQ(ops::ParseLearningRateSchedule("linear").status().message(),
            "learning-rate schedule must be constant, step or cosine, got 'linear'");
}

double LrAt(const ops::LearningRateOptions& o, int64_t step) {
  Scope s = Scope::NewRootScope();
  Output st = ops::Placeholder(s, DType::kInt64, Shape{});
  Tensor t = testing::RunOne(s, ops::LearningRate(s, st, o), {{st, Tensor::Scalar<int64_t>(step)}});
  return *t.data<float>();
}

TEST(LearningRateTest, SchedulesFollowTheirClosedForms) {
  ops::LearningRateOptions c;
  c.base = 0.1;
  EXPECT_FLOAT_EQ(LrAt(c, 12345), 0.1f);
  ops::LearningRateOptions st = c;
  st.kind = ops::LearningRateSchedule::kStep;
  st.decay_steps = 10;
  st.decay_rate = 0.5;
  EXPECT_FLOAT_EQ(LrAt(st, 9), 0.1f);
  EXPECT_FLOAT_EQ(LrAt(st, 10), 0.05f);
  EXPECT_FLOAT_EQ(LrAt(st, 25), 0.025f);
  ops::LearningRateOptions cos;
  cos.kind = ops::LearningRateSchedule::kCosine;
  cos.base = 1.0;
  cos.decay_steps = 100;
  EXPECT_FLOAT_EQ(LrAt(cos, 0), 1.0f);
  EXPECT_NEAR(LrAt(cos, 50), 0.5, 1e-7);
  EXPECT_NEAR(LrAt(cos, 100), 0.0, 1e-7);
  EXPECT_NEAR(LrAt(cos, 150), 0.0, 1e-7);
  cos.alpha = 0.1;
  EXPECT_NEAR(LrAt(cos, 100), 0.1, 1e-7);
  ops::LearningRateOptions warm = c;
  warm.warmup_steps = 10;
  EXPECT_FLOAT_EQ(LrAt(warm, 0), 0.01f);
  EXPECT_FLOAT_EQ(LrAt(warm, 4), 0.05f);
  EXPECT_FLOAT_EQ(LrAt(warm, 10), 0.1f);
  cos.alpha = 0;
  cos.warmup_steps = 10;
  EXPECT_NEAR(LrAt(cos, 60), 0.5, 1e-7);  // 50 steps into the decay
}

TEST(OptimizerTest, GatherGradientUpdatesOnlyTouchedRows) {
  Scope s = Scope::NewRootScope();
  Tensor init(DType::kFloat32, Shape{5, 3});
  for (int i = 0; i < 15; ++i) init.data<float>()[i] = static_cast<float>(i);
  Output table = ops::Variable(s.WithOpName("embedding"), ops::Const(s, init));
  Output ids = ops::Const(s, Tensor::FromVector<int32_t>({3}, {1, 3, 1}));
  Output loss = ops::Sum(s, ops::Gather(s, table, ids), {});  // d/d(row) = times used
  OptimizerOptions o;
  o.lr.base = 0.5;
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->gradients[0].node->op(), "IndexedSlices");
  EXPECT_EQ(t->train->control_inputs()[0]->op(), "SparseApplyGradientDescent");
  Session session(s.graph());
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  RunStats stats;
  ASSERT_TRUE(session.Run({}, {}, {t->train}, nullptr, &stats).ok());
  std::vector<float> w = session.ReadVariable("embedding")->ToVector<float>();
  const std::vector<float> want = {0, 1, 2, 2, 3, 4, 6, 7, 8, 8.5f, 9.5f, 10.5f, 12, 13, 14};
  EXPECT_EQ(w, want);
  for (int id = 0; id < s.graph()->num_nodes(); ++id) {  // the dense form was never needed
    const Node* n = s.graph()->node(id);
    if (n->op() == "IndexedSlices") {
      for (Node* c : s.graph()->Consumers(n)) EXPECT_NE(c->op(), "ApplyGradientDescent");
    }
  }
}

// loss = 0.5 * sum_p (p + 1) * Gather(table, ids)[p]^2 over a (5, 2) float64 table: the row at
// position p has gradient (p + 1) * row, so a repeated row's pieces differ. Returns the table and
// its slots after one step per entry of `steps` (each the step's ids), and the update op.
struct SparseRun {
  std::vector<double> table, slot0, slot1;
  std::string op;
};
SparseRun RunSparse(const OptimizerOptions& o, const std::vector<std::vector<int32_t>>& steps) {
  Scope s = Scope::NewRootScope();
  std::vector<double> init(10);
  for (int i = 0; i < 10; ++i) init[i] = 0.5 + 0.25 * i * (i % 2 ? -1 : 1);
  Output table = ops::Variable(s.WithOpName("table"), ops::Const(s, F64({5, 2}, init)));
  Output ids = ops::Placeholder(s.WithOpName("ids"), DType::kInt32, Shape{-1});
  Output weights = ops::Placeholder(s.WithOpName("weights"), DType::kFloat64, Shape{-1, 1});
  Output rows = ops::Gather(s, table, ids);
  Output loss = ops::Mul(s, ops::Sum(s, ops::Mul(s, weights, ops::Square(s, rows)), {}),
                         ops::ScalarConst(s, 0.5, DType::kFloat64));
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  EXPECT_TRUE(t.ok()) << t.status();
  SparseRun r;
  if (!t.ok()) return r;
  r.op = t->updates[0]->op();
  Session session(s.graph());
  EXPECT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  for (const std::vector<int32_t>& step : steps) {
    const int64_t n = static_cast<int64_t>(step.size());
    std::vector<double> w(n);
    for (int64_t p = 0; p < n; ++p) w[p] = static_cast<double>(p + 1);
    const Tensor fed = Tensor::FromVector<int32_t>(Shape{n}, step);
    EXPECT_TRUE(session.Run({{ids, fed}, {weights, F64({n, 1}, w)}}, {}, {t->train}, nullptr).ok());
  }
  r.table = session.ReadVariable("table")->ToVector<double>();
  const char* slots[2][2] = {{"table/momentum", ""}, {"table/adam_m", "table/adam_v"}};
  const int k = o.kind == OptimizerKind::kAdam ? 1 : 0;
  r.slot0 = session.ReadVariable(slots[k][0])->ToVector<double>();
  if (k == 1) r.slot1 = session.ReadVariable(slots[k][1])->ToVector<double>();
  return r;
}

// The lazy rules, row by row: only the rows a step uses change, with their slots.
SparseRun LazyReference(const OptimizerOptions& o, const std::vector<std::vector<int32_t>>& steps) {
  SparseRun r;
  for (int i = 0; i < 10; ++i) r.table.push_back(0.5 + 0.25 * i * (i % 2 ? -1 : 1));
  r.slot0.assign(10, 0);
  r.slot1.assign(10, 0);
  int t = 0;
  for (const std::vector<int32_t>& step : steps) {
    ++t;
    for (int row = 0; row < 5; ++row) {
      if (std::find(step.begin(), step.end(), row) == step.end()) continue;
      for (int c = 0; c < 2; ++c) {
        const int i = row * 2 + c;
        double g = 0;  // summed in position order, as the kernel does
        for (size_t p = 0; p < step.size(); ++p) {
          if (step[p] == row) g += static_cast<double>(p + 1) * r.table[i];
        }
        if (o.kind == OptimizerKind::kMomentum) {
          r.slot0[i] = o.momentum * r.slot0[i] + g;
          r.table[i] -= o.lr.base * r.slot0[i];
        } else {
          r.slot0[i] = o.beta1 * r.slot0[i] + (1 - o.beta1) * g;
          r.slot1[i] = o.beta2 * r.slot1[i] + (1 - o.beta2) * g * g;
          const double lr_t =
              o.lr.base * std::sqrt(1 - std::pow(o.beta2, t)) / (1 - std::pow(o.beta1, t));
          r.table[i] -= lr_t * r.slot0[i] / (std::sqrt(r.slot1[i]) + o.epsilon);
        }
      }
    }
  }
  return r;
}

void ExpectClose(const std::vector<double>& got, const std::vector<double>& want,
                 const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-12) << what << " " << i;
}

// Rows 3, 1, 3 (row 3's two pieces differ and are summed first), then 1, then 0 and 3: lazy
// momentum and Adam move only each step's rows and their slots, to the rules' values; rows 2
// and 4 and their slots never change.
TEST(OptimizerTest, LazyMomentumAndAdamUpdateOnlyTheStepsRows) {
  const std::vector<std::vector<int32_t>> steps = {{3, 1, 3}, {1}, {0, 3}};
  for (OptimizerKind kind : {OptimizerKind::kMomentum, OptimizerKind::kAdam}) {
    OptimizerOptions o;
    o.kind = kind;
    o.lr.base = 0.125;  // exact in the float32 learning rate
    const SparseRun got = RunSparse(o, steps);
    EXPECT_EQ(got.op, kind == OptimizerKind::kAdam ? "SparseApplyAdam" : "SparseApplyMomentum");
    const SparseRun want = LazyReference(o, steps);
    ExpectClose(got.table, want.table, OptimizerName(kind));
    ExpectClose(got.slot0, want.slot0, OptimizerName(kind));
    if (kind == OptimizerKind::kAdam) ExpectClose(got.slot1, want.slot1, "adam_v");
    for (int i : {4, 5, 8, 9}) EXPECT_EQ(got.slot0[i], 0.0) << i;
  }
}

// lazy_sparse = false is the dense rule, under which row 1, touched in step 1 only, keeps moving
// with its moments in step 2; lazily it rests.
TEST(OptimizerTest, DenseModeOfASparseGradientIsTheDenseRule) {
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  o.lr.base = 0.125;
  o.lazy_sparse = false;
  const SparseRun dense = RunSparse(o, {{1}, {4}});
  EXPECT_EQ(dense.op, "ApplyAdam");
  o.lazy_sparse = true;
  const SparseRun lazy = RunSparse(o, {{1}, {4}});
  EXPECT_EQ(lazy.table[2], RunSparse(o, {{1}}).table[2]);  // lazy: row 1 rests in step 2
  EXPECT_NE(dense.table[2], lazy.table[2]);                // dense: it moves on
  EXPECT_NEAR(dense.table[8], lazy.table[8], 1e-15);       // row 4: first touched alike
}

// A table read by a Gather (int32 ids) and an EmbeddingBag (int64 row indices in its gradient):
// the two sparse pieces are one sparse gradient, the indices widened to int64. SGD: row r moves
// by lr times the times it was used.
TEST(OptimizerTest, SparsePiecesWithInt32AndInt64IndicesAddUp) {
  Scope s = Scope::NewRootScope();
  Output table = ops::Variable(s.WithOpName("table"), ops::Const(s, F64({4, 1}, {0, 0, 0, 0})));
  Output a = ops::Gather(s, table, ops::Const(s, Tensor::FromVector<int32_t>({1}, {1})));
  Output b = ops::EmbeddingBag(s, table, ops::Const(s, F64({1, 3}, {1, 2, -1})), "sum");
  Output loss = ops::Add(s, ops::Sum(s, a, {}), ops::Sum(s, b, {}));
  OptimizerOptions o;
  o.lr.base = 0.125;
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->updates[0]->op(), "SparseApplyGradientDescent");
  Session session(s.graph());
  ASSERT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  ASSERT_TRUE(session.RunTargets({t->train}).ok());
  EXPECT_EQ(session.ReadVariable("table")->ToVector<double>(),
            (std::vector<double>{0, -0.25, -0.125, 0}));
}

}  // namespace
}  // namespace mpiflow
