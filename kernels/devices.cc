// Device lookup by name, the choice of a rank's GPU and the math precision's names (kernel.h):
// "cpu" is the host; "cuda" is kernels/cuda's device in a CUDA build and an Unavailable error,
// saying why, elsewhere. Not the devices themselves.
#include <map>
#include <mutex>

#include "mpiflow/enum_names.h"
#include "mpiflow/kernel.h"
#ifdef MPIFLOW_WITH_CUDA
#include "cuda/cuda_device.h"
#endif

namespace mpiflow {

namespace {

constexpr EnumName<MathPrecision> kPrecisions[] = {{MathPrecision::kFp32, "fp32"},
                                                   {MathPrecision::kTf32, "tf32"},
                                                   {MathPrecision::kBf16, "bf16"},
                                                   {MathPrecision::kFp16, "fp16"}};

std::mutex g_devices_mu;
std::map<std::string, Device*>& Registered() {
  static auto* m = new std::map<std::string, Device*>();
  return *m;
}

Device* FindRegistered(const std::string& name) {
  std::lock_guard<std::mutex> lock(g_devices_mu);
  auto it = Registered().find(name);
  return it == Registered().end() ? nullptr : it->second;
}

}  // namespace

StatusOr<MathPrecision> ParseMathPrecision(const std::string& name) {
  return ParseEnum(kPrecisions, "--precision", name);
}

const char* MathPrecisionName(MathPrecision p) { return EnumToName(kPrecisions, p); }

Status RegisterDevice(const std::string& name, Device* device) {
  if (name == kCpu || name == kCuda) {
    return InvalidArgument("device '", name, "' is built in and cannot be replaced");
  }
  std::lock_guard<std::mutex> lock(g_devices_mu);
  if (device) {
    Registered()[name] = device;
  } else {
    Registered().erase(name);
  }
  return Status::OK();
}

int GpuForLocalRank(int local_rank, int gpus) {
  if (gpus <= 0 || local_rank < 0) return -1;
  return local_rank % gpus;
}

#ifdef MPIFLOW_WITH_CUDA

StatusOr<Device*> FindDevice(const std::string& name) {
  if (name == kCpu) return static_cast<Device*>(nullptr);
  if (Device* d = FindRegistered(name)) return d;
  if (name == kCuda) {
    StatusOr<cuda::CudaDevice*> d = cuda::TheDevice();
    if (!d.ok()) return d.status();
    return static_cast<Device*>(d.value());
  }
  return InvalidArgument("unknown device '", name, "' (expected cpu or cuda)");
}

int GpuCount() { return cuda::VisibleGpus(); }

Status SelectGpu(int local_rank) {
  const int gpus = GpuCount();
  const int gpu = GpuForLocalRank(local_rank, gpus);
  if (gpu < 0) return Unavailable("no GPU is visible to this process (CUDA_VISIBLE_DEVICES?)");
  return cuda::ChooseGpu(gpu);
}

#else

StatusOr<Device*> FindDevice(const std::string& name) {
  if (name == kCpu) return static_cast<Device*>(nullptr);
  if (Device* d = FindRegistered(name)) return d;
  if (name == kCuda) {
    return Unavailable(
        "this mpiflow was built without CUDA (the configure summary says 'devices built: cpu'): "
        "configure where nvcc is found (-DMPIFLOW_WITH_CUDA=ON) or run with --device cpu");
  }
  return InvalidArgument("unknown device '", name, "' (expected cpu or cuda)");
}

int GpuCount() { return 0; }

Status SelectGpu(int) {
  return Unavailable("this mpiflow was built without CUDA: there is no GPU to select");
}

#endif

}  // namespace mpiflow
