// What the CUDA kernels share: their registration hook, the device they run on, launch geometry,
// the launch check, and the strided index maps behind broadcasting and reductions. Private to
// kernels/. The kernels keep the CPU kernels' contracts (kernels/cpu/): the same shapes, errors
// and results to their dtype's tolerance.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "cuda_device.h"
#include "mpiflow/kernel.h"

namespace mpiflow {
namespace cuda {

void RegisterCudaKernels(KernelRegistry& r);  // every file's kernels, below
void RegisterMathKernels(KernelRegistry& r);
void RegisterNnKernels(KernelRegistry& r);
void RegisterStateKernels(KernelRegistry& r);
void RegisterMatMulKernels(KernelRegistry& r);
void RegisterPoolKernels(KernelRegistry& r);
void RegisterConvKernels(KernelRegistry& r);  // with cuDNN only

// The device the Session made before creating any CUDA kernel, current on the calling thread.
inline CudaDevice& Dev() {
  CudaDevice& d = *TheDevice().value();
  MakeCurrent(d.gpu());
  return d;
}
inline cudaStream_t Stream() { return Dev().compute(); }

constexpr int kThreads = 256;
// Blocks for n elements, grid-strided beyond a bound (every kernel loops with the grid stride).
inline unsigned Blocks(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 4 ? 65535 * 4 : b));
}

// After a launch: the launch's own error (a bad configuration), as the node's error.
inline Status LaunchStatus(const KernelContext* ctx) {
  const cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return Status::OK();
  return Internal(ctx->node().op(), " node '", ctx->node().name(),
                  "': kernel launch failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                  ")");
}

// out (cols) = the sum (kMax: the maximum) over the rows of in (rows, cols), divided by divisor,
// deterministically: rows are cut into fixed chunks summed in parallel (a warp reads a row's
// neighbouring columns), the chunks' partial sums then summed the same way. For float and double.
template <typename T, bool kMax = false>
Status ColumnReduce(const KernelContext* ctx, int64_t rows, int64_t cols, const T* in, T* out,
                    T divisor);

constexpr int kMaxRank = 8;
// An index map passed by value to a kernel: row-major `dims` and, per dimension, the stride of
// up to two operands (0 where an operand is broadcast along it).
struct Strides {
  int rank = 0;
  int64_t dims[kMaxRank] = {};
  int64_t a[kMaxRank] = {};
  int64_t b[kMaxRank] = {};
};
// Fails (naming the node) beyond kMaxRank dimensions.
Status MakeStrides(const KernelContext* ctx, const std::vector<int64_t>& dims,
                   const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, Strides* s);

}  // namespace cuda
}  // namespace mpiflow
