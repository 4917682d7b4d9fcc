// The CUDA device of this process (kernel.h's Device): one GPU, chosen by the node-local rank
// (SelectGpu) or GPU 0; a caching allocator of device memory (cudaMalloc, never managed memory);
// a compute stream every kernel and copy of a Session runs on in order, and a communication
// stream, created for collectives (none uses it yet); the cuBLAS (and cuDNN) handles on the
// compute stream. Private to kernels/. Not the kernels (cuda_kernels.h) and not collectives.
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
  explicit CudaAllocator(int gpu) : gpu_(gpu), name_("cuda:" + std::to_string(gpu)) {}
  void* Allocate(size_t bytes) override;
  void Free(void* p, size_t bytes) override;
  bool host() const override { return false; }
  const char* name() const override { return name_.c_str(); }
  AllocatorStats stats();
  static size_t SizeClass(size_t bytes);  // 256-byte steps to 64 KiB, then 4 per doubling

 private:
  void ReleaseCache();  // with mu_ held
  int gpu_;
  std::string name_;
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

// Pinned host buffers every host-to-device copy goes through: a copy from pageable memory makes
// the CUDA runtime wait for the stream's earlier work, so a step's input copy would wait for the
// previous step's kernels; from pinned memory it is queued like a kernel. The host bytes are
// copied into the next of kSlots buffers (waiting, via the slot's event, only for the copy made
// from it kSlots copies ago), then queued from there. One thread at a time (a mutex).
class PinnedStaging {
 public:
  static constexpr int kSlots = 4;
  ~PinnedStaging();
  Status CopyToDevice(void* device_dst, const void* host_src, size_t bytes, cudaStream_t stream,
                      const std::string& where);

 private:
  struct Slot {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t done = nullptr;  // recorded after the copy from this slot
  };
  std::mutex mu_;
  Slot slots_[kSlots];
  int next_ = 0;
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
  // cuDNN's handle must not be used by two threads at once (the parallel executor may run two
  // convolutions together): hold this while calling cuDNN.
  std::mutex& dnn_mutex() { return dnn_mu_; }
#endif
  const cudaDeviceProp& properties() const { return props_; }
  AllocatorStats allocator_stats() { return allocator_.stats(); }
  // bytes from host memory (any: pageable or not) to device memory, queued on the compute
  // stream; `host_src` may be reused once this returns.
  Status CopyToDevice(void* device_dst, const void* host_src, size_t bytes,
                      const std::string& where) {
    return staging_.CopyToDevice(device_dst, host_src, bytes, compute_, where);
  }

 private:
  friend StatusOr<CudaDevice*> TheDevice();
  explicit CudaDevice(int gpu) : gpu_(gpu), name_("cuda:" + std::to_string(gpu)), allocator_(gpu) {}
  Status Init();
  int gpu_;
  std::string name_;
  CudaAllocator allocator_;
  PinnedStaging staging_;
  cudaStream_t compute_ = nullptr, communication_ = nullptr;
  cublasHandle_t blas_ = nullptr;
#ifdef MPIFLOW_WITH_CUDNN
  cudnnHandle_t dnn_ = nullptr;
  std::mutex dnn_mu_;
#endif
  cudaDeviceProp props_{};
};

// Makes `gpu` the calling thread's current device, once per thread (the CUDA runtime's current
// device is per thread: the executor's pool threads start on device 0).
void MakeCurrent(int gpu);

// GPUs the CUDA runtime shows this process (0 where there is no driver or device).
int VisibleGpus();
// Makes `gpu` this process's GPU; an error once the device exists on another one.
Status ChooseGpu(int gpu);
// This process's device, made on first use (on the chosen GPU, else GPU 0). Never destroyed:
// tensors in its memory may outlive main().
StatusOr<CudaDevice*> TheDevice();

}  // namespace cuda
}  // namespace mpiflow
