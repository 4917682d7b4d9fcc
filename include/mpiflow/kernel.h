// The kernel interface: an OpKernel computes one node on one device; kernels are registered by
// (op, device, dtype) and created once per node per Session. Not the op definitions (graph.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "mpiflow/graph.h"
#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

class ThreadPool;
class Timeline;

// The per-Session state kernels may reach, owned and implemented by the runtime (Session);
// kernels hold only what these hand them and never communicate themselves.

// The Session's variables: one slot per variable name. The state kernels (Variable, Assign,
// Apply*) read and update a slot's tensor in place.
class VariableResource {
 public:
  struct Slot {
    std::string name;
    Tensor value;  // (the variable's shape); unallocated until first assigned
  };
  virtual ~VariableResource() = default;
  // The slot of `name`, created on first use; it never moves.
  virtual Slot* GetOrCreate(const std::string& name, DType dtype, const Shape& shape) = 0;
};

// The Session's communicator, as the collective ops need it: an allreduce started by one kernel
// (AllreduceStart) and waited for by others (AllreduceWait), keyed by bucket name.
class CollectiveResource {
 public:
  virtual ~CollectiveResource() = default;
  // Starts summing `packed` in place over every rank, by `algorithm` (auto, native, ring, hd,
  // rd, hier) with `compression` on the wire (none, fp16, bf16); `name` labels it in stall
  // reports and the timeline.
  virtual Status StartAllreduce(const std::string& key, Tensor packed, const std::string& algorithm,
                                const std::string& name,
                                const std::string& compression = "none") = 0;
  // Blocks until `key`'s allreduce completes; its status (NotFound: never started).
  virtual Status WaitAllreduce(const std::string& key) = 0;
  // Blocks while `in` (k elements, the same k and dtype on every rank) is gathered from every
  // rank into `out` (ranks() * k elements, block r from rank r).
  virtual Status Allgather(Tensor in, Tensor out) = 0;
  virtual int ranks() const = 0;
  virtual Timeline* timeline() = 0;  // where ops may record events (null when off)
};

// What a kernel sees while it runs: inputs, outputs, the step, an intra-op pool, and where its
// outputs' memory comes from (the host's; a device kernel's, its device's).
class KernelContext {
 public:
  KernelContext(const Node* node, const Tensor* const* inputs, Tensor* outputs, int64_t step,
                ThreadPool* intra_op_pool, Allocator* allocator = HostAllocator())
      : node_(node),
        inputs_(inputs),
        outputs_(outputs),
        step_(step),
        pool_(intra_op_pool),
        allocator_(allocator) {}

  const Node& node() const { return *node_; }
  int num_inputs() const { return node_->num_inputs(); }
  const Tensor& input(int i) const { return *inputs_[i]; }
  // Allocates output i with the node's inferred dtype and the given (fully defined) shape.
  Tensor* allocate_output(int i, const Shape& shape) {
    outputs_[i] = Tensor(node_->output_dtype(i), shape, allocator_);
    return &outputs_[i];
  }
  Allocator* allocator() const { return allocator_; }
  void set_output(int i, Tensor t) { outputs_[i] = std::move(t); }
  int64_t step() const { return step_; }  // the Session's run counter: seeds per-step randomness
  ThreadPool* intra_op_pool() const { return pool_; }

  // InvalidArgument naming the op and node: "MatMul node 'dense/MatMul': <what>".
  template <typename... Args>
  Status Error(const Args&... what) const {
    return InvalidArgument(node_->op(), " node '", node_->name(), "': ", what...);
  }

 private:
  const Node* node_;
  const Tensor* const* inputs_;
  Tensor* outputs_;
  int64_t step_;
  ThreadPool* pool_;
  Allocator* allocator_;
};

class OpKernel {
 public:
  explicit OpKernel(const Node& node) : node_(node) {}
  virtual ~OpKernel() = default;
  virtual Status Compute(KernelContext* ctx) = 0;
  const Node& node() const { return node_; }
  // False for kernels that pass their inputs on without reading their memory (Identity,
  // Reshape, NoOp, Variable): they run wherever their inputs are, with no copy across.
  virtual bool TouchesMemory() const { return true; }
  // A device kernel reads input i from host memory (a scalar such as a learning rate, which it
  // passes to its launch by value); set from the registration.
  bool host_input(int i) const {
    for (int h : host_inputs_) {
      if (h == i) return true;
    }
    return false;
  }

 protected:
  const Node& node_;

 private:
  friend class KernelRegistry;
  std::vector<int> host_inputs_;
};

// The arithmetic a device's matrix products and convolutions may use on float32 tensors (the
// tensors stay float32: master weights, activations and gradients): fp32 exactly; tf32 tensor
// cores (10-bit mantissas in, float32 sums); bf16 or fp16: inputs rounded to bfloat16 or half
// for the tensor cores, float32 sums. The CPU kernels compute in float32 whatever it says.
enum class MathPrecision { kFp32, kTf32, kBf16, kFp16 };
StatusOr<MathPrecision> ParseMathPrecision(const std::string& name);  // fp32, tf32, bf16, fp16
const char* MathPrecisionName(MathPrecision p);

// What a kernel factory gets: the node (attrs already checked by the shape function) and the
// Session's resources.
struct KernelInitContext {
  const Node& node;
  VariableResource* variables;
  CollectiveResource* collectives = nullptr;  // null without a communicator
  MathPrecision precision = MathPrecision::kFp32;
};

using KernelFactory =
    std::function<StatusOr<std::unique_ptr<OpKernel>>(const KernelInitContext& ctx)>;

inline constexpr const char* kCpu = "cpu";
inline constexpr const char* kCuda = "cuda";

class KernelRegistry {
 public:
  // The built-in CPU kernels (and CUDA kernels, in a CUDA build) are registered on first use.
  static KernelRegistry& Global();
  // dtype kInvalid registers a kernel for every dtype of the op. host_inputs: the inputs a
  // device kernel reads from host memory (OpKernel::host_input).
  void Register(const std::string& op, const std::string& device, DType dtype,
                KernelFactory factory, std::vector<int> host_inputs = {});
  StatusOr<std::unique_ptr<OpKernel>> Create(const std::string& device,
                                             const KernelInitContext& ctx) const;
  // Whether Create(device, ...) would find a kernel for this node.
  bool Has(const std::string& device, const Node& node) const;

 private:
  struct Entry {
    KernelFactory factory;
    std::vector<int> host_inputs;
  };
  const Entry* Find(const std::string& device, const Node& node) const;
  std::map<std::tuple<std::string, std::string, DType>, Entry> factories_;
};

// An accelerator as the runtime sees it: its memory, and copies between it and the host. Its
// kernels run in order on one stream, so a buffer freed by one step may be reused by the next
// without waiting; a copy to the host waits for everything queued before it.
class Device {
 public:
  virtual ~Device() = default;
  virtual const std::string& name() const = 0;  // "cuda:0"
  virtual Allocator* allocator() = 0;
  // A copy of `t` on the other side: a host tensor's on this device (the host tensor may be
  // reused once this returns), a device tensor's on the host (after the work queued before).
  virtual StatusOr<Tensor> CopyAcross(const Tensor& t) = 0;
  // Overwrites `dst` with `src`, the same dtype and shape, each on either side.
  virtual Status CopyInto(const Tensor& src, const Tensor& dst) = 0;
  virtual Status Synchronize() = 0;  // waits for every kernel and copy queued so far
};

// The device named `name` ("cuda": this process's GPU, see SelectGpu). Unavailable, with the
// reason, where it is not built or none is present. "cpu" is the host: null, OK.
StatusOr<Device*> FindDevice(const std::string& name);
// Makes FindDevice(name) return `device` (which must outlive its use; null removes it), with
// its kernels registered under that name. For tests of the runtime's device handling on a
// machine without a GPU; "cpu" and "cuda" cannot be replaced.
Status RegisterDevice(const std::string& name, Device* device);

// GPUs this process sees (0 in a build without CUDA, or where there is none).
int GpuCount();
// The GPU a rank uses: its rank among the job's ranks on its node, modulo the GPUs the node
// shows (ranks share GPUs round-robin where there are more ranks than GPUs). -1 with no GPU.
int GpuForLocalRank(int local_rank, int gpus);
// Chooses this process's GPU by GpuForLocalRank before its first use; a Session on "cuda"
// without a choice uses GPU 0. An error once the GPU is in use, or where there is none.
Status SelectGpu(int local_rank);

// Threads the CPU kernels (OpenBLAS) may use; set by the Session from its intra-op count.
void SetCpuKernelThreads(int num_threads);

// The dtype a node's kernel is chosen by: its first input's, else its first output's.
DType KernelDType(const Node& node);

// Registers kernel class K (constructible from KernelInitContext) for (op, device, dtype).
template <typename K>
void RegisterKernel(KernelRegistry& registry, const std::string& op, const std::string& device,
                    DType dtype, std::vector<int> host_inputs = {}) {
  registry.Register(
      op, device, dtype,
      [](const KernelInitContext& c) -> StatusOr<std::unique_ptr<OpKernel>> {
        return std::unique_ptr<OpKernel>(new K(c));
      },
      std::move(host_inputs));
}

}  // namespace mpiflow
