// AddGradients: reverse-mode differentiation over the graph, one node at a time in reverse id
// order (ids are a topological order of data edges). Not a tape: nothing here runs kernels.
#include "mpiflow/gradients.h"

#include <algorithm>
#include <map>
#include <set>

#include "mpiflow/ops.h"

namespace mpiflow {
namespace {

// Sums the gradient pieces reaching one output. All-sparse sums stay sparse.
Output SumPieces(const Scope& s, const std::vector<Output>& pieces) {
  if (pieces.size() == 1) return pieces[0];
  bool all_sparse = true;
  for (const Output& p : pieces) all_sparse &= p.node->op() == "IndexedSlices";
  if (all_sparse) {
    std::vector<Output> values, indices;
    bool mixed = false;  // int32 and int64 indices (a Gather's and an EmbeddingBag's): as int64
    for (const Output& p : pieces)
      mixed |= p.node->input(1).dtype() != pieces[0].node->input(1).dtype();
    for (const Output& p : pieces) {
      values.push_back(p.node->input(0));
      Output index = p.node->input(1);
      if (mixed && index.dtype() != DType::kInt64) index = ops::Cast(s, index, DType::kInt64);
      indices.push_back(index);
    }
    return ops::IndexedSlices(s, ops::Concat(s, values, 0), ops::Concat(s, indices, 0),
                              pieces[0].node->input(2));
  }
  return ops::AddN(s, pieces);
}

}  // namespace

Status AddGradients(const Scope& scope, const std::vector<Output>& ys,
                    const std::vector<Output>& xs, const std::vector<Output>& grad_ys,
                    std::vector<Output>* grads) {
  MPIFLOW_RETURN_IF_ERROR(scope.status());
  if (!grad_ys.empty() && grad_ys.size() != ys.size()) {
    return InvalidArgument("AddGradients: ", ys.size(), " ys but ", grad_ys.size(), " grad_ys");
  }
  for (const Output& o : ys) {
    if (!o.valid()) return InvalidArgument("AddGradients: a y is invalid");
    if (!IsFloating(o.dtype())) {
      return InvalidArgument("AddGradients: y '", o.name(), "' has non-float dtype ",
                             DTypeName(o.dtype()));
    }
  }
  for (const Output& o : xs) {
    if (!o.valid()) return InvalidArgument("AddGradients: an x is invalid");
  }
  const Graph& g = *scope.graph();
  const int n = g.num_nodes();

  // Nodes reachable forward from xs, and backward from ys, along data edges.
  std::vector<char> from_x(n, 0), to_y(n, 0);
  for (const Output& x : xs) from_x[x.node->id()] = 1;
  for (int id = 0; id < n; ++id) {
    for (const Output& in : g.node(id)->inputs()) {
      if (from_x[in.node->id()]) from_x[id] = 1;
    }
  }
  for (const Output& y : ys) to_y[y.node->id()] = 1;
  for (int id = n - 1; id >= 0; --id) {
    if (!to_y[id]) continue;
    for (const Output& in : g.node(id)->inputs()) to_y[in.node->id()] = 1;
  }

  const Scope s = scope.NewSubScope("gradients");
  std::map<Output, std::vector<Output>> pending;  // output -> gradient pieces
  for (size_t i = 0; i < ys.size(); ++i) {
    Output seed = grad_ys.empty() ? Output() : grad_ys[i];
    if (!seed.valid()) {
      // dy/dy = 1 in y's shape. A scalar's seed is a constant: it must not wait for y's value
      // (a pipeline's backward pass of one microbatch starts before the others' losses exist).
      const Scope at_y = s.ColocatedWith(ys[i].node);
      seed = ops::ScalarConst(at_y, 1.0, ys[i].dtype());
      if (ys[i].shape().rank() != 0) seed = ops::ReduceGrad(at_y, seed, ys[i], {}, false);
    }
    pending[ys[i]].push_back(seed);
  }
  std::set<Output> x_set(xs.begin(), xs.end());

  for (int id = n - 1; id >= 0; --id) {
    if (!from_x[id] || !to_y[id]) continue;
    Node* node = g.node(id);
    // A node's gradient ops (and the sums of the gradients reaching it) run where it runs.
    const Scope at = s.ColocatedWith(node);
    std::vector<Output> dy(node->num_outputs());
    bool any = false;
    for (int o = 0; o < node->num_outputs(); ++o) {
      auto it = pending.find(Output(node, o));
      if (it == pending.end()) continue;
      dy[o] = SumPieces(at, it->second);
      if (x_set.count(Output(node, o))) it->second = {dy[o]};  // keep the sum for the x
      any = true;
    }
    if (!any || !node->def().differentiable) continue;
    bool needs_input_grad = false;
    for (const Output& in : node->inputs()) {
      needs_input_grad |= from_x[in.node->id()] != 0;
    }
    if (!needs_input_grad) continue;  // an x itself with no x upstream
    if (!node->def().grad_fn) {
      return InvalidArgument("no gradient is defined for op ", node->op(), " (node '", node->name(),
                             "'), which lies on a path from the xs to the ys");
    }
    std::vector<Output> dx(node->num_inputs());
    MPIFLOW_RETURN_IF_ERROR(node->def().grad_fn(at, *node, dy, &dx));
    MPIFLOW_RETURN_IF_ERROR(
        s.status().WithContext("building the gradient of '" + node->name() + "'"));
    for (int i = 0; i < node->num_inputs(); ++i) {
      const Output& in = node->input(i);
      if (!dx[i].valid() || !from_x[in.node->id()]) continue;
      pending[in].push_back(dx[i]);
    }
  }

  grads->assign(xs.size(), Output());
  for (size_t j = 0; j < xs.size(); ++j) {
    auto it = pending.find(xs[j]);
    if (it != pending.end()) (*grads)[j] = SumPieces(s.ColocatedWith(xs[j].node), it->second);
  }
  return s.status();
}

}  // namespace mpiflow
