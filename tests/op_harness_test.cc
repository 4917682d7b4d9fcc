// The op harness. (1) Every op with a gradient: the symbolic gradient of sum(op(x) * R), R a
// fixed random tensor, matches central finite differences in float64, broadcasting included.
// (2) Forward results against values worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <set>

#include "mpiflow/gradients.h"
#include "mpiflow/random.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

using testing::ExpectNear;
using testing::F64;
using testing::RunOne;
using Builder = std::function<Output(const Scope&, const std::vector<Output>&)>;

enum class Init { kNormal, kPositive, kAwayFromZero, kDistinct };

struct GradCase {
  std::string name;
  std::vector<Shape> shapes;  // float64 inputs, fed through placeholders
  Builder build;
  Init init = Init::kNormal;
  std::vector<int> wrt;  // inputs to check; empty: all
  double eps = 1e-6, tol = 1e-6;
};

void PrintTo(const GradCase& c, std::ostream* os) { *os << c.name; }

Tensor InitTensor(const Shape& shape, Init init, uint64_t seed) {
  Tensor t(DType::kFloat64, shape);
  double* p = t.data<double>();
  const int64_t n = t.num_elements();
  for (int64_t i = 0; i < n; ++i) {
    const double u = RandomUniform01(seed, 0, i);
    switch (init) {
      case Init::kNormal:
        p[i] = 2 * u - 1;
        break;
      case Init::kPositive:
        p[i] = 0.5 + u;
        break;
      case Init::kAwayFromZero:
        p[i] = (0.1 + 0.9 * u) * ((RandomBits(seed, 1, i) & 1) ? 1 : -1);
        break;
      case Init::kDistinct:
        p[i] = 0.05 * static_cast<double>(i) - 1;
        break;
    }
  }
  if (init == Init::kDistinct) {  // shuffle the evenly spaced values
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
    for (int64_t i = n - 1; i > 0; --i)
      std::swap(order[i], order[RandomBits(seed, 2, i) % (i + 1)]);
    Tensor s(DType::kFloat64, shape);
    for (int64_t i = 0; i < n; ++i) s.data<double>()[i] = p[order[i]];
    return s;
  }
  return t;
}

Output Ints(const Scope& s, const Shape& shape, const std::vector<int32_t>& v) {
  return ops::Const(s, Tensor::FromVector<int32_t>(shape, v));
}

std::vector<GradCase> Cases() {
  using O = std::vector<Output>;
  const auto unary = [](Output (*f)(const Scope&, Output)) {
    return [f](const Scope& s, const O& x) { return f(s, x[0]); };
  };
  const auto binary = [](Output (*f)(const Scope&, Output, Output)) {
    return [f](const Scope& s, const O& x) { return f(s, x[0], x[1]); };
  };
  const auto matmul = [](bool ta, bool tb) {
    return [ta, tb](const Scope& s, const O& x) { return ops::MatMul(s, x[0], x[1], ta, tb); };
  };
  std::vector<GradCase> c = {
      {"Identity", {{3}}, unary(ops::Identity)},
      // One process (no communicator): the sum over one rank. The sum over several is checked
      // against one process in tests/distributed_test.cc (batch_norm sync = true).
      {"CrossReplicaSum",
       {{2, 3}},
       [](const Scope& s, const O& x) {
         return ops::CrossReplicaSum(s, x[0], ops::ReplicaShare(s));
       }},
      {"Add/broadcast_row", {{2, 3}, {3}}, binary(ops::Add)},
      {"Add/broadcast_both", {{2, 1}, {1, 3}}, binary(ops::Add)},
      {"Add/scalar", {{}, {2, 2}}, binary(ops::Add)},
      {"Sub/broadcast_col", {{2, 3}, {2, 1}}, binary(ops::Sub)},
      {"Mul/broadcast_row", {{2, 3}, {3}}, binary(ops::Mul)},
      {"Mul/rank3_vs_rank2", {{2, 2, 3}, {2, 1}}, binary(ops::Mul)},
      {"Div", {{2, 3}, {2, 3}}, binary(ops::Div), Init::kPositive},
      {"Div/broadcast", {{2, 3}, {3}}, binary(ops::Div), Init::kPositive},
      {"AddN",
       {{2, 2}, {2, 2}, {2, 2}},
       [](const Scope& s, const O& x) { return ops::AddN(s, x); }},
      {"Neg", {{4}}, unary(ops::Neg)},
      {"Exp", {{2, 3}}, unary(ops::Exp)},
      {"Log", {{2, 3}}, unary(ops::Log), Init::kPositive},
      {"Sqrt", {{2, 3}}, unary(ops::Sqrt), Init::kPositive},
      {"Square", {{2, 3}}, unary(ops::Square)},
      {"Relu", {{3, 4}}, unary(ops::Relu), Init::kAwayFromZero},
      {"Sigmoid", {{3, 4}}, unary(ops::Sigmoid)},
      {"Tanh", {{3, 4}}, unary(ops::Tanh)},
      {"Sum/axis1", {{2, 3, 4}}, [](const Scope& s, const O& x) { return ops::Sum(s, x[0], {1}); }},
      {"Sum/all", {{2, 3}}, [](const Scope& s, const O& x) { return ops::Sum(s, x[0], {}); }},
      {"Mean/keep_dims",
       {{2, 3, 4}},
       [](const Scope& s, const O& x) {
         return ops::Mean(s, x[0], {0, 2}, true);
       }},
      {"Max/axis1",
       {{3, 4}},
       [](const Scope& s, const O& x) { return ops::Max(s, x[0], {1}); },
       Init::kDistinct},
      {"MatMul", {{3, 4}, {4, 2}}, matmul(false, false)},
      {"MatMul/transpose_a", {{4, 3}, {4, 2}}, matmul(true, false)},
      {"MatMul/transpose_b", {{3, 4}, {2, 4}}, matmul(false, true)},
      {"MatMul/transpose_both", {{4, 3}, {2, 4}}, matmul(true, true)},
      {"Reshape",
       {{2, 6}},
       [](const Scope& s, const O& x) {
         return ops::Reshape(s, x[0], {3, -1});
       }},
      {"Transpose",
       {{2, 3, 4}},
       [](const Scope& s, const O& x) {
         return ops::Transpose(s, x[0], {2, 0, 1});
       }},
      {"Concat", {{2, 2}, {2, 3}}, [](const Scope& s, const O& x) { return ops::Concat(s, x, 1); }},
      {"Slice",
       {{4, 5}},
       [](const Scope& s, const O& x) {
         return ops::Slice(s, x[0], {1, 1}, {2, -1});
       }},
      {"Cast/through_float32",
       {{5}},
       [](const Scope& s, const O& x) {
         return ops::Cast(s, ops::Cast(s, x[0], DType::kFloat32), DType::kFloat64);
       },
       Init::kNormal,
       {},
       1e-2,
       1e-3},
      {"Gather/repeated_indices",
       {{5, 3}},
       [](const Scope& s, const O& x) {
         return ops::Gather(s, x[0], Ints(s, Shape{4}, {4, 0, 4, 2}));
       }},
      {"EmbeddingBag/mean_with_padding_and_an_empty_bag",
       {{6, 3}},
       [](const Scope& s, const O& x) {
         Output ids = ops::Const(
             s, Tensor::FromVector<float>(Shape{4, 3}, {1, 4, -1, 4, 4, 4, -1, -1, -1, 0, 5, 2}));
         return ops::EmbeddingBag(s, x[0], ids, "mean");
       }},
      {"EmbeddingBag/sum_of_int64_ids",
       {{5, 2}},
       [](const Scope& s, const O& x) {
         Output ids = ops::Const(s, Tensor::FromVector<int64_t>(Shape{2, 2}, {3, 3, -1, 1}));
         return ops::EmbeddingBag(s, x[0], ids, "sum");
       }},
      {"IndexedSlices",
       {{3, 2}, {4, 2}},
       [](const Scope& s, const O& x) {
         return ops::IndexedSlices(s, x[0], Ints(s, Shape{3}, {1, 1, 3}), x[1]);
       },
       Init::kNormal,
       {0}},
      {"BiasAdd", {{2, 3, 4}, {4}}, binary(ops::BiasAdd)},
      {"Softmax", {{3, 5}}, unary(ops::Softmax)},
      {"LogSoftmax", {{3, 5}}, unary(ops::LogSoftmax)},
      {"SparseSoftmaxCrossEntropyWithLogits",
       {{4, 5}},
       [](const Scope& s, const O& x) {
         return ops::SparseSoftmaxCrossEntropyWithLogits(s, x[0],
                                                         Ints(s, Shape{4}, {0, 3, 4, 1}))[0];
       }},
      {"Conv2D/same",
       {{2, 5, 5, 3}, {3, 3, 3, 4}},
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {1, 1}, "SAME");
       }},
      {"Conv2D/valid_stride2",
       {{2, 7, 6, 2}, {3, 2, 2, 3}},
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {2, 2}, "VALID");
       }},
      {"Conv2D/im2col_same_stride2",
       {{2, 5, 6, 8}, {3, 3, 8, 3}},  // depth 72: the GEMM path
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {2, 2}, "SAME");
       }},
      {"Conv2D/valid_stride1_rect",  // input gradient as a convolution: pad k-1, uneven
       {{2, 6, 5, 3}, {3, 2, 3, 2}},
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {1, 1}, "VALID");
       }},
      {"Conv2D/same_stride1_even",  // SAME with an even kernel pads one more at the bottom/right
       {{1, 4, 5, 8}, {2, 4, 8, 3}},
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {1, 1}, "SAME");
       }},
      {"Conv2D/pointwise",
       {{2, 3, 3, 4}, {1, 1, 4, 2}},
       [](const Scope& s, const O& x) {
         return ops::Conv2D(s, x[0], x[1], {1, 1}, "VALID");
       }},
      {"MaxPool/valid",
       {{2, 4, 4, 3}},
       [](const Scope& s, const O& x) {
         return ops::MaxPool(s, x[0], {2, 2}, {2, 2}, "VALID");
       },
       Init::kDistinct},
      {"MaxPool/valid_border",  // tiled windows that leave the last row and column out
       {{1, 5, 5, 2}},
       [](const Scope& s, const O& x) {
         return ops::MaxPool(s, x[0], {2, 2}, {2, 2}, "VALID");
       },
       Init::kDistinct},
      {"MaxPool/same_overlapping",
       {{1, 5, 5, 2}},
       [](const Scope& s, const O& x) {
         return ops::MaxPool(s, x[0], {3, 3}, {2, 2}, "SAME");
       },
       Init::kDistinct},
      {"AvgPool/same",
       {{1, 5, 5, 2}},
       [](const Scope& s, const O& x) {
         return ops::AvgPool(s, x[0], {3, 3}, {2, 2}, "SAME");
       }},
      {"Dropout",
       {{4, 6}},
       [](const Scope& s, const O& x) { return ops::Dropout(s, x[0], 0.3, 5); }},
      // Composites (the model files' normalisation layers): x, gamma, beta.
      {"LayerNorm",
       {{3, 5}, {5}, {5}},
       [](const Scope& s, const O& x) { return ops::LayerNorm(s, x[0], x[1], x[2], 1e-3); }},
      {"BatchNorm/training",  // each channel by the batch's own statistics, NHWC
       {{2, 3, 2, 4}, {4}, {4}},
       [](const Scope& s, const O& x) {
         std::vector<Output> m = ops::Moments(s, x[0], {0, 1, 2});
         return ops::Normalize(s, x[0], m[0], m[1], x[1], x[2], 1e-3);
       }},
  };
  return c;
}

double Loss(Session& session, Output loss, const std::vector<Output>& inputs,
            const std::vector<Tensor>& values) {
  std::vector<Session::Feed> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) feeds.emplace_back(inputs[i], values[i]);
  std::vector<Tensor> out;
  session.set_run_counter(7);  // dropout masks depend on the step: keep it fixed
  Status st = session.Run(feeds, {loss}, {}, &out);
  EXPECT_TRUE(st.ok()) << st;
  return st.ok() ? *out[0].data<double>() : 0.0;
}

class GradientCheck : public ::testing::TestWithParam<GradCase> {};

TEST_P(GradientCheck, MatchesFiniteDifferences) {
  const GradCase& gc = GetParam();
  Scope s = Scope::NewRootScope();
  std::vector<Output> inputs;
  std::vector<Tensor> values;
  for (size_t i = 0; i < gc.shapes.size(); ++i) {
    inputs.push_back(ops::Placeholder(s, DType::kFloat64, gc.shapes[i]));
    values.push_back(InitTensor(gc.shapes[i], gc.init, 100 + i));
  }
  Output y = gc.build(s, inputs);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_TRUE(y.shape().IsFullyDefined());
  Output r = ops::Const(s, InitTensor(y.shape(), Init::kNormal, 999));
  Output loss = ops::Sum(s, ops::Mul(s, y, r), {});
  std::vector<int> wrt = gc.wrt;
  if (wrt.empty()) {
    for (size_t i = 0; i < inputs.size(); ++i) wrt.push_back(static_cast<int>(i));
  }
  std::vector<Output> xs;
  for (int i : wrt) xs.push_back(inputs[i]);
  std::vector<Output> grads;
  ASSERT_TRUE(AddGradients(s, {loss}, xs, {}, &grads).ok()) << s.status();
  Session session(s.graph());
  std::vector<Session::Feed> feeds;
  for (size_t i = 0; i < inputs.size(); ++i) feeds.emplace_back(inputs[i], values[i]);
  std::vector<Tensor> analytic;
  session.set_run_counter(7);
  Status run_status = session.Run(feeds, grads, {}, &analytic);
  ASSERT_TRUE(run_status.ok()) << run_status;

  for (size_t k = 0; k < wrt.size(); ++k) {
    const int i = wrt[k];
    ASSERT_EQ(analytic[k].shape(), gc.shapes[i]);
    for (int64_t e = 0; e < values[i].num_elements(); ++e) {
      std::vector<Tensor> plus = values, minus = values;
      plus[i] = values[i].DeepCopy();
      minus[i] = values[i].DeepCopy();
      plus[i].data<double>()[e] += gc.eps;
      minus[i].data<double>()[e] -= gc.eps;
      const double numeric =
          (Loss(session, loss, inputs, plus) - Loss(session, loss, inputs, minus)) / (2 * gc.eps);
      const double got = analytic[k].data<double>()[e];
      EXPECT_NEAR(got, numeric, gc.tol * std::max(1.0, std::abs(numeric)))
          << gc.name << ": input " << i << " element " << e;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllOps, GradientCheck, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<GradCase>& info) {
                           std::string n = info.param.name;
                           for (char& ch : n) {
                             if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

// Every registered op with a gradient function appears in the table above.
TEST(GradientCheckCoverage, EveryDifferentiableOpIsChecked) {
  std::set<std::string> checked;
  for (const GradCase& c : Cases()) checked.insert(c.name.substr(0, c.name.find('/')));
  for (const std::string& op : BuiltinOps().OpNames()) {
    const OpDef* def = BuiltinOps().Find(op);
    if (def->grad_fn) {
      EXPECT_TRUE(checked.count(op)) << op << " has a gradient but no check";
    }
  }
}

// ---- forward values worked out by hand ----

TEST(ForwardTest, BroadcastArithmetic) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s, F64({2, 3}, {1, 2, 3, 4, 5, 6}));
  Output b = ops::Const(s, F64({3}, {10, 20, 30}));
  ExpectNear(RunOne(s, ops::Add(s, a, b)), {2, 3}, {11, 22, 33, 14, 25, 36});
  ExpectNear(RunOne(s, ops::Sub(s, b, a)), {2, 3}, {9, 18, 27, 6, 15, 24});
  Output col = ops::Const(s, F64({2, 1}, {2, 4}));
  ExpectNear(RunOne(s, ops::Div(s, a, col)), {2, 3}, {0.5, 1, 1.5, 1, 1.25, 1.5});
  ExpectNear(RunOne(s, ops::Mul(s, col, ops::Const(s, F64({1, 3}, {1, 2, 3})))), {2, 3},
             {2, 4, 6, 4, 8, 12});
  Output i = ops::Const(s, Tensor::FromVector<int32_t>({3}, {7, -8, 9}));
  ExpectNear(RunOne(s, ops::Div(s, i, ops::Const(s, Tensor::FromVector<int32_t>({3}, {2, 2, 3})))),
             {3}, {3, -4, 3});
}

TEST(ForwardTest, IntegerDivisionByZeroIsAnError) {
  Scope s = Scope::NewRootScope();
  Output i = ops::Const(s, Tensor::FromVector<int32_t>({2}, {1, 2}));
  Output z = ops::Const(s, Tensor::FromVector<int32_t>({2}, {1, 0}));
  Session session(s.graph());
  std::vector<Tensor> out;
  Status st = session.Run({ops::Div(s, i, z)}, &out);
  EXPECT_EQ(st.message(), "Div node 'Div': integer division by zero at element 1");
}

TEST(ForwardTest, UnaryFunctions) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({4}, {-2, 0, 1, 4}));
  ExpectNear(RunOne(s, ops::Relu(s, x)), {4}, {0, 0, 1, 4});
  ExpectNear(RunOne(s, ops::Square(s, x)), {4}, {4, 0, 1, 16});
  ExpectNear(RunOne(s, ops::Neg(s, x)), {4}, {2, 0, -1, -4});
  ExpectNear(RunOne(s, ops::Sigmoid(s, x)), {4},
             {1 / (1 + std::exp(2.0)), 0.5, 1 / (1 + std::exp(-1.0)), 1 / (1 + std::exp(-4.0))});
  ExpectNear(RunOne(s, ops::Tanh(s, x)), {4}, {std::tanh(-2.0), 0, std::tanh(1.0), std::tanh(4.0)});
  Output p = ops::Const(s, F64({3}, {1, 4, 9}));
  ExpectNear(RunOne(s, ops::Sqrt(s, p)), {3}, {1, 2, 3});
  ExpectNear(RunOne(s, ops::Log(s, p)), {3}, {0, std::log(4.0), std::log(9.0)});
  ExpectNear(RunOne(s, ops::Exp(s, ops::Const(s, F64({2}, {0, 1})))), {2}, {1, std::exp(1.0)});
}

TEST(ForwardTest, Reductions) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({2, 3}, {1, 5, 3, 4, 2, 6}));
  ExpectNear(RunOne(s, ops::Sum(s, x, {0})), {3}, {5, 7, 9});
  ExpectNear(RunOne(s, ops::Sum(s, x, {1}, true)), {2, 1}, {9, 12});
  ExpectNear(RunOne(s, ops::Mean(s, x, {})), {}, {3.5});
  ExpectNear(RunOne(s, ops::Max(s, x, {1})), {2}, {5, 6});
  ExpectNear(RunOne(s, ops::Max(s, x, {-2})), {3}, {4, 5, 6});
  ExpectNear(RunOne(s, ops::ArgMax(s, x, 1)), {2}, {1, 2});
}

TEST(ForwardTest, MatMulAndBiasAdd) {
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s, F64({2, 3}, {1, 2, 3, 4, 5, 6}));
  Output b = ops::Const(s, F64({3, 2}, {7, 8, 9, 10, 11, 12}));
  ExpectNear(RunOne(s, ops::MatMul(s, a, b)), {2, 2}, {58, 64, 139, 154});
  ExpectNear(RunOne(s, ops::MatMul(s, a, a, false, true)), {2, 2}, {14, 32, 32, 77});
  ExpectNear(RunOne(s, ops::MatMul(s, a, a, true, false)), {3, 3},
             {17, 22, 27, 22, 29, 36, 27, 36, 45});
  Output f = ops::Const(s, testing::F32({2, 3}, {1, 2, 3, 4, 5, 6}));
  ExpectNear(RunOne(s, ops::BiasAdd(s, f, ops::Const(s, testing::F32({3}, {1, 0, -1})))), {2, 3},
             {2, 2, 2, 5, 5, 5});
  // empty inner dimension: zeros
  Output e0 = ops::Const(s, Tensor(DType::kFloat64, Shape{2, 0}));
  Output e1 = ops::Const(s, Tensor(DType::kFloat64, Shape{0, 3}));
  ExpectNear(RunOne(s, ops::MatMul(s, e0, e1)), {2, 3}, {0, 0, 0, 0, 0, 0});
}

TEST(ForwardTest, SoftmaxAndCrossEntropy) {
  Scope s = Scope::NewRootScope();
  Output z = ops::Const(s, F64({2, 3}, {1, 2, 3, 1000, 1000, 1000}));
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), sum = e1 + e2 + e3;
  ExpectNear(RunOne(s, ops::Softmax(s, z)), {2, 3},
             {e1 / sum, e2 / sum, e3 / sum, 1.0 / 3, 1.0 / 3, 1.0 / 3}, 1e-12);
  ExpectNear(RunOne(s, ops::LogSoftmax(s, z)), {2, 3},
             {1 - std::log(sum), 2 - std::log(sum), 3 - std::log(sum), -std::log(3.0),
              -std::log(3.0), -std::log(3.0)},
             1e-9);
  auto xent = ops::SparseSoftmaxCrossEntropyWithLogits(
      s, z, ops::Const(s, Tensor::FromVector<int64_t>({2}, {2, 0})));
  ExpectNear(RunOne(s, xent[0]), {2}, {std::log(sum) - 3, std::log(3.0)}, 1e-9);
  ExpectNear(RunOne(s, xent[1]), {2, 3},
             {e1 / sum, e2 / sum, e3 / sum - 1, 1.0 / 3 - 1, 1.0 / 3, 1.0 / 3}, 1e-12);
}

TEST(ForwardTest, CrossEntropyRejectsOutOfRangeLabels) {
  Scope s = Scope::NewRootScope();
  Output z = ops::Const(s, F64({2, 3}, {1, 2, 3, 4, 5, 6}));
  auto xent = ops::SparseSoftmaxCrossEntropyWithLogits(
      s, z, ops::Const(s, Tensor::FromVector<int32_t>({2}, {1, 3})));
  Session session(s.graph());
  std::vector<Tensor> out;
  EXPECT_EQ(session.Run({xent[0]}, &out).message(),
            "SparseSoftmaxCrossEntropyWithLogits node 'xent': label 3 at position 1 is out of "
            "range [0, 3)");
}

TEST(ForwardTest, Conv2DAndPooling) {
  Scope s = Scope::NewRootScope();
  // 1x3x3x1 input 1..9, 2x2x1x1 filter [[1,0],[0,-1]]: VALID -> x[i][j] - x[i+1][j+1] = -4.
  Output x = ops::Const(s, F64({1, 3, 3, 1}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  Output f = ops::Const(s, F64({2, 2, 1, 1}, {1, 0, 0, -1}));
  ExpectNear(RunOne(s, ops::Conv2D(s, x, f, {1, 1}, "VALID")), {1, 2, 2, 1}, {-4, -4, -4, -4});
  // SAME pads bottom/right by one: last row/column see zeros past the edge.
  ExpectNear(RunOne(s, ops::Conv2D(s, x, f, {1, 1}, "SAME")), {1, 3, 3, 1},
             {-4, -4, 3, -4, -4, 6, 7, 8, 9});
  ExpectNear(RunOne(s, ops::MaxPool(s, x, {2, 2}, {1, 1}, "VALID")), {1, 2, 2, 1}, {5, 6, 8, 9});
  ExpectNear(RunOne(s, ops::MaxPool(s, x, {2, 2}, {2, 2}, "SAME")), {1, 2, 2, 1}, {5, 6, 8, 9});
  // AvgPool SAME counts only the valid cells: the corner window holds just 9.
  ExpectNear(RunOne(s, ops::AvgPool(s, x, {2, 2}, {2, 2}, "SAME")), {1, 2, 2, 1}, {3, 4.5, 7.5, 9});
}

TEST(ForwardTest, MaxPoolGradScattersToTheArgmax) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({1, 2, 4, 1}, {1, 2, 3, 4, 5, 6, 7, 8}));
  Output dy = ops::Const(s, F64({1, 1, 2, 1}, {10, 20}));
  // Tiled 2x2/2 windows: argmax 3 (bottom right) and 0 (top left).
  Output arg = ops::Const(s, Tensor::FromVector<int32_t>({1, 1, 2, 1}, {3, 0}));
  ExpectNear(RunOne(s, ops::MaxPoolGrad(s, x, arg, dy, {2, 2}, {2, 2}, "VALID")), {1, 2, 4, 1},
             {0, 0, 20, 0, 0, 10, 0, 0});
  // Overlapping 2x2/1 windows add up where two argmaxes name the same element.
  Output dy3 = ops::Const(s, F64({1, 1, 3, 1}, {1, 2, 4}));
  Output arg3 = ops::Const(s, Tensor::FromVector<int32_t>({1, 1, 3, 1}, {1, 0, 2}));
  ExpectNear(RunOne(s, ops::MaxPoolGrad(s, x, arg3, dy3, {2, 2}, {1, 1}, "VALID")), {1, 2, 4, 1},
             {0, 3, 0, 0, 0, 0, 4, 0});
}

TEST(ForwardTest, MaxPoolGradRejectsABadArgmax) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({1, 2, 4, 1}, {1, 2, 3, 4, 5, 6, 7, 8}));
  Output dy = ops::Const(s, F64({1, 1, 2, 1}, {10, 20}));
  Output arg = ops::Const(s, Tensor::FromVector<int32_t>({1, 1, 2, 1}, {1, 4}));
  Session session(s.graph());
  std::vector<Tensor> out;
  EXPECT_EQ(
      session.Run({ops::MaxPoolGrad(s, x, arg, dy, {2, 2}, {2, 2}, "VALID")}, &out).message(),
      "MaxPoolGrad node 'MaxPoolGrad': argmax 4 at position 1 is not a valid window position");
}

TEST(ForwardTest, ArrayOps) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({2, 3}, {1, 2, 3, 4, 5, 6}));
  ExpectNear(RunOne(s, ops::Transpose(s, x, {1, 0})), {3, 2}, {1, 4, 2, 5, 3, 6});
  ExpectNear(RunOne(s, ops::Reshape(s, x, {3, -1})), {3, 2}, {1, 2, 3, 4, 5, 6});
  ExpectNear(RunOne(s, ops::Concat(s, {x, x}, 0)), {4, 3}, {1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6});
  ExpectNear(RunOne(s, ops::Concat(s, {x, x}, -1)), {2, 6}, {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  ExpectNear(RunOne(s, ops::Slice(s, x, {0, 1}, {2, 2})), {2, 2}, {2, 3, 5, 6});
  ExpectNear(
      RunOne(s, ops::Gather(s, x, ops::Const(s, Tensor::FromVector<int64_t>({3}, {1, 0, 1})))),
      {3, 3}, {4, 5, 6, 1, 2, 3, 4, 5, 6});
  ExpectNear(RunOne(s, ops::Equal(s, x, ops::Const(s, F64({3}, {1, 5, 0})))), {2, 3},
             {1, 0, 0, 0, 1, 0});
  ExpectNear(RunOne(s, ops::Cast(s, ops::Const(s, F64({3}, {1.7, -1.7, 0})), DType::kInt32)), {3},
             {1, -1, 0});
  ExpectNear(RunOne(s, ops::Cast(s, ops::Cast(s, x, DType::kFloat16), DType::kFloat32)), {2, 3},
             {1, 2, 3, 4, 5, 6});
  ExpectNear(RunOne(s, ops::Zeros(s, Shape{2}, DType::kInt64)), {2}, {0, 0});
}

// Bags {1, 4}, {4, 4, 4}, none, {0, 5.7 -> 5}: means of their rows, zeros for the empty one.
TEST(ForwardTest, EmbeddingBagMeansTheRowsOfEachBag) {
  Scope s = Scope::NewRootScope();
  std::vector<double> table(12);
  for (int i = 0; i < 12; ++i) table[i] = i;  // row r = (2r, 2r + 1)
  Output ids = ops::Const(
      s, Tensor::FromVector<float>(Shape{4, 3}, {1, 4, -1, 4, 4, 4, -1, -1, -1, 0, 5.7f, -2}));
  Output y = ops::EmbeddingBag(s, ops::Const(s, F64({6, 2}, table)), ids, "mean");
  ExpectNear(RunOne(s, y), Shape{4, 2}, {5, 6, 8, 9, 0, 0, 5, 6}, 0);
  Output bad =
      ops::EmbeddingBag(s, ops::Const(s, F64({6, 2}, table)),
                        ops::Const(s, Tensor::FromVector<int32_t>(Shape{1, 2}, {2, 6})), "sum");
  Session session(s.graph());
  std::vector<Tensor> out;
  Status st = session.Run({bad}, &out);
  EXPECT_NE(st.message().find("index 6 at position 1 is out of range [0, 6)"), std::string::npos)
      << st;
  Output nan = ops::EmbeddingBag(
      s, ops::Const(s, F64({6, 2}, table)),
      ops::Const(s, Tensor::FromVector<float>(Shape{1, 2}, {1, std::nanf("")})), "mean");
  st = session.Run({nan}, &out);
  EXPECT_NE(st.message().find("id at position 1 is not a row number (NaN or beyond int64); the "
                              "table has 6 rows"),
            std::string::npos)
      << st;
}

TEST(ForwardTest, GatherRejectsOutOfRangeIndices) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, F64({2, 3}, {1, 2, 3, 4, 5, 6}));
  Output g = ops::Gather(s, x, ops::Const(s, Tensor::FromVector<int32_t>({2}, {1, 2})));
  Session session(s.graph());
  std::vector<Tensor> out;
  EXPECT_EQ(session.Run({g}, &out).message(),
            "Gather node 'Gather': index 2 at position 1 is out of range [0, 2)");
}

TEST(ForwardTest, DropoutKeepsAboutOneMinusRateAndScales) {
  Scope s = Scope::NewRootScope();
  Tensor ones(DType::kFloat32, Shape{10000});
  for (int i = 0; i < 10000; ++i) ones.data<float>()[i] = 1.0f;
  Output y = ops::Dropout(s, ops::Const(s, ones), 0.25, 3);
  Session session(s.graph());
  std::vector<Tensor> a, b;
  ASSERT_TRUE(session.Run({y}, &a).ok());
  ASSERT_TRUE(session.Run({y}, &b).ok());
  int kept = 0;
  for (int i = 0; i < 10000; ++i) {
    const float v = a[0].data<float>()[i];
    ASSERT_TRUE(v == 0.0f || std::abs(v - 4.0f / 3.0f) < 1e-6f) << v;
    kept += v != 0.0f;
  }
  EXPECT_NEAR(kept / 10000.0, 0.75, 0.02);
  EXPECT_FALSE(a[0].BitEqual(b[0])) << "each step draws a new mask";
}

TEST(ForwardTest, InitializersAreSeededAndInRange) {
  Scope s = Scope::NewRootScope();
  Output u = ops::RandomUniform(s, Shape{1000}, -0.5, 0.5, 11);
  Output u2 = ops::RandomUniform(s, Shape{1000}, -0.5, 0.5, 11);
  Output t = ops::TruncatedNormal(s, Shape{1000}, 1.0, 0.1, 11);
  Output g = ops::GlorotUniform(s, Shape{784, 256}, 3);
  Tensor tu = RunOne(s, u), tu2 = RunOne(s, u2), tt = RunOne(s, t), tg = RunOne(s, g);
  EXPECT_TRUE(tu.BitEqual(tu2));
  double mean = 0;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_GE(tu.data<float>()[i], -0.5f);
    EXPECT_LT(tu.data<float>()[i], 0.5f);
    EXPECT_GE(tt.data<float>()[i], 0.8f - 1e-6f);
    EXPECT_LE(tt.data<float>()[i], 1.2f + 1e-6f);
    mean += tt.data<float>()[i] / 1000;
  }
  EXPECT_NEAR(mean, 1.0, 0.01);
  const float limit = std::sqrt(6.0f / (784 + 256));
  float mx = 0;
  for (int64_t i = 0; i < tg.num_elements(); ++i) mx = std::max(mx, std::abs(tg.data<float>()[i]));
  EXPECT_LE(mx, limit);
  EXPECT_GT(mx, 0.99f * limit);
}

}  // namespace
}  // namespace mpiflow

namespace mpiflow {
namespace {

// float32 values in [-1, 1] in steps of 0.001 from a 64-bit LCG: the same for a given seed.
Tensor SeededFloats(const Shape& shape, uint64_t seed) {
  Tensor t(DType::kFloat32, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    t.data<float>()[i] = static_cast<float>((seed >> 40) % 2001) / 1000.0f - 1.0f;
  }
  return t;
}

// The direct single-channel float32 path of Conv2D and Conv2DBackpropFilter (stride 1, one
// input channel, 32k output channels) against the float64 im2col path on the same values:
// SAME and VALID, an odd output width (the last pixel of a row is computed alone), 64 channels.
TEST(ForwardTest, DirectSingleChannelConvMatchesIm2col) {
  for (const std::string padding : {"SAME", "VALID"}) {
    for (int64_t oc : {32, 64}) {
      Scope s = Scope::NewRootScope();
      const Shape xs{3, 7, 5, 1}, fs{5, 5, 1, oc};
      Output x = ops::Const(s, SeededFloats(xs, 1)), f = ops::Const(s, SeededFloats(fs, 2));
      Output y = ops::Conv2D(s, x, f, {1, 1}, padding);
      Output x64 = ops::Cast(s, x, DType::kFloat64), f64 = ops::Cast(s, f, DType::kFloat64);
      Output y64 = ops::Conv2D(s, x64, f64, {1, 1}, padding);
      const Shape ys = y.shape();
      Output dy = ops::Const(s, SeededFloats(ys, 3));
      Output df = ops::Conv2DBackpropFilter(s, x, f, dy, {1, 1}, padding);
      Output df64 = ops::Conv2DBackpropFilter(s, x64, f64, ops::Cast(s, dy, DType::kFloat64),
                                              {1, 1}, padding);
      Session session(s.graph());
      std::vector<Tensor> out;
      ASSERT_TRUE(session.Run({y, y64, df, df64}, &out).ok());
      for (int pair : {0, 2}) {
        const Tensor &a = out[pair], &b = out[pair + 1];
        ASSERT_EQ(a.num_elements(), b.num_elements());
        double worst = 0;
        for (int64_t i = 0; i < a.num_elements(); ++i) {
          worst = std::max(worst, std::fabs(a.data<float>()[i] - b.data<double>()[i]) /
                                      std::max(1.0, std::fabs(b.data<double>()[i])));
        }
        EXPECT_LT(worst, 2e-5) << padding << " oc " << oc
                               << (pair ? " filter gradient" : " forward");
      }
    }
  }
}

// The implicit-GEMM float32 paths against the float64 im2col path on the same values: Conv2D
// (output channels a multiple of 16) and Conv2DBackpropInput (stride 1, input channels a
// multiple of 16; with 3 channels it takes im2col). SAME and VALID, strides 1 and 2 (VALID 2
// leaves a row and a column out), 2x5 and 3x5 kernels (the even one pads more at the bottom),
// outputs of 9x7 and 8x5 (not multiples of the six-pixel tile), two images. The implicit-GEMM
// results are also bit-identical with one and two intra-op threads.
TEST(ForwardTest, ImplicitGemmConvMatchesIm2col) {
  struct Case {
    std::string padding;
    int64_t stride, kh, h, w, c, oc;
  };
  for (const Case& k : std::vector<Case>{{"SAME", 1, 2, 9, 7, 16, 16},
                                         {"VALID", 1, 3, 11, 11, 32, 48},
                                         {"SAME", 1, 3, 9, 7, 3, 32},
                                         {"SAME", 2, 3, 17, 13, 3, 32},
                                         {"VALID", 2, 3, 18, 14, 16, 16}}) {
    const std::string what = k.padding + " stride " + std::to_string(k.stride) + " kernel " +
                             std::to_string(k.kh) + "x5 c " + std::to_string(k.c) + " oc " +
                             std::to_string(k.oc);
    Scope s = Scope::NewRootScope();
    const Shape xs{2, k.h, k.w, k.c}, fs{k.kh, 5, k.c, k.oc};
    Output x = ops::Const(s, SeededFloats(xs, 1)), f = ops::Const(s, SeededFloats(fs, 2));
    Output x64 = ops::Cast(s, x, DType::kFloat64), f64 = ops::Cast(s, f, DType::kFloat64);
    const std::vector<int64_t> st{k.stride, k.stride};
    Output y = ops::Conv2D(s, x, f, st, k.padding);
    Output y64 = ops::Conv2D(s, x64, f64, st, k.padding);
    std::vector<Output> fetch = {y, y64};
    Output dy = ops::Const(s, SeededFloats(y.shape(), 3));
    Output dy64 = ops::Cast(s, dy, DType::kFloat64);
    if (k.stride == 1) {
      fetch.push_back(ops::Conv2DBackpropInput(s, x, f, dy, st, k.padding));
      fetch.push_back(ops::Conv2DBackpropInput(s, x64, f64, dy64, st, k.padding));
    }
    std::vector<Tensor> one, two;
    ASSERT_TRUE(Session(s.graph()).Run(fetch, &one).ok()) << what;
    SessionOptions threads;
    threads.intra_op_threads = 2;
    ASSERT_TRUE(Session(s.graph(), threads).Run(fetch, &two).ok()) << what;
    for (size_t pair = 0; pair < fetch.size(); pair += 2) {
      const Tensor &a = one[pair], &b = one[pair + 1];
      const char* which = pair ? " input gradient" : " forward";
      ASSERT_EQ(a.shape(), b.shape()) << what << which;
      ASSERT_GT(a.num_elements(), 0);
      double worst = 0;
      for (int64_t i = 0; i < a.num_elements(); ++i) {
        worst = std::max(worst, std::fabs(a.data<float>()[i] - b.data<double>()[i]) /
                                    std::max(1.0, std::fabs(b.data<double>()[i])));
      }
      EXPECT_LT(worst, 2e-5) << what << which;
      if (pair == 2 && k.c % 16 != 0) continue;  // im2col + OpenBLAS: sums vary with threads
      EXPECT_EQ(0, std::memcmp(a.data<float>(), two[pair].data<float>(),
                               sizeof(float) * a.num_elements()))
          << what << which << ": one and two threads differ";
    }
  }
}

}  // namespace
}  // namespace mpiflow
