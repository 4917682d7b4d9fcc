// MatMul on the CPU through the BLAS CMake found (cblas_sgemm / cblas_dgemm, blas.h), and the
// BLAS thread control. Not a GEMM implementation: the BLAS does the arithmetic.
#include "blas.h"
#include "cpu_util.h"

namespace mpiflow {

void SetCpuKernelThreads(int num_threads) { blas::SetThreads(num_threads); }

namespace cpu {

void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
          const float* b, float beta, float* c) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(ta ? m : k), b, static_cast<int>(tb ? k : n), beta, c,
              static_cast<int>(n));
}

void Gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
          const double* b, double beta, double* c) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<int>(m), static_cast<int>(n), static_cast<int>(k), alpha, a,
              static_cast<int>(ta ? m : k), b, static_cast<int>(tb ? k : n), beta, c,
              static_cast<int>(n));
}

}  // namespace cpu

namespace {

template <typename T>
class MatMulKernel : public OpKernel {
 public:
  explicit MatMulKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        ta_(c.node.attr<bool>("transpose_a")),
        tb_(c.node.attr<bool>("transpose_b")) {}

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
    if (k == 0) {
      c->FillZero();
      return Status::OK();
    }
    cpu::Gemm(ta_, tb_, m, n, k, T(1), a.data<T>(), b.data<T>(), T(0), c->data<T>());
    return Status::OK();
  }

 private:
  bool ta_, tb_;
};

}  // namespace

void RegisterMatMulKernels(KernelRegistry& r) {
  RegisterKernel<MatMulKernel<float>>(r, "MatMul", kCpu, DType::kFloat32);
  RegisterKernel<MatMulKernel<double>>(r, "MatMul", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
