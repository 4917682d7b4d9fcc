// Symbolic differentiation: extends the graph with the ops that compute gradients.
// Not numerical differentiation, and not execution: run the returned Outputs in a Session.
#pragma once

#include <vector>

#include "mpiflow/scope.h"

namespace mpiflow {

// Adds ops computing d(sum_i <ys[i], grad_ys[i]>)/d(xs[j]) into grads[j], from the gradient
// functions registered with each op. grad_ys may be empty (ones). Gradients reaching one output
// from several consumers are summed; nodes off every path from xs to ys get no gradient ops.
// grads[j] is invalid when ys do not depend on xs[j]. A gradient that only reaches xs[j]
// through Gather is an IndexedSlices node whose (values, indices) inputs optimizers apply sparsely.
Status AddGradients(const Scope& scope, const std::vector<Output>& ys,
                    const std::vector<Output>& xs, const std::vector<Output>& grad_ys,
                    std::vector<Output>* grads);

}  // namespace mpiflow
