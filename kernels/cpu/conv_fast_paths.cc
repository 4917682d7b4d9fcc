// The convolution's AVX2+FMA fast paths (see conv_geom.h): the direct single-channel kernels
// and the implicit GEMM. Checked at run time; conv_kernels.cc falls back to im2col + OpenBLAS.
// Not the kernels' registration or their general path (conv_kernels.cc).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "conv_geom.h"

namespace mpiflow {
namespace cpu {

// An image with its padding made explicit: every window lies inside it, so the direct and
// implicit-GEMM loops read every tap without a bounds check.
struct PaddedGeom {
  int64_t hp, wp;  // rows and columns: (oh-1)*sh + kh, (ow-1)*sw + kw
  explicit PaddedGeom(const ConvGeom& g)
      : hp((g.oh - 1) * g.sh + g.kh), wp((g.ow - 1) * g.sw + g.kw) {}
  int64_t floats(const ConvGeom& g) const { return hp * wp * g.c; }
};

// pad (hp, wp, c) <- img (h, w, c) shifted by (ph, pw), zeros around; input rows or columns no
// window reaches (VALID with a stride that does not divide) are left out.
void PadNhwc(const ConvGeom& g, const PaddedGeom& p, const float* img, float* pad) {
  std::fill(pad, pad + p.floats(g), 0.0f);
  const int64_t cols = std::min(g.w, p.wp - g.pw);  // padding is never negative
  for (int64_t y = 0; y < g.h && y + g.ph < p.hp; ++y) {
    std::memcpy(pad + ((y + g.ph) * p.wp + g.pw) * g.c, img + y * g.w * g.c,
                sizeof(float) * cols * g.c);
  }
}

// AVX2 and FMA on this CPU, checked once at run time (the direct and implicit-GEMM kernels).
bool CpuHasAvx2Fma() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}

// The direct single-channel case: float, one input channel, stride 1, oc a multiple of 32, on a
// CPU with AVX2 and FMA (checked once at run time; otherwise im2col as for every other shape).
bool DirectSingleChannel(const ConvGeom& g, DType dtype) {
  return CpuHasAvx2Fma() && dtype == DType::kFloat32 && g.c == 1 && g.sh == 1 && g.sw == 1 &&
         g.oc % 32 == 0 && g.kh <= 16 && g.kw <= 16;
}

// y (n, oh, ow, oc) for images [b0, b1): two output pixels x 32 channels in eight AVX
// accumulators, kh*kw taps each (im2col's GEMM has depth kh*kw = 25 here: too thin for sgemm).
__attribute__((target("avx2,fma"))) void DirectConvForward(const ConvGeom& g, const float* x,
                                                           const float* f, float* y, int64_t b0,
                                                           int64_t b1) {
  const PaddedGeom p(g);
  const int64_t pw = p.wp;
  std::vector<float> pad(static_cast<size_t>(p.floats(g)));  // (hp, wp): one channel
  for (int64_t b = b0; b < b1; ++b) {
    PadNhwc(g, p, x + b * g.h * g.w, pad.data());
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ox = 0; ox < g.ow; ox += 2) {
        const bool two = ox + 1 < g.ow;
        for (int64_t c0 = 0; c0 < g.oc; c0 += 32) {
          __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
          __m256 b0v = a0, b1v = a0, b2v = a0, b3v = a0;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const float* in = pad.data() + (oy + ky) * pw + ox;  // two pixels' window row
            const float* w = f + ky * g.kw * g.oc + c0;
            for (int64_t kx = 0; kx < g.kw; ++kx, w += g.oc) {
              const __m256 v0 = _mm256_broadcast_ss(in + kx);
              const __m256 v1 = _mm256_broadcast_ss(in + kx + (two ? 1 : 0));
              const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
              const __m256 w2 = _mm256_loadu_ps(w + 16), w3 = _mm256_loadu_ps(w + 24);
              a0 = _mm256_fmadd_ps(v0, w0, a0);
              a1 = _mm256_fmadd_ps(v0, w1, a1);
              a2 = _mm256_fmadd_ps(v0, w2, a2);
              a3 = _mm256_fmadd_ps(v0, w3, a3);
              b0v = _mm256_fmadd_ps(v1, w0, b0v);
              b1v = _mm256_fmadd_ps(v1, w1, b1v);
              b2v = _mm256_fmadd_ps(v1, w2, b2v);
              b3v = _mm256_fmadd_ps(v1, w3, b3v);
            }
          }
          float* out = y + ((b * g.oh + oy) * g.ow + ox) * g.oc + c0;
          _mm256_storeu_ps(out, a0);
          _mm256_storeu_ps(out + 8, a1);
          _mm256_storeu_ps(out + 16, a2);
          _mm256_storeu_ps(out + 24, a3);
          if (two) {
            _mm256_storeu_ps(out + g.oc, b0v);
            _mm256_storeu_ps(out + g.oc + 8, b1v);
            _mm256_storeu_ps(out + g.oc + 16, b2v);
            _mm256_storeu_ps(out + g.oc + 24, b3v);
          }
        }
      }
    }
  }
}

// df (kh*kw, oc) += over images [b0, b1) the taps of x times dy. Per image (its dy stays in
// L2), per 32 channels and per 3 taps (twelve AVX accumulators), one pass over the pixels.
__attribute__((target("avx2,fma"))) void DirectConvFilterGrad(const ConvGeom& g, const float* x,
                                                              const float* dy, float* df,
                                                              int64_t b0, int64_t b1) {
  const int64_t taps = g.kh * g.kw;
  const PaddedGeom p(g);
  const int64_t pw = p.wp;
  std::vector<float> pad(static_cast<size_t>(p.floats(g)));  // (hp, wp): one channel
  for (int64_t b = b0; b < b1; ++b) {
    PadNhwc(g, p, x + b * g.h * g.w, pad.data());
    const float* d = dy + b * g.oh * g.ow * g.oc;  // (oh, ow, oc)
    for (int64_t c0 = 0; c0 < g.oc; c0 += 32) {
      for (int64_t t0 = 0; t0 < taps; t0 += 3) {
        const int64_t nt = std::min<int64_t>(3, taps - t0);
        int64_t off[3];  // each tap's offset in the padded image
        for (int64_t t = 0; t < 3; ++t) {
          const int64_t tap = t0 + std::min(t, nt - 1);
          off[t] = (tap / g.kw) * pw + tap % g.kw;
        }
        // Named accumulators: an array indexed at run time would live in memory.
        __m256 p0 = _mm256_setzero_ps(), p1 = p0, p2 = p0, p3 = p0;  // tap t0
        __m256 q0 = p0, q1 = p0, q2 = p0, q3 = p0;                   // tap t0 + 1
        __m256 r0 = p0, r1 = p0, r2 = p0, r3 = p0;                   // tap t0 + 2
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const float* in = pad.data() + oy * pw;
          const float* e = d + oy * g.ow * g.oc + c0;
          for (int64_t ox = 0; ox < g.ow; ++ox, e += g.oc) {
            const __m256 e0 = _mm256_loadu_ps(e), e1 = _mm256_loadu_ps(e + 8);
            const __m256 e2 = _mm256_loadu_ps(e + 16), e3 = _mm256_loadu_ps(e + 24);
            const __m256 u = _mm256_broadcast_ss(in + ox + off[0]);
            const __m256 v = _mm256_broadcast_ss(in + ox + off[1]);
            const __m256 w = _mm256_broadcast_ss(in + ox + off[2]);
            p0 = _mm256_fmadd_ps(u, e0, p0);
            p1 = _mm256_fmadd_ps(u, e1, p1);
            p2 = _mm256_fmadd_ps(u, e2, p2);
            p3 = _mm256_fmadd_ps(u, e3, p3);
            q0 = _mm256_fmadd_ps(v, e0, q0);
            q1 = _mm256_fmadd_ps(v, e1, q1);
            q2 = _mm256_fmadd_ps(v, e2, q2);
            q3 = _mm256_fmadd_ps(v, e3, q3);
            r0 = _mm256_fmadd_ps(w, e0, r0);
            r1 = _mm256_fmadd_ps(w, e1, r1);
            r2 = _mm256_fmadd_ps(w, e2, r2);
            r3 = _mm256_fmadd_ps(w, e3, r3);
          }
        }
        alignas(32) float sums[3][32];  // (tap, channel)
        _mm256_store_ps(sums[0], p0);
        _mm256_store_ps(sums[0] + 8, p1);
        _mm256_store_ps(sums[0] + 16, p2);
        _mm256_store_ps(sums[0] + 24, p3);
        _mm256_store_ps(sums[1], q0);
        _mm256_store_ps(sums[1] + 8, q1);
        _mm256_store_ps(sums[1] + 16, q2);
        _mm256_store_ps(sums[1] + 24, q3);
        _mm256_store_ps(sums[2], r0);
        _mm256_store_ps(sums[2] + 8, r1);
        _mm256_store_ps(sums[2] + 16, r2);
        _mm256_store_ps(sums[2] + 24, r3);
        for (int64_t t = 0; t < nt; ++t) {
          float* out = df + (t0 + t) * g.oc + c0;
          for (int c = 0; c < 32; ++c) out[c] += sums[t][c];
        }
      }
    }
  }
}

// Implicit GEMM (float, AVX2+FMA, output channels a multiple of 16): the convolution as a GEMM
// whose im2col rows are read in place from a zero-padded copy of the image instead of being
// copied out. In NHWC a window row (kx, c) is kw*c contiguous floats of the padded image, so an
// im2col row is kh such runs. The register tile is 6 output pixels x 16 output channels (12 AVX
// accumulators); the six pixels are six pointers into the padded image, stepped by one shared
// offset. Measured on the CNN's conv2 (kernel bench, medians of 3 alternating with the previous
// build): forward 18.3 -> 14.2 ms, input gradient (below) 21.8 -> 14.8 ms. The filter gradient
// (the reduction over pixels) was tried three ways, tiles of taps x channels over an NHWC or a
// channel-major padded image and its transpose; none beat im2col + OpenBLAS (16-18 ms).
bool ImplicitGemmUsable(DType dtype, int64_t out_channels) {
  return CpuHasAvx2Fma() && dtype == DType::kFloat32 && out_channels > 0 && out_channels % 16 == 0;
}

// c (6, 16; row stride ldc) = sum over kh window rows of run taps: a[r][ky*row + j] * b[.., 16).
// a: six window corners in the padded image; b: a filter panel (kh*run, 16), contiguous.
__attribute__((target("avx2,fma"), always_inline)) inline void Tile6x16(const float* const a[6],
                                                                        const float* b, int64_t kh,
                                                                        int64_t run, int64_t row,
                                                                        float* c, int64_t ldc) {
  __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
  c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
  const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
  for (int64_t ky = 0; ky < kh; ++ky) {
    const int64_t o = ky * row;
    for (int64_t j = o; j < o + run; ++j, b += 16) {
      const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
      __m256 v = _mm256_broadcast_ss(a0 + j);
      c00 = _mm256_fmadd_ps(v, b0, c00), c01 = _mm256_fmadd_ps(v, b1, c01);
      v = _mm256_broadcast_ss(a1 + j);
      c10 = _mm256_fmadd_ps(v, b0, c10), c11 = _mm256_fmadd_ps(v, b1, c11);
      v = _mm256_broadcast_ss(a2 + j);
      c20 = _mm256_fmadd_ps(v, b0, c20), c21 = _mm256_fmadd_ps(v, b1, c21);
      v = _mm256_broadcast_ss(a3 + j);
      c30 = _mm256_fmadd_ps(v, b0, c30), c31 = _mm256_fmadd_ps(v, b1, c31);
      v = _mm256_broadcast_ss(a4 + j);
      c40 = _mm256_fmadd_ps(v, b0, c40), c41 = _mm256_fmadd_ps(v, b1, c41);
      v = _mm256_broadcast_ss(a5 + j);
      c50 = _mm256_fmadd_ps(v, b0, c50), c51 = _mm256_fmadd_ps(v, b1, c51);
    }
  }
  _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
  _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
  _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
  _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
  _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

// y (n, oh, ow, oc) = conv(x, f) for images [b0, b1), six output pixels at a time (an image's
// last group may have fewer: its spare rows repeat the last pixel and land in a scratch tile).
// packed: the filter (kh*kw*c, oc) as (oc/16, kh*kw*c, 16) panels.
__attribute__((target("avx2,fma"))) void ImplicitGemmImages(const ConvGeom& g, const float* x,
                                                            const float* packed, float* y,
                                                            int64_t b0, int64_t b1) {
  const PaddedGeom p(g);
  const int64_t depth = g.depth(), panels = g.oc / 16, pixels = g.rows();
  const int64_t run = g.kw * g.c, row = p.wp * g.c;          // a window row (kx, c); a padded row
  std::vector<float> pad(static_cast<size_t>(p.floats(g)));  // (hp, wp, c)
  alignas(32) float spare[6 * 16];                           // (6, 16)
  for (int64_t b = b0; b < b1; ++b) {
    PadNhwc(g, p, x + b * g.h * g.w * g.c, pad.data());
    float* out = y + b * pixels * g.oc;  // (oh*ow, oc)
    for (int64_t p0 = 0; p0 < pixels; p0 += 6) {
      const float* a[6];
      for (int r = 0; r < 6; ++r) {
        const int64_t px = std::min(p0 + r, pixels - 1), oy = px / g.ow, ox = px % g.ow;
        a[r] = pad.data() + (oy * g.sh * p.wp + ox * g.sw) * g.c;
      }
      const int64_t rows = std::min<int64_t>(6, pixels - p0);
      for (int64_t t = 0; t < panels; ++t) {
        float* c = out + p0 * g.oc + t * 16;
        if (rows == 6) {
          Tile6x16(a, packed + t * depth * 16, g.kh, run, row, c, g.oc);
          continue;
        }
        Tile6x16(a, packed + t * depth * 16, g.kh, run, row, spare, 16);
        for (int64_t r = 0; r < rows; ++r) std::memcpy(c + r * g.oc, spare + r * 16, 64);
      }
    }
  }
}

// y (n, oh, ow, oc) = conv(x, f): packs the filter into 16-column panels, then images in parallel.
void ImplicitGemmConv(const ConvGeom& g, const float* x, const float* f, float* y,
                      ThreadPool* pool) {
  const int64_t depth = g.depth(), panels = g.oc / 16;
  std::vector<float> packed(static_cast<size_t>(depth * g.oc));  // (panels, depth, 16)
  for (int64_t t = 0; t < panels; ++t) {
    for (int64_t k = 0; k < depth; ++k) {
      std::memcpy(&packed[(t * depth + k) * 16], f + k * g.oc + t * 16, sizeof(float) * 16);
    }
  }
  MaybeParallelFor(pool, g.n, 1, [&](int64_t begin, int64_t end) {
    ImplicitGemmImages(g, x, packed.data(), y, begin, end);
  });
}

void DirectConvForwardImages(const ConvGeom& g, const float* x, const float* f, float* y,
                             int64_t b0, int64_t b1) {
  DirectConvForward(g, x, f, y, b0, b1);
}

void DirectConvFilterGradImages(const ConvGeom& g, const float* x, const float* dy, float* df,
                                int64_t b0, int64_t b1) {
  DirectConvFilterGrad(g, x, dy, df, b0, b1);
}

}  // namespace cpu
}  // namespace mpiflow
