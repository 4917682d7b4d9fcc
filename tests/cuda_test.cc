// The CUDA kernels against the CPU's: every op with a CUDA kernel, forward and gradient, on
// random inputs (float32 and float64), to each dtype's tolerance; a label out of range is the
// CPU's error; a small MLP trains on the GPU as on the CPU, and twice alike to the bit. Needs a
// GPU: without one (or in a build without CUDA) every test skips, saying so. The runtime's
// device handling without a GPU: device_test.cc. Run by scripts/gpu-check.sh on a GPU machine.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>

#include "mpiflow/gradients.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/random.h"
#include "tests/test_util.h"

namespace mpiflow {
namespace {

#define MPIFLOW_NEEDS_GPU()                                                                      \
  if (GpuCount() == 0) {                                                                         \
    GTEST_SKIP() << "no GPU visible to this process (or no CUDA in this build): the CUDA "       \
                    "kernels are not run here; scripts/gpu-check.sh runs them on a GPU machine"; \
  }

using O = std::vector<Output>;
using Builder = std::function<Output(const Scope&, const O&)>;
enum class Init { kNormal, kPositive, kLabels };

struct Case {
  std::string name;
  std::vector<Shape> shapes;
  Builder build;
  std::string op;  // the op that must have a CUDA kernel
  Init init = Init::kNormal;
  bool grad = true;
  bool f64 = true;  // the op has a float64 CUDA kernel (the convolutions: float32 only)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

Tensor Random(DType dtype, const Shape& shape, Init init, uint64_t seed) {
  Tensor t(dtype, shape);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    const double u = RandomUniform01(seed, 3, i);
    const double v = init == Init::kPositive ? 0.5 + u : 2 * u - 1;
    if (dtype == DType::kFloat32) {
      t.data<float>()[i] = static_cast<float>(v);
    } else {
      t.data<double>()[i] = v;
    }
  }
  return t;
}

std::vector<Case> Cases() {
  const auto unary = [](Output (*f)(const Scope&, Output)) {
    return [f](const Scope& s, const O& x) { return f(s, x[0]); };
  };
  const auto binary = [](Output (*f)(const Scope&, Output, Output)) {
    return [f](const Scope& s, const O& x) { return f(s, x[0], x[1]); };
  };
  const auto matmul = [](bool ta, bool tb) {
    return [ta, tb](const Scope& s, const O& x) { return ops::MatMul(s, x[0], x[1], ta, tb); };
  };
  const auto conv = [](std::vector<int64_t> strides, std::string pad) {
    return [strides, pad](const Scope& s, const O& x) {
      return ops::Conv2D(s, x[0], x[1], strides, pad);
    };
  };
  const auto pool = [](bool max, std::vector<int64_t> k, std::vector<int64_t> st, std::string pad) {
    return [max, k, st, pad](const Scope& s, const O& x) {
      return max ? ops::MaxPool(s, x[0], k, st, pad) : ops::AvgPool(s, x[0], k, st, pad);
    };
  };
  return {
      {"Add", {{64, 33}, {64, 33}}, binary(ops::Add), "Add"},
      {"Add_broadcast_row", {{64, 33}, {33}}, binary(ops::Add), "Add"},
      {"Sub_broadcast_col", {{5, 7, 3}, {7, 1}}, binary(ops::Sub), "Sub"},
      {"Mul_broadcast_both", {{6, 1}, {1, 9}}, binary(ops::Mul), "Mul"},
      {"Div", {{40, 9}, {40, 9}}, binary(ops::Div), "Div", Init::kPositive},
      {"AddN_11", std::vector<Shape>(11, Shape{300}),
       [](const Scope& s, const O& x) { return ops::AddN(s, x); }, "AddN"},
      {"Neg", {{1000}}, unary(ops::Neg), "Neg"},
      {"Exp", {{1000}}, unary(ops::Exp), "Exp"},
      {"Log", {{1000}}, unary(ops::Log), "Log", Init::kPositive},
      {"Sqrt", {{1000}}, unary(ops::Sqrt), "Sqrt", Init::kPositive},
      {"Square", {{1000}}, unary(ops::Square), "Square"},
      {"Relu", {{64, 100}}, unary(ops::Relu), "Relu"},
      {"Sigmoid", {{64, 100}}, unary(ops::Sigmoid), "Sigmoid"},
      {"Tanh", {{64, 100}}, unary(ops::Tanh), "Tanh"},
      {"Sum_axis1",
       {{8, 50, 6}},
       [](const Scope& s, const O& x) { return ops::Sum(s, x[0], {1}); },
       "Sum"},
      // One output of 200k elements: the block tree.
      {"Sum_all_large",
       {{400, 500}},
       [](const Scope& s, const O& x) { return ops::Sum(s, x[0], {}); },
       "Sum"},
      {"Mean_keep_dims",
       {{6, 7, 8}},
       [](const Scope& s, const O& x) {
         return ops::Mean(s, x[0], {0, 2}, true);
       },
       "Mean"},
      {"Mean_all",
       {{1024}},
       [](const Scope& s, const O& x) { return ops::Mean(s, x[0], {}); },
       "Mean"},
      {"Max_axis1",
       {{30, 40}},
       [](const Scope& s, const O& x) { return ops::Max(s, x[0], {1}); },
       "Max",
       Init::kNormal,
       false},
      {"MatMul", {{64, 96}, {96, 48}}, matmul(false, false), "MatMul"},
      {"MatMul_ta", {{96, 64}, {96, 48}}, matmul(true, false), "MatMul"},
      {"MatMul_tb", {{64, 96}, {48, 96}}, matmul(false, true), "MatMul"},
      {"MatMul_ta_tb", {{96, 64}, {48, 96}}, matmul(true, true), "MatMul"},
      {"BiasAdd", {{128, 40}, {40}}, binary(ops::BiasAdd), "BiasAdd"},
      {"BiasAdd_5000_rows", {{5000, 33}, {33}}, binary(ops::BiasAdd), "BiasAdd"},
      {"SparseSoftmaxCrossEntropyWithLogits",
       {{256, 10}},
       [](const Scope& s, const O& x) {
         std::vector<int32_t> labels(256);
         for (int i = 0; i < 256; ++i) labels[i] = (i * 7) % 10;
         return ops::SparseSoftmaxCrossEntropyWithLogits(
             s, x[0], ops::Const(s, Tensor::FromVector<int32_t>(Shape{256}, labels)))[0];
       },
       "SparseSoftmaxCrossEntropyWithLogits"},
      // cuDNN: symmetric SAME padding, VALID, and SAME with more padding below (an explicit
      // pad); the gradients run Conv2DBackpropInput and Conv2DBackpropFilter.
      {"Conv2D_same_5x5",
       {{4, 12, 12, 3}, {5, 5, 3, 8}},
       conv({1, 1}, "SAME"),
       "Conv2D",
       Init::kNormal,
       true,
       false},
      {"Conv2D_valid_3x3",
       {{3, 10, 9, 4}, {3, 3, 4, 16}},
       conv({1, 1}, "VALID"),
       "Conv2D",
       Init::kNormal,
       true,
       false},
      {"Conv2D_same_3x3_stride2_uneven_pad",
       {{2, 12, 11, 5}, {3, 3, 5, 6}},
       conv({2, 2}, "SAME"),
       "Conv2D",
       Init::kNormal,
       true,
       false},
      {"MaxPool_2x2", {{4, 12, 12, 8}}, pool(true, {2, 2}, {2, 2}, "VALID"), "MaxPool"},
      {"MaxPool_3x3_stride2_same", {{3, 11, 10, 5}}, pool(true, {3, 3}, {2, 2}, "SAME"), "MaxPool"},
      {"AvgPool_3x3_stride2_same",
       {{3, 11, 10, 5}},
       pool(false, {3, 3}, {2, 2}, "SAME"),
       "AvgPool"},
  };
}

// The op's value and, with grad, the gradients of sum(op(x) * R) for every input: fetched from
// a session on `device`.
std::vector<Tensor> Evaluate(const Case& c, DType dtype, const std::string& device) {
  Scope s = Scope::NewRootScope();
  O inputs;
  std::vector<Session::Feed> feeds;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    inputs.push_back(ops::Placeholder(s, dtype, c.shapes[i]));
    feeds.push_back({inputs.back(), Random(dtype, c.shapes[i], c.init, 100 + i)});
  }
  Output y = c.build(s, inputs);
  O fetches = {y};
  if (c.grad) {
    Output r = ops::Const(s, Random(dtype, y.shape(), Init::kNormal, 99));
    Output loss = ops::Sum(s, ops::Mul(s, y, r), {});
    std::vector<Output> grads;
    Status st = AddGradients(s, {loss}, inputs, {}, &grads);
    EXPECT_TRUE(st.ok()) << st;
    fetches.insert(fetches.end(), grads.begin(), grads.end());
  }
  if (device == kCuda) {  // the op under test must run on the GPU, or this compares CPU to CPU
    EXPECT_TRUE(KernelRegistry::Global().Has(kCuda, *y.node)) << c.op << " has no CUDA kernel";
  }
  SessionOptions so;
  so.device = device;
  Session session(s.graph(), so);
  std::vector<Tensor> out;
  Status st = session.Run(feeds, fetches, {}, &out);
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

// ||a - b|| / ||b||, in float64.
double RelativeError(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = testing::AsDoubles(a), y = testing::AsDoubles(b);
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) || std::isnan(y[i])) return INFINITY;
    num += (x[i] - y[i]) * (x[i] - y[i]);
    den += y[i] * y[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

class CudaOp : public ::testing::TestWithParam<Case> {};

// float32: the GPU's error against the CPU's float64 result at most twice the CPU's own float32
// error (or 1e-6 where that is smaller): sums in another order round differently, but no worse.
// float64: the GPU within 1e-10 of the CPU.
TEST_P(CudaOp, MatchesTheCpu) {
  MPIFLOW_NEEDS_GPU();
  const Case& c = GetParam();
  const std::vector<Tensor> ref = Evaluate(c, DType::kFloat64, kCpu);
  const std::vector<Tensor> gpu64 = c.f64 ? Evaluate(c, DType::kFloat64, kCuda) : ref;
  const std::vector<Tensor> cpu32 = Evaluate(c, DType::kFloat32, kCpu);
  const std::vector<Tensor> gpu32 = Evaluate(c, DType::kFloat32, kCuda);
  ASSERT_EQ(ref.size(), gpu64.size());
  ASSERT_EQ(ref.size(), gpu32.size());
  ASSERT_EQ(ref.size(), cpu32.size());
  for (size_t i = 0; i < ref.size(); ++i) {
    const std::string what = i ? "gradient of input " + std::to_string(i - 1) : "value";
    ASSERT_EQ(ref[i].shape(), gpu32[i].shape()) << what;
    EXPECT_LE(RelativeError(gpu64[i], ref[i]), 1e-10)
        << "float64 " << what << ": " << gpu64[i].DebugString() << " vs " << ref[i].DebugString();
    const double cpu_error = RelativeError(cpu32[i], ref[i]);
    EXPECT_LE(RelativeError(gpu32[i], ref[i]), std::max(2 * cpu_error, 1e-6))
        << "float32 " << what << " (the CPU's float32 error: " << cpu_error
        << "): " << gpu32[i].DebugString() << " vs " << cpu32[i].DebugString();
  }
}

INSTANTIATE_TEST_SUITE_P(EveryCudaOp, CudaOp, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& i) { return i.param.name; });

TEST(CudaTest, ALabelOutOfRangeIsTheCpusError) {
  MPIFLOW_NEEDS_GPU();
  for (const std::string device : {kCpu, kCuda}) {
    Scope s = Scope::NewRootScope();
    Output logits = ops::Const(s, Random(DType::kFloat32, Shape{4, 3}, Init::kNormal, 5));
    Output labels = ops::Const(s, Tensor::FromVector<int64_t>(Shape{4}, {0, 2, 7, -1}));
    Output loss = ops::SparseSoftmaxCrossEntropyWithLogits(s.WithOpName("xent"), logits, labels)[0];
    SessionOptions so;
    so.device = device;
    Session session(s.graph(), so);
    std::vector<Tensor> out;
    Status st = session.Run({loss}, &out);
    EXPECT_EQ(st.message(),
              "SparseSoftmaxCrossEntropyWithLogits node 'xent': label 7 at position 2 is out of "
              "range [0, 3)")
        << device;
  }
}

// Each precision rounds as it says: its error against float64 is within the format's bound, and
// above fp32's (so the tensor-core path really ran).
TEST(CudaTest, MatMulPrecisionsRoundAsTheySay) {
  MPIFLOW_NEEDS_GPU();
  const Tensor a64 = Random(DType::kFloat64, Shape{128, 256}, Init::kNormal, 21);
  const Tensor b64 = Random(DType::kFloat64, Shape{256, 64}, Init::kNormal, 22);
  auto run = [&](DType dtype, const std::string& device, MathPrecision p) {
    Scope s = Scope::NewRootScope();
    Tensor a = Random(dtype, a64.shape(), Init::kNormal, 21);
    Tensor b = Random(dtype, b64.shape(), Init::kNormal, 22);
    Output y = ops::MatMul(s, ops::Const(s, a), ops::Const(s, b));
    SessionOptions so;
    so.device = device;
    so.precision = p;
    Session session(s.graph(), so);
    std::vector<Tensor> out;
    Status st = session.Run({y}, &out);
    EXPECT_TRUE(st.ok()) << st;
    return st.ok() ? out[0] : Tensor();
  };
  const Tensor ref = run(DType::kFloat64, kCpu, MathPrecision::kFp32);
  struct Bound {
    MathPrecision p;
    double lo, hi;
  };
  for (const Bound& b :
       {Bound{MathPrecision::kFp32, 0, 1e-6}, Bound{MathPrecision::kTf32, 1e-5, 3e-3},
        Bound{MathPrecision::kBf16, 1e-4, 2e-2}, Bound{MathPrecision::kFp16, 1e-5, 5e-3}}) {
    const double e = RelativeError(run(DType::kFloat32, kCuda, b.p), ref);
    EXPECT_GT(e, b.lo) << MathPrecisionName(b.p);
    EXPECT_LE(e, b.hi) << MathPrecisionName(b.p);
  }
}

// A 2-layer MLP on a fixed random batch, Adam, `steps` steps: its weights and last loss.
std::vector<Tensor> TrainMlp(const std::string& device, int steps) {
  Scope s = Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{-1, 20});
  Output y = ops::Placeholder(s, DType::kInt32, Shape{-1});
  Output w1 = ops::Variable(s.WithOpName("w1"),
                            ops::RandomUniform(s, Shape{20, 32}, -0.3, 0.3, 1, DType::kFloat32));
  Output b1 = ops::Variable(s.WithOpName("b1"), ops::Zeros(s, Shape{32}, DType::kFloat32));
  Output w2 = ops::Variable(s.WithOpName("w2"),
                            ops::RandomUniform(s, Shape{32, 10}, -0.3, 0.3, 2, DType::kFloat32));
  Output h = ops::Relu(s, ops::BiasAdd(s, ops::MatMul(s, x, w1), b1));
  Output loss =
      ops::Mean(s, ops::SparseSoftmaxCrossEntropyWithLogits(s, ops::MatMul(s, h, w2), y)[0], {});
  OptimizerOptions o;
  o.kind = OptimizerKind::kAdam;
  o.lr.base = 0.01;
  StatusOr<TrainOp> t = Minimize(s, loss, o);
  EXPECT_TRUE(t.ok()) << t.status();
  SessionOptions so;
  so.device = device;
  Session session(s.graph(), so);
  EXPECT_TRUE(session.RunTargets({ops::InitOp(s)}).ok());
  Tensor bx = Random(DType::kFloat32, Shape{64, 20}, Init::kNormal, 11);
  Tensor by(DType::kInt32, Shape{64});
  for (int i = 0; i < 64; ++i) by.data<int32_t>()[i] = i % 10;
  std::vector<Tensor> out;
  for (int i = 0; i < steps; ++i) {
    Status st = session.Run({{x, bx}, {y, by}}, {loss}, {t->train}, &out);
    EXPECT_TRUE(st.ok()) << st;
    if (!st.ok()) return {};
  }
  std::vector<Tensor> r = {out[0]};
  for (const char* name : {"w1", "b1", "w2"}) r.push_back(*session.ReadVariable(name));
  return r;
}

TEST(CudaTest, AnMlpTrainsOnTheGpuAsOnTheCpuAndAlikeTwice) {
  MPIFLOW_NEEDS_GPU();
  const std::vector<Tensor> cpu = TrainMlp(kCpu, 30);
  const std::vector<Tensor> gpu = TrainMlp(kCuda, 30);
  const std::vector<Tensor> again = TrainMlp(kCuda, 30);
  ASSERT_EQ(gpu.size(), 4u);
  ASSERT_EQ(cpu.size(), 4u);
  EXPECT_LT(*gpu[0].data<float>(), 2.0f);  // it learned something (log 10 = 2.30 at start)
  for (size_t i = 0; i < gpu.size(); ++i) {
    // Adam divides by sqrt(v): rounding differences in tiny gradients grow over 30 steps.
    EXPECT_LE(RelativeError(gpu[i], cpu[i]), 1e-3) << "tensor " << i;
    EXPECT_TRUE(gpu[i].BitEqual(again[i])) << "tensor " << i << " differs between GPU runs";
  }
}

}  // namespace
}  // namespace mpiflow
