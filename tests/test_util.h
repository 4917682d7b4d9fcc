// Small helpers shared by the test files: tensors from literals and one-call graph runs.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "mpiflow/ops.h"
#include "mpiflow/session.h"

namespace mpiflow {
namespace testing {

inline Tensor F64(const Shape& s, const std::vector<double>& v) {
  return Tensor::FromVector<double>(s, v);
}
inline Tensor F32(const Shape& s, const std::vector<float>& v) {
  return Tensor::FromVector<float>(s, v);
}

// Runs `fetch` once (feeds optional) in a fresh session and returns it; fails the test on error.
inline Tensor RunOne(const Scope& s, Output fetch, const std::vector<Session::Feed>& feeds = {}) {
  EXPECT_TRUE(s.ok()) << s.status();
  Session session(s.graph());
  std::vector<Tensor> out;
  Status st = session.Run(feeds, {fetch}, {}, &out);
  EXPECT_TRUE(st.ok()) << st;
  return st.ok() ? out[0] : Tensor();
}

inline std::vector<double> AsDoubles(const Tensor& t) {
  std::vector<double> v;
  for (int64_t i = 0; i < t.num_elements(); ++i) {
    switch (t.dtype()) {
      case DType::kFloat32:
        v.push_back(t.data<float>()[i]);
        break;
      case DType::kFloat64:
        v.push_back(t.data<double>()[i]);
        break;
      case DType::kInt32:
        v.push_back(t.data<int32_t>()[i]);
        break;
      case DType::kInt64:
        v.push_back(static_cast<double>(t.data<int64_t>()[i]));
        break;
      case DType::kBool:
        v.push_back(t.data<bool>()[i]);
        break;
      case DType::kFloat16:
        v.push_back(HalfToFloat(t.data<Half>()[i]));
        break;
      case DType::kInvalid:
        break;
    }
  }
  return v;
}

inline void ExpectNear(const Tensor& t, const Shape& shape, const std::vector<double>& want,
                       double tol = 1e-6) {
  ASSERT_EQ(t.shape(), shape) << t.shape().ToString();
  std::vector<double> got = AsDoubles(t);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "element " << i;
}

}  // namespace testing
}  // namespace mpiflow
