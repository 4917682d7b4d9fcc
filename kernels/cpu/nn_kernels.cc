// CPU kernels for the nn ops (src/ops/nn_ops.cc) except convolution: BiasAdd, softmax family,
// sparse softmax cross-entropy, max and average pooling, dropout, and their gradients.
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu_util.h"
#include "mpiflow/random.h"
#include "mpiflow/window.h"

namespace mpiflow {
namespace {

// Views x as (rows, last).
void RowsCols(const Shape& s, int64_t* rows, int64_t* cols) {
  *cols = s.rank() ? s.dim(s.rank() - 1) : 1;
  *rows = *cols ? s.num_elements() / *cols : 0;
}

template <typename T>
class BiasAddKernel : public OpKernel {
 public:
  explicit BiasAddKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &b = ctx->input(1);  // x (..., c), b (c)
    int64_t rows, cols;
    RowsCols(x.shape(), &rows, &cols);
    if (b.num_elements() != cols) {
      return ctx->Error("bias ", b.shape().ToString(), " does not match x ", x.shape().ToString());
    }
    const T *px = x.data<T>(), *pb = b.data<T>();
    T* py = ctx->allocate_output(0, x.shape())->template data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) py[r * cols + j] = px[r * cols + j] + pb[j];
    }
    return Status::OK();
  }
};

template <typename T>
class BiasAddGradKernel : public OpKernel {
 public:
  explicit BiasAddGradKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);  // (..., c)
    int64_t rows, cols;
    RowsCols(dy.shape(), &rows, &cols);
    T* db = ctx->allocate_output(0, Shape{cols})->template data<T>();  // (c)
    const T* p = dy.data<T>();
    for (int64_t j = 0; j < cols; ++j) db[j] = T(0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) db[j] += p[r * cols + j];
    }
    return Status::OK();
  }
};

template <typename T, bool kLog>
class SoftmaxKernel : public OpKernel {
 public:
  explicit SoftmaxKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    int64_t rows, cols;
    RowsCols(x.shape(), &rows, &cols);
    const T* px = x.data<T>();
    T* py = ctx->allocate_output(0, x.shape())->template data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T* in = px + r * cols;
      T* out = py + r * cols;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, in[j]);
      T sum = 0;
      for (int64_t j = 0; j < cols; ++j) sum += std::exp(in[j] - mx);
      if (kLog) {
        const T lse = mx + std::log(sum);
        for (int64_t j = 0; j < cols; ++j) out[j] = in[j] - lse;
      } else {
        for (int64_t j = 0; j < cols; ++j) out[j] = std::exp(in[j] - mx) / sum;
      }
    }
    return Status::OK();
  }
};

// Softmax: dx = (dy - sum(dy*y)) * y.  LogSoftmax: dx = dy - exp(y) * sum(dy).
template <typename T, bool kLog>
class SoftmaxGradKernel : public OpKernel {
 public:
  explicit SoftmaxGradKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &y = ctx->input(0), &dy = ctx->input(1);
    if (y.shape() != dy.shape()) return ctx->Error("y and dy shapes differ");
    int64_t rows, cols;
    RowsCols(y.shape(), &rows, &cols);
    const T *py = y.data<T>(), *pdy = dy.data<T>();
    T* pdx = ctx->allocate_output(0, y.shape())->template data<T>();
    for (int64_t r = 0; r < rows; ++r) {
      const T *yr = py + r * cols, *gr = pdy + r * cols;
      T* out = pdx + r * cols;
      T dot = 0;
      for (int64_t j = 0; j < cols; ++j) dot += kLog ? gr[j] : gr[j] * yr[j];
      for (int64_t j = 0; j < cols; ++j) {
        out[j] = kLog ? gr[j] - std::exp(yr[j]) * dot : (gr[j] - dot) * yr[j];
      }
    }
    return Status::OK();
  }
};

// loss_i = logsumexp(z_i) - z_i[label_i]; backprop_i = softmax(z_i) - onehot(label_i).
template <typename T>
class XentKernel : public OpKernel {
 public:
  explicit XentKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &logits = ctx->input(0), &labels = ctx->input(1);  // (b, k), (b)
    const int64_t batch = logits.shape().dim(0), classes = logits.shape().dim(1);
    if (labels.shape().dim(0) != batch) {
      return ctx->Error("logits ", logits.shape().ToString(), " and labels ",
                        labels.shape().ToString(), " have different batch sizes");
    }
    T* loss = ctx->allocate_output(0, Shape{batch})->template data<T>();    // (b)
    T* back = ctx->allocate_output(1, logits.shape())->template data<T>();  // (b, k)
    const T* z = logits.data<T>();
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t label =
          labels.dtype() == DType::kInt32 ? labels.data<int32_t>()[i] : labels.data<int64_t>()[i];
      if (label < 0 || label >= classes) {
        return ctx->Error("label ", label, " at position ", i, " is out of range [0, ", classes,
                          ")");
      }
      const T* zi = z + i * classes;
      T* bi = back + i * classes;
      T mx = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < classes; ++j) mx = std::max(mx, zi[j]);
      T sum = 0;
      for (int64_t j = 0; j < classes; ++j) {
        bi[j] = std::exp(zi[j] - mx);
        sum += bi[j];
      }
      for (int64_t j = 0; j < classes; ++j) bi[j] /= sum;
      loss[i] = std::log(sum) + mx - zi[label];
      bi[label] -= T(1);
    }
    return Status::OK();
  }
};

// Pooling geometry resolved at run time from the input shape (NHWC).
struct PoolGeom {
  int64_t n, h, w, c, oh, ow, kh, kw, sh, sw, ph, pw;
};

Status MakePoolGeom(KernelContext* ctx, const Shape& x, const Node& node, PoolGeom* g) {
  const auto& k = node.attr<std::vector<int64_t>>("ksize");
  const auto& s = node.attr<std::vector<int64_t>>("strides");
  const auto& pad = node.attr<std::string>("padding");
  if (x.rank() != 4) return ctx->Error("input must be NHWC (rank 4), got ", x.ToString());
  *g = {x.dim(0), x.dim(1), x.dim(2), x.dim(3), 0, 0, k[0], k[1], s[0], s[1], 0, 0};
  Status st = WindowGeometry(g->h, g->kh, g->sh, pad, &g->oh, &g->ph);
  if (st.ok()) st = WindowGeometry(g->w, g->kw, g->sw, pad, &g->ow, &g->pw);
  if (!st.ok()) return ctx->Error(st.message());
  return Status::OK();
}

// Calls fn(out_index, in_index) over the window of each output element, in scan order.
template <typename F>
void ForEachWindow(const PoolGeom& g, int64_t b, int64_t oy, int64_t ox, F fn) {
  const int64_t y0 = oy * g.sh - g.ph, x0 = ox * g.sw - g.pw;
  for (int64_t ky = 0; ky < g.kh; ++ky) {
    const int64_t y = y0 + ky;
    if (y < 0 || y >= g.h) continue;
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      const int64_t x = x0 + kx;
      if (x < 0 || x >= g.w) continue;
      fn(((b * g.h + y) * g.w + x) * g.c);
    }
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
    T* py = ctx->allocate_output(0, pooled)->template data<T>();               // (n, oh, ow, c)
    int32_t* arg = ctx->allocate_output(1, pooled)->template data<int32_t>();  // (n, oh, ow, c)
    const T* px = x.data<T>();
    for (int64_t b = 0; b < g.n; ++b) {
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c;
          T* __restrict__ best = py + o;
          int32_t* __restrict__ where = arg + o;
          bool first = true;
          for (int64_t ky = 0; ky < g.kh; ++ky) {
            const int64_t y = oy * g.sh - g.ph + ky;
            if (y < 0 || y >= g.h) continue;
            for (int64_t kx = 0; kx < g.kw; ++kx) {
              const int64_t xx = ox * g.sw - g.pw + kx;
              if (xx < 0 || xx >= g.w) continue;
              const T* __restrict__ in = px + ((b * g.h + y) * g.w + xx) * g.c;
              const int32_t k = static_cast<int32_t>(ky * g.kw + kx);
              if (first) {
                for (int64_t ch = 0; ch < g.c; ++ch) {
                  best[ch] = in[ch];
                  where[ch] = k;
                }
                first = false;
                continue;
              }
              for (int64_t ch = 0; ch < g.c; ++ch) {  // strict: the first maximum wins
                // branch-free so that it vectorises: mask is all ones where in > best
                const int32_t mask = -static_cast<int32_t>(in[ch] > best[ch]);
                best[ch] = std::max(best[ch], in[ch]);
                where[ch] = (where[ch] & ~mask) | (k & mask);
              }
            }
          }
        }
      }
    }
    return Status::OK();
  }
};

// Windows that tile the input (stride = size, no padding; the usual 2x2/2 pool): every input
// element lies in exactly one window.
bool TilingWindows(const PoolGeom& g) {
  return g.sh == g.kh && g.sw == g.kw && g.ph == 0 && g.pw == 0;
}

// dx over the tiled area <- dy where the argmax names that position, 0 elsewhere: written once
// per element, branch-free so that it vectorises (no zero fill, no division per element).
// Returns false, having written only part of dx, where an argmax is outside its window.
template <typename T>
bool ScatterTiled(const PoolGeom& g, const int32_t* arg, const T* dy, T* dx) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  const int32_t window = static_cast<int32_t>(g.kh * g.kw);
  uint32_t bad = 0;
  for (int64_t b = 0; b < g.n; ++b) {
    for (int64_t oy = 0; oy < g.oh; ++oy) {
      for (int64_t ky = 0; ky < g.kh; ++ky) {
        T* __restrict__ row = dx + ((b * g.h + oy * g.kh + ky) * g.w) * g.c;
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c;
          const int32_t* __restrict__ a = arg + o;
          const T* __restrict__ d = dy + o;
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            const int32_t k = static_cast<int32_t>(ky * g.kw + kx);
            T* __restrict__ out = row + (ox * g.kw + kx) * g.c;
            for (int64_t ch = 0; ch < g.c; ++ch) {  // out = d & (all ones where a == k)
              Bits bits;
              std::memcpy(&bits, d + ch, sizeof(T));
              bits &= -static_cast<Bits>(a[ch] == k);
              std::memcpy(out + ch, &bits, sizeof(T));
              bad |= static_cast<uint32_t>(a[ch]) >= static_cast<uint32_t>(window);
            }
          }
        }
      }
    }
  }
  return bad == 0;
}

// dx = 0; dy goes to the window position its argmax names.
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
    const int32_t* arg = argmax.data<int32_t>();
    const T* pdy = dy.data<T>();
    T* pdx = dx->data<T>();
    if (TilingWindows(g)) {
      if (g.oh * g.kh != g.h || g.ow * g.kw != g.w) dx->FillZero();  // VALID left a border
      if (ScatterTiled(g, arg, pdy, pdx)) return Status::OK();
    }
    dx->FillZero();  // overlapping or padded windows (or a bad argmax: found and named below)
    for (int64_t b = 0; b < g.n; ++b) {
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c;
          for (int64_t ch = 0; ch < g.c; ++ch) {
            const int64_t k = arg[o + ch];
            const int64_t y = oy * g.sh - g.ph + k / g.kw, xx = ox * g.sw - g.pw + k % g.kw;
            if (k < 0 || k >= g.kh * g.kw || y < 0 || y >= g.h || xx < 0 || xx >= g.w) {
              return ctx->Error("argmax ", k, " at position ", o + ch,
                                " is not a valid window position");
            }
            pdx[((b * g.h + y) * g.w + xx) * g.c + ch] += pdy[o + ch];
          }
        }
      }
    }
    return Status::OK();
  }
};

// Average over the window's valid (unpadded) positions.
template <typename T, bool kGrad>
class AvgPoolKernel : public OpKernel {
 public:
  explicit AvgPoolKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);  // forward: x; gradient: x_like
    PoolGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakePoolGeom(ctx, x.shape(), node_, &g));
    const Shape pooled{g.n, g.oh, g.ow, g.c};
    Tensor* out = ctx->allocate_output(0, kGrad ? x.shape() : pooled);
    if (kGrad) {
      if (ctx->input(1).shape() != pooled) {
        return ctx->Error("dy ", ctx->input(1).shape().ToString(), " does not match ",
                          pooled.ToString());
      }
      out->FillZero();
    }
    const T* in = kGrad ? ctx->input(1).data<T>() : x.data<T>();
    T* po = out->data<T>();
    for (int64_t b = 0; b < g.n; ++b) {
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        for (int64_t ox = 0; ox < g.ow; ++ox) {
          const int64_t o = ((b * g.oh + oy) * g.ow + ox) * g.c;
          int64_t count = 0;
          ForEachWindow(g, b, oy, ox, [&](int64_t) { ++count; });
          const T inv = T(1) / static_cast<T>(count);
          if (!kGrad) {
            for (int64_t ch = 0; ch < g.c; ++ch) po[o + ch] = T(0);
          }
          ForEachWindow(g, b, oy, ox, [&](int64_t p) {
            for (int64_t ch = 0; ch < g.c; ++ch) {
              if (kGrad) {
                po[p + ch] += in[o + ch] * inv;
              } else {
                po[o + ch] += in[p + ch] * inv;
              }
            }
          });
        }
      }
    }
    return Status::OK();
  }
};

// y = x * keep / (1 - rate), keep = uniform(seed, step, i) >= rate. The gradient uses the same
// mask because it runs in the same step with the same seed.
template <typename T>
class DropoutKernel : public OpKernel {
 public:
  explicit DropoutKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        rate_(c.node.attr<double>("rate")),
        seed_(static_cast<uint64_t>(c.node.attr<int64_t>("seed"))) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const T* px = x.data<T>();
    T* py = ctx->allocate_output(0, x.shape())->template data<T>();
    const T scale = static_cast<T>(1.0 / (1.0 - rate_));
    const uint64_t step = static_cast<uint64_t>(ctx->step());
    for (int64_t i = 0, n_ = x.num_elements(); i < n_; ++i) {
      const bool keep = RandomUniform01(seed_, step, static_cast<uint64_t>(i)) >= rate_;
      py[i] = keep ? px[i] * scale : T(0);
    }
    return Status::OK();
  }

 private:
  double rate_;
  uint64_t seed_;
};

}  // namespace

void RegisterNnKernels(KernelRegistry& r) {
  RegisterKernel<BiasAddKernel<float>>(r, "BiasAdd", kCpu, DType::kFloat32);
  RegisterKernel<BiasAddKernel<double>>(r, "BiasAdd", kCpu, DType::kFloat64);
  RegisterKernel<BiasAddGradKernel<float>>(r, "BiasAddGrad", kCpu, DType::kFloat32);
  RegisterKernel<BiasAddGradKernel<double>>(r, "BiasAddGrad", kCpu, DType::kFloat64);
  RegisterKernel<SoftmaxKernel<float, false>>(r, "Softmax", kCpu, DType::kFloat32);
  RegisterKernel<SoftmaxKernel<double, false>>(r, "Softmax", kCpu, DType::kFloat64);
  RegisterKernel<SoftmaxKernel<float, true>>(r, "LogSoftmax", kCpu, DType::kFloat32);
  RegisterKernel<SoftmaxKernel<double, true>>(r, "LogSoftmax", kCpu, DType::kFloat64);
  RegisterKernel<SoftmaxGradKernel<float, false>>(r, "SoftmaxGrad", kCpu, DType::kFloat32);
  RegisterKernel<SoftmaxGradKernel<double, false>>(r, "SoftmaxGrad", kCpu, DType::kFloat64);
  RegisterKernel<SoftmaxGradKernel<float, true>>(r, "LogSoftmaxGrad", kCpu, DType::kFloat32);
  RegisterKernel<SoftmaxGradKernel<double, true>>(r, "LogSoftmaxGrad", kCpu, DType::kFloat64);
  RegisterKernel<XentKernel<float>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCpu,
                                    DType::kFloat32);
  RegisterKernel<XentKernel<double>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCpu,
                                     DType::kFloat64);
  RegisterKernel<MaxPoolKernel<float>>(r, "MaxPool", kCpu, DType::kFloat32);
  RegisterKernel<MaxPoolKernel<double>>(r, "MaxPool", kCpu, DType::kFloat64);
  RegisterKernel<MaxPoolGradKernel<float>>(r, "MaxPoolGrad", kCpu, DType::kFloat32);
  RegisterKernel<MaxPoolGradKernel<double>>(r, "MaxPoolGrad", kCpu, DType::kFloat64);
  RegisterKernel<AvgPoolKernel<float, false>>(r, "AvgPool", kCpu, DType::kFloat32);
  RegisterKernel<AvgPoolKernel<double, false>>(r, "AvgPool", kCpu, DType::kFloat64);
  RegisterKernel<AvgPoolKernel<float, true>>(r, "AvgPoolGrad", kCpu, DType::kFloat32);
  RegisterKernel<AvgPoolKernel<double, true>>(r, "AvgPoolGrad", kCpu, DType::kFloat64);
  RegisterKernel<DropoutKernel<float>>(r, "Dropout", kCpu, DType::kFloat32);
  RegisterKernel<DropoutKernel<double>>(r, "Dropout", kCpu, DType::kFloat64);
  RegisterKernel<DropoutKernel<float>>(r, "DropoutGrad", kCpu, DType::kFloat32);
  RegisterKernel<DropoutKernel<double>>(r, "DropoutGrad", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
