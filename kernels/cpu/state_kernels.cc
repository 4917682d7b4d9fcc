// CPU kernels for state ops (Variable, Assign*), seeded initializers, optimizer updates and the
// learning-rate schedule. Updates write the variable's buffer in place: the Variable kernel
// outputs the Session's variable slot itself, so input 0 of an Assign/Apply op *is* the variable.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "cpu_util.h"
#include "mpiflow/ops.h"
#include "mpiflow/random.h"

namespace mpiflow {
namespace {

class VariableKernel : public OpKernel {
 public:
  explicit VariableKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        slot_(c.variables->GetOrCreate(c.node.name(), c.node.output_dtype(0),
                                       c.node.output_shape(0))) {}
  Status Compute(KernelContext* ctx) override {
    ctx->set_output(0, slot_->value);  // unallocated until first assigned
    return Status::OK();
  }
  bool TouchesMemory() const override { return false; }

 private:
  VariableResource::Slot* slot_;
};

VariableResource::Slot* SlotOfInput0(const KernelInitContext& c) {
  const Node* var = c.node.input(0).node;
  if (var->op() != "Variable") return nullptr;
  return c.variables->GetOrCreate(var->name(), var->output_dtype(0), var->output_shape(0));
}

class AssignKernel : public OpKernel {
 public:
  explicit AssignKernel(const KernelInitContext& c) : OpKernel(c.node), slot_(SlotOfInput0(c)) {}
  Status Compute(KernelContext* ctx) override {
    if (!slot_) return ctx->Error("input 0 must be a Variable node");
    const Tensor& value = ctx->input(1);
    if (value.shape() != node_.input(0).shape()) {
      return ctx->Error("value shape ", value.shape().ToString(), " does not match variable '",
                        slot_->name, "' of shape ", node_.input(0).shape().ToString());
    }
    if (slot_->value.allocated() && !slot_->value.on_host()) {
      return ctx->Error("variable '", slot_->name, "' is in ",
                        slot_->value.buffer()->allocator()->name(),
                        " memory, which the CPU's Assign cannot write");
    }
    if (slot_->value.allocated()) {
      if (value.bytes()) std::memcpy(slot_->value.raw(), value.raw(), value.bytes());  // in place
    } else {
      slot_->value = value.DeepCopy();
    }
    ctx->set_output(0, slot_->value);
    return Status::OK();
  }

 private:
  VariableResource::Slot* slot_;
};

template <typename T, bool kAdd>
class AssignUpdateKernel : public OpKernel {
 public:
  explicit AssignUpdateKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &var = ctx->input(0), &value = ctx->input(1);
    if (var.shape() != value.shape()) {
      return ctx->Error("value shape ", value.shape().ToString(), " differs from the variable's ",
                        var.shape().ToString());
    }
    T* p = var.data<T>();
    const T* v = value.data<T>();
    for (int64_t i = 0, n_ = var.num_elements(); i < n_; ++i)
      p[i] = kAdd ? p[i] + v[i] : p[i] - v[i];
    ctx->set_output(0, var);
    return Status::OK();
  }
};

template <typename T, bool kNormal>
class RandomKernel : public OpKernel {
 public:
  explicit RandomKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        seed_(static_cast<uint64_t>(c.node.attr<int64_t>("seed"))),
        a_(c.node.attr<double>("a")),
        b_(c.node.attr<double>("b")) {}
  Status Compute(KernelContext* ctx) override {
    Tensor* y = ctx->allocate_output(0, node_.output_shape(0));
    T* p = y->data<T>();
    for (int64_t i = 0, n_ = y->num_elements(); i < n_; ++i) {
      const uint64_t idx = static_cast<uint64_t>(i);
      p[i] = kNormal ? static_cast<T>(a_ + b_ * RandomTruncatedNormal(seed_, 1, idx))
                     : static_cast<T>(a_ + (b_ - a_) * RandomUniform01(seed_, 0, idx));
    }
    return Status::OK();
  }

 private:
  uint64_t seed_;
  double a_, b_;  // uniform: [a, b); normal: mean a, stddev b
};

// Shared checks of the dense Apply* kernels: slots and gradient shaped like the variable.
Status CheckApply(KernelContext* ctx, int num_slots, int grad_index) {
  const Shape& var = ctx->input(0).shape();
  for (int i = 1; i <= num_slots; ++i) {
    if (ctx->input(i).shape() != var) return ctx->Error("slot ", i, " does not match the variable");
  }
  if (ctx->input(grad_index).shape() != var) {
    return ctx->Error("gradient ", ctx->input(grad_index).shape().ToString(),
                      " does not match the variable ", var.ToString());
  }
  return Status::OK();
}

template <typename T>
class ApplyGradientDescentKernel : public OpKernel {
 public:
  explicit ApplyGradientDescentKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(CheckApply(ctx, 0, 2));
    const Tensor& var = ctx->input(0);
    T* __restrict__ w = var.data<T>();
    const T lr = *ctx->input(1).data<T>();
    const T* __restrict__ g = ctx->input(2).data<T>();
    for (int64_t i = 0, n_ = var.num_elements(); i < n_; ++i) w[i] -= lr * g[i];
    ctx->set_output(0, var);
    return Status::OK();
  }
};

template <typename T>
class SparseApplyGradientDescentKernel : public OpKernel {
 public:
  explicit SparseApplyGradientDescentKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &var = ctx->input(0), &values = ctx->input(2), &indices = ctx->input(3);
    const int64_t rows = var.shape().dim(0), n = indices.num_elements();
    const int64_t width = rows ? var.num_elements() / rows : 0;
    if (values.shape().dim(0) != n || values.num_elements() != n * width) {
      return ctx->Error("values ", values.shape().ToString(), " do not match ", n,
                        " rows of the variable ", var.shape().ToString());
    }
    T* w = var.data<T>();
    const T lr = *ctx->input(1).data<T>();
    const T* v = values.data<T>();
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = indices.dtype() == DType::kInt32 ? indices.data<int32_t>()[i]
                                                           : indices.data<int64_t>()[i];
      if (row < 0 || row >= rows) {
        return ctx->Error("index ", row, " at position ", i, " is out of range [0, ", rows, ")");
      }
      for (int64_t j = 0; j < width; ++j) w[row * width + j] -= lr * v[i * width + j];
    }
    ctx->set_output(0, var);
    return Status::OK();
  }
};

// accum = momentum*accum + g; var -= lr*accum, or with Nesterov var -= lr*(g + momentum*accum).
template <typename T>
class ApplyMomentumKernel : public OpKernel {
 public:
  explicit ApplyMomentumKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        momentum_(static_cast<T>(c.node.attr<double>("momentum"))),
        nesterov_(c.node.attr<bool>("nesterov")) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(CheckApply(ctx, 1, 3));
    const Tensor& var = ctx->input(0);
    T *w = var.data<T>(), *a = ctx->input(1).data<T>();
    const T lr = *ctx->input(2).data<T>();
    const T* g = ctx->input(3).data<T>();
    for (int64_t i = 0, n_ = var.num_elements(); i < n_; ++i) {
      a[i] = momentum_ * a[i] + g[i];
      w[i] -= nesterov_ ? lr * (g[i] + momentum_ * a[i]) : lr * a[i];
    }
    ctx->set_output(0, var);
    return Status::OK();
  }

 private:
  T momentum_;
  bool nesterov_;
};

// ms = rho*ms + (1-rho)*g^2; mom = momentum*mom + lr*g/sqrt(ms + eps); var -= mom.
template <typename T>
class ApplyRMSPropKernel : public OpKernel {
 public:
  explicit ApplyRMSPropKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        rho_(static_cast<T>(c.node.attr<double>("rho"))),
        momentum_(static_cast<T>(c.node.attr<double>("momentum"))),
        eps_(static_cast<T>(c.node.attr<double>("epsilon"))) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(CheckApply(ctx, 2, 4));
    const Tensor& var = ctx->input(0);
    T *w = var.data<T>(), *ms = ctx->input(1).data<T>(), *mom = ctx->input(2).data<T>();
    const T lr = *ctx->input(3).data<T>();
    const T* g = ctx->input(4).data<T>();
    for (int64_t i = 0, n_ = var.num_elements(); i < n_; ++i) {
      ms[i] = rho_ * ms[i] + (T(1) - rho_) * g[i] * g[i];
      mom[i] = momentum_ * mom[i] + lr * g[i] / std::sqrt(ms[i] + eps_);
      w[i] -= mom[i];
    }
    ctx->set_output(0, var);
    return Status::OK();
  }

 private:
  T rho_, momentum_, eps_;
};

// The Adam inner loop, cloned for AVX2 and chosen at load time (its sqrt and divide are what
// bound the update; the default clone keeps the binary portable).
template <typename T>
inline void AdamLoop(int64_t n, T* __restrict__ w, T* __restrict__ m, T* __restrict__ v,
                     const T* __restrict__ g, T lr_t, T b1, T b2, T eps) {
  for (int64_t i = 0; i < n; ++i) {
    m[i] = b1 * m[i] + (T(1) - b1) * g[i];
    v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
    w[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
  }
}

// An AVX2 clone and a default one, picked at load time by an ifunc resolver. Not under
// ThreadSanitizer: its instrumented resolver runs before the sanitizer is up, and crashes.
#if defined(__SANITIZE_THREAD__)
#define MPIFLOW_AVX2_CLONES
#else
#define MPIFLOW_AVX2_CLONES __attribute__((target_clones("avx2", "default")))
#endif

MPIFLOW_AVX2_CLONES void AdamUpdate(int64_t n, float* w, float* m, float* v, const float* g,
                                    float lr_t, float b1, float b2, float eps) {
  AdamLoop(n, w, m, v, g, lr_t, b1, b2, eps);
}

MPIFLOW_AVX2_CLONES void AdamUpdate(int64_t n, double* w, double* m, double* v, const double* g,
                                    double lr_t, double b1, double b2, double eps) {
  AdamLoop(n, w, m, v, g, lr_t, b1, b2, eps);
}

// t = step+1; lr_t = lr*sqrt(1-b2^t)/(1-b1^t); m,v moments; var -= lr_t*m/(sqrt(v)+eps).
template <typename T>
class ApplyAdamKernel : public OpKernel {
 public:
  explicit ApplyAdamKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        b1_(c.node.attr<double>("beta1")),
        b2_(c.node.attr<double>("beta2")),
        eps_(static_cast<T>(c.node.attr<double>("epsilon"))) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(CheckApply(ctx, 2, 5));
    const Tensor& var = ctx->input(0);
    T* __restrict__ w = var.data<T>();
    T* __restrict__ m = ctx->input(1).data<T>();
    T* __restrict__ v = ctx->input(2).data<T>();
    const double lr = static_cast<double>(*ctx->input(3).data<T>());
    const double t = static_cast<double>(*ctx->input(4).data<int64_t>() + 1);
    const T lr_t =
        static_cast<T>(lr * std::sqrt(1.0 - std::pow(b2_, t)) / (1.0 - std::pow(b1_, t)));
    const T b1 = static_cast<T>(b1_), b2 = static_cast<T>(b2_);
    const T* g = ctx->input(5).data<T>();
    AdamUpdate(var.num_elements(), w, m, v, g, lr_t, b1, b2, eps_);
    ctx->set_output(0, var);
    return Status::OK();
  }

 private:
  double b1_, b2_;
  T eps_;
};

// A sparse gradient's rows: the distinct indices ascending, each with the sum of its values
// (summed in position order: the same bits for the same gradient).
template <typename T>
Status SumRows(KernelContext* ctx, const Tensor& var, const Tensor& values, const Tensor& indices,
               std::vector<int64_t>* rows_out, std::vector<T>* sums) {
  const int64_t rows = var.shape().dim(0), n = indices.num_elements();
  const int64_t width = rows ? var.num_elements() / rows : 0;
  if (values.shape().dim(0) != n || values.num_elements() != n * width) {
    return ctx->Error("values ", values.shape().ToString(), " do not match ", n,
                      " rows of the variable ", var.shape().ToString());
  }
  std::vector<std::pair<int64_t, int64_t>> order(n);  // (row, position)
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row =
        indices.dtype() == DType::kInt32 ? indices.data<int32_t>()[i] : indices.data<int64_t>()[i];
    if (row < 0 || row >= rows) {
      return ctx->Error("index ", row, " at position ", i, " is out of range [0, ", rows, ")");
    }
    order[i] = {row, i};
  }
  std::sort(order.begin(), order.end());
  rows_out->clear();
  sums->clear();
  const T* v = values.data<T>();
  for (const auto& [row, i] : order) {
    if (rows_out->empty() || rows_out->back() != row) {
      rows_out->push_back(row);
      sums->insert(sums->end(), v + i * width, v + (i + 1) * width);
    } else {
      T* acc = sums->data() + sums->size() - width;  // [width]
      for (int64_t j = 0; j < width; ++j) acc[j] += v[i * width + j];
    }
  }
  return Status::OK();
}

// Lazy momentum: ApplyMomentum's rule on the gradient's rows only.
template <typename T>
class SparseApplyMomentumKernel : public OpKernel {
 public:
  explicit SparseApplyMomentumKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        momentum_(static_cast<T>(c.node.attr<double>("momentum"))),
        nesterov_(c.node.attr<bool>("nesterov")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& var = ctx->input(0);
    MPIFLOW_RETURN_IF_ERROR(SumRows<T>(ctx, var, ctx->input(3), ctx->input(4), &rows_, &sums_));
    const int64_t width = var.shape().dim(0) ? var.num_elements() / var.shape().dim(0) : 0;
    T *w = var.data<T>(), *a = ctx->input(1).data<T>();
    const T lr = *ctx->input(2).data<T>();
    for (size_t k = 0; k < rows_.size(); ++k) {
      const T* g = sums_.data() + k * width;
      T *wr = w + rows_[k] * width, *ar = a + rows_[k] * width;
      for (int64_t j = 0; j < width; ++j) {
        ar[j] = momentum_ * ar[j] + g[j];
        wr[j] -= nesterov_ ? lr * (g[j] + momentum_ * ar[j]) : lr * ar[j];
      }
    }
    ctx->set_output(0, var);
    return Status::OK();
  }

 private:
  T momentum_;
  bool nesterov_;
  std::vector<int64_t> rows_;
  std::vector<T> sums_;  // [rows_.size() * width]
};

// Lazy Adam: ApplyAdam's rule (and its vectorised loop) on the gradient's rows only, with the
// global step's bias correction.
template <typename T>
class SparseApplyAdamKernel : public OpKernel {
 public:
  explicit SparseApplyAdamKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        b1_(c.node.attr<double>("beta1")),
        b2_(c.node.attr<double>("beta2")),
        eps_(static_cast<T>(c.node.attr<double>("epsilon"))) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& var = ctx->input(0);
    MPIFLOW_RETURN_IF_ERROR(SumRows<T>(ctx, var, ctx->input(5), ctx->input(6), &rows_, &sums_));
    const int64_t width = var.shape().dim(0) ? var.num_elements() / var.shape().dim(0) : 0;
    T* w = var.data<T>();
    T* m = ctx->input(1).data<T>();
    T* v = ctx->input(2).data<T>();
    const double lr = static_cast<double>(*ctx->input(3).data<T>());
    const double t = static_cast<double>(*ctx->input(4).data<int64_t>() + 1);
    const T lr_t =
        static_cast<T>(lr * std::sqrt(1.0 - std::pow(b2_, t)) / (1.0 - std::pow(b1_, t)));
    const T b1 = static_cast<T>(b1_), b2 = static_cast<T>(b2_);
    for (size_t k = 0; k < rows_.size(); ++k) {
      const int64_t at = rows_[k] * width;
      AdamUpdate(width, w + at, m + at, v + at, sums_.data() + k * width, lr_t, b1, b2, eps_);
    }
    ctx->set_output(0, var);
    return Status::OK();
  }

 private:
  double b1_, b2_;
  T eps_;
  std::vector<int64_t> rows_;
  std::vector<T> sums_;  // [rows_.size() * width]
};

class LearningRateKernel : public OpKernel {
 public:
  explicit LearningRateKernel(const KernelInitContext& c) : OpKernel(c.node) {
    // The schedule's name is parsed once here (the shape function admitted it), not compared
    // every step.
    StatusOr<ops::LearningRateSchedule> kind =
        ops::ParseLearningRateSchedule(c.node.attr<std::string>("kind"));
    o_.kind = kind.ok() ? *kind : ops::LearningRateSchedule::kConstant;
    o_.base = c.node.attr<double>("base");
    o_.warmup_steps = c.node.attr<int64_t>("warmup_steps");
    o_.decay_steps = c.node.attr<int64_t>("decay_steps");
    o_.decay_rate = c.node.attr<double>("decay_rate");
    o_.alpha = c.node.attr<double>("alpha");
  }
  Status Compute(KernelContext* ctx) override {
    const double lr = ops::LearningRateAt(o_, *ctx->input(0).data<int64_t>());
    *ctx->allocate_output(0, Shape{})->data<float>() = static_cast<float>(lr);
    return Status::OK();
  }

 private:
  ops::LearningRateOptions o_;
};

}  // namespace

void RegisterStateKernels(KernelRegistry& r) {
  const DType any = DType::kInvalid;
  // It outputs the variable's slot wherever the slot's memory is: one kernel for every device.
  RegisterKernel<VariableKernel>(r, "Variable", kCpu, any);
  RegisterKernel<VariableKernel>(r, "Variable", kCuda, any);
  RegisterKernel<AssignKernel>(r, "Assign", kCpu, any);
  RegisterKernel<LearningRateKernel>(r, "LearningRate", kCpu, any);
  RegisterKernel<AssignUpdateKernel<float, true>>(r, "AssignAdd", kCpu, DType::kFloat32);
  RegisterKernel<AssignUpdateKernel<double, true>>(r, "AssignAdd", kCpu, DType::kFloat64);
  RegisterKernel<AssignUpdateKernel<int32_t, true>>(r, "AssignAdd", kCpu, DType::kInt32);
  RegisterKernel<AssignUpdateKernel<int64_t, true>>(r, "AssignAdd", kCpu, DType::kInt64);
  RegisterKernel<AssignUpdateKernel<float, false>>(r, "AssignSub", kCpu, DType::kFloat32);
  RegisterKernel<AssignUpdateKernel<double, false>>(r, "AssignSub", kCpu, DType::kFloat64);
  RegisterKernel<AssignUpdateKernel<int32_t, false>>(r, "AssignSub", kCpu, DType::kInt32);
  RegisterKernel<AssignUpdateKernel<int64_t, false>>(r, "AssignSub", kCpu, DType::kInt64);
  RegisterKernel<RandomKernel<float, false>>(r, "RandomUniform", kCpu, DType::kFloat32);
  RegisterKernel<RandomKernel<double, false>>(r, "RandomUniform", kCpu, DType::kFloat64);
  RegisterKernel<RandomKernel<float, true>>(r, "TruncatedNormal", kCpu, DType::kFloat32);
  RegisterKernel<RandomKernel<double, true>>(r, "TruncatedNormal", kCpu, DType::kFloat64);
  RegisterKernel<ApplyGradientDescentKernel<float>>(r, "ApplyGradientDescent", kCpu,
                                                    DType::kFloat32);
  RegisterKernel<ApplyGradientDescentKernel<double>>(r, "ApplyGradientDescent", kCpu,
                                                     DType::kFloat64);
  RegisterKernel<SparseApplyGradientDescentKernel<float>>(r, "SparseApplyGradientDescent", kCpu,
                                                          DType::kFloat32);
  RegisterKernel<SparseApplyGradientDescentKernel<double>>(r, "SparseApplyGradientDescent", kCpu,
                                                           DType::kFloat64);
  RegisterKernel<SparseApplyMomentumKernel<float>>(r, "SparseApplyMomentum", kCpu, DType::kFloat32);
  RegisterKernel<SparseApplyMomentumKernel<double>>(r, "SparseApplyMomentum", kCpu,
                                                    DType::kFloat64);
  RegisterKernel<SparseApplyAdamKernel<float>>(r, "SparseApplyAdam", kCpu, DType::kFloat32);
  RegisterKernel<SparseApplyAdamKernel<double>>(r, "SparseApplyAdam", kCpu, DType::kFloat64);
  RegisterKernel<ApplyMomentumKernel<float>>(r, "ApplyMomentum", kCpu, DType::kFloat32);
  RegisterKernel<ApplyMomentumKernel<double>>(r, "ApplyMomentum", kCpu, DType::kFloat64);
  RegisterKernel<ApplyRMSPropKernel<float>>(r, "ApplyRMSProp", kCpu, DType::kFloat32);
  RegisterKernel<ApplyRMSPropKernel<double>>(r, "ApplyRMSProp", kCpu, DType::kFloat64);
  RegisterKernel<ApplyAdamKernel<float>>(r, "ApplyAdam", kCpu, DType::kFloat32);
  RegisterKernel<ApplyAdamKernel<double>>(r, "ApplyAdam", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
