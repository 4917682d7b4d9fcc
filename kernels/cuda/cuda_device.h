// The CUDA device of this process (kernel.h's Device): one GPU, chosen by the node-local rank
// (SelectGpu) or GPU 0; a caching allocator of device memory (cudaMalloc, never managed memory);
// a compute stream every kernel and copy of a Session runs on in order, and a communication
// stream for collectives (with events between the two); the cuBLAS handle bound to the compute
// stream. Private to kernels/. Not the kernels (cuda_kernels.h) and not collectives.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#ifdef MPIFLOW_WITH_CUDNN
#include <cudnn.h>
#endif

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "mpiflow/kernel.h"

namespace mpiflow {
namespace cuda {

// Device memory, cached by size class as the host allocator does: a step allocates the same
// sizes every step, so after the first no call reaches cudaMalloc. Buffers freed by one kernel
// are reused by later ones on the same stream without waiting (stream order keeps them apart).
class CudaAllocator : public Allocator {
 public:
  explicit CudaAllocator(int gpu) : name_("cuda:" + std::to_string(gpu)) {}
  void* Allocate(size_t bytes) override;
  void Free(void* p, size_t bytes) override;
  bool host() const override { return false; }
  const char* name() const override { return name_.c_str(); }
  AllocatorStats stats();
  static size_t SizeClass(size_t bytes);  // 256-byte steps to 64 KiB, then 4 per doubling

 private:
  void ReleaseCache();  // with mu_ held
  std::string name_;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

class CudaDevice : public Device {
 public:
  ~CudaDevice() override = default;
  const std::string& name() const override { return name_; }
  Allocator* allocator() override { return &allocator_; }
  StatusOr<Tensor> CopyAcross(const Tensor& t) override;
  Status CopyInto(const Tensor& src, const Tensor& dst) override;
  Status Synchronize() override;

  int gpu() const { return gpu_; }
  cudaStream_t compute() const { return compute_; }
  cudaStream_t communication() const { return communication_; }
  cublasHandle_t blas() const { return blas_; }
#ifdef MPIFLOW_WITH_CUDNN
  cudnnHandle_t dnn() const { return dnn_; }  // bound to the compute stream
#endif
  const cudaDeviceProp& properties() const { return props_; }
  AllocatorStats allocator_stats() { return allocator_.stats(); }

 private:
  friend StatusOr<CudaDevice*> TheDevice();
  explicit CudaDevice(int gpu) : gpu_(gpu), name_("cuda:" + std::to_string(gpu)), allocator_(gpu) {}
  Status Init();
  int gpu_;
  std::string name_;
  CudaAllocator allocator_;
  cudaStream_t compute_ = nullptr, communication_ = nullptr;
  cublasHandle_t blas_ = nullptr;
#ifdef MPIFLOW_WITH_CUDNN
  cudnnHandle_t dnn_ = nullptr;
#endif
  cudaDeviceProp props_{};
};

// GPUs the CUDA runtime shows this process (0 where there is no driver or device).
int VisibleGpus();
// Makes `gpu` this process's GPU; an error once the device exists on another one.
Status ChooseGpu(int gpu);
// This process's device, made on first use (on the chosen GPU, else GPU 0). Never destroyed:
// tensors in its memory may outlive main().
StatusOr<CudaDevice*> TheDevice();

}  // namespace cuda
}  // namespace mpiflow
