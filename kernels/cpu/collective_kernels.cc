// CPU kernels of AllreduceStart and AllreduceWait. Start packs scale * gradients into the output
// buffer and hands it to the Session's CollectiveResource (whose communicator reduces it in place
// on its own thread); Wait blocks until that bucket is reduced, then outputs a view of its slice
// (no copy) after checking it is finite. The kernels never call the communicator themselves.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <type_traits>

#include "cpu_util.h"
#include "mpiflow/ops.h"
#include "mpiflow/timeline.h"

namespace mpiflow {
namespace {

using Clock = std::chrono::steady_clock;

// True when no element is NaN or Inf: the max over elements of the exponent bits is below
// all-ones. Integer max vectorises; a floating-point test chain would not (no reassociation).
template <typename T>
bool AllFinite(const T* p, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits kExponent =
      static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits worst = 0;
  for (int64_t k = 0; k < n; ++k) {
    Bits b;
    std::memcpy(&b, p + k, sizeof(b));
    worst = std::max<Bits>(worst, b & kExponent);
  }
  return worst != kExponent;
}

template <typename T>
class AllreduceStartKernel : public OpKernel {
 public:
  explicit AllreduceStartKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        state_(c.collectives),
        bucket_(c.node.attr<std::string>("bucket")),
        algorithm_(c.node.attr<std::string>("algorithm")),
        first_unscaled_(c.node.num_inputs() - c.node.attr<int64_t>("unscaled")) {}

  Status Compute(KernelContext* ctx) override {
    if (!state_) {
      return ctx->Error("needs a Session with a communicator (SessionOptions::communicator)");
    }
    const auto t0 = Clock::now();
    const T scale = *ctx->input(0).data<T>();
    // (packed elements) scale * grads in order, each starting at a multiple of kAlignElements
    // (the gaps zero), so that AllreduceWait's views of it stay 64-byte aligned.
    Tensor* packed = ctx->allocate_output(0, node_.output_shape(0));
    T* base = packed->data<T>();
    int64_t offset = 0;
    for (int i = 1; i < ctx->num_inputs(); ++i) {
      const Tensor& g = ctx->input(i);
      const T* in = g.data<T>();
      T* out = base + offset;
      const int64_t n = g.num_elements();
      if (scale == T(1) || i >= first_unscaled_) {
        std::memcpy(out, in, n * sizeof(T));
      } else {
        for (int64_t k = 0; k < n; ++k) out[k] = in[k] * scale;
      }
      const int64_t next = ops::AlignedBucketOffset(offset + n, sizeof(T));
      std::fill(out + n, base + next, T(0));
      offset = next;
    }
    MPIFLOW_RETURN_IF_ERROR(state_->StartAllreduce(bucket_, *packed, algorithm_,
                                                   StrCat(bucket_, " (run ", ctx->step(), ")")));
    if (Timeline* tl = state_->timeline()) {
      tl->Add("pack " + bucket_, "bucket", t0, Clock::now(), Timeline::kCompute,
              StrCat("\"bytes\":", packed->bytes(), ",\"gradients\":", ctx->num_inputs() - 1));
    }
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
  std::string bucket_, algorithm_;
  int first_unscaled_;  // inputs from here on are packed without the scale
};

template <typename T>
class AllreduceWaitKernel : public OpKernel {
 public:
  explicit AllreduceWaitKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        state_(c.collectives),
        bucket_(c.node.attr<std::string>("bucket")),
        variable_(c.node.attr<std::string>("variable")),
        offset_(c.node.attr<int64_t>("offset")) {}

  Status Compute(KernelContext* ctx) override {
    if (!state_) {
      return ctx->Error("needs a Session with a communicator (SessionOptions::communicator)");
    }
    Status s = state_->WaitAllreduce(bucket_);
    if (s.code() == Code::kNotFound) {
      return Internal("AllreduceWait '", node_.name(), "': bucket '", bucket_, "' never started");
    }
    if (!s.ok()) {
      return Status(s.code(), StrCat("allreduce of ", bucket_, " (gradient of '", variable_,
                                     "') failed: ", s.message()));
    }
    // The output is a view of the reduced bucket: no copy.
    const Tensor& grad = ctx->input(1);
    ctx->set_output(0, ctx->input(0).View(offset_, grad.shape()));
    if (variable_.empty()) return Status::OK();  // not a gradient: the caller checks it
    if (!AllFinite(ctx->input(0).data<T>() + offset_, grad.num_elements())) {
      return Status(Code::kAborted,
                    StrCat("the averaged gradient of '", variable_,
                           "' holds NaN or Inf (it is the allreduced value, so every rank stops "
                           "here together)"));
    }
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
  std::string bucket_, variable_;
  int64_t offset_;
};

}  // namespace

// The sum over the ranks, started and waited for here (a step's few small statistics); the
// input itself without a communicator (one process).
template <typename T>
class CrossReplicaSumKernel : public OpKernel {
 public:
  explicit CrossReplicaSumKernel(const KernelInitContext& c)
      : OpKernel(c.node), state_(c.collectives) {}

  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    if (!state_) {
      ctx->set_output(0, x);
      return Status::OK();
    }
    Tensor* y = ctx->allocate_output(0, x.shape());  // reduced in place
    std::memcpy(y->raw(), x.raw(), x.bytes());
    // Keyed by the node (one in flight at a time: it waits here), labelled with the run.
    MPIFLOW_RETURN_IF_ERROR(state_->StartAllreduce(
        node_.name(), *y, "auto", StrCat(node_.name(), " (run ", ctx->step(), ")")));
    Status s = state_->WaitAllreduce(node_.name());
    if (!s.ok())
      return Status(s.code(), StrCat("allreduce of '", node_.name(), "' failed: ", s.message()));
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
};

void RegisterCollectiveKernels(KernelRegistry& r) {
  RegisterKernel<CrossReplicaSumKernel<float>>(r, "CrossReplicaSum", kCpu, DType::kFloat32);
  RegisterKernel<CrossReplicaSumKernel<double>>(r, "CrossReplicaSum", kCpu, DType::kFloat64);
  RegisterKernel<AllreduceStartKernel<float>>(r, "AllreduceStart", kCpu, DType::kFloat32);
  RegisterKernel<AllreduceStartKernel<double>>(r, "AllreduceStart", kCpu, DType::kFloat64);
  RegisterKernel<AllreduceWaitKernel<float>>(r, "AllreduceWait", kCpu, DType::kFloat32);
  RegisterKernel<AllreduceWaitKernel<double>>(r, "AllreduceWait", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
