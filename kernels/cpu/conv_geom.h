// What the convolution kernels share between their files: the geometry of one Conv2D, and the
// AVX2+FMA fast paths (conv_fast_paths.cc) that conv_kernels.cc picks when they apply. Private to
// kernels/cpu. Not the kernels themselves.
#pragma once

#include <cstdint>

#include "mpiflow/tensor.h"
#include "mpiflow/thread_pool.h"

namespace mpiflow {
namespace cpu {

struct ConvGeom {
  int64_t n, h, w, c;  // input (n, h, w, c)
  int64_t kh, kw, oc;  // filter (kh, kw, c, oc)
  int64_t oh, ow, sh, sw, ph, pw;
  int64_t rows() const { return oh * ow; }       // im2col rows per image
  int64_t depth() const { return kh * kw * c; }  // im2col columns
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
};

// The direct single-channel case: float, one input channel, stride 1, oc a multiple of 32, on a
// CPU with AVX2 and FMA (checked once at run time; otherwise im2col as for every other shape).
bool DirectSingleChannel(const ConvGeom& g, DType dtype);
// y (n, oh, ow, oc) for images [b0, b1), directly.
void DirectConvForwardImages(const ConvGeom& g, const float* x, const float* f, float* y,
                             int64_t b0, int64_t b1);
// df (kh, kw, 1, oc) += the filter gradient of images [b0, b1), directly.
void DirectConvFilterGradImages(const ConvGeom& g, const float* x, const float* dy, float* df,
                                int64_t b0, int64_t b1);
// float32, AVX2+FMA, output channels a multiple of 16.
bool ImplicitGemmUsable(DType dtype, int64_t out_channels);
// y (n, oh, ow, oc) = conv(x, f) by implicit GEMM, images in parallel on `pool`.
void ImplicitGemmConv(const ConvGeom& g, const float* x, const float* f, float* y,
                      ThreadPool* pool);

}  // namespace cpu
}  // namespace mpiflow
