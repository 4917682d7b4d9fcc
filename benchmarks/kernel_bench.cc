// Kernel benchmarks: raw OpenBLAS sgemm (the machine's one-thread peak for our purposes), the
// MatMul and Conv2D kernels through a Session, elementwise GB/s, and per-op dispatch overhead.
// Each benchmark checks its result once before timing. Run with --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true for medians.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>

#include "kernels/cpu/blas.h"
#include "mpiflow/ops.h"
#include "mpiflow/random.h"
#include "mpiflow/session.h"

namespace mpiflow {
namespace {

Tensor RandomF32(const Shape& s, uint64_t seed) {
  Tensor t(DType::kFloat32, s);
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    t.data<float>()[i] = static_cast<float>(RandomUniform01(seed, 0, i) - 0.5);
  }
  return t;
}

void Fail(benchmark::State& state, const std::string& why) { state.SkipWithError(why.c_str()); }

// Raw cblas_sgemm, one thread: the reference peak the other figures are compared with.
void BM_Sgemm(benchmark::State& state) {
  blas::SetThreads(1);
  const int m = state.range(0), k = state.range(1), n = state.range(2);
  Tensor a = RandomF32({m, k}, 1), b = RandomF32({k, n}, 2), c(DType::kFloat32, {m, n});
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a.data<float>(), k,
                b.data<float>(), n, 0.0f, c.data<float>(), n);
    benchmark::DoNotOptimize(c.raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Sgemm)
    ->Args({1024, 1024, 1024})
    ->Args({64, 784, 256})
    ->Args({784, 64, 256})
    ->Unit(benchmark::kMicrosecond);

// The MatMul kernel through Session::Run (dispatch included), checked against a naive product.
void BM_MatMulOp(benchmark::State& state) {
  const int m = state.range(0), k = state.range(1), n = state.range(2);
  Scope s = Scope::NewRootScope();
  Output a = ops::Const(s, RandomF32({m, k}, 1)), b = ops::Const(s, RandomF32({k, n}, 2));
  Output c = ops::MatMul(s, a, b);
  Session session(s.graph());
  std::vector<Tensor> out;
  if (!session.Run({c}, &out).ok()) return Fail(state, "run failed");
  const float* pa = a.node->attr<Tensor>("value").data<float>();
  const float* pb = b.node->attr<Tensor>("value").data<float>();
  double ref = 0;
  for (int i = 0; i < k; ++i) ref += static_cast<double>(pa[i]) * pb[i * n];
  if (std::abs(ref - out[0].data<float>()[0]) > 1e-3) return Fail(state, "wrong product");
  for (auto _ : state) {
    session.Run({c}, &out).IgnoreError();
    benchmark::DoNotOptimize(out[0].raw());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * n * k * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_MatMulOp)
    ->Args({1024, 1024, 1024})
    ->Args({64, 784, 256})
    ->Unit(benchmark::kMicrosecond);

// The CNN's second convolution, forward: (64,14,14,32) * (5,5,32,64) SAME.
void BM_Conv2D(benchmark::State& state) {
  const int64_t batch = state.range(0);
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, RandomF32({batch, 14, 14, 32}, 3));
  Output f = ops::Const(s, RandomF32({5, 5, 32, 64}, 4));
  Output y = ops::Conv2D(s, x, f, {1, 1}, "SAME");
  Session session(s.graph());
  std::vector<Tensor> out;
  if (!session.Run({y}, &out).ok()) return Fail(state, "run failed");
  // check one interior output element against a direct sum
  const float* px = x.node->attr<Tensor>("value").data<float>();
  const float* pf = f.node->attr<Tensor>("value").data<float>();
  double ref = 0;
  for (int ky = 0; ky < 5; ++ky)
    for (int kx = 0; kx < 5; ++kx)
      for (int c = 0; c < 32; ++c)
        ref += static_cast<double>(px[((5 + ky - 2) * 14 + (5 + kx - 2)) * 32 + c]) *
               pf[((ky * 5 + kx) * 32 + c) * 64];
  if (std::abs(ref - out[0].data<float>()[(5 * 14 + 5) * 64]) > 1e-3) {
    return Fail(state, "wrong convolution");
  }
  for (auto _ : state) session.Run({y}, &out).IgnoreError();
  const double flops = 2.0 * batch * 14 * 14 * 64 * 25 * 32;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Conv2D)->Arg(64)->Unit(benchmark::kMillisecond);

// Each convolution of the CNN at batch 64, forward and both gradients (mode 0, 1, 2).
// conv 1: (64,28,28,1) * (5,5,1,32); conv 2: (64,14,14,32) * (5,5,32,64); SAME.
void BM_CnnConv(benchmark::State& state) {
  const int layer = state.range(0), mode = state.range(1);
  const int64_t hw = layer == 1 ? 28 : 14, cin = layer == 1 ? 1 : 32, cout = layer == 1 ? 32 : 64;
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, RandomF32({64, hw, hw, cin}, 7));
  Output f = ops::Const(s, RandomF32({5, 5, cin, cout}, 8));
  Output dy = ops::Const(s, RandomF32({64, hw, hw, cout}, 9));
  Output y = mode == 0   ? ops::Conv2D(s, x, f, {1, 1}, "SAME")
             : mode == 1 ? ops::Conv2DBackpropFilter(s, x, f, dy, {1, 1}, "SAME")
                         : ops::Conv2DBackpropInput(s, x, f, dy, {1, 1}, "SAME");
  Session session(s.graph());
  std::vector<Tensor> out;
  if (!session.Run({y}, &out).ok()) return Fail(state, "run failed");
  for (auto _ : state) session.Run({y}, &out).IgnoreError();
  const double flops = 2.0 * 64 * hw * hw * cout * 25 * cin;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(std::string("conv") + std::to_string(layer) +
                 (mode == 0   ? " forward"
                  : mode == 1 ? " filter grad"
                              : " input grad"));
}
BENCHMARK(BM_CnnConv)->ArgsProduct({{1, 2}, {0, 1, 2}})->Unit(benchmark::kMillisecond);

// Elementwise Add of two float32 vectors: 12 bytes moved per element.
void BM_Add(benchmark::State& state) {
  const int64_t n = state.range(0);
  Scope s = Scope::NewRootScope();
  Output y = ops::Add(s, ops::Const(s, RandomF32({n}, 5)), ops::Const(s, RandomF32({n}, 6)));
  Session session(s.graph());
  std::vector<Tensor> out;
  if (!session.Run({y}, &out).ok()) return Fail(state, "run failed");
  for (auto _ : state) session.Run({y}, &out).IgnoreError();
  state.counters["GB/s"] =
      benchmark::Counter(12.0 * n * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_Add)->Arg(1 << 16)->Arg(1 << 22)->Unit(benchmark::kMicrosecond);

// Executor overhead: a chain of `ops` Neg nodes on a scalar; time per node.
void BM_DispatchPerOp(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool parallel = state.range(1) != 0;
  Scope s = Scope::NewRootScope();
  Output x = ops::Const(s, Tensor::Scalar<float>(1.0f));
  for (int64_t i = 0; i < n; ++i) x = ops::Neg(s, x);
  SessionOptions o;
  o.inter_op_threads = parallel ? 2 : 1;
  Session session(s.graph(), o);
  std::vector<Tensor> out;
  if (!session.Run({x}, &out).ok() || *out[0].data<float>() != (n % 2 ? -1.0f : 1.0f)) {
    return Fail(state, "wrong chain result");
  }
  for (auto _ : state) session.Run({x}, &out).IgnoreError();
  // rate-inverted counter: elapsed seconds / (ops / 1e6) = microseconds per op
  state.counters["us_per_op"] =
      benchmark::Counter(static_cast<double>(n + 1) * state.iterations() * 1e-6,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DispatchPerOp)->Args({100, 0})->Args({100, 1})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mpiflow

BENCHMARK_MAIN();
