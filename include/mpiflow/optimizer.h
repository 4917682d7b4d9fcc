// Optimizers as graph ops: ApplyGradients adds one update op per variable (state in slot
// variables), a learning-rate schedule on the global step, and the step increment.
// Not a training loop (trainer.h) and not gradient synchronisation (that sits between
// AddGradients and ApplyGradients in the distributed strategies).
#pragma once

#include <string>
#include <vector>

#include "mpiflow/graph.h"
#include "mpiflow/ops.h"

namespace mpiflow {

enum class OptimizerKind { kSgd, kMomentum, kRmsprop, kAdam };
StatusOr<OptimizerKind> ParseOptimizer(const std::string& name);  // sgd, momentum, rmsprop, adam
const char* OptimizerName(OptimizerKind kind);

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kSgd;
  double momentum = 0.9;  // momentum; rmsprop's momentum term is rmsprop_momentum
  bool nesterov = false;
  double rho = 0.9;  // rmsprop decay
  double rmsprop_momentum = 0.0;
  double epsilon = 1e-7;
  double beta1 = 0.9, beta2 = 0.999;
  // A sparse gradient (an IndexedSlices: rows of a Gather) updates only its rows and their
  // slots, "lazily" (SGD, momentum, Adam: the rows a step does not touch keep their momentum
  // and moments, as PyTorch's SparseAdam and TF's LazyAdam). false: momentum and Adam densify
  // it (every row's slots decay each step: the dense optimizer's result). RMSProp always
  // densifies; SGD's sparse update is exact either way.
  bool lazy_sparse = true;
  ops::LearningRateOptions lr;
};
Status ValidateOptimizerOptions(const OptimizerOptions& o);

struct TrainOp {
  Node* train = nullptr;  // run this target once per step
  Output global_step;     // int64 variable, incremented after every update
  Output learning_rate;   // float32 scalar at the current step
  std::vector<Output> variables;
  std::vector<Output> gradients;  // gradients[i] of variables[i]
  // updates[i] updates variables[i] (and its slots) at the current global step; `train` runs
  // them all and then increments the step. A parameter server runs only those of its shard.
  std::vector<Node*> updates;
};

// Adds the update ops for (gradients[i], variables[i]). A gradient that is an IndexedSlices
// node is applied to its rows only (SGD; momentum and Adam with lazy_sparse) or densified. Each
// update runs after every op of the step that reads its variable (the readers among the gradients'
// ancestors when ApplyGradients is called), so results do not depend on thread timing. Fetching
// some other reader of a variable in the same Run as the update is not ordered: fetch it in a
// Run of its own.
StatusOr<TrainOp> ApplyGradients(const Scope& s, const std::vector<Output>& gradients,
                                 const std::vector<Output>& variables,
                                 const OptimizerOptions& opts);

// AddGradients(loss, vars) then ApplyGradients. vars empty: every trainable variable.
StatusOr<TrainOp> Minimize(const Scope& s, Output loss, const OptimizerOptions& opts,
                           std::vector<Output> vars = {});

}  // namespace mpiflow
