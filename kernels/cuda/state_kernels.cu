// CUDA kernels for the state ops on floating variables (a Session on cuda keeps those in device
// memory; integer variables such as the global step stay on the host with their CPU kernels):
// Assign, AssignAdd/Sub, and the dense optimizer updates, each one launch per variable, in
// place. The learning rate and step are host scalars (registered host inputs) passed by value.
#include <cmath>

#include "cuda_check.h"
#include "cuda_kernels.h"

namespace mpiflow {
namespace cuda {
namespace {

#define MPIFLOW_GRID_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

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
    if (!slot_->value.allocated() || slot_->value.on_host()) {
      slot_->value = Tensor(value.dtype(), value.shape(), ctx->allocator());
    }
    if (value.bytes() && value.raw() != slot_->value.raw()) {
      MPIFLOW_CUDA(cudaMemcpyAsync(slot_->value.raw(), value.raw(), value.bytes(),
                                   cudaMemcpyDeviceToDevice, Stream()),
                   ctx->node().op() + " node '" + ctx->node().name() + "'");
    }
    ctx->set_output(0, slot_->value);
    return Status::OK();
  }

 private:
  VariableResource::Slot* slot_;
};

template <typename T, bool kAdd>
__global__ void AssignUpdateFn(int64_t n, T* p, const T* v) {
  MPIFLOW_GRID_LOOP(i, n) { p[i] = kAdd ? p[i] + v[i] : p[i] - v[i]; }
}

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
    const int64_t n = var.num_elements();
    if (n) {
      AssignUpdateFn<T, kAdd>
          <<<Blocks(n), kThreads, 0, Stream()>>>(n, var.data<T>(), value.data<T>());
    }
    ctx->set_output(0, var);
    return LaunchStatus(ctx);
  }
};

// Slots and gradient shaped like the variable (the CPU kernels' check).
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
__global__ void GradientDescentFn(int64_t n, T* w, T lr, const T* g) {
  MPIFLOW_GRID_LOOP(i, n) { w[i] -= lr * g[i]; }
}

template <typename T>
class ApplyGradientDescentKernel : public OpKernel {
 public:
  explicit ApplyGradientDescentKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    MPIFLOW_RETURN_IF_ERROR(CheckApply(ctx, 0, 2));
    const Tensor& var = ctx->input(0);
    const T lr = *ctx->input(1).data<T>();  // host
    const int64_t n = var.num_elements();
    if (n) {
      GradientDescentFn<<<Blocks(n), kThreads, 0, Stream()>>>(n, var.data<T>(), lr,
                                                              ctx->input(2).data<T>());
    }
    ctx->set_output(0, var);
    return LaunchStatus(ctx);
  }
};

template <typename T>
__global__ void MomentumFn(int64_t n, T* w, T* a, T lr, const T* g, T momentum, bool nesterov) {
  MPIFLOW_GRID_LOOP(i, n) {
    a[i] = momentum * a[i] + g[i];
    w[i] -= nesterov ? lr * (g[i] + momentum * a[i]) : lr * a[i];
  }
}

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
    const T lr = *ctx->input(2).data<T>();  // host
    const int64_t n = var.num_elements();
    if (n) {
      MomentumFn<<<Blocks(n), kThreads, 0, Stream()>>>(n, var.data<T>(), ctx->input(1).data<T>(),
                                                       lr, ctx->input(3).data<T>(), momentum_,
                                                       nesterov_);
    }
    ctx->set_output(0, var);
    return LaunchStatus(ctx);
  }

 private:
  T momentum_;
  bool nesterov_;
};

template <typename T>
__global__ void RMSPropFn(int64_t n, T* w, T* ms, T* mom, T lr, const T* g, T rho, T momentum,
                          T eps) {
  MPIFLOW_GRID_LOOP(i, n) {
    ms[i] = rho * ms[i] + (T(1) - rho) * g[i] * g[i];
    mom[i] = momentum * mom[i] + lr * g[i] / sqrt(ms[i] + eps);
    w[i] -= mom[i];
  }
}

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
    const T lr = *ctx->input(3).data<T>();  // host
    const int64_t n = var.num_elements();
    if (n) {
      RMSPropFn<<<Blocks(n), kThreads, 0, Stream()>>>(
          n, var.data<T>(), ctx->input(1).data<T>(), ctx->input(2).data<T>(), lr,
          ctx->input(4).data<T>(), rho_, momentum_, eps_);
    }
    ctx->set_output(0, var);
    return LaunchStatus(ctx);
  }

 private:
  T rho_, momentum_, eps_;
};

template <typename T>
__global__ void AdamFn(int64_t n, T* w, T* m, T* v, const T* g, T lr_t, T b1, T b2, T eps) {
  MPIFLOW_GRID_LOOP(i, n) {
    m[i] = b1 * m[i] + (T(1) - b1) * g[i];
    v[i] = b2 * v[i] + (T(1) - b2) * g[i] * g[i];
    w[i] -= lr_t * m[i] / (sqrt(v[i]) + eps);
  }
}

// t = step+1; lr_t = lr*sqrt(1-b2^t)/(1-b1^t) on the host, as the CPU kernel computes it.
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
    const double lr = static_cast<double>(*ctx->input(3).data<T>());           // host
    const double t = static_cast<double>(*ctx->input(4).data<int64_t>() + 1);  // host
    const T lr_t =
        static_cast<T>(lr * std::sqrt(1.0 - std::pow(b2_, t)) / (1.0 - std::pow(b1_, t)));
    const int64_t n = var.num_elements();
    if (n) {
      AdamFn<<<Blocks(n), kThreads, 0, Stream()>>>(
          n, var.data<T>(), ctx->input(1).data<T>(), ctx->input(2).data<T>(),
          ctx->input(5).data<T>(), lr_t, static_cast<T>(b1_), static_cast<T>(b2_), eps_);
    }
    ctx->set_output(0, var);
    return LaunchStatus(ctx);
  }

 private:
  double b1_, b2_;
  T eps_;
};

template <typename T>
void RegisterFor(KernelRegistry& r, DType t) {
  RegisterKernel<AssignKernel>(r, "Assign", kCuda, t);
  RegisterKernel<AssignUpdateKernel<T, true>>(r, "AssignAdd", kCuda, t);
  RegisterKernel<AssignUpdateKernel<T, false>>(r, "AssignSub", kCuda, t);
  RegisterKernel<ApplyGradientDescentKernel<T>>(r, "ApplyGradientDescent", kCuda, t, {1});
  RegisterKernel<ApplyMomentumKernel<T>>(r, "ApplyMomentum", kCuda, t, {2});
  RegisterKernel<ApplyRMSPropKernel<T>>(r, "ApplyRMSProp", kCuda, t, {3});
  RegisterKernel<ApplyAdamKernel<T>>(r, "ApplyAdam", kCuda, t, {3, 4});
}

}  // namespace

void RegisterStateKernels(KernelRegistry& r) {
  RegisterFor<float>(r, DType::kFloat32);
  RegisterFor<double>(r, DType::kFloat64);
}

}  // namespace cuda
}  // namespace mpiflow
