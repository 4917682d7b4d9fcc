// GPU training-step benchmark (CUDA builds, run on a GPU machine by scripts/gpu-check.sh):
//   1. the wide MLP (784-2048-2048-2048-10, Adam) at batch B on the GPU: the median step time
//      over R repeats of N steps, against cuBLAS's own time for the same step's GEMMs (forward,
//      and each layer's weight and input gradients) timed alone with CUDA events: the step's
//      share of cuBLAS's GEMM throughput. And the same step on the CPU (1 thread) once.
//   2. the MLP (784-256-256-10) at batch 64: samples/s on the GPU and on one CPU thread.
// Inputs are a fixed random batch fed from host memory each step (its copy is part of a step).
//   mpiflow_gpu_bench [--batch 1024] [--steps 20] [--repeats 5]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mpiflow/optimizer.h"
#include "mpiflow/random.h"
#include "mpiflow/session.h"

namespace {

using mpiflow::DType;
using mpiflow::Output;
using mpiflow::Shape;
using mpiflow::Tensor;
namespace ops = mpiflow::ops;

struct Net {
  std::vector<int64_t> widths;  // input, hidden..., classes
};

Tensor RandomBatch(int64_t batch, int64_t width, uint64_t seed) {
  Tensor t(DType::kFloat32, Shape{batch, width});
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    t.data<float>()[i] = static_cast<float>(mpiflow::RandomUniform01(seed, 0, i));
  }
  return t;
}

// Median seconds per training step of `net` at `batch` on `device` (R repeats of N steps).
double StepSeconds(const Net& net, int64_t batch, const std::string& device, int steps, int repeats,
                   mpiflow::MathPrecision precision = mpiflow::MathPrecision::kFp32) {
  mpiflow::Scope s = mpiflow::Scope::NewRootScope();
  Output x = ops::Placeholder(s, DType::kFloat32, Shape{-1, net.widths[0]});
  Output y = ops::Placeholder(s, DType::kInt32, Shape{-1});
  Output h = x;
  for (size_t l = 1; l < net.widths.size(); ++l) {
    const double lim = 1.0 / std::sqrt(static_cast<double>(net.widths[l - 1]));
    Output w = ops::Variable(s, ops::RandomUniform(s, Shape{net.widths[l - 1], net.widths[l]}, -lim,
                                                   lim, static_cast<int64_t>(l), DType::kFloat32));
    Output b = ops::Variable(s, ops::Zeros(s, Shape{net.widths[l]}, DType::kFloat32));
    h = ops::BiasAdd(s, ops::MatMul(s, h, w), b);
    if (l + 1 < net.widths.size()) h = ops::Relu(s, h);
  }
  Output loss = ops::Mean(s, ops::SparseSoftmaxCrossEntropyWithLogits(s, h, y)[0], {});
  mpiflow::OptimizerOptions o;
  o.kind = mpiflow::OptimizerKind::kAdam;
  o.lr.base = 1e-3;
  auto t = mpiflow::Minimize(s, loss, o);
  if (!t.ok()) {
    std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
    std::exit(1);
  }
  mpiflow::SessionOptions so;
  so.device = device;
  so.precision = precision;
  mpiflow::Session session(s.graph(), so);
  if (!session.RunTargets({ops::InitOp(s)}).ok()) std::exit(1);
  const Tensor bx = RandomBatch(batch, net.widths[0], 3);
  Tensor by(DType::kInt32, Shape{batch});
  for (int64_t i = 0; i < batch; ++i) by.data<int32_t>()[i] = static_cast<int32_t>(i % 10);
  std::vector<Tensor> out;
  auto run = [&](bool fetch) {
    mpiflow::Status st =
        session.Run({{x, bx}, {y, by}}, fetch ? std::vector<Output>{loss} : std::vector<Output>{},
                    {t->train}, &out);
    if (!st.ok()) {
      std::fprintf(stderr, "%s\n", st.ToString().c_str());
      std::exit(1);
    }
  };
  for (int i = 0; i < 3; ++i) run(true);  // warm-up: plans, allocator cache, cuBLAS
  std::vector<double> per_step;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) run(i + 1 == steps);  // the last fetch waits for the GPU
    per_step.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps);
  }
  std::sort(per_step.begin(), per_step.end());
  return per_step[per_step.size() / 2];
}

// How GemmSeconds calls cuBLAS: float32 operands in plain float32 (sgemm); bfloat16 operands
// with float32 output and sums (what a bf16 framework's GEMMs are); float32 operands rounded to
// bf16 inside cuBLAS (what MatMul at --precision bf16 calls).
enum class GemmKind { kFp32, kBf16Operands, kFp32RoundedToBf16 };

cublasStatus_t Gemm(cublasHandle_t h, GemmKind kind, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const void* a, int lda, const void* b, int ldb, float* c,
                    int ldc) {
  const float one = 1, zero = 0;
  switch (kind) {
    case GemmKind::kFp32:
      return cublasSgemm(h, ta, tb, m, n, k, &one, static_cast<const float*>(a), lda,
                         static_cast<const float*>(b), ldb, &zero, c, ldc);
    case GemmKind::kBf16Operands:
      return cublasGemmEx(h, ta, tb, m, n, k, &one, a, CUDA_R_16BF, lda, b, CUDA_R_16BF, ldb, &zero,
                          c, CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    case GemmKind::kFp32RoundedToBf16:
      break;
  }
  return cublasGemmEx(h, ta, tb, m, n, k, &one, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, &zero, c,
                      CUDA_R_32F, ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT);
}

// cuBLAS alone, the GEMMs of one training step of `net` at `batch` (row-major shapes as the
// MatMul kernel calls them): forward x(B,i) w(i,o); backward dW = x^T dy, dx = dy w^T (no dx
// for the input layer). Median over repeats of seconds per step's GEMMs. Operands hold small
// random values (not zeros, which run faster than real data).
double GemmSeconds(const Net& net, int64_t batch, int repeats, double* flops,
                   GemmKind kind = GemmKind::kFp32) {
  cublasHandle_t h;
  cublasCreate(&h);
  int64_t biggest = 0;
  for (size_t l = 0; l < net.widths.size(); ++l)
    biggest = std::max(biggest, net.widths[l] * std::max(batch, net.widths[l]));
  float *a, *b, *c;
  cudaMalloc(&a, biggest * 4 * 4);
  cudaMalloc(&b, biggest * 4 * 4);
  cudaMalloc(&c, biggest * 4 * 4);
  {
    std::vector<float> host(biggest * 4);  // as floats, or as pairs of bf16 where kind says so
    for (size_t i = 0; i < host.size(); ++i)
      host[i] = static_cast<float>(mpiflow::RandomUniform01(5, 0, i)) * 0.01f;
    if (kind == GemmKind::kBf16Operands) {  // bf16 bits: the top half of each float's
      auto* bits = reinterpret_cast<uint16_t*>(host.data());
      for (size_t i = 0; i < host.size(); ++i) {
        uint32_t f;
        std::memcpy(&f, &host[i], 4);
        bits[i] = static_cast<uint16_t>(f >> 16);
      }
    }
    cudaMemcpy(a, host.data(), biggest * 16, cudaMemcpyHostToDevice);
    cudaMemcpy(b, host.data(), biggest * 16, cudaMemcpyHostToDevice);
  }
  *flops = 0;
  auto step = [&]() {
    for (size_t l = 1; l < net.widths.size(); ++l) {
      const int m = static_cast<int>(batch), k = static_cast<int>(net.widths[l - 1]),
                n = static_cast<int>(net.widths[l]);
      // y(m,n) = x(m,k) w(k,n): column-major y^T = w^T x^T
      Gemm(h, kind, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, b, n, a, k, c, n);
      // dW(k,n) = x^T(k,m) dy(m,n)
      Gemm(h, kind, CUBLAS_OP_N, CUBLAS_OP_T, n, k, m, b, n, a, k, c, n);
      if (l > 1) {  // dx(m,k) = dy(m,n) w^T(n,k)
        Gemm(h, kind, CUBLAS_OP_T, CUBLAS_OP_N, k, m, n, b, n, a, n, c, k);
      }
    }
  };
  for (size_t l = 1; l < net.widths.size(); ++l) {
    *flops += 2.0 * batch * net.widths[l - 1] * net.widths[l] * (l > 1 ? 3 : 2);
  }
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  for (int i = 0; i < 5; ++i) step();
  std::vector<double> per_step;
  for (int r = 0; r < repeats; ++r) {
    cudaEventRecord(e0);
    for (int i = 0; i < 20; ++i) step();
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float ms = 0;
    cudaEventElapsedTime(&ms, e0, e1);
    per_step.push_back(ms / 1e3 / 20);
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  cublasDestroy(h);
  std::sort(per_step.begin(), per_step.end());
  return per_step[per_step.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 1024;
  int steps = 20, repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[i + 1]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--repeats")) repeats = std::atoi(argv[i + 1]);
  }
  if (mpiflow::GpuCount() == 0) {
    std::fprintf(stderr, "mpiflow_gpu_bench: no GPU visible\n");
    return 1;
  }
  const Net wide{{784, 2048, 2048, 2048, 10}};
  double flops = 0;
  const double gemm = GemmSeconds(wide, batch, repeats, &flops);
  const double gpu = StepSeconds(wide, batch, mpiflow::kCuda, steps, repeats);
  const double cpu = StepSeconds(wide, batch, mpiflow::kCpu, 2, 1);
  std::printf(
      "wide MLP batch %lld fp32: step %.3f ms on the GPU (%.1f TFLOP/s in its GEMMs), "
      "cuBLAS alone %.3f ms for the same GEMMs: the step reaches %.0f%% of cuBLAS's GEMM "
      "throughput; CPU 1 thread %.1f ms (GPU %.0fx)\n",
      static_cast<long long>(batch), gpu * 1e3, flops / gpu / 1e12, gemm * 1e3, 100 * gemm / gpu,
      cpu * 1e3, cpu / gpu);
  // bf16: the step at --precision bf16 against cuBLAS's own bf16 GEMMs (bf16 operands) and
  // against the GEMMs as MatMul calls them (float32 operands rounded inside cuBLAS).
  const double gemm_bf16 = GemmSeconds(wide, batch, repeats, &flops, GemmKind::kBf16Operands);
  const double gemm_rounded =
      GemmSeconds(wide, batch, repeats, &flops, GemmKind::kFp32RoundedToBf16);
  const double bf16 =
      StepSeconds(wide, batch, mpiflow::kCuda, steps, repeats, mpiflow::MathPrecision::kBf16);
  std::printf(
      "wide MLP batch %lld bf16: step %.3f ms (%.1f TFLOP/s in its GEMMs); cuBLAS alone "
      "%.3f ms with bf16 operands (the step reaches %.0f%% of that throughput), %.3f ms "
      "with float32 operands rounded to bf16 as MatMul calls it (%.0f%%)\n",
      static_cast<long long>(batch), bf16 * 1e3, flops / bf16 / 1e12, gemm_bf16 * 1e3,
      100 * gemm_bf16 / bf16, gemm_rounded * 1e3, 100 * gemm_rounded / bf16);
  const Net mlp{{784, 256, 256, 10}};
  const double mg = StepSeconds(mlp, 64, mpiflow::kCuda, 200, repeats);
  const double mc = StepSeconds(mlp, 64, mpiflow::kCpu, 50, 3);
  std::printf(
      "MLP batch 64: %.0f samples/s on the GPU, %.0f on 1 CPU thread (%.1fx); step %.3f ms "
      "vs %.3f ms\n",
      64 / mg, 64 / mc, mc / mg, mg * 1e3, mc * 1e3);
  return 0;
}
