// CudaDevice and CudaAllocator (cuda_device.h): the process's GPU, its streams, cuBLAS handle and
// device memory cache; copies between host and device. Not kernels.
#include "cuda_device.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_check.h"

namespace mpiflow {
namespace cuda {

void MakeCurrent(int gpu) {
  thread_local int current = -1;
  if (current == gpu) return;
  if (cudaSetDevice(gpu) == cudaSuccess) current = gpu;  // else the next CUDA call says why
}

size_t CudaAllocator::SizeClass(size_t bytes) {
  constexpr size_t kStep = 256, kSmall = size_t{64} << 10;
  const size_t aligned = (std::max<size_t>(bytes, 1) + kStep - 1) / kStep * kStep;
  if (aligned <= kSmall) return aligned;
  size_t top = kSmall;  // the largest power of two <= aligned
  while (top <= aligned / 2) top *= 2;
  const size_t step = top / 4;
  return (aligned + step - 1) / step * step;
}

void CudaAllocator::ReleaseCache() {
  for (auto& [size, list] : free_) {
    for (void* p : list) cudaFree(p);
    stats_.bytes_cached -= static_cast<int64_t>(size * list.size());
    list.clear();
  }
}

void* CudaAllocator::Allocate(size_t bytes) {
  const size_t rounded = SizeClass(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.bytes_in_use += static_cast<int64_t>(rounded);
  auto it = free_.find(rounded);
  if (it != free_.end() && !it->second.empty()) {
    void* p = it->second.back();
    it->second.pop_back();
    stats_.bytes_cached -= static_cast<int64_t>(rounded);
    return p;
  }
  ++stats_.allocations;
  MakeCurrent(gpu_);
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, rounded);
  if (e != cudaSuccess) {  // the cache may hold what is missing: give it back and try again
    cudaGetLastError();
    ReleaseCache();
    e = cudaMalloc(&p, rounded);
  }
  if (e != cudaSuccess) {
    // Allocator::Allocate has no error path: an out-of-memory device ends the process, saying so.
    std::fprintf(stderr,
                 "mpiflow: %s: cudaMalloc of %zu bytes failed: %s (%zu bytes in use by "
                 "mpiflow): use a smaller batch or model, or fewer ranks per GPU\n",
                 name_.c_str(), rounded, cudaGetErrorString(e),
                 static_cast<size_t>(stats_.bytes_in_use));
    std::abort();
  }
  return p;
}

void CudaAllocator::Free(void* p, size_t bytes) {
  const size_t rounded = SizeClass(bytes);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.bytes_in_use -= static_cast<int64_t>(rounded);
  free_[rounded].push_back(p);
  stats_.bytes_cached += static_cast<int64_t>(rounded);
}

AllocatorStats CudaAllocator::stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

PinnedStaging::~PinnedStaging() {
  for (Slot& s : slots_) {
    if (s.done) cudaEventDestroy(s.done);
    if (s.host) cudaFreeHost(s.host);
  }
}

Status PinnedStaging::CopyToDevice(void* device_dst, const void* host_src, size_t bytes,
                                   cudaStream_t stream, const std::string& where) {
  if (bytes == 0) return Status::OK();
  std::lock_guard<std::mutex> lock(mu_);
  Slot& s = slots_[next_];
  next_ = (next_ + 1) % kSlots;
  if (s.done) MPIFLOW_CUDA(cudaEventSynchronize(s.done), where);  // its last copy has left
  if (s.capacity < bytes) {
    if (s.host) MPIFLOW_CUDA(cudaFreeHost(s.host), where);
    s.host = nullptr;
    s.capacity = 0;
    const size_t grown = std::max<size_t>(bytes, size_t{1} << 20);
    MPIFLOW_CUDA(cudaMallocHost(&s.host, grown), where);
    s.capacity = grown;
  }
  if (!s.done) MPIFLOW_CUDA(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming), where);
  std::memcpy(s.host, host_src, bytes);
  MPIFLOW_CUDA(cudaMemcpyAsync(device_dst, s.host, bytes, cudaMemcpyHostToDevice, stream), where);
  MPIFLOW_CUDA(cudaEventRecord(s.done, stream), where);
  return Status::OK();
}

Status CudaDevice::Init() {
  const std::string where = name_;
  MPIFLOW_CUDA(cudaSetDevice(gpu_), where);
  MakeCurrent(gpu_);
  MPIFLOW_CUDA(cudaGetDeviceProperties(&props_, gpu_), where);
  MPIFLOW_CUDA(cudaStreamCreateWithFlags(&compute_, cudaStreamNonBlocking), where);
  MPIFLOW_CUDA(cudaStreamCreateWithFlags(&communication_, cudaStreamNonBlocking), where);
  MPIFLOW_CUBLAS(cublasCreate(&blas_), where);
  MPIFLOW_CUBLAS(cublasSetStream(blas_, compute_), where);
  // Plain float32 arithmetic unless a kernel asks for more (TF32 is a precision choice).
  MPIFLOW_CUBLAS(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH), where);
#ifdef MPIFLOW_WITH_CUDNN
  const cudnnStatus_t e = cudnnCreate(&dnn_);
  if (e != CUDNN_STATUS_SUCCESS) {
    return Internal(where, ": cudnnCreate failed: ", cudnnGetErrorString(e));
  }
  const cudnnStatus_t bound = cudnnSetStream(dnn_, compute_);
  if (bound != CUDNN_STATUS_SUCCESS) {
    return Internal(where, ": cudnnSetStream failed: ", cudnnGetErrorString(bound));
  }
#endif
  return Status::OK();
}

StatusOr<Tensor> CudaDevice::CopyAcross(const Tensor& t) {
  if (!t.allocated()) return t;
  MakeCurrent(gpu_);
  const std::string where = name_ + " copy of " + DTypeName(t.dtype()) + t.shape().ToString();
  if (t.on_host()) {
    Tensor d(t.dtype(), t.shape(), &allocator_);
    MPIFLOW_RETURN_IF_ERROR(CopyToDevice(d.raw(), t.raw(), t.bytes(), where + " to the device"));
    return d;
  }
  Tensor h(t.dtype(), t.shape());
  if (t.bytes()) {
    MPIFLOW_CUDA(cudaMemcpyAsync(h.raw(), t.raw(), t.bytes(), cudaMemcpyDeviceToHost, compute_),
                 where + " to the host");
  }
  MPIFLOW_CUDA(cudaStreamSynchronize(compute_), where + " to the host");
  return h;
}

Status CudaDevice::CopyInto(const Tensor& src, const Tensor& dst) {
  if (src.dtype() != dst.dtype() || src.shape() != dst.shape()) {
    return Internal(name_, ": copy of ", DTypeName(src.dtype()), src.shape().ToString(), " into ",
                    DTypeName(dst.dtype()), dst.shape().ToString());
  }
  if (!src.bytes() || src.raw() == dst.raw()) return Status::OK();
  MakeCurrent(gpu_);
  const std::string where = name_ + " copy into " + DTypeName(dst.dtype()) + dst.shape().ToString();
  if (src.on_host() && !dst.on_host())
    return CopyToDevice(dst.raw(), src.raw(), src.bytes(), where);
  MPIFLOW_CUDA(cudaMemcpyAsync(dst.raw(), src.raw(), src.bytes(), cudaMemcpyDefault, compute_),
               where);
  if (dst.on_host()) MPIFLOW_CUDA(cudaStreamSynchronize(compute_), where);
  return Status::OK();
}

Status CudaDevice::Synchronize() {
  MakeCurrent(gpu_);
  MPIFLOW_CUDA(cudaStreamSynchronize(compute_), name_);
  return Status::OK();
}

namespace {

std::mutex g_mu;
int g_chosen = -1;               // ChooseGpu's, else -1
CudaDevice* g_device = nullptr;  // made once
Status g_failure;                // why it could not be made

}  // namespace

int VisibleGpus() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

Status ChooseGpu(int gpu) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_device && g_device->gpu() != gpu) {
    return FailedPrecondition("this process already uses ", g_device->name(),
                              "; SelectGpu must come before the first Session on cuda");
  }
  g_chosen = gpu;
  return Status::OK();
}

StatusOr<CudaDevice*> TheDevice() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_device) return g_device;
  if (!g_failure.ok()) return g_failure;
  const int gpus = VisibleGpus();
  if (gpus == 0) {
    g_failure = Unavailable(
        "no CUDA GPU is visible to this process (no device, no driver, or "
        "CUDA_VISIBLE_DEVICES empty): run with --device cpu");
    return g_failure;
  }
  const int gpu = g_chosen >= 0 ? g_chosen : 0;
  if (gpu >= gpus) {
    g_failure = InvalidArgument("GPU ", gpu, " was chosen, but this process sees ", gpus);
    return g_failure;
  }
  auto* d = new CudaDevice(gpu);
  Status s = d->Init();
  if (!s.ok()) {
    g_failure = s;
    return s;
  }
  g_device = d;
  return g_device;
}

}  // namespace cuda
}  // namespace mpiflow
