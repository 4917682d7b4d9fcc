// Session: runs the part of a graph that the fetches and targets depend on, from execution plans
// cached by (feeds, fetches, targets), and owns the variables' values.
// Not a graph builder (graph.h) and not a distribution strategy: one process, one device; the
// collective ops it may run reach other ranks through SessionOptions::communicator.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/graph.h"
#include "mpiflow/kernel.h"
#include "mpiflow/placement.h"
#include "mpiflow/thread_pool.h"

namespace mpiflow {

class Communicator;
class FaultHooks;
class Timeline;
class VariableStore;         // src/runtime/session_resources.h
class CommunicatorResource;  // src/runtime/session_resources.h

struct SessionOptions {
  int inter_op_threads = 1;  // nodes run concurrently (1: in topological order on the caller)
  int intra_op_threads = 1;  // threads one kernel may use (OpenBLAS and ParallelFor)
  // "cpu", or "cuda": this process's GPU (SelectGpu). On cuda a node runs on the GPU where its
  // op has a CUDA kernel for its dtype and on the CPU otherwise, the Session copying tensors
  // across as the nodes need them; floating variables live in GPU memory, integer ones (step
  // counters, float16) in host memory. Feeds are host tensors; fetches come back as host tensors.
  std::string device = kCpu;
  // The device kernels' matrix arithmetic (kernel.h); anything but fp32 needs a device.
  MathPrecision precision = MathPrecision::kFp32;
  // For collective ops (gradient synchronisation); must outlive the Session. Null: none.
  Communicator* communicator = nullptr;
  // Records every kernel run ("op" events on the compute lane). Null: off.
  Timeline* timeline = nullptr;
  // Model parallelism: this process runs the nodes `placement` gives rank rendezvous->rank(), and
  // the tensors that cross ranks go by Send/Recv on `rendezvous` (protocol in
  // src/runtime/rendezvous.h). Every rank of it must make the same Runs in the same order. Null:
  // this process runs every node.
  std::shared_ptr<const Placement> placement;
  Communicator* rendezvous = nullptr;  // must outlive the Session
  // Tests only: asked before every kernel (FaultHooks::BeforeKernel). Null: none.
  FaultHooks* hooks = nullptr;
};

struct RunStats {
  bool collect_node_times = false;  // in: time every kernel (costs two clock reads per node)
  int64_t kernels_run = 0;          // kernel invocations in this run
  bool plan_cache_hit = false;      // the plan for (feeds, fetches, targets) was reused
  struct NodeTime {
    const Node* node;
    double seconds;
  };
  std::vector<NodeTime> node_times;  // with collect_node_times: one per kernel run, in run order
};

class Session {
 public:
  using Feed = std::pair<Output, Tensor>;

  // The graph must outlive the Session; it may grow, nodes added later run in later plans.
  explicit Session(const Graph* graph, SessionOptions options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Called during a Run as soon as fetch `index`'s value exists, with that value (a variable's
  // as a copy taken then): e.g. to send a gradient while the backward pass goes on. On the thread
  // that computed it (with inter-op threads, concurrently with other calls); a fetch no kernel of
  // the run computes (a fed one) is reported after the last kernel. An error ends the run as Run's.
  using FetchReady = std::function<Status(size_t index, const Tensor& value)>;

  // Runs what fetches and targets need, with feeds replacing the outputs they name.
  // outputs receives one tensor per fetch; variables come back as copies. `ready`, when set, is
  // told of each fetch as it is computed.
  Status Run(const std::vector<Feed>& feeds, const std::vector<Output>& fetches,
             const std::vector<Node*>& targets, std::vector<Tensor>* outputs,
             RunStats* stats = nullptr, const FetchReady& ready = nullptr);
  Status Run(const std::vector<Output>& fetches, std::vector<Tensor>* outputs) {
    return Run({}, fetches, {}, outputs);
  }
  Status RunTargets(const std::vector<Node*>& targets) { return Run({}, {}, targets, nullptr); }

  // Variable values by node name (copies), for checkpoints and tests.
  StatusOr<Tensor> ReadVariable(const std::string& name);
  Status WriteVariable(const std::string& name, const Tensor& value);
  // Rows of a variable (its first dimension), for parameter servers that move the rows a step
  // touched: Read copies rows[i] into row i of a [rows.size(), ...] tensor; Write copies row i
  // of `values` (the variable's dtype, [rows.size(), ...]) into rows[i]. Rows out of range are
  // an error that names the variable.
  StatusOr<Tensor> ReadVariableRows(const std::string& name, const std::vector<int64_t>& rows);
  // Copies the variable into `out` (its dtype and shape; e.g. a view of a message to send).
  Status ReadVariableInto(const std::string& name, Tensor out);
  Status WriteVariableRows(const std::string& name, const std::vector<int64_t>& rows,
                           const Tensor& values);
  // Makes `storage` (the variable's dtype and shape; e.g. a view of a message buffer) the
  // variable's memory, after copying its current value there: every later update writes it in
  // place, and a WriteVariable or ReadVariableInto of that very storage copies nothing. For
  // parameter servers, whose messages then carry the variables without a copy. The caller keeps
  // `storage` alive and unmoved, and does not write it while a step runs.
  Status ShareVariable(const std::string& name, Tensor storage);
  // From now on this session holds rows [begin, end) of the variable only (its first
  // dimension; a copy of them, the rest freed): reads, writes and the ops that update it see a
  // variable of end - begin rows, indexed from 0 (an empty range frees it). For a parameter
  // server that holds one range of a table split by rows, and none of another server's
  // variables. Once per variable; errors name it and the range.
  Status KeepRows(const std::string& name, int64_t begin, int64_t end);

  // The run counter: each Run takes the next value as its step (it seeds per-step randomness
  // such as dropout masks). Restoring it reproduces a run exactly.
  int64_t run_counter() const { return run_counter_.load(); }
  void set_run_counter(int64_t v) { run_counter_.store(v); }
  int num_cached_plans() const;
  const SessionOptions& options() const { return options_; }
  const Graph& graph() const { return *graph_; }

 private:
  struct Plan;
  StatusOr<std::shared_ptr<Plan>> GetPlan(const std::vector<Feed>& feeds,
                                          const std::vector<Output>& fetches,
                                          const std::vector<Node*>& targets, bool* cache_hit);
  StatusOr<std::shared_ptr<Plan>> BuildPlan(const std::vector<Feed>& feeds,
                                            const std::vector<Output>& fetches,
                                            const std::vector<Node*>& targets);
  // Runs step `step_index`, then tells `ready` (when not null) of the fetches it computed.
  Status RunNode(const Plan& plan, int step_index, std::vector<Tensor>& values, int64_t step,
                 RunStats* timing, const FetchReady* ready);
  Status RunSequential(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                       RunStats* timing, const FetchReady* ready);
  Status RunParallel(const Plan& plan, std::vector<Tensor>& values, int64_t step, RunStats* timing,
                     const FetchReady* ready);
  // A partitioned plan: a dataflow on the caller's thread that posts its Recvs at once, starts
  // each Send as its value appears and runs other ready nodes while Recvs are in flight.
  Status RunPartitioned(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                        RunStats* timing, const FetchReady* fetched);
  // A fetch's value as the caller gets it: a copy when it is a variable's own buffer, a host
  // copy when it is in device memory.
  StatusOr<Tensor> FetchValue(const Tensor& t) const;
  // On a device session: whether a variable of this dtype lives in device memory (float32 and
  // float64: the dtypes the device's Assign and update kernels take).
  bool OnDevice(DType dtype) const {
    return device_ && (dtype == DType::kFloat32 || dtype == DType::kFloat64);
  }

  const Graph* graph_;
  SessionOptions options_;
  std::unique_ptr<VariableStore> variables_;
  Device* device_ = nullptr;  // options_.device's, null for the host
  Status device_error_;       // why options_.device cannot be used (every Run returns it)
  std::unique_ptr<CommunicatorResource> collectives_;  // with options_.communicator
  std::unique_ptr<ThreadPool> inter_op_pool_;
  std::unique_ptr<ThreadPool> intra_op_pool_;
  mutable std::mutex mu_;
  std::mutex timing_mu_;  // guards RunStats::node_times under the parallel executor
  std::map<std::string, std::shared_ptr<Plan>> plans_;
  std::map<int, std::unique_ptr<OpKernel>> kernels_;  // by node id
  std::atomic<int64_t> run_counter_{0};
  struct PeerErrors;  // the rendezvous' error channel (src/runtime/rendezvous.h, step 8)
  std::unique_ptr<PeerErrors> peer_errors_;
};

}  // namespace mpiflow
