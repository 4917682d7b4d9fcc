// CUDA kernels for pooling (NHWC), float32 and float64, with the CPU kernels' contracts:
// MaxPool's second output is each maximum's position in its window (ky * kw + kx; the first
// maximum wins), AvgPool averages a window's unpadded positions. The gradients gather: one thread
// per input element sums the windows that cover it in order, so overlapping windows need no
// atomics and every run gives the same bits. Unlike the CPU's, MaxPoolGrad does not check its
// argmax input (only MaxPool makes one); a position outside the window contributes nothing.
#include "cuda_kernels.h"
#include "mpiflow/window.h"

namespace mpiflow {
namespace cuda {
namespace {

#define MPIFLOW_GRID_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

struct PoolGeom {
  int64_t n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw;
};

Status MakePoolGeom(KernelContext* ctx, const Shape& x, const Node& node, PoolGeom* g) {
  const auto& k = node.attr<std::vector<int64_t>>("ksize");
  const auto& s = node.attr<std::vector<int64_t>>("strides");
  const auto& pad = node.attr<std::string>("padding");
  if (x.rank() != 4) return ctx->Error("input must be NHWC (rank 4), got ", x.ToString());
  *g = {x.dim(0), x.dim(1), x.dim(2), x.dim(3), 0, 0, k[0], k[1], s[0], s[1], 0, 0};
  const Status rows = WindowGeometry(g->h, g->kh, g->sh, pad, &g->oh, &g->ph);
  const Status st = rows.ok() ? WindowGeometry(g->w, g->kw, g->sw, pad, &g->ow, &g->pw) : rows;
  if (!st.ok()) return ctx->Error(st.message());
  return Status::OK();
}

// The windows covering input row y: [first, last] (empty when first > last).
__device__ inline void Covering(int64_t y, int64_t k, int64_t s, int64_t p, int64_t out,
                                int64_t* first, int64_t* last) {
  const int64_t hi = y + p;          // oy * s <= y + p
  const int64_t lo = y + p - k + 1;  // oy * s >= y + p - k + 1
  *first = lo <= 0 ? 0 : (lo + s - 1) / s;
  *last = hi / s < out - 1 ? hi / s : out - 1;
}

template <typename T>
__global__ void MaxPoolFn(PoolGeom g, const T* x, T* y, int32_t* arg) {
  const int64_t total = g.n * g.oh * g.ow * g.c;
  MPIFLOW_GRID_LOOP(o, total) {
    const int64_t ch = o % g.c, ox = (o / g.c) % g.ow, oy = (o / (g.c * g.ow)) % g.oh,
                  b = o / (g.c * g.ow * g.oh);
    T best = 0;
    int32_t where = 0;
    bool first = true;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t yy = oy * g.sh - g.ph + ky;
      if (yy < 0 || yy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t xx = ox * g.sw - g.pw + kx;
        if (xx < 0 || xx >= g.w) continue;
        const T v = x[((b * g.h + yy) * g.w + xx) * g.c + ch];
        if (first || v > best) {
          best = v;
          where = static_cast<int32_t>(ky * g.kw + kx);
          first = false;
        }
      }
    }
    y[o] = best;
    arg[o] = where;
  }
}

template <typename T>
__global__ void MaxPoolGradFn(PoolGeom g, const int32_t* arg, const T* dy, T* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  MPIFLOW_GRID_LOOP(i, total) {
    const int64_t ch = i % g.c, xx = (i / g.c) % g.w, yy = (i / (g.c * g.w)) % g.h,
                  b = i / (g.c * g.w * g.h);
    int64_t y0, y1, x0, x1;
    Covering(yy, g.kh, g.sh, g.ph, g.oh, &y0, &y1);
    Covering(xx, g.kw, g.sw, g.pw, g.ow, &x0, &x1);
    T acc = 0;
    for (int64_t oy = y0; oy <= y1; ++oy) {
      for (int64_t ox = x0; ox <= x1; ++ox) {
        const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c + ch;
        const int64_t k = (yy - (oy * g.sh - g.ph)) * g.kw + (xx - (ox * g.sw - g.pw));
        if (arg[o] == k) acc += dy[o];
      }
    }
    dx[i] = acc;
  }
}

// Valid (unpadded) positions of a window.
__device__ inline int64_t WindowCount(const PoolGeom& g, int64_t oy, int64_t ox) {
  const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  const int64_t ys = max(int64_t{0}, y0), ye = min(g.h, y0 + g.kh);
  const int64_t xs = max(int64_t{0}, x0), xe = min(g.w, x0 + g.kw);
  return (ye - ys) * (xe - xs);
}

template <typename T>
__global__ void AvgPoolFn(PoolGeom g, const T* x, T* y) {
  const int64_t total = g.n * g.oh * g.ow * g.c;
  MPIFLOW_GRID_LOOP(o, total) {
    const int64_t ch = o % g.c, ox = (o / g.c) % g.ow, oy = (o / (g.c * g.ow)) % g.oh,
                  b = o / (g.c * g.ow * g.oh);
    const T inv = T(1) / static_cast<T>(WindowCount(g, oy, ox));
    T acc = 0;
    for (int64_t ky = 0; ky < g.kh; ++ky) {
      const int64_t yy = oy * g.sh - g.ph + ky;
      if (yy < 0 || yy >= g.h) continue;
      for (int64_t kx = 0; kx < g.kw; ++kx) {
        const int64_t xx = ox * g.sw - g.pw + kx;
        if (xx < 0 || xx >= g.w) continue;
        acc += x[((b * g.h + yy) * g.w + xx) * g.c + ch] * inv;
      }
    }
    y[o] = acc;
  }
}

template <typename T>
__global__ void AvgPoolGradFn(PoolGeom g, const T* dy, T* dx) {
  const int64_t total = g.n * g.h * g.w * g.c;
  MPIFLOW_GRID_LOOP(i, total) {
    const int64_t ch = i % g.c, xx = (i / g.c) % g.w, yy = (i / (g.c * g.w)) % g.h,
                  b = i / (g.c * g.w * g.h);
    int64_t y0, y1, x0, x1;
    Covering(yy, g.kh, g.sh, g.ph, g.oh, &y0, &y1);
    Covering(xx, g.kw, g.sw, g.pw, g.ow, &x0, &x1);
    T acc = 0;
    for (int64_t oy = y0; oy <= y1; ++oy) {
      for (int64_t ox = x0; ox <= x1; ++ox) {
        const T inv = T(1) / static_cast<T>(WindowCount(g, oy, ox));
        acc += dy[((b * g.oh + oy) * g.ow + ox) * g.c + ch] * inv;
      }
    }
    dx[i] = acc;
  }
}

template <typename T>
class MaxPoolKernel : public OpKernel {
 public:
  explicit MaxPoolKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);  // (n, h, w, c)
    PoolGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakePoolGeom(ctx, x.shape(), node_, &g));
    const Shape pooled{g.n, g.oh, g.ow, g.c};
    Tensor* y = ctx->allocate_output(0, pooled);    // (n, oh, ow, c)
    Tensor* arg = ctx->allocate_output(1, pooled);  // (n, oh, ow, c) int32
    const int64_t n = y->num_elements();
    if (n) {
      MaxPoolFn<<<Blocks(n), kThreads, 0, Stream()>>>(g, x.data<T>(), y->data<T>(),
                                                      arg->data<int32_t>());
    }
    return LaunchStatus(ctx);
  }
};

template <typename T>
class MaxPoolGradKernel : public OpKernel {
 public:
  explicit MaxPoolGradKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &argmax = ctx->input(1), &dy = ctx->input(2);
    PoolGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakePoolGeom(ctx, x.shape(), node_, &g));
    const Shape pooled{g.n, g.oh, g.ow, g.c};
    if (argmax.shape() != pooled || dy.shape() != pooled) {
      return ctx->Error("argmax ", argmax.shape().ToString(), " and dy ", dy.shape().ToString(),
                        " must both be ", pooled.ToString());
    }
    Tensor* dx = ctx->allocate_output(0, x.shape());
    const int64_t n = dx->num_elements();
    if (n) {
      MaxPoolGradFn<<<Blocks(n), kThreads, 0, Stream()>>>(g, argmax.data<int32_t>(), dy.data<T>(),
                                                          dx->data<T>());
    }
    return LaunchStatus(ctx);
  }
};

template <typename T, bool kGrad>
class AvgPoolKernel : public OpKernel {
 public:
  explicit AvgPoolKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);  // forward: x; gradient: x_like
    PoolGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakePoolGeom(ctx, x.shape(), node_, &g));
    const Shape pooled{g.n, g.oh, g.ow, g.c};
    if (kGrad && ctx->input(1).shape() != pooled) {
      return ctx->Error("dy ", ctx->input(1).shape().ToString(), " does not match ",
                        pooled.ToString());
    }
    Tensor* out = ctx->allocate_output(0, kGrad ? x.shape() : pooled);
    const int64_t n = out->num_elements();
    if (!n) return LaunchStatus(ctx);
    if (kGrad) {
      AvgPoolGradFn<<<Blocks(n), kThreads, 0, Stream()>>>(g, ctx->input(1).data<T>(),
                                                          out->data<T>());
    } else {
      AvgPoolFn<<<Blocks(n), kThreads, 0, Stream()>>>(g, x.data<T>(), out->data<T>());
    }
    return LaunchStatus(ctx);
  }
};

}  // namespace

void RegisterPoolKernels(KernelRegistry& r) {
  RegisterKernel<MaxPoolKernel<float>>(r, "MaxPool", kCuda, DType::kFloat32);
  RegisterKernel<MaxPoolKernel<double>>(r, "MaxPool", kCuda, DType::kFloat64);
  RegisterKernel<MaxPoolGradKernel<float>>(r, "MaxPoolGrad", kCuda, DType::kFloat32);
  RegisterKernel<MaxPoolGradKernel<double>>(r, "MaxPoolGrad", kCuda, DType::kFloat64);
  RegisterKernel<AvgPoolKernel<float, false>>(r, "AvgPool", kCuda, DType::kFloat32);
  RegisterKernel<AvgPoolKernel<double, false>>(r, "AvgPool", kCuda, DType::kFloat64);
  RegisterKernel<AvgPoolKernel<float, true>>(r, "AvgPoolGrad", kCuda, DType::kFloat32);
  RegisterKernel<AvgPoolKernel<double, true>>(r, "AvgPoolGrad", kCuda, DType::kFloat64);
}

}  // namespace cuda
}  // namespace mpiflow
