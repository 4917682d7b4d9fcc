// Element-wise helpers of the collectives: the final division of an average, and the float16
// staging that lets every algorithm reduce float16 data in float32.
#include "reduce.h"

namespace mpiflow {
namespace collectives {

namespace {
template <typename T>
void Divide(T* p, int64_t n, int ranks) {
  const T d = static_cast<T>(ranks);
  for (int64_t i = 0; i < n; ++i) p[i] /= d;
}
}  // namespace

void DivideBy(const Tensor& t, int ranks) {
  const int64_t n = t.num_elements();
  switch (t.dtype()) {
    case DType::kFloat32:
      Divide(t.data<float>(), n, ranks);
      break;
    case DType::kFloat64:
      Divide(t.data<double>(), n, ranks);
      break;
    case DType::kInt32:
      Divide(t.data<int32_t>(), n, ranks);
      break;
    case DType::kInt64:
      Divide(t.data<int64_t>(), n, ranks);
      break;
    default:
      MPIFLOW_CHECK(false);
  }
}

Tensor HalfToFloat(const Tensor& half) {
  Tensor f(DType::kFloat32, half.shape());
  const Half* src = half.data<Half>();
  float* dst = f.data<float>();
  for (int64_t i = 0; i < half.num_elements(); ++i) dst[i] = mpiflow::HalfToFloat(src[i]);
  return f;
}

void FloatToHalfInto(const Tensor& f, const Tensor& half) {
  const float* src = f.data<float>();
  Half* dst = half.data<Half>();
  for (int64_t i = 0; i < f.num_elements(); ++i) dst[i] = FloatToHalf(src[i]);
}

}  // namespace collectives
}  // namespace mpiflow
