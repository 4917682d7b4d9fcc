// MatMul on the GPU through cuBLAS, float32 and float64. float32 in the Session's precision
// (kernel.h's MathPrecision): fp32 exactly, or on the tensor cores with the inputs rounded to
// tf32, bf16 or fp16 inside cuBLAS (cublasGemmEx's fast compute types; the tensors stay float32).
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLAS is called with
// the operands swapped. Not a GEMM of our own.
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace mpiflow {
namespace cuda {
namespace {

cublasComputeType_t ComputeType(MathPrecision p) {
  switch (p) {
    case MathPrecision::kTf32:
      return CUBLAS_COMPUTE_32F_FAST_TF32;
    case MathPrecision::kBf16:
      return CUBLAS_COMPUTE_32F_FAST_16BF;
    case MathPrecision::kFp16:
      return CUBLAS_COMPUTE_32F_FAST_16F;
    case MathPrecision::kFp32:
      break;
  }
  return CUBLAS_COMPUTE_32F;
}

cublasStatus_t Gemm(cublasHandle_t h, MathPrecision p, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const float* alpha, const float* a, int lda,
                    const float* b, int ldb, const float* beta, float* c, int ldc) {
  if (p == MathPrecision::kFp32) {
    return cublasSgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  return cublasGemmEx(h, ta, tb, m, n, k, alpha, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb, beta, c,
                      CUDA_R_32F, ldc, ComputeType(p), CUBLAS_GEMM_DEFAULT);
}
cublasStatus_t Gemm(cublasHandle_t h, MathPrecision, cublasOperation_t ta, cublasOperation_t tb,
                    int m, int n, int k, const double* alpha, const double* a, int lda,
                    const double* b, int ldb, const double* beta, double* c, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

template <typename T>
class MatMulKernel : public OpKernel {
 public:
  explicit MatMulKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        ta_(c.node.attr<bool>("transpose_a")),
        tb_(c.node.attr<bool>("transpose_b")),
        precision_(c.precision) {}

  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);  // a (m,k) or (k,m); b (k,n) or (n,k)
    const int64_t m = a.shape().dim(ta_ ? 1 : 0), k = a.shape().dim(ta_ ? 0 : 1);
    const int64_t kb = b.shape().dim(tb_ ? 1 : 0), n = b.shape().dim(tb_ ? 0 : 1);
    if (k != kb) {
      return ctx->Error("inner dimensions differ: a is ", a.shape().ToString(),
                        ta_ ? " (transposed)" : "", ", b is ", b.shape().ToString(),
                        tb_ ? " (transposed)" : "");
    }
    Tensor* c = ctx->allocate_output(0, Shape{m, n});  // (m, n)
    if (m == 0 || n == 0) return Status::OK();
    const std::string where = ctx->node().op() + " node '" + ctx->node().name() + "'";
    if (k == 0) {
      MPIFLOW_CUDA(cudaMemsetAsync(c->raw(), 0, c->bytes(), Stream()), where);
      return Status::OK();
    }
    const T one = 1, zero = 0;
    // Column-major: C^T (n x m) = op(B)^T (n x k) * op(A)^T (k x m).
    MPIFLOW_CUBLAS(
        Gemm(Dev().blas(), precision_, tb_ ? CUBLAS_OP_T : CUBLAS_OP_N,
             ta_ ? CUBLAS_OP_T : CUBLAS_OP_N, static_cast<int>(n), static_cast<int>(m),
             static_cast<int>(k), &one, b.data<T>(), static_cast<int>(tb_ ? k : n), a.data<T>(),
             static_cast<int>(ta_ ? m : k), &zero, c->data<T>(), static_cast<int>(n)),
        where);
    return Status::OK();
  }

 private:
  bool ta_, tb_;
  MathPrecision precision_;
};

}  // namespace

void RegisterMatMulKernels(KernelRegistry& r) {
  RegisterKernel<MatMulKernel<float>>(r, "MatMul", kCuda, DType::kFloat32);
  RegisterKernel<MatMulKernel<double>>(r, "MatMul", kCuda, DType::kFloat64);
}

void RegisterCudaKernels(KernelRegistry& r) {
  RegisterMathKernels(r);
  RegisterNnKernels(r);
  RegisterStateKernels(r);
  RegisterMatMulKernels(r);
  RegisterPoolKernels(r);
#ifdef MPIFLOW_WITH_CUDNN
  RegisterConvKernels(r);
#endif
}

}  // namespace cuda
}  // namespace mpiflow
