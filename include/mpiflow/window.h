// Geometry of a sliding window along one dimension (convolution and pooling, SAME or VALID).
// Shared by shape functions and kernels so both agree on output sizes and padding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "mpiflow/status.h"

namespace mpiflow {

// in: input size (-1 unknown: out is -1); k: window; padding: "SAME" or "VALID".
inline Status WindowGeometry(int64_t in, int64_t k, int64_t stride, const std::string& padding,
                             int64_t* out, int64_t* pad_before) {
  if (padding == "VALID") {
    if (in >= 0 && in < k) {
      return InvalidArgument("window ", k, " is larger than the input dimension ", in,
                             " with VALID padding");
    }
    *out = in < 0 ? -1 : (in - k) / stride + 1;
    *pad_before = 0;
  } else if (padding == "SAME") {
    *out = in < 0 ? -1 : (in + stride - 1) / stride;
    const int64_t total = in < 0 ? 0 : std::max<int64_t>((*out - 1) * stride + k - in, 0);
    *pad_before = total / 2;
  } else {
    return InvalidArgument("padding must be SAME or VALID, got '", padding, "'");
  }
  return Status::OK();
}

}  // namespace mpiflow
