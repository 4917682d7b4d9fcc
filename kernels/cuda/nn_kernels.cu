// CUDA kernels for the neural-network ops the dense models use, float32 and float64: BiasAdd,
// BiasAddGrad, SparseSoftmaxCrossEntropyWithLogits. Convolutions: conv_kernels.cu; pooling:
// pool_kernels.cu. Softmax and dropout stay on the CPU kernels for now (the Session copies
// their inputs across).
#include <cstdint>

#include "cuda_check.h"
#include "cuda_kernels.h"

namespace mpiflow {
namespace cuda {
namespace {

#define MPIFLOW_GRID_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

void RowsCols(const Shape& s, int64_t* rows, int64_t* cols) {
  *cols = s.rank() ? s.dim(s.rank() - 1) : 1;
  *rows = *cols ? s.num_elements() / *cols : 0;
}

template <typename T>
__global__ void BiasAddKernelFn(int64_t n, int64_t cols, const T* x, const T* b, T* y) {
  MPIFLOW_GRID_LOOP(i, n) { y[i] = x[i] + b[i % cols]; }
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
    Tensor* y = ctx->allocate_output(0, x.shape());
    const int64_t n = x.num_elements();
    if (n) {
      BiasAddKernelFn<<<Blocks(n), kThreads, 0, Stream()>>>(n, cols, x.data<T>(), b.data<T>(),
                                                            y->data<T>());
    }
    return LaunchStatus(ctx);
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
    Tensor* db = ctx->allocate_output(0, Shape{cols});  // (c)
    return ColumnReduce<T>(ctx, rows, cols, dy.data<T>(), db->data<T>(), T(1));
  }
};

// A thread per example: loss = log(sum exp(z - max)) + max - z[label]; backprop = softmax -
// onehot. The labels (checked on the host beforehand) are int64 on the device.
template <typename T>
__global__ void XentKernelFn(int64_t batch, int64_t classes, const T* z, const int64_t* labels,
                             T* loss, T* back) {
  MPIFLOW_GRID_LOOP(i, batch) {
    const int64_t label = labels[i];
    const T* zi = z + i * classes;
    T* bi = back + i * classes;
    T mx = zi[0];
    for (int64_t j = 1; j < classes; ++j) mx = zi[j] > mx ? zi[j] : mx;
    T sum = 0;
    for (int64_t j = 0; j < classes; ++j) {
      bi[j] = exp(zi[j] - mx);
      sum += bi[j];
    }
    for (int64_t j = 0; j < classes; ++j) bi[j] /= sum;
    loss[i] = log(sum) + mx - zi[label];
    bi[label] -= T(1);
  }
}

// The labels are a host input (they are fed from host memory): checked there, as the CPU
// kernel checks them and with its error, then copied over; so the step never waits for the GPU.
template <typename T>
class XentKernel : public OpKernel {
 public:
  explicit XentKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &logits = ctx->input(0), &labels = ctx->input(1);  // (b, k) device, (b) host
    const int64_t batch = logits.shape().dim(0), classes = logits.shape().dim(1);
    if (labels.shape().dim(0) != batch) {
      return ctx->Error("logits ", logits.shape().ToString(), " and labels ",
                        labels.shape().ToString(), " have different batch sizes");
    }
    Tensor wide(DType::kInt64, Shape{batch});  // (b) host
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t label =
          labels.dtype() == DType::kInt32 ? labels.data<int32_t>()[i] : labels.data<int64_t>()[i];
      if (label < 0 || label >= classes) {
        return ctx->Error("label ", label, " at position ", i, " is out of range [0, ", classes,
                          ")");
      }
      wide.data<int64_t>()[i] = label;
    }
    Tensor* loss = ctx->allocate_output(0, Shape{batch});    // (b)
    Tensor* back = ctx->allocate_output(1, logits.shape());  // (b, k)
    if (!batch) return Status::OK();
    Tensor device_labels(DType::kInt64, Shape{batch}, ctx->allocator());  // (b)
    // Through the device's pinned buffers: `wide` may go once this returns.
    MPIFLOW_RETURN_IF_ERROR(
        Dev().CopyToDevice(device_labels.raw(), wide.raw(), wide.bytes(),
                           ctx->node().op() + " node '" + ctx->node().name() + "'"));
    XentKernelFn<<<Blocks(batch), kThreads, 0, Stream()>>>(batch, classes, logits.data<T>(),
                                                           device_labels.data<int64_t>(),
                                                           loss->data<T>(), back->data<T>());
    return LaunchStatus(ctx);
  }
};

}  // namespace

void RegisterNnKernels(KernelRegistry& r) {
  RegisterKernel<BiasAddKernel<float>>(r, "BiasAdd", kCuda, DType::kFloat32);
  RegisterKernel<BiasAddKernel<double>>(r, "BiasAdd", kCuda, DType::kFloat64);
  RegisterKernel<BiasAddGradKernel<float>>(r, "BiasAddGrad", kCuda, DType::kFloat32);
  RegisterKernel<BiasAddGradKernel<double>>(r, "BiasAddGrad", kCuda, DType::kFloat64);
  RegisterKernel<XentKernel<float>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCuda,
                                    DType::kFloat32, {1});
  RegisterKernel<XentKernel<double>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCuda,
                                     DType::kFloat64, {1});
}

}  // namespace cuda
}  // namespace mpiflow
