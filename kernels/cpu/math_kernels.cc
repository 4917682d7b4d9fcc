// CPU kernels for the math ops (src/ops/math_ops.cc) except MatMul: broadcasting binary ops,
// AddN, unary functions and their gradients, reductions and their gradients.
#include <cmath>
#include <limits>

#include "cpu_util.h"

namespace mpiflow {
namespace {

using cpu::BroadcastStrides;
using cpu::ForEachStrided;

struct AddF {
  template <typename T>
  T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubF {
  template <typename T>
  T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulF {
  template <typename T>
  T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivF {
  template <typename T>
  T operator()(T a, T b) const {
    return a / b;
  }
};

template <typename T, typename F>
class BinaryKernel : public OpKernel {
 public:
  explicit BinaryKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);
    const T *pa = a.data<T>(), *pb = b.data<T>();
    F f;
    if (std::is_integral<T>::value && std::is_same<F, DivF>::value) {
      for (int64_t i = 0, n_ = b.num_elements(); i < n_; ++i) {
        if (pb[i] == T(0)) return ctx->Error("integer division by zero at element ", i);
      }
    }
    if (a.shape() == b.shape()) {  // fast path: no broadcasting
      T* py = ctx->allocate_output(0, a.shape())->template data<T>();
      const int64_t n = a.num_elements();
      for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], pb[i]);
      return Status::OK();
    }
    std::vector<int64_t> dims;
    if (!cpu::BroadcastDims(a.shape().dims(), b.shape().dims(), &dims)) {
      return ctx->Error("shapes ", a.shape().ToString(), " and ", b.shape().ToString(),
                        " cannot be broadcast");
    }
    T* py = ctx->allocate_output(0, Shape(dims))->template data<T>();
    if (b.num_elements() == 1) {
      const T sb = pb[0];
      const int64_t n = a.num_elements();
      for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], sb);
      return Status::OK();
    }
    ForEachStrided(dims, BroadcastStrides(dims, a.shape().dims()),
                   BroadcastStrides(dims, b.shape().dims()),
                   [&](int64_t i, int64_t oa, int64_t ob) { py[i] = f(pa[oa], pb[ob]); });
    return Status::OK();
  }
};

template <typename T>
class AddNKernel : public OpKernel {
 public:
  explicit AddNKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Shape& shape = ctx->input(0).shape();
    for (int i = 1; i < ctx->num_inputs(); ++i) {
      if (ctx->input(i).shape() != shape) {
        return ctx->Error("input ", i, " has shape ", ctx->input(i).shape().ToString(),
                          ", input 0 has ", shape.ToString());
      }
    }
    T* y = ctx->allocate_output(0, shape)->template data<T>();
    const int64_t n = shape.num_elements();
    const T* x0 = ctx->input(0).data<T>();
    for (int64_t j = 0; j < n; ++j) y[j] = x0[j];
    for (int i = 1; i < ctx->num_inputs(); ++i) {  // fixed order: deterministic sums
      const T* x = ctx->input(i).data<T>();
      for (int64_t j = 0; j < n; ++j) y[j] += x[j];
    }
    return Status::OK();
  }
};

template <typename T, typename F>
class UnaryKernel : public OpKernel {
 public:
  explicit UnaryKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const T* px = x.data<T>();
    T* py = ctx->allocate_output(0, x.shape())->template data<T>();
    const int64_t n = x.num_elements();
    F f;
    for (int64_t i = 0; i < n; ++i) py[i] = f(px[i]);
    return Status::OK();
  }
};

struct NegF {
  template <typename T>
  T operator()(T x) const {
    return -x;
  }
};
struct ExpF {
  template <typename T>
  T operator()(T x) const {
    return std::exp(x);
  }
};
struct LogF {
  template <typename T>
  T operator()(T x) const {
    return std::log(x);
  }
};
struct SqrtF {
  template <typename T>
  T operator()(T x) const {
    return std::sqrt(x);
  }
};
struct SquareF {
  template <typename T>
  T operator()(T x) const {
    return x * x;
  }
};
struct ReluF {
  template <typename T>
  T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
};
struct SigmoidF {
  template <typename T>
  T operator()(T x) const {
    return T(1) / (T(1) + std::exp(-x));
  }
};
struct TanhF {
  template <typename T>
  T operator()(T x) const {
    return std::tanh(x);
  }
};

// out[i] = f(a[i], b[i]) for two same-shape inputs.
template <typename T, typename F>
class PairKernel : public OpKernel {
 public:
  explicit PairKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);
    if (a.shape() != b.shape()) {
      return ctx->Error("shapes ", a.shape().ToString(), " and ", b.shape().ToString(), " differ");
    }
    const T *pa = a.data<T>(), *pb = b.data<T>();
    T* py = ctx->allocate_output(0, a.shape())->template data<T>();
    const int64_t n = a.num_elements();
    F f;
    for (int64_t i = 0; i < n; ++i) py[i] = f(pa[i], pb[i]);
    return Status::OK();
  }
};

struct ReluGradF {  // (dy, y)
  template <typename T>
  T operator()(T dy, T y) const {
    return y > T(0) ? dy : T(0);
  }
};
struct SigmoidGradF {  // (y, dy)
  template <typename T>
  T operator()(T y, T dy) const {
    return dy * y * (T(1) - y);
  }
};
struct TanhGradF {  // (y, dy)
  template <typename T>
  T operator()(T y, T dy) const {
    return dy * (T(1) - y * y);
  }
};

// The input dims with reduced axes set to 1 (empty axes: all).
std::vector<int64_t> KeepDims(const std::vector<int64_t>& dims, std::vector<int64_t> axes) {
  const int rank = static_cast<int>(dims.size());
  std::vector<int64_t> out = dims;
  if (axes.empty()) {
    for (int i = 0; i < rank; ++i) axes.push_back(i);
  }
  for (int64_t a : axes) out[a < 0 ? a + rank : a] = 1;
  return out;
}

enum class Reduction { kSum, kMean, kMax };

template <typename T, Reduction R>
class ReduceKernel : public OpKernel {
 public:
  explicit ReduceKernel(const KernelInitContext& c)
      : OpKernel(c.node), axes_(c.node.attr<std::vector<int64_t>>("axes")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const std::vector<int64_t> kept = KeepDims(x.shape().dims(), axes_);
    std::vector<int64_t> out_dims;
    const bool keep = node_.attr<bool>("keep_dims");
    for (int i = 0; i < x.shape().rank(); ++i) {
      if (!IsReduced(i, x.shape().rank())) {
        out_dims.push_back(x.shape().dim(i));
      } else if (keep) {
        out_dims.push_back(1);
      }
    }
    Tensor* y = ctx->allocate_output(0, Shape(out_dims));
    T* py = y->data<T>();
    const int64_t n_out = y->num_elements();
    const int64_t count = n_out ? x.num_elements() / n_out : 0;
    if (R == Reduction::kMax && count == 0 && x.num_elements() == 0 && n_out > 0) {
      return ctx->Error("Max over an empty dimension of ", x.shape().ToString());
    }
    const T init = R == Reduction::kMax ? std::numeric_limits<T>::lowest() : T(0);
    for (int64_t i = 0; i < n_out; ++i) py[i] = init;
    const T* px = x.data<T>();
    const std::vector<int64_t> zeros(kept.size(), 0);
    ForEachStrided(x.shape().dims(), BroadcastStrides(x.shape().dims(), kept), zeros,
                   [&](int64_t i, int64_t o, int64_t) {
                     if (R == Reduction::kMax) {
                       if (px[i] > py[o]) py[o] = px[i];
                     } else {
                       py[o] += px[i];
                     }
                   });
    if (R == Reduction::kMean && count > 0) {
      for (int64_t i = 0; i < n_out; ++i) py[i] /= static_cast<T>(count);
    }
    return Status::OK();
  }

 private:
  bool IsReduced(int i, int rank) const {
    if (axes_.empty()) return true;
    for (int64_t a : axes_) {
      if ((a < 0 ? a + rank : a) == i) return true;
    }
    return false;
  }
  std::vector<int64_t> axes_;
};

// dy broadcast back over the reduced axes of x (divided by the count for Mean).
template <typename T>
class ReduceGradKernel : public OpKernel {
 public:
  explicit ReduceGradKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        axes_(c.node.attr<std::vector<int64_t>>("axes")),
        mean_(c.node.attr<bool>("mean")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &x = ctx->input(1);
    const std::vector<int64_t> kept = KeepDims(x.shape().dims(), axes_);
    if (Shape(kept).num_elements() != dy.num_elements()) {
      return ctx->Error("dy ", dy.shape().ToString(), " does not match the reduction of ",
                        x.shape().ToString());
    }
    Tensor* dx = ctx->allocate_output(0, x.shape());
    const int64_t n_out = dy.num_elements();
    const T scale = mean_ && n_out ? T(1) / static_cast<T>(x.num_elements() / n_out) : T(1);
    const T* pdy = dy.data<T>();
    T* pdx = dx->data<T>();
    const std::vector<int64_t> zeros(kept.size(), 0);
    ForEachStrided(x.shape().dims(), BroadcastStrides(x.shape().dims(), kept), zeros,
                   [&](int64_t i, int64_t o, int64_t) { pdx[i] = pdy[o] * scale; });
    return Status::OK();
  }

 private:
  std::vector<int64_t> axes_;
  bool mean_;
};

// dy flows to the elements equal to the maximum, split evenly among ties.
template <typename T>
class MaxGradKernel : public OpKernel {
 public:
  explicit MaxGradKernel(const KernelInitContext& c)
      : OpKernel(c.node), axes_(c.node.attr<std::vector<int64_t>>("axes")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &x = ctx->input(1), &y = ctx->input(2);
    const std::vector<int64_t> kept = KeepDims(x.shape().dims(), axes_);
    Tensor* dx = ctx->allocate_output(0, x.shape());
    const T *pdy = dy.data<T>(), *px = x.data<T>(), *py = y.data<T>();
    T* pdx = dx->data<T>();
    std::vector<int64_t> ties(y.num_elements(), 0);
    const std::vector<int64_t> strides = BroadcastStrides(x.shape().dims(), kept);
    const std::vector<int64_t> zeros(kept.size(), 0);
    ForEachStrided(x.shape().dims(), strides, zeros,
                   [&](int64_t i, int64_t o, int64_t) { ties[o] += px[i] == py[o]; });
    ForEachStrided(x.shape().dims(), strides, zeros, [&](int64_t i, int64_t o, int64_t) {
      pdx[i] = px[i] == py[o] ? pdy[o] / static_cast<T>(ties[o]) : T(0);
    });
    return Status::OK();
  }

 private:
  std::vector<int64_t> axes_;
};

// Sums x over the dimensions that broadcasting added to `like`'s shape.
template <typename T>
class SumToShapeOfKernel : public OpKernel {
 public:
  explicit SumToShapeOfKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &like = ctx->input(1);
    if (x.shape() == like.shape()) {
      ctx->set_output(0, x);
      return Status::OK();
    }
    const auto& xd = x.shape().dims();
    const auto& ld = like.shape().dims();
    for (size_t i = 0; i < ld.size(); ++i) {
      const int64_t d = xd[xd.size() - ld.size() + i];
      if (ld[i] != 1 && ld[i] != d) {
        return ctx->Error("cannot reduce ", x.shape().ToString(), " to ", like.shape().ToString());
      }
    }
    Tensor* y = ctx->allocate_output(0, like.shape());
    y->FillZero();
    T* py = y->data<T>();
    const T* px = x.data<T>();
    const std::vector<int64_t> zeros(xd.size(), 0);
    ForEachStrided(xd, BroadcastStrides(xd, ld), zeros,
                   [&](int64_t i, int64_t o, int64_t) { py[o] += px[i]; });
    return Status::OK();
  }
};

template <typename T>
void RegisterFor(KernelRegistry& r, DType t, bool floating) {
  RegisterKernel<BinaryKernel<T, AddF>>(r, "Add", kCpu, t);
  RegisterKernel<BinaryKernel<T, SubF>>(r, "Sub", kCpu, t);
  RegisterKernel<BinaryKernel<T, MulF>>(r, "Mul", kCpu, t);
  RegisterKernel<BinaryKernel<T, DivF>>(r, "Div", kCpu, t);
  RegisterKernel<AddNKernel<T>>(r, "AddN", kCpu, t);
  RegisterKernel<UnaryKernel<T, NegF>>(r, "Neg", kCpu, t);
  RegisterKernel<ReduceKernel<T, Reduction::kSum>>(r, "Sum", kCpu, t);
  RegisterKernel<ReduceKernel<T, Reduction::kMean>>(r, "Mean", kCpu, t);
  RegisterKernel<ReduceKernel<T, Reduction::kMax>>(r, "Max", kCpu, t);
  RegisterKernel<ReduceGradKernel<T>>(r, "ReduceGrad", kCpu, t);
  RegisterKernel<MaxGradKernel<T>>(r, "MaxGrad", kCpu, t);
  RegisterKernel<SumToShapeOfKernel<T>>(r, "SumToShapeOf", kCpu, t);
  if (!floating) return;
  RegisterKernel<UnaryKernel<T, ExpF>>(r, "Exp", kCpu, t);
  RegisterKernel<UnaryKernel<T, LogF>>(r, "Log", kCpu, t);
  RegisterKernel<UnaryKernel<T, SqrtF>>(r, "Sqrt", kCpu, t);
  RegisterKernel<UnaryKernel<T, SquareF>>(r, "Square", kCpu, t);
  RegisterKernel<UnaryKernel<T, ReluF>>(r, "Relu", kCpu, t);
  RegisterKernel<UnaryKernel<T, SigmoidF>>(r, "Sigmoid", kCpu, t);
  RegisterKernel<UnaryKernel<T, TanhF>>(r, "Tanh", kCpu, t);
  RegisterKernel<PairKernel<T, ReluGradF>>(r, "ReluGrad", kCpu, t);
  RegisterKernel<PairKernel<T, SigmoidGradF>>(r, "SigmoidGrad", kCpu, t);
  RegisterKernel<PairKernel<T, TanhGradF>>(r, "TanhGrad", kCpu, t);
}

}  // namespace

void RegisterMathKernels(KernelRegistry& r) {
  RegisterFor<float>(r, DType::kFloat32, true);
  RegisterFor<double>(r, DType::kFloat64, true);
  RegisterFor<int32_t>(r, DType::kInt32, false);
  RegisterFor<int64_t>(r, DType::kInt64, false);
}

}  // namespace mpiflow
