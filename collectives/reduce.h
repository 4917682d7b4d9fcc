// Element-wise reductions the hand-written allreduce algorithms apply to received data, and the
// float16 <-> float32 staging (float16 is reduced in float32). Private to collectives/.
#pragma once

#include <algorithm>
#include <cstdint>

#include "mpiflow/communicator.h"
#include "mpiflow/tensor.h"

namespace mpiflow {
namespace collectives {

// dst[i] = dst[i] (op) src[i]; kAverage reduces as kSum (the division comes once, at the end).
template <typename T>
void ReduceInto(T* dst, const T* src, int64_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAverage:
      for (int64_t i = 0; i < n; ++i) dst[i] += src[i];
      break;
    case ReduceOp::kMax:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::max(dst[i], src[i]);
      break;
    case ReduceOp::kMin:
      for (int64_t i = 0; i < n; ++i) dst[i] = std::min(dst[i], src[i]);
      break;
  }
}

// Untyped dispatch for float32, float64, int32, int64.
inline void ReduceInto(DType dtype, void* dst, const void* src, int64_t n, ReduceOp op) {
  switch (dtype) {
    case DType::kFloat32:
      ReduceInto(static_cast<float*>(dst), static_cast<const float*>(src), n, op);
      break;
    case DType::kFloat64:
      ReduceInto(static_cast<double*>(dst), static_cast<const double*>(src), n, op);
      break;
    case DType::kInt32:
      ReduceInto(static_cast<int32_t*>(dst), static_cast<const int32_t*>(src), n, op);
      break;
    case DType::kInt64:
      ReduceInto(static_cast<int64_t*>(dst), static_cast<const int64_t*>(src), n, op);
      break;
    default:
      MPIFLOW_CHECK(false);
  }
}

// After a kAverage sum: every element divided by `ranks` (integers: truncating division).
void DivideBy(const Tensor& t, int ranks);
// float16 tensor -> float32 tensor of the same shape, and back (round to nearest even).
Tensor HalfToFloat(const Tensor& half);
void FloatToHalfInto(const Tensor& f, const Tensor& half);

}  // namespace collectives
}  // namespace mpiflow
