// Synchronous data parallelism: bucketing gradients into AllreduceStart/AllreduceWait ops, the
// start-up consistency check, and the per-step agreement. Not the training loop (trainer.cc).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "mpiflow/distributed.h"
#include "mpiflow/enum_names.h"
#include "mpiflow/ops.h"

namespace mpiflow {

namespace {
constexpr EnumName<SparseSync> kSparseSyncs[] = {{SparseSync::kAuto, "auto"},
                                                 {SparseSync::kAllgather, "allgather"},
                                                 {SparseSync::kDense, "dense"}};

// Whether gradient g goes by AllgatherRows (see SparseSync). Rows of no static size go dense.
bool Gathers(const Output& g, const GradientSyncOptions& o) {
  if (g.node->op() != "IndexedSlices" || o.sparse == SparseSync::kDense) return false;
  const Shape& values = g.node->input(0).shape();
  if (values.rank() < 1) return false;
  for (int d = 1; d < values.rank(); ++d) {
    if (values.dim(d) < 0) return false;
  }
  if (o.sparse == SparseSync::kAllgather || values.dim(0) < 0) return true;
  const int64_t rows = values.dim(0);
  const int64_t row = rows > 0 ? values.num_elements() / rows : 0;
  return static_cast<int64_t>(o.ranks) * rows * (row + 1) < g.shape().num_elements();
}
}  // namespace

StatusOr<SparseSync> ParseSparseSync(const std::string& name) {
  return ParseEnum(kSparseSyncs, "--sparse-sync", name);
}

const char* SparseSyncName(SparseSync s) { return EnumToName(kSparseSyncs, s); }

StatusOr<GradientSync> AddGradientSync(const Scope& scope, Output loss,
                                       const std::vector<Output>& gradients,
                                       const std::vector<Output>& variables,
                                       const GradientSyncOptions& o) {
  MPIFLOW_RETURN_IF_ERROR(scope.status());
  if (gradients.size() != variables.size()) {
    return InvalidArgument("AddGradientSync: ", gradients.size(), " gradients for ",
                           variables.size(), " variables");
  }
  if (o.bucket_bytes <= 0) {
    return InvalidArgument("the gradient bucket size must be positive, got ", o.bucket_bytes,
                           " bytes");
  }
  for (size_t i = 0; i < gradients.size(); ++i) {
    if (!gradients[i].valid()) {
      return InvalidArgument("AddGradientSync: variable '", variables[i].name(),
                             "' has no gradient (the loss does not depend on it)");
    }
    if (!IsFloating(gradients[i].dtype()) || gradients[i].dtype() == DType::kFloat16) {
      return InvalidArgument("AddGradientSync: the gradient of '", variables[i].name(), "' is ",
                             DTypeName(gradients[i].dtype()), "; buckets hold float32 or float64");
    }
  }
  const Scope s = scope.NewSubScope("gradient_sync");
  GradientSync sync;
  // The per-step scale is this rank's share of the step's examples; where the model sums over
  // replicas inside the step (ReplicaShare: batch_norm sync = true) it is that same node.
  Node* in_graph_share = scope.graph()->FindNode("replica_share");
  sync.scale = in_graph_share ? Output(in_graph_share)
                              : ops::Placeholder(s.WithOpName("scale"), DType::kFloat32, Shape{});
  sync.gradients.resize(gradients.size());

  // Production order: by the id of the node that produces each gradient. The sparse gradients
  // that go by allgather are left out of the buckets.
  std::vector<int> order;
  for (size_t i = 0; i < gradients.size(); ++i) {
    if (Gathers(gradients[i], o)) {
      sync.gathered.push_back(static_cast<int>(i));
    } else {
      order.push_back(static_cast<int>(i));
    }
  }
  auto produced_first = [&](int a, int b) {
    return gradients[a].node->id() < gradients[b].node->id();
  };
  std::stable_sort(order.begin(), order.end(), produced_first);
  std::stable_sort(sync.gathered.begin(), sync.gathered.end(), produced_first);
  std::vector<int> current;
  int64_t current_bytes = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    const int i = order[k];
    if (!current.empty() && gradients[i].dtype() != gradients[current[0]].dtype()) {
      sync.buckets.push_back(current);
      current.clear();
      current_bytes = 0;
    }
    current.push_back(i);
    current_bytes +=
        gradients[i].shape().num_elements() * static_cast<int64_t>(DTypeSize(gradients[i].dtype()));
    if (current_bytes >= o.bucket_bytes) {
      sync.buckets.push_back(current);
      current.clear();
      current_bytes = 0;
    }
  }
  if (!current.empty()) sync.buckets.push_back(current);

  // The step agreement (loss * examples, examples, stop, checkpoint) rides, unscaled, at the end
  // of the last bucket: no collective of its own. (In a bucket of its own when the last bucket
  // is float64.) Without a loss, no agreement.
  const bool agree = loss.valid();
  if (agree && (loss.dtype() != DType::kFloat32 || loss.shape().rank() != 0)) {
    return InvalidArgument("AddGradientSync: the loss must be a float32 scalar");
  }
  Output votes;
  const Scope as = s.NewSubScope("agreement");
  if (agree) {
    sync.examples = ops::Placeholder(as.WithOpName("examples"), DType::kFloat32, Shape{});
    sync.stop = ops::Placeholder(as.WithOpName("stop"), DType::kFloat32, Shape{});
    sync.checkpoint = ops::Placeholder(as.WithOpName("checkpoint"), DType::kFloat32, Shape{});
    votes = ops::Concat(as,
                        {ops::Reshape(as, ops::Mul(as, loss, sync.examples), {1}),
                         ops::Reshape(as, sync.examples, {1}), ops::Reshape(as, sync.stop, {1}),
                         ops::Reshape(as, sync.checkpoint, {1})},
                        0);
    if (sync.buckets.empty() || gradients[sync.buckets.back()[0]].dtype() != DType::kFloat32 ||
        o.compression != AllreduceCompression::kNone) {
      sync.buckets.emplace_back();  // an agreement-only bucket (exact, never compressed)
    }
  }
  // Collectives inside the step (CrossReplicaSum: batch_norm's synchronised statistics, forward
  // and backward) come before the first bucket: every rank then issues the same sequence, and
  // a bucket's allreduce never interleaves with them differently on two ranks. (It costs the
  // overlap of the gradient buckets with the backward pass above the first such layer.)
  // They run one after another in graph order (each node's inputs come before it, so the chain
  // makes no cycle): two independent ones, in a graph of one's own, cannot swap between ranks.
  std::vector<Node*> in_step;
  for (int id = 0; id < s.graph()->num_nodes(); ++id) {
    Node* n = s.graph()->node(id);
    if (n->op() != "CrossReplicaSum") continue;
    if (!in_step.empty()) MPIFLOW_RETURN_IF_ERROR(s.graph()->AddControlEdge(in_step.back(), n));
    in_step.push_back(n);
  }
  Node* previous_start = in_step.empty() ? nullptr : in_step.back();  // the chain's end
  for (size_t b = 0; b < sync.buckets.size(); ++b) {
    const std::vector<int>& bucket = sync.buckets[b];
    const bool last = agree && b + 1 == sync.buckets.size();
    const std::string name = StrCat("bucket ", b, "/", sync.buckets.size());
    std::vector<Output> grads;
    for (int i : bucket) grads.push_back(gradients[i]);
    if (last) grads.push_back(votes);
    Output scale = sync.scale;
    if (grads[0].dtype() != DType::kFloat32) scale = ops::Cast(s, scale, grads[0].dtype());
    // Each start after the previous one: the same collective order on every rank, under any
    // executor.
    Scope bs = s.NewSubScope(StrCat("bucket_", b));
    Output packed =
        ops::AllreduceStart(previous_start ? bs.WithControlDependencies({previous_start}) : bs,
                            scale, grads, name, AllreduceAlgorithmName(o.algorithm), last ? 1 : 0,
                            bucket.empty() || grads[0].dtype() != DType::kFloat32
                                ? "none"
                                : AllreduceCompressionName(o.compression));
    MPIFLOW_RETURN_IF_ERROR(s.status());
    previous_start = packed.node;
    int64_t offset = 0;
    for (size_t k = 0; k < grads.size(); ++k) {
      if (k < bucket.size()) {
        const int i = bucket[k];
        sync.gradients[i] =
            ops::AllreduceWait(bs, packed, gradients[i], offset, name, variables[i].node->name());
      } else {
        sync.agreement = ops::AllreduceWait(as.WithOpName("agreed"), packed, votes, offset, name,
                                            /*variable=*/"");
      }
      offset = ops::AlignedBucketOffset(offset + grads[k].shape().num_elements(),
                                        DTypeSize(grads[k].dtype()));
    }
  }
  // The gathered sparse gradients, one after another after the last bucket's start: the same
  // collective order on every rank. Each becomes an IndexedSlices of every rank's scaled rows.
  for (size_t k = 0; k < sync.gathered.size(); ++k) {
    const int i = sync.gathered[k];
    const Node& slices = *gradients[i].node;
    Scope gs = s.NewSubScope(StrCat("gather_", k));
    Output scale = sync.scale;
    if (gradients[i].dtype() != DType::kFloat32) scale = ops::Cast(gs, scale, gradients[i].dtype());
    ops::GatheredRows rows =
        ops::AllgatherRows(previous_start ? gs.WithControlDependencies({previous_start}) : gs,
                           slices.input(0), slices.input(1), scale, variables[i].node->name());
    MPIFLOW_RETURN_IF_ERROR(s.status());
    previous_start = rows.values.node;
    sync.gradients[i] = ops::IndexedSlices(gs, rows.values, rows.indices, slices.input(2));
  }
  MPIFLOW_RETURN_IF_ERROR(s.status());
  return sync;
}

namespace {

uint64_t Hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string Describe(const Node& n) {
  std::string d = StrCat("'", n.name(), "' = ", n.op(), "(");
  for (int i = 0; i < n.num_inputs(); ++i) d += StrCat(i ? ", " : "", n.input(i).name());
  d += ")";
  for (const auto& [k, v] : n.attrs()) d += StrCat(" ", k, "=", EncodeAttr(v));
  if (!n.device().empty()) d += " on " + n.device();
  return d;
}

// Every rank's int64 values (k per rank), rank-major.
StatusOr<std::vector<int64_t>> AllgatherInts(Communicator* comm, const std::vector<int64_t>& v) {
  Tensor in = Tensor::FromVector<int64_t>(Shape{static_cast<int64_t>(v.size())}, v);
  Tensor out(DType::kInt64, Shape{static_cast<int64_t>(v.size()) * comm->size()});
  MPIFLOW_RETURN_IF_ERROR(comm->Allgather(in, out)->Wait());
  return out.ToVector<int64_t>();
}

// Every rank's string.
StatusOr<std::vector<std::string>> AllgatherStrings(Communicator* comm, const std::string& s) {
  StatusOr<std::vector<int64_t>> lens = AllgatherInts(comm, {static_cast<int64_t>(s.size())});
  if (!lens.ok()) return lens.status();
  const int64_t max_len = *std::max_element(lens->begin(), lens->end());
  const int64_t words = (max_len + 3) / 4;
  Tensor in(DType::kInt32, Shape{words});
  in.FillZero();
  if (!s.empty()) std::memcpy(in.raw(), s.data(), s.size());
  Tensor out(DType::kInt32, Shape{words * comm->size()});
  MPIFLOW_RETURN_IF_ERROR(comm->Allgather(in, out)->Wait());
  std::vector<std::string> all;
  for (int r = 0; r < comm->size(); ++r) {
    all.emplace_back(reinterpret_cast<const char*>(out.data<int32_t>() + r * words), (*lens)[r]);
  }
  return all;
}

// "rank 0: X; ranks 1, 3: Y" (at most 4 groups shown).
std::string Groups(const std::vector<std::string>& values) {
  std::map<std::string, std::vector<int>> by_value;
  std::vector<std::string> first_seen;
  for (size_t r = 0; r < values.size(); ++r) {
    if (!by_value.count(values[r])) first_seen.push_back(values[r]);
    by_value[values[r]].push_back(static_cast<int>(r));
  }
  std::string out;
  for (size_t g = 0; g < first_seen.size() && g < 4; ++g) {
    const std::vector<int>& ranks = by_value[first_seen[g]];
    std::string list;
    for (size_t i = 0; i < ranks.size() && i < 8; ++i) list += StrCat(i ? ", " : "", ranks[i]);
    if (ranks.size() > 8) list += ", ...";
    out += StrCat(g ? "; " : "", ranks.size() > 1 ? "ranks " : "rank ", list, ": ",
                  first_seen[g].empty() ? "(nothing)" : first_seen[g]);
  }
  return out;
}

Status GraphDifference(Communicator* comm, const Graph& g) {
  const int64_t n = g.num_nodes();
  StatusOr<std::vector<int64_t>> counts = AllgatherInts(comm, {n});
  if (!counts.ok()) return counts.status();
  const int64_t common = *std::min_element(counts->begin(), counts->end());
  std::vector<int64_t> hashes(common);
  for (int64_t i = 0; i < common; ++i) {
    hashes[i] = static_cast<int64_t>(Hash(Describe(*g.node(static_cast<int>(i)))));
  }
  StatusOr<std::vector<int64_t>> all = AllgatherInts(comm, hashes);
  if (!all.ok()) return all.status();
  int64_t first = common;  // the first node index where some rank differs
  for (int64_t i = 0; i < common && first == common; ++i) {
    for (int r = 1; r < comm->size(); ++r) {
      if ((*all)[r * common + i] != (*all)[i]) {
        first = i;
        break;
      }
    }
  }
  const std::string mine = first < n ? Describe(*g.node(static_cast<int>(first))) : "";
  StatusOr<std::vector<std::string>> descs = AllgatherStrings(comm, mine);
  if (!descs.ok()) return descs.status();
  std::vector<std::string> count_text;
  for (int64_t c : *counts) count_text.push_back(StrCat(c, " nodes"));
  return Status(Code::kAborted,
                StrCat("the ranks built different graphs (", Groups(count_text),
                       "); the first difference is node #", first, ": ", Groups(*descs),
                       ". Every rank must run the same model and options: check the command "
                       "line and job file each rank was given"));
}

}  // namespace

Status CheckSameOnAllRanks(Communicator* comm, const Graph& graph,
                           const std::vector<std::pair<std::string, std::string>>& options) {
  if (comm->size() == 1) return Status::OK();
  std::vector<int64_t> hashes = {static_cast<int64_t>(graph.Fingerprint())};
  for (const auto& [k, v] : options) hashes.push_back(static_cast<int64_t>(Hash(k + "=" + v)));
  StatusOr<std::vector<int64_t>> sizes = AllgatherInts(comm, {static_cast<int64_t>(hashes.size())});
  if (!sizes.ok()) return sizes.status();
  for (int r = 1; r < comm->size(); ++r) {
    if ((*sizes)[r] != (*sizes)[0]) {
      std::vector<std::string> text;
      for (int64_t c : *sizes) text.push_back(StrCat(c, " checked options"));
      return Status(Code::kAborted, StrCat("the ranks run different mpiflow builds (", Groups(text),
                                           "): launch the same binary on every rank"));
    }
  }
  const int64_t k = static_cast<int64_t>(hashes.size());
  StatusOr<std::vector<int64_t>> all = AllgatherInts(comm, hashes);
  if (!all.ok()) return all.status();
  // Options first: a different option usually explains a different graph.
  for (int64_t i = 1; i <= k; ++i) {
    const int64_t item = i % k;  // 1..k-1, then 0 (the graph)
    bool same = true;
    for (int r = 1; r < comm->size(); ++r) same = same && (*all)[r * k + item] == (*all)[item];
    if (same) continue;
    if (item == 0) return GraphDifference(comm, graph);
    const auto& [name, value] = options[item - 1];
    StatusOr<std::vector<std::string>> values = AllgatherStrings(comm, value);
    if (!values.ok()) return values.status();
    return Status(
        Code::kAborted,
        StrCat("the ranks were given different values of option '", name, "' (", Groups(*values),
               "). Every rank must run the same job: check the command line and job "
               "file each rank was given"));
  }
  return Status::OK();
}

}  // namespace mpiflow
