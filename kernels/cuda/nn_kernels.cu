// CUDA kernels for the neural-network ops the dense models use, float32 and float64: BiasAdd,
// BiasAddGrad, SparseSoftmaxCrossEntropyWithLogits. Convolutions, pooling, softmax and dropout
// stay on the CPU kernels for now (the Session copies their inputs across).
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

// A thread per column, rows in order (the CPU kernel's sums); neighbours read neighbours.
template <typename T>
__global__ void ColumnSumKernel(int64_t rows, int64_t cols, const T* dy, T* db) {
  MPIFLOW_GRID_LOOP(j, cols) {
    T acc = T(0);
    for (int64_t r = 0; r < rows; ++r) acc += dy[r * cols + j];
    db[j] = acc;
  }
}

template <typename T>
class BiasAddGradKernel : public OpKernel {
 public:
  explicit BiasAddGradKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);  // (..., c)
    int64_t rows, cols;
    RowsCols(dy.shape(), &rows, &cols);
    Tensor* db = ctx->allocate_output(0, Shape{cols});  // (c)
    if (cols) {
      ColumnSumKernel<<<Blocks(cols), kThreads, 0, Stream()>>>(rows, cols, dy.data<T>(),
                                                               db->data<T>());
    }
    return LaunchStatus(ctx);
  }
};

// A thread per example: loss = log(sum exp(z - max)) + max - z[label]; backprop = softmax -
// onehot. A label out of range leaves its row alone and records its position (the smallest).
template <typename T, typename L>
__global__ void XentKernelFn(int64_t batch, int64_t classes, const T* z, const L* labels, T* loss,
                             T* back, unsigned long long* bad) {
  MPIFLOW_GRID_LOOP(i, batch) {
    const int64_t label = static_cast<int64_t>(labels[i]);
    if (label < 0 || label >= classes) {
      atomicMin(bad, static_cast<unsigned long long>(i));
      continue;
    }
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

template <typename T>
class XentKernel : public OpKernel {
 public:
  explicit XentKernel(const KernelInitContext& c)
      : OpKernel(c.node), bad_(DType::kInt64, Shape{1}, Dev().allocator()) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &logits = ctx->input(0), &labels = ctx->input(1);  // (b, k), (b)
    const int64_t batch = logits.shape().dim(0), classes = logits.shape().dim(1);
    if (labels.shape().dim(0) != batch) {
      return ctx->Error("logits ", logits.shape().ToString(), " and labels ",
                        labels.shape().ToString(), " have different batch sizes");
    }
    Tensor* loss = ctx->allocate_output(0, Shape{batch});    // (b)
    Tensor* back = ctx->allocate_output(1, logits.shape());  // (b, k)
    if (!batch) return Status::OK();
    const std::string where = ctx->node().op() + " node '" + ctx->node().name() + "'";
    const unsigned long long none = ~0ull;
    auto* bad = static_cast<unsigned long long*>(bad_.raw());
    MPIFLOW_CUDA(cudaMemcpyAsync(bad, &none, sizeof(none), cudaMemcpyHostToDevice, Stream()),
                 where);
    if (labels.dtype() == DType::kInt32) {
      XentKernelFn<<<Blocks(batch), kThreads, 0, Stream()>>>(batch, classes, logits.data<T>(),
                                                             labels.data<int32_t>(),
                                                             loss->data<T>(), back->data<T>(), bad);
    } else {
      XentKernelFn<<<Blocks(batch), kThreads, 0, Stream()>>>(batch, classes, logits.data<T>(),
                                                             labels.data<int64_t>(),
                                                             loss->data<T>(), back->data<T>(), bad);
    }
    MPIFLOW_RETURN_IF_ERROR(LaunchStatus(ctx));
    // The labels' check, as the CPU kernel's: this waits for the step so far.
    unsigned long long first = none;
    MPIFLOW_CUDA(cudaMemcpyAsync(&first, bad, sizeof(first), cudaMemcpyDeviceToHost, Stream()),
                 where);
    MPIFLOW_CUDA(cudaStreamSynchronize(Stream()), where);
    if (first == none) return Status::OK();
    const size_t esize = DTypeSize(labels.dtype());
    int64_t label = 0;
    int32_t label32 = 0;
    void* dst = labels.dtype() == DType::kInt32 ? static_cast<void*>(&label32) : &label;
    MPIFLOW_CUDA(cudaMemcpy(dst, static_cast<const char*>(labels.raw()) + first * esize, esize,
                            cudaMemcpyDeviceToHost),
                 where);
    if (labels.dtype() == DType::kInt32) label = label32;
    return ctx->Error("label ", label, " at position ", first, " is out of range [0, ", classes,
                      ")");
  }

 private:
  Tensor bad_;  // (1): the first position of a label out of range, or all ones
};

}  // namespace

void RegisterNnKernels(KernelRegistry& r) {
  RegisterKernel<BiasAddKernel<float>>(r, "BiasAdd", kCuda, DType::kFloat32);
  RegisterKernel<BiasAddKernel<double>>(r, "BiasAdd", kCuda, DType::kFloat64);
  RegisterKernel<BiasAddGradKernel<float>>(r, "BiasAddGrad", kCuda, DType::kFloat32);
  RegisterKernel<BiasAddGradKernel<double>>(r, "BiasAddGrad", kCuda, DType::kFloat64);
  RegisterKernel<XentKernel<float>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCuda,
                                    DType::kFloat32);
  RegisterKernel<XentKernel<double>>(r, "SparseSoftmaxCrossEntropyWithLogits", kCuda,
                                     DType::kFloat64);
}

}  // namespace cuda
}  // namespace mpiflow
