// The one place mpiflow names a BLAS: the CBLAS header of the library CMake found (FindBLAS,
// BLA_VENDOR; CMakeLists.txt defines which) and its thread control. Private to kernels/cpu, and
// used by the benchmarks' raw-GEMM baselines. Not a GEMM: cpu_util.h's Gemm calls through here.
#pragma once

#if defined(MPIFLOW_BLAS_MKL)
#include <mkl_cblas.h>
#include <mkl_service.h>
#else
#include <cblas.h>
#endif

namespace mpiflow {
namespace blas {

// The BLAS's own threads: OpenBLAS and MKL by call; any other keeps what its environment
// variable says (BLIS_NUM_THREADS, OMP_NUM_THREADS), which the README tells users to set.
inline void SetThreads(int n) {
#if defined(MPIFLOW_BLAS_OPENBLAS)
  openblas_set_num_threads(n);
#elif defined(MPIFLOW_BLAS_MKL)
  mkl_set_num_threads(n);
#else
  (void)n;
#endif
}

// "OpenBLAS", "MKL" or "other": what the build was configured with.
inline const char* Name() {
#if defined(MPIFLOW_BLAS_OPENBLAS)
  return "OpenBLAS";
#elif defined(MPIFLOW_BLAS_MKL)
  return "MKL";
#else
  return "other";
#endif
}

}  // namespace blas
}  // namespace mpiflow
