// Every CUDA runtime and cuBLAS call of the CUDA kernels goes through these: a failure becomes a
// Status carrying the library's own error string, the call, and where (the op and node, or the
// device operation). cuDNN's check sits with its only user, conv_kernels.cu.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "mpiflow/status.h"

namespace mpiflow {
namespace cuda {

inline Status CheckCuda(cudaError_t e, const char* call, const std::string& where) {
  if (e == cudaSuccess) return Status::OK();
  return Internal(where, ": ", call, " failed: ", cudaGetErrorName(e), " (", cudaGetErrorString(e),
                  ")");
}

inline Status CheckCublas(cublasStatus_t e, const char* call, const std::string& where) {
  if (e == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return Internal(where, ": ", call, " failed: ", cublasGetStatusName(e), " (",
                  cublasGetStatusString(e), ")");
}

}  // namespace cuda
}  // namespace mpiflow

// MPIFLOW_CUDA(call, where): returns the failure of a cudaError_t-returning call as a Status.
#define MPIFLOW_CUDA(call, where) \
  MPIFLOW_RETURN_IF_ERROR(::mpiflow::cuda::CheckCuda((call), #call, (where)))
#define MPIFLOW_CUBLAS(call, where) \
  MPIFLOW_RETURN_IF_ERROR(::mpiflow::cuda::CheckCublas((call), #call, (where)))
