// Helpers for CPU kernels: broadcasting iteration, type dispatch, and the per-file registration
// hooks. Not kernels themselves.
#pragma once

#include <cstdint>
#include <vector>

#include "mpiflow/kernel.h"

namespace mpiflow {

void RegisterArrayKernels(KernelRegistry& r);
void RegisterMathKernels(KernelRegistry& r);
void RegisterMatMulKernels(KernelRegistry& r);
void RegisterNnKernels(KernelRegistry& r);
void RegisterConvKernels(KernelRegistry& r);
void RegisterStateKernels(KernelRegistry& r);
void RegisterCollectiveKernels(KernelRegistry& r);

namespace cpu {

// Row-major strides of `dims`, with 0 where `like` (right-aligned against dims) has size 1 or
// is missing: reading x[offset] with these strides broadcasts `like`-shaped data to `dims`.
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& dims,
                                      const std::vector<int64_t>& like);

// numpy broadcast of two runtime shapes; false if incompatible.
bool BroadcastDims(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                   std::vector<int64_t>* out);

// Calls fn(i, oa, ob) for every row-major index i over `dims`, with oa and ob the offsets given
// by strides sa and sb. The last dimension runs in a tight inner loop.
template <typename F>
void ForEachStrided(const std::vector<int64_t>& dims, const std::vector<int64_t>& sa,
                    const std::vector<int64_t>& sb, F fn) {
  const int rank = static_cast<int>(dims.size());
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  if (total == 0) return;
  if (rank == 0) {
    fn(0, 0, 0);
    return;
  }
  std::vector<int64_t> idx(rank, 0);
  const int64_t inner = dims[rank - 1], ia = sa[rank - 1], ib = sb[rank - 1];
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < total; i += inner) {
    for (int64_t j = 0; j < inner; ++j) fn(i + j, oa + j * ia, ob + j * ib);
    for (int d = rank - 2; d >= 0; --d) {  // odometer over the outer dimensions
      ++idx[d];
      oa += sa[d];
      ob += sb[d];
      if (idx[d] < dims[d]) break;
      oa -= sa[d] * dims[d];
      ob -= sb[d] * dims[d];
      idx[d] = 0;
    }
  }
}

}  // namespace cpu
}  // namespace mpiflow

namespace mpiflow {
namespace cpu {

// Row-major GEMM through OpenBLAS: c(m,n) = alpha * op(a)(m,k) * op(b)(k,n) + beta * c.
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          const float* b, float beta, float* c);
void Gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, double alpha,
          const double* a, const double* b, double beta, double* c);

}  // namespace cpu
}  // namespace mpiflow
