// The placer, the partition of a run and the placement report (see placement.h for the rules).
// Not execution: the Session runs the transfers this file lists.
#include "mpiflow/placement.h"

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <numeric>
#include <sstream>

namespace mpiflow {
namespace {

bool IsUpdate(const std::string& op) {
  return op == "Assign" || op == "AssignAdd" || op == "AssignSub" || op.rfind("Apply", 0) == 0 ||
         op.rfind("SparseApply", 0) == 0;
}

// Parses a non-negative decimal integer that is all of `s`.
bool ParseIndex(const std::string& s, int* out) {
  if (s.empty() || s.size() > 9) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  *out = std::atoi(s.c_str());
  return true;
}

int MicrobatchOf(const Node* n) {
  const std::string& name = n->name();
  const std::string prefix = "microbatch_";
  if (name.rfind(prefix, 0) != 0) return -1;
  const size_t slash = name.find('/');
  int m = -1;
  if (slash == std::string::npos ||
      !ParseIndex(name.substr(prefix.size(), slash - prefix.size()), &m)) {
    return -1;
  }
  return m;
}

struct UnionFind {
  std::vector<int> parent;
  explicit UnionFind(int n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int Find(int x) {
    while (parent[x] != x) x = parent[x] = parent[parent[x]];
    return x;
  }
  void Union(int a, int b) {
    a = Find(a);
    b = Find(b);
    if (a != b) parent[std::max(a, b)] = std::min(a, b);  // the smaller id leads: deterministic
  }
};

}  // namespace

StatusOr<DeviceSpec> ParseDevice(const std::string& text) {
  DeviceSpec d;
  auto bad = [&](const std::string& why) {
    return InvalidArgument("device '", text, "' ", why,
                           ": write /rank:R/cpu:0 (or /rank:R, /cpu:0, /rank:R/gpu:G)");
  };
  if (text.empty() || text[0] != '/') return bad("does not start with '/'");
  std::stringstream parts(text.substr(1));
  std::string part;
  bool rank_seen = false, device_seen = false;
  while (std::getline(parts, part, '/')) {
    const size_t colon = part.find(':');
    if (colon == std::string::npos) return bad(StrCat("has a part '", part, "' without ':'"));
    const std::string key = part.substr(0, colon);
    int value = 0;
    if (!ParseIndex(part.substr(colon + 1), &value)) {
      return bad(StrCat("has a part '", part, "' whose index is not a number"));
    }
    if (key == "rank" && !rank_seen && !device_seen) {
      d.rank = value;
      rank_seen = true;
    } else if ((key == "cpu" || key == "gpu") && !device_seen) {
      d.type = key;
      d.index = value;
      device_seen = true;
    } else {
      return bad(StrCat("has an unknown or repeated part '", part, "'"));
    }
  }
  if (!rank_seen && !device_seen) return bad("names nothing");
  return d;
}

std::string DeviceString(int rank) { return StrCat("/rank:", rank, "/cpu:0"); }

int64_t OutputBytes(const Output& o, int64_t batch) {
  const Shape& s = o.shape();
  if (s.rank() < 0) return batch * DTypeSize(o.dtype());
  int64_t n = 1;
  for (int i = 0; i < s.rank(); ++i) n *= s.dim(i) < 0 ? batch : s.dim(i);
  return n * DTypeSize(o.dtype());
}

double NodeFlops(const Node& n, int64_t batch) {
  auto elements = [&](const Output& o) {
    return static_cast<double>(OutputBytes(o, batch)) / std::max<int64_t>(1, DTypeSize(o.dtype()));
  };
  if (n.num_outputs() == 0) return 0;
  const double out = elements(Output(const_cast<Node*>(&n), 0));
  if (n.op() == "MatMul") {
    const Shape& b = n.input(1).shape();
    const int64_t k = n.attr<bool>("transpose_b") ? b.dim(1) : b.dim(0);
    return 2.0 * out * static_cast<double>(std::max<int64_t>(1, k));
  }
  if (n.op() == "Conv2D") {
    const Shape& f = n.input(1).shape();  // (kh, kw, in, out)
    return 2.0 * out * static_cast<double>(f.dim(0) * f.dim(1) * f.dim(2));
  }
  return out;
}

uint64_t Placement::Fingerprint() const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over (ranks, rank of each node)
  auto mix = [&](int64_t v) {
    for (int b = 0; b < 8; ++b) {
      h ^= static_cast<uint64_t>(v >> (8 * b)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  mix(ranks_);
  for (int r : rank_of_) mix(r);
  return h;
}

int Placement::RankOf(const Node* n) const {
  if (n->id() < static_cast<int>(rank_of_.size())) return rank_of_[n->id()];
  // Added after placement: with the node it is colocated with, else with its inputs (an update
  // op's variable is its input 0).
  if (graph_ && n->colocation() != n->name()) {
    const Node* with = graph_->FindNode(n->colocation());
    if (with && with->id() < n->id()) return RankOf(with);
  }
  if (n->num_inputs() > 0) return RankOf(n->input(0).node);
  if (!n->control_inputs().empty()) return RankOf(n->control_inputs()[0]);
  return 0;
}

namespace {

// Rule 3: the forward nodes (roots' ancestors that depend on an input) without a hint, cut into
// `stages` contiguous runs of graph order. Returns their stage by node id (-1: not forward).
StatusOr<std::vector<int>> SplitStages(const Graph& g, const PlacementOptions& o,
                                       const std::vector<char>& hinted) {
  const int n = g.num_nodes();
  std::vector<char> to_root(n, 0), from_input(n, 0);
  for (const Output& r : o.roots) to_root[r.node->id()] = 1;
  for (int id = n - 1; id >= 0; --id) {
    if (!to_root[id]) continue;
    for (const Output& in : g.node(id)->inputs()) to_root[in.node->id()] = 1;
  }
  for (int id = 0; id < n; ++id) {
    const Node* node = g.node(id);
    if (node->op() == "Placeholder") from_input[id] = 1;
    for (const Output& in : node->inputs()) from_input[id] |= from_input[in.node->id()];
  }
  std::vector<int> order;  // forward nodes in graph order
  std::vector<int> pos(n, -1);
  for (int id = 0; id < n; ++id) {
    if (to_root[id] && from_input[id] && !hinted[id] && g.node(id)->op() != "Placeholder") {
      pos[id] = static_cast<int>(order.size());
      order.push_back(id);
    }
  }
  const int count = static_cast<int>(order.size()), stages = o.stages;
  if (count < stages) {
    return InvalidArgument("the model has ", count, " forward ops to place, fewer than the ",
                           stages, " pipeline stages asked for: use fewer stages");
  }
  // Seconds per op (forward + backward) and per cut (activations forward, gradients back).
  std::vector<double> prefix(count + 1, 0), cut(count + 1, 0);
  for (int i = 0; i < count; ++i) {
    prefix[i + 1] =
        prefix[i] + 3 * NodeFlops(*g.node(order[i]), o.cost.batch) / o.cost.flops_per_second;
  }
  std::vector<double> diff(count + 2, 0);
  for (int i = 0; i < count; ++i) {
    const Node* node = g.node(order[i]);
    for (int out = 0; out < node->num_outputs(); ++out) {
      int last = -1;
      for (const Node* c : g.Consumers(node)) {
        if (pos[c->id()] < 0) continue;
        for (const Output& in : c->inputs()) {
          if (in.node == node && in.index == out) last = std::max(last, pos[c->id()]);
        }
      }
      if (last <= i) continue;
      const double t = 2.0 * OutputBytes(Output(const_cast<Node*>(node), out), o.cost.batch) /
                       o.cost.bytes_per_second;
      diff[i + 1] += t;  // crosses every cut j in (i, last]
      diff[last + 1] -= t;
    }
  }
  for (int j = 1; j <= count; ++j) cut[j] = cut[j - 1] + diff[j];
  auto stage_time = [&](int i, int j) {  // positions [i, j)
    return prefix[j] - prefix[i] + (i > 0 ? cut[i] : 0) + (j < count ? cut[j] : 0);
  };
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<std::vector<double>> best(stages + 1, std::vector<double>(count + 1, inf));
  std::vector<std::vector<int>> from(stages + 1, std::vector<int>(count + 1, -1));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s) {
    for (int j = s; j <= count - (stages - s); ++j) {
      for (int i = s - 1; i < j; ++i) {
        const double t = std::max(best[s - 1][i], stage_time(i, j));
        if (t < best[s][j]) {
          best[s][j] = t;
          from[s][j] = i;
        }
      }
    }
  }
  std::vector<int> stage_of(n, -1);
  for (int s = stages, j = count; s >= 1; --s) {
    const int i = from[s][j];
    for (int k = i; k < j; ++k) stage_of[order[k]] = s - 1;
    j = i;
  }
  return stage_of;
}

}  // namespace

StatusOr<Placement> PlaceGraph(const Graph& g, const PlacementOptions& o) {
  const int n = g.num_nodes();
  if (o.ranks < 1) return InvalidArgument("placement needs at least one rank, got ", o.ranks);
  if (o.stages > o.ranks) {
    return InvalidArgument(o.stages, " pipeline stages need as many ranks; the job has ", o.ranks);
  }
  // Rule 1: colocation groups.
  UnionFind groups(n);
  for (int id = 0; id < n; ++id) {
    const Node* node = g.node(id);
    if (node->colocation() != node->name()) {
      const Node* with = g.FindNode(node->colocation());
      if (!with) {
        return InvalidArgument("node '", node->name(), "' is colocated with '", node->colocation(),
                               "', which is not in the graph");
      }
      groups.Union(id, with->id());
    }
    // An update writes its input 0 (its slots are colocated with that variable already; other
    // variables it reads, such as the global step, stay where they are).
    if (IsUpdate(node->op()) && node->num_inputs() > 0 && node->input(0).node->op() == "Variable") {
      groups.Union(id, node->input(0).node->id());
    }
  }
  // Rule 2: hints.
  std::vector<int> rank(n, -1);  // by group root
  std::vector<int> hinted_by(n, -1);
  for (int id = 0; id < n; ++id) {
    const Node* node = g.node(id);
    if (node->device().empty()) continue;
    StatusOr<DeviceSpec> d = ParseDevice(node->device());
    if (!d.ok()) return d.status().WithContext(StrCat("node '", node->name(), "'"));
    if (d->type == "gpu") {
      return InvalidArgument("node '", node->name(), "' asks for device '", node->device(),
                             "': this build places nodes on CPUs only");
    }
    if (d->rank >= o.ranks) {
      return InvalidArgument("node '", node->name(), "' asks for device '", node->device(),
                             "', but the job has ", o.ranks, " rank(s) (0..", o.ranks - 1, ")");
    }
    if (d->rank < 0) continue;  // "/cpu:0": any rank
    const int root = groups.Find(id);
    if (rank[root] >= 0 && rank[root] != d->rank) {
      return InvalidArgument("node '", node->name(), "' asks for rank ", d->rank, ", but node '",
                             g.node(hinted_by[root])->name(),
                             "', which it must run with, asks for ", rank[root]);
    }
    rank[root] = d->rank;
    hinted_by[root] = id;
  }
  // Rule 3: stages.
  if (o.stages > 1) {
    std::vector<char> hinted(n, 0);
    for (int id = 0; id < n; ++id) hinted[id] = rank[groups.Find(id)] >= 0;
    StatusOr<std::vector<int>> stage_of = SplitStages(g, o, hinted);
    if (!stage_of.ok()) return stage_of.status();
    for (int id = 0; id < n; ++id) {
      const int root = groups.Find(id);
      if ((*stage_of)[id] >= 0 && rank[root] < 0) rank[root] = (*stage_of)[id];
    }
  }
  // Rule 4: a variable with its first reader.
  for (int id = 0; id < n; ++id) {
    const Node* node = g.node(id);
    if (node->op() != "Variable" || rank[groups.Find(id)] >= 0) continue;
    for (const Node* c : g.Consumers(node)) {
      const int r = rank[groups.Find(c->id())];
      if (groups.Find(c->id()) != groups.Find(id) && r >= 0) {
        rank[groups.Find(id)] = r;
        break;
      }
    }
  }
  // Rule 5: with inputs, then with consumers, until nothing changes; then rank 0.
  for (bool changed = true; changed;) {
    changed = false;
    for (int id = 0; id < n; ++id) {
      const int root = groups.Find(id);
      if (rank[root] >= 0) continue;
      for (const Output& in : g.node(id)->inputs()) {
        const int r = rank[groups.Find(in.node->id())];
        if (r >= 0) {
          rank[root] = r;
          changed = true;
          break;
        }
      }
    }
    for (int id = n - 1; id >= 0; --id) {
      const int root = groups.Find(id);
      if (rank[root] >= 0) continue;
      for (const Node* c : g.Consumers(g.node(id))) {
        const int r = rank[groups.Find(c->id())];
        if (r >= 0) {
          rank[root] = r;
          changed = true;
          break;
        }
      }
    }
  }
  std::vector<int> rank_of(n);
  for (int id = 0; id < n; ++id) rank_of[id] = std::max(0, rank[groups.Find(id)]);
  return Placement(&g, o.ranks, std::move(rank_of));
}

std::vector<Transfer> PartitionRun(const Graph& g, const Placement& p,
                                   const std::vector<char>& needed, const std::set<Output>& fed,
                                   const std::vector<Output>& fetches) {
  // (node id, output or -1 for control, dst)
  std::set<std::tuple<int, int, int>> data, control;
  for (int id = 0; id < static_cast<int>(needed.size()); ++id) {
    if (!needed[id]) continue;
    const Node* node = g.node(id);
    const int dst = p.RankOf(node);
    for (const Output& in : node->inputs()) {
      if (fed.count(in) || p.RankOf(in.node) == dst) continue;
      data.insert({in.node->id(), in.index, dst});
    }
    for (const Node* c : node->control_inputs()) {
      if (p.RankOf(c) != dst) control.insert({c->id(), -1, dst});
    }
  }
  for (const Output& f : fetches) {
    if (fed.count(f)) continue;
    const int src = p.RankOf(f.node);
    for (int dst = 0; dst < p.ranks(); ++dst) {
      if (dst != src) data.insert({f.node->id(), f.index, dst});
    }
  }
  for (const auto& [id, out, dst] : data) control.erase({id, -1, dst});  // the data says it ran
  std::vector<std::tuple<int, int, int>> all(data.begin(), data.end());
  all.insert(all.end(), control.begin(), control.end());
  std::sort(all.begin(), all.end());  // control (-1) sorts first within a node
  std::vector<Transfer> out;
  for (const auto& [id, index, dst] : all) {
    Transfer t;
    t.from = Output(g.node(id), std::max(0, index));
    t.control = index < 0;
    t.src = p.RankOf(g.node(id));
    t.dst = dst;
    t.tag = static_cast<int>(out.size());
    t.microbatch = MicrobatchOf(g.node(id));
    out.push_back(t);
  }
  return out;
}

std::string DescribePlacement(const Graph& g, const Placement& p,
                              const std::vector<Output>& roots) {
  std::ostringstream os;
  std::vector<int> per_rank(p.ranks(), 0);
  for (int id = 0; id < g.num_nodes(); ++id) ++per_rank[p.RankOf(g.node(id))];
  os << "placement: " << g.num_nodes() << " nodes over " << p.ranks() << " rank(s):";
  for (int r = 0; r < p.ranks(); ++r) os << " " << DeviceString(r) << " " << per_rank[r];
  os << "\n";
  for (int id = 0; id < g.num_nodes(); ++id) {
    const Node* node = g.node(id);
    os << "  " << node->name() << " (" << node->op() << ") -> " << DeviceString(p.RankOf(node))
       << "\n";
  }
  // The forward pass of the roots: what crosses each pair of ranks, per example.
  std::vector<char> needed(g.num_nodes(), 0);
  std::vector<const Node*> stack;
  for (const Output& r : roots) stack.push_back(r.node);
  while (!stack.empty()) {
    const Node* node = stack.back();
    stack.pop_back();
    if (needed[node->id()]) continue;
    needed[node->id()] = 1;
    for (const Output& in : node->inputs()) stack.push_back(in.node);
  }
  std::map<std::pair<int, int>, std::vector<const Transfer*>> cuts;
  const std::vector<Transfer> transfers = PartitionRun(g, p, needed, {}, {});
  for (const Transfer& t : transfers) cuts[{t.src, t.dst}].push_back(&t);
  if (cuts.empty()) os << "cuts: none (the forward pass runs on one rank)\n";
  for (const auto& [pair, list] : cuts) {
    int64_t bytes = 0;
    std::string names;
    for (const Transfer* t : list) {
      if (t->control) continue;
      bytes += OutputBytes(t->from, 1);
      names += (names.empty() ? "" : ", ") + t->from.name() + " " + t->from.shape().ToString();
    }
    os << "cut rank " << pair.first << " -> rank " << pair.second << ": " << bytes
       << " bytes per example forward (the same back as gradients): " << names << "\n";
  }
  return os.str();
}

}  // namespace mpiflow
