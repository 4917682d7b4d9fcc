// Session: prune -> order -> assign value slots -> create kernels, cached as a Plan per
// (feeds, fetches, targets); then an executor runs the plan in order on the caller's thread, or
// as a dataflow over the inter-op pool. Intermediate values are released after their last use.
// Variable access by name, outside a step: session_variables.cc.
#include "mpiflow/session.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <queue>
#include <set>

#include "device_staging.h"
#include "mpiflow/fault_hooks.h"
#include "mpiflow/timeline.h"
#include "plan.h"
#include "rendezvous.h"
#include "session_resources.h"

namespace mpiflow {

Session::Session(const Graph* graph, SessionOptions options)
    : graph_(graph), options_(std::move(options)), variables_(std::make_unique<VariableStore>()) {
  options_.inter_op_threads = std::max(1, options_.inter_op_threads);
  options_.intra_op_threads = std::max(1, options_.intra_op_threads);
  if (options_.inter_op_threads > 1) {
    inter_op_pool_ = std::make_unique<ThreadPool>(options_.inter_op_threads);
  }
  if (options_.intra_op_threads > 1) {
    intra_op_pool_ = std::make_unique<ThreadPool>(options_.intra_op_threads - 1);
  }
  SetCpuKernelThreads(options_.intra_op_threads);
  StatusOr<Device*> device = FindDevice(options_.device);
  if (device.ok()) {
    device_ = device.value();
  } else {
    device_error_ = device.status();
  }
  if (options_.communicator)
    collectives_ = std::make_unique<CommunicatorResource>(options_.communicator);
}

Session::~Session() = default;

int Session::num_cached_plans() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(plans_.size());
}

namespace {

Status CheckInGraph(const Graph* g, const Node* n, const char* what, size_t i) {
  if (!n) return InvalidArgument(what, " ", i, " is invalid (an op failed to build?)");
  if (n->id() < 0 || n->id() >= g->num_nodes() || g->node(n->id()) != n) {
    return InvalidArgument(what, " ", i, " ('", n->name(), "') is not a node of this graph");
  }
  return Status::OK();
}

std::string PlanKey(const std::vector<Session::Feed>& feeds, const std::vector<Output>& fetches,
                    const std::vector<Node*>& targets) {
  std::string key;
  for (const auto& f : feeds) key += f.first.name() + ",";
  key += "|";
  for (const auto& f : fetches) key += (f.valid() ? f.name() : std::string("?")) + ",";
  key += "|";
  for (const Node* t : targets) key += (t ? t->name() : std::string("?")) + ",";
  return key;
}

}  // namespace

StatusOr<std::shared_ptr<Session::Plan>> Session::GetPlan(const std::vector<Feed>& feeds,
                                                          const std::vector<Output>& fetches,
                                                          const std::vector<Node*>& targets,
                                                          bool* cache_hit) {
  const std::string key = PlanKey(feeds, fetches, targets);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = plans_.find(key);
  if (it != plans_.end()) {
    *cache_hit = true;
    return it->second;
  }
  *cache_hit = false;
  StatusOr<std::shared_ptr<Plan>> plan = BuildPlan(feeds, fetches, targets);
  if (plan.ok()) plans_[key] = *plan;
  return plan;
}

StatusOr<std::shared_ptr<Session::Plan>> Session::BuildPlan(const std::vector<Feed>& feeds,
                                                            const std::vector<Output>& fetches,
                                                            const std::vector<Node*>& targets) {
  MPIFLOW_RETURN_IF_ERROR(device_error_);
  if (!device_ && options_.precision != MathPrecision::kFp32) {
    return InvalidArgument("precision ", MathPrecisionName(options_.precision),
                           " needs a device (GPU) session; the CPU kernels compute in fp32");
  }
  const int n = graph_->num_nodes();
  std::map<Output, int> fed;  // output -> feed index
  for (size_t i = 0; i < feeds.size(); ++i) {
    MPIFLOW_RETURN_IF_ERROR(CheckInGraph(graph_, feeds[i].first.node, "feed", i));
    if (!fed.emplace(feeds[i].first, static_cast<int>(i)).second) {
      return InvalidArgument("'", feeds[i].first.name(), "' is fed twice");
    }
  }
  for (size_t i = 0; i < fetches.size(); ++i) {
    MPIFLOW_RETURN_IF_ERROR(CheckInGraph(graph_, fetches[i].node, "fetch", i));
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    MPIFLOW_RETURN_IF_ERROR(CheckInGraph(graph_, targets[i], "target", i));
  }

  // Prune: what the fetches and targets depend on, stopping at fed outputs.
  std::vector<char> needed(n, 0);
  std::vector<Node*> stack;
  for (const Output& f : fetches) {
    if (!fed.count(f)) stack.push_back(f.node);
  }
  stack.insert(stack.end(), targets.begin(), targets.end());
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    if (needed[node->id()]) continue;
    needed[node->id()] = 1;
    for (const Output& in : node->inputs()) {
      if (!fed.count(in)) stack.push_back(in.node);
    }
    for (Node* c : node->control_inputs()) stack.push_back(c);
  }

  // Order (Kahn, smallest id first); what cannot be ordered sits on or behind a cycle.
  std::vector<std::vector<int>> succ(n);
  std::vector<int> preds(n, 0);
  for (int id = 0; id < n; ++id) {
    if (!needed[id]) continue;
    Node* node = graph_->node(id);
    if (node->op() == "Placeholder") {
      return InvalidArgument("Placeholder '", node->name(), "' (", DTypeName(node->output_dtype(0)),
                             node->output_shape(0).ToString(),
                             ") must be fed: the fetches depend on it");
    }
    std::vector<int> from;
    for (const Output& in : node->inputs()) {
      if (!fed.count(in)) from.push_back(in.node->id());
    }
    for (Node* c : node->control_inputs()) from.push_back(c->id());
    std::sort(from.begin(), from.end());
    from.erase(std::unique(from.begin(), from.end()), from.end());
    for (int p : from) succ[p].push_back(id);
    preds[id] = static_cast<int>(from.size());
  }
  // Ready nodes by (OpDef::schedule, id): collective starts first, collective waits last.
  using Key = std::pair<int, int>;
  std::priority_queue<Key, std::vector<Key>, std::greater<Key>> ready;
  auto push = [&](int id) { ready.push({graph_->node(id)->def().schedule, id}); };
  for (int id = 0; id < n; ++id) {
    if (needed[id] && preds[id] == 0) push(id);
  }
  std::vector<int> order;
  std::vector<int> remaining = preds;
  while (!ready.empty()) {
    const int id = ready.top().second;
    ready.pop();
    order.push_back(id);
    for (int s : succ[id]) {
      if (--remaining[s] == 0) push(s);
    }
  }
  const int num_needed = static_cast<int>(std::count(needed.begin(), needed.end(), 1));
  if (static_cast<int>(order.size()) != num_needed) {
    std::string stuck;
    int first = -1;
    for (int id = 0; id < n; ++id) {
      if (needed[id] && remaining[id] > 0) {
        if (first < 0) first = id;
        stuck += (stuck.empty() ? "" : ", ") + graph_->node(id)->name();
      }
    }
    return InvalidArgument("the graph has a cycle through node '", graph_->node(first)->name(),
                           "' (", graph_->node(first)->op(), "); nodes on or behind it: ", stuck);
  }

  // This rank's part: every node on one process; with a placement, the nodes placed here and
  // a Send or Recv step per transfer of the run (rendezvous.h).
  auto plan = std::make_shared<Plan>();
  const Placement* placement = options_.placement.get();
  if (placement && device_) {
    return Unimplemented("a partitioned graph (model parallelism) runs on the CPU only for now: ",
                         "use --device cpu");
  }
  if (placement && (!options_.rendezvous || options_.rendezvous->size() != placement->ranks())) {
    return InvalidArgument("the session's placement spans ", placement->ranks(),
                           " ranks, but its rendezvous communicator has ",
                           options_.rendezvous ? options_.rendezvous->size() : 0);
  }
  const int me = placement ? options_.rendezvous->rank() : 0;
  auto local = [&](const Node* node) { return !placement || placement->RankOf(node) == me; };
  if (placement) {
    plan->partitioned = true;
    std::set<Output> fed_set;
    for (const auto& f : fed) fed_set.insert(f.first);
    plan->transfers = PartitionRun(*graph_, *placement, needed, fed_set, fetches);
    if (plan->transfers.size() >= static_cast<size_t>(kRendezvousErrorTag)) {
      return InvalidArgument("this run's partition needs ", plan->transfers.size(),
                             " transfers between ranks; the rendezvous tags at most ",
                             kRendezvousErrorTag, ": place the model in fewer, larger pieces");
    }
  }
  std::vector<int> out_base(n, -1);
  std::map<Output, int> recv_slot;  // a remote output received here -> its slot
  std::map<int, int> recv_step;     // a remote node -> a step receiving from it
  int slots = 0;
  for (size_t i = 0; i < feeds.size(); ++i) plan->feed_slots.push_back(slots++);
  std::vector<std::vector<int>> step_preds;  // per step
  for (size_t t = 0; t < plan->transfers.size(); ++t) {
    const Transfer& tr = plan->transfers[t];
    if (tr.dst != me) continue;
    Plan::Step step;
    step.kind = Plan::Kind::kRecv;
    step.node = tr.from.node;
    step.transfer = static_cast<int>(t);
    step.out_base = -1;
    if (!tr.control) {
      int unknown = 0;
      for (int64_t d : tr.from.shape().dims()) unknown += d < 0;
      if (unknown > 1) {
        return Unimplemented("tensor '", tr.from.name(), "' ", tr.from.shape().ToString(),
                             " crosses from rank ", tr.src, " to rank ", tr.dst,
                             " with more than one unknown dimension; place its producer and ",
                             "consumers together (Scope::WithDevice)");
      }
      step.out_base = recv_slot[tr.from] = slots++;
    }
    recv_step[tr.from.node->id()] = static_cast<int>(plan->steps.size());
    plan->steps.push_back(std::move(step));
    step_preds.emplace_back();
  }
  for (int id : order) {
    if (!local(graph_->node(id))) continue;
    out_base[id] = slots;
    slots += graph_->node(id)->num_outputs();
  }
  plan->num_slots = slots;
  plan->uses.assign(slots, 0);
  plan->keep.assign(slots, 0);
  for (int s : plan->feed_slots) plan->keep[s] = 1;
  auto slot_of = [&](const Output& o) {
    auto f = fed.find(o);
    if (f != fed.end()) return plan->feed_slots[f->second];
    return local(o.node) ? out_base[o.node->id()] + o.index : recv_slot.at(o);
  };
  std::vector<int> step_of(n, -1);
  auto source_step = [&](const Node* from) {
    return local(from) ? step_of[from->id()] : recv_step.at(from->id());
  };
  for (int id : order) {
    Node* node = graph_->node(id);
    if (!local(node)) continue;
    Plan::Step step;
    step.node = node;
    step.out_base = out_base[id];
    std::vector<int> from;
    for (const Output& in : node->inputs()) {
      step.in_slots.push_back(slot_of(in));
      ++plan->uses[step.in_slots.back()];
      if (!fed.count(in)) from.push_back(source_step(in.node));
    }
    for (const Node* c : node->control_inputs()) from.push_back(source_step(c));
    // On a device: its kernel where the op has one for this dtype, else the CPU's.
    step.on_device = device_ && KernelRegistry::Global().Has(options_.device, *node);
    auto k = kernels_.find(id);
    if (k == kernels_.end()) {
      StatusOr<std::unique_ptr<OpKernel>> kernel = KernelRegistry::Global().Create(
          step.on_device ? options_.device : std::string(kCpu),
          KernelInitContext{*node, variables_.get(), collectives_.get(), options_.precision});
      if (!kernel.ok()) return kernel.status();
      k = kernels_.emplace(id, std::move(kernel).value()).first;
    }
    step.kernel = k->second.get();
    step_of[id] = static_cast<int>(plan->steps.size());
    plan->steps.push_back(std::move(step));
    step_preds.push_back(std::move(from));
    // Its sends go right after it: the executor starts them as soon as the value exists.
    for (size_t t = 0; t < plan->transfers.size(); ++t) {
      const Transfer& tr = plan->transfers[t];
      if (tr.src != me || tr.from.node != node) continue;
      Plan::Step send;
      send.kind = Plan::Kind::kSend;
      send.node = node;
      send.transfer = static_cast<int>(t);
      if (!tr.control) {
        send.in_slots.push_back(slot_of(tr.from));
        ++plan->uses[send.in_slots.back()];
      }
      plan->steps.push_back(std::move(send));
      step_preds.push_back({step_of[id]});
    }
  }
  for (size_t i = 0; i < plan->steps.size(); ++i) {
    std::vector<int>& p = step_preds[i];
    std::sort(p.begin(), p.end());
    p.erase(std::unique(p.begin(), p.end()), p.end());
    plan->steps[i].num_preds = static_cast<int>(p.size());
    for (int q : p) plan->steps[q].successors.push_back(static_cast<int>(i));
  }
  plan->fetches_of_slot.resize(plan->num_slots);
  std::vector<char> computed(plan->num_slots, 0);
  for (const Plan::Step& st : plan->steps) {
    if (st.kind == Plan::Kind::kKernel) {
      for (int o = 0; o < st.node->num_outputs(); ++o) computed[st.out_base + o] = 1;
    }
  }
  for (const Output& f : fetches) {
    plan->fetch_slots.push_back(slot_of(f));
    plan->keep[plan->fetch_slots.back()] = 1;
    plan->fetches_of_slot[plan->fetch_slots.back()].push_back(
        static_cast<int>(plan->fetch_slots.size()) - 1);
    plan->fetch_computed.push_back(computed[plan->fetch_slots.back()]);
  }
  return plan;
}

StatusOr<Tensor> Session::FetchValue(const Tensor& t) const {
  if (!t.on_host()) return device_->CopyAcross(t);
  return variables_->OwnsBuffer(t.buffer()) ? t.DeepCopy() : t;
}

Status Session::RunNode(const Plan& plan, int step_index, std::vector<Tensor>& values, int64_t step,
                        RunStats* timing, const FetchReady* ready) {
  const Plan::Step& st = plan.steps[step_index];
  const Node* node = st.node;
  const int num_in = static_cast<int>(st.in_slots.size());
  constexpr int kInline = 8;
  const Tensor* inline_inputs[kInline];
  std::vector<const Tensor*> heap_inputs;
  const Tensor** inputs = inline_inputs;
  if (num_in > kInline) {
    heap_inputs.resize(num_in);
    inputs = heap_inputs.data();
  }
  for (int i = 0; i < num_in; ++i) {
    const Tensor& t = values[st.in_slots[i]];
    if (!t.allocated() && !(i == 0 && node->def().reads_uninitialized_input0)) {
      const Node* from = node->input(i).node;
      if (from->op() == "Variable") {
        return FailedPrecondition("node '", node->name(), "' (", node->op(), ") reads variable '",
                                  from->name(),
                                  "' before it was initialized: run the init op (ops::InitOp) "
                                  "first, or restore a checkpoint");
      }
      return Internal("node '", node->name(), "' input ", i, " from '", from->name(),
                      "' has no value");
    }
    inputs[i] = &t;
  }
  // On a device session: inputs on the other side of this node's kernel are copied across.
  std::vector<Tensor> staged;  // the copies, alive through the kernel
  std::vector<int> staged_input;
  if (device_) {
    MPIFLOW_RETURN_IF_ERROR(StageInputs(*device_, *node, *st.kernel, st.on_device, num_in, inputs,
                                        &staged, &staged_input));
  }
  Tensor* outputs = values.data() + st.out_base;
  if (options_.hooks)
    MPIFLOW_RETURN_IF_ERROR(options_.hooks->BeforeKernel(node->name(), node->op()));
  KernelContext ctx(node, inputs, outputs, step, intra_op_pool_.get(),
                    st.on_device ? device_->allocator() : HostAllocator());
  if (timing || options_.timeline) {
    const auto t0 = std::chrono::steady_clock::now();
    MPIFLOW_RETURN_IF_ERROR(st.kernel->Compute(&ctx));
    const auto t1 = std::chrono::steady_clock::now();
    if (options_.timeline) {
      options_.timeline->Add(node->name(), "op", t0, t1, Timeline::kCompute,
                             StrCat("\"op\":\"", node->op(), "\",\"step\":", step));
    }
    if (timing) {
      std::lock_guard<std::mutex> lock(timing_mu_);
      timing->node_times.push_back({node, std::chrono::duration<double>(t1 - t0).count()});
    }
  } else {
    MPIFLOW_RETURN_IF_ERROR(st.kernel->Compute(&ctx));
  }
  if (!staged.empty()) {
    MPIFLOW_RETURN_IF_ERROR(
        WriteBackVariables(*device_, *node, st.in_slots, values, staged, staged_input));
  }
  for (int o = 0; o < node->num_outputs(); ++o) {
    const Tensor& t = outputs[o];
    if (t.dtype() != node->output_dtype(o) ||
        (!t.shape().IsCompatibleWith(node->output_shape(o)) &&
         !variables_->IsPartBuffer(t.buffer()))) {  // KeepRows: some rows of a variable
      return Internal("kernel for '", node->name(), "' (", node->op(), ") produced output ", o,
                      " as ", DTypeName(t.dtype()), t.shape().ToString(), "; the graph says ",
                      DTypeName(node->output_dtype(o)), node->output_shape(o).ToString());
    }
    if (ready) {
      for (int f : plan.fetches_of_slot[st.out_base + o]) {
        StatusOr<Tensor> v = FetchValue(t);
        if (!v.ok()) return v.status();
        MPIFLOW_RETURN_IF_ERROR((*ready)(f, v.value()));
      }
    }
  }
  return Status::OK();
}

Status Session::RunSequential(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                              RunStats* timing, const FetchReady* ready) {
  std::vector<int> uses = plan.uses;
  for (size_t i = 0; i < plan.steps.size(); ++i) {
    MPIFLOW_RETURN_IF_ERROR(RunNode(plan, static_cast<int>(i), values, step, timing, ready));
    for (int s : plan.steps[i].in_slots) {
      if (--uses[s] == 0 && !plan.keep[s]) values[s] = Tensor();
    }
  }
  return Status::OK();
}

Status Session::RunParallel(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                            RunStats* timing, const FetchReady* ready) {
  const int num_steps = static_cast<int>(plan.steps.size());
  if (num_steps == 0) return Status::OK();
  std::unique_ptr<std::atomic<int>[]> pending(new std::atomic<int>[num_steps]);
  std::unique_ptr<std::atomic<int>[]> uses(new std::atomic<int>[plan.num_slots]);
  for (int i = 0; i < num_steps; ++i) pending[i].store(plan.steps[i].num_preds);
  for (int i = 0; i < plan.num_slots; ++i) uses[i].store(plan.uses[i]);
  std::atomic<int> remaining(num_steps);
  std::atomic<bool> failed(false);
  std::mutex mu;
  std::condition_variable done;
  Status first_error;

  std::function<void(int)> run = [&](int i) {
    if (!failed.load()) {
      Status s = RunNode(plan, i, values, step, timing, ready);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (first_error.ok()) first_error = s;
        failed.store(true);
      }
    }
    for (int s : plan.steps[i].in_slots) {
      if (uses[s].fetch_sub(1) == 1 && !plan.keep[s]) values[s] = Tensor();
    }
    int inline_next = -1;
    for (int succ : plan.steps[i].successors) {
      if (pending[succ].fetch_sub(1) == 1) {
        if (inline_next < 0) {
          inline_next = succ;  // keep one on this thread: fewer hand-offs
        } else {
          inter_op_pool_->Schedule([&run, succ] { run(succ); });
        }
      }
    }
    if (remaining.fetch_sub(1) == 1) {
      std::lock_guard<std::mutex> lock(mu);
      done.notify_all();
    }
    if (inline_next >= 0) run(inline_next);
  };
  for (int i = 0; i < num_steps; ++i) {
    if (plan.steps[i].num_preds == 0) inter_op_pool_->Schedule([&run, i] { run(i); });
  }
  std::unique_lock<std::mutex> lock(mu);
  done.wait(lock, [&] { return remaining.load() == 0; });
  return first_error;
}

Status Session::Run(const std::vector<Feed>& feeds, const std::vector<Output>& fetches,
                    const std::vector<Node*>& targets, std::vector<Tensor>* outputs,
                    RunStats* stats, const FetchReady& ready) {
  for (size_t i = 0; i < feeds.size(); ++i) {
    const Output& o = feeds[i].first;
    const Tensor& t = feeds[i].second;
    MPIFLOW_RETURN_IF_ERROR(CheckInGraph(graph_, o.node, "feed", i));
    if (!t.allocated()) return InvalidArgument("the value fed to '", o.name(), "' is empty");
    if (t.dtype() != o.dtype()) {
      return InvalidArgument("feed '", o.name(), "' expects dtype ", DTypeName(o.dtype()),
                             " but was given ", DTypeName(t.dtype()));
    }
    if (!t.shape().IsCompatibleWith(o.shape())) {
      return InvalidArgument("feed '", o.name(), "' expects shape ", o.shape().ToString(),
                             " but was given ", t.shape().ToString());
    }
  }
  bool hit = false;
  StatusOr<std::shared_ptr<Plan>> plan_or = GetPlan(feeds, fetches, targets, &hit);
  if (!plan_or.ok()) return plan_or.status();
  const Plan& plan = **plan_or;
  std::vector<Tensor> values(plan.num_slots);
  for (size_t i = 0; i < feeds.size(); ++i) values[plan.feed_slots[i]] = feeds[i].second;
  const int64_t step = run_counter_.fetch_add(1);
  RunStats* timing = stats && stats->collect_node_times ? stats : nullptr;
  if (timing) timing->node_times.clear();
  const FetchReady* tell = ready ? &ready : nullptr;
  MPIFLOW_RETURN_IF_ERROR(plan.partitioned ? RunPartitioned(plan, values, step, timing, tell)
                          : inter_op_pool_ ? RunParallel(plan, values, step, timing, tell)
                                           : RunSequential(plan, values, step, timing, tell));
  for (size_t i = 0; tell && i < fetches.size(); ++i) {  // fed: no kernel computed it
    if (!plan.fetch_computed[i] && values[plan.fetch_slots[i]].allocated()) {
      StatusOr<Tensor> v = FetchValue(values[plan.fetch_slots[i]]);
      if (!v.ok()) return v.status();
      MPIFLOW_RETURN_IF_ERROR(ready(i, v.value()));
    }
  }
  if (stats) {
    stats->kernels_run = static_cast<int64_t>(plan.steps.size());
    stats->plan_cache_hit = hit;
  }
  if (outputs) {
    outputs->clear();
    for (size_t i = 0; i < fetches.size(); ++i) {
      Tensor t = values[plan.fetch_slots[i]];
      if (!t.allocated()) {
        return FailedPrecondition("fetch '", fetches[i].name(),
                                  "' has no value: it is an uninitialized variable");
      }
      StatusOr<Tensor> v = FetchValue(t);
      if (!v.ok()) return v.status();
      outputs->push_back(std::move(v).value());
    }
  }
  return Status::OK();
}

}  // namespace mpiflow
