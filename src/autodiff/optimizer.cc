// ApplyGradients and Minimize: wiring the Apply* ops, their slot variables, the learning-rate
// schedule and the global step into the graph. The update arithmetic is in the Apply* kernels.
#include "mpiflow/optimizer.h"

#include <algorithm>

#include "mpiflow/enum_names.h"
#include "mpiflow/gradients.h"

namespace mpiflow {

namespace {
constexpr EnumName<OptimizerKind> kOptimizers[] = {{OptimizerKind::kSgd, "sgd"},
                                                   {OptimizerKind::kMomentum, "momentum"},
                                                   {OptimizerKind::kRmsprop, "rmsprop"},
                                                   {OptimizerKind::kAdam, "adam"}};
}  // namespace

StatusOr<OptimizerKind> ParseOptimizer(const std::string& name) {
  return ParseEnum(kOptimizers, "optimizer", name);
}

const char* OptimizerName(OptimizerKind kind) { return EnumToName(kOptimizers, kind); }

Status ValidateOptimizerOptions(const OptimizerOptions& o) {
  if (o.momentum < 0 || o.momentum >= 1) return InvalidArgument("momentum must be in [0, 1)");
  if (o.beta1 < 0 || o.beta1 >= 1 || o.beta2 < 0 || o.beta2 >= 1) {
    return InvalidArgument("adam betas must be in [0, 1)");
  }
  if (!(o.epsilon > 0)) return InvalidArgument("epsilon must be positive");
  return ops::ValidateLearningRateOptions(o.lr);
}

namespace {

bool IsUpdateOp(const std::string& op) {
  return op == "Assign" || op == "AssignAdd" || op == "AssignSub" || op.rfind("Apply", 0) == 0 ||
         op.rfind("SparseApply", 0) == 0;
}

// Nodes a training step runs before its updates: the ancestors of the gradients (data and
// control edges). Indexed by node id.
std::vector<char> StepNodes(const Graph& g, const std::vector<Output>& gradients) {
  std::vector<char> in_step(g.num_nodes(), 0);
  std::vector<const Node*> stack;
  for (const Output& grad : gradients) {
    if (grad.valid()) stack.push_back(grad.node);
  }
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (in_step[n->id()]) continue;
    in_step[n->id()] = 1;
    for (const Output& in : n->inputs()) stack.push_back(in.node);
    for (const Node* c : n->control_inputs()) stack.push_back(c);
  }
  return in_step;
}

// The nodes of the step that read the variable's value: consumers that the step runs anyway,
// except updates and the ops that only look at its shape. Ordering an update after a consumer
// the step would not otherwise run would make the step run it (a gradient nobody asked for).
std::vector<Node*> Readers(const Graph& g, const Node* var, const std::vector<char>& in_step) {
  std::vector<Node*> out;
  for (Node* c : g.Consumers(var)) {
    if (!in_step[c->id()] || IsUpdateOp(c->op()) || c->op() == "IndexedSlices" ||
        c->op() == "SumToShapeOf") {
      continue;
    }
    out.push_back(c);
  }
  return out;
}

Output Slot(const Scope& scope, const Output& var, const std::string& name) {
  const Scope s = scope.ColocatedWith(var.node);
  Output zeros = ops::Zeros(s.NewSubScope(var.node->name() + "/" + name), var.shape(), var.dtype());
  return ops::Variable(s.WithAbsoluteOpName(var.node->name() + "/" + name), zeros, false);
}

}  // namespace

StatusOr<TrainOp> ApplyGradients(const Scope& scope, const std::vector<Output>& gradients,
                                 const std::vector<Output>& variables,
                                 const OptimizerOptions& opts) {
  MPIFLOW_RETURN_IF_ERROR(ValidateOptimizerOptions(opts));
  if (gradients.size() != variables.size()) {
    return InvalidArgument("ApplyGradients: ", gradients.size(), " gradients for ",
                           variables.size(), " variables");
  }
  const Scope s = scope.NewSubScope("optimizer");
  TrainOp t;
  t.global_step =
      ops::Variable(scope.WithOpName("global_step"), ops::Zeros(s, Shape{}, DType::kInt64), false);
  t.learning_rate = ops::LearningRate(s.WithOpName("learning_rate"), t.global_step, opts.lr);
  std::vector<Node*> updates;
  const std::vector<char> in_step = StepNodes(*s.graph(), gradients);
  for (size_t i = 0; i < variables.size(); ++i) {
    const Output& var = variables[i];
    const Output& grad = gradients[i];
    if (!var.valid() || var.node->op() != "Variable") {
      return InvalidArgument("ApplyGradients: item ", i, " is not a Variable");
    }
    if (!grad.valid()) {
      return InvalidArgument("ApplyGradients: variable '", var.node->name(),
                             "' has no gradient (the loss does not depend on it)");
    }
    const Scope vs = s.NewSubScope(var.node->name())
                         .WithControlDependencies(Readers(*s.graph(), var.node, in_step));
    Output lr = t.learning_rate;
    if (var.dtype() != DType::kFloat32) lr = ops::Cast(vs, lr, var.dtype());
    Output update;
    const bool sparse = grad.node->op() == "IndexedSlices";
    if (opts.kind == OptimizerKind::kSgd) {
      update = sparse ? ops::SparseApplyGradientDescent(vs, var, lr, grad.node->input(0),
                                                        grad.node->input(1))
                      : ops::ApplyGradientDescent(vs, var, lr, grad);
    } else if (opts.kind == OptimizerKind::kMomentum) {
      update =
          sparse && opts.lazy_sparse
              ? ops::SparseApplyMomentum(vs, var, Slot(s, var, "momentum"), lr, grad.node->input(0),
                                         grad.node->input(1), opts.momentum, opts.nesterov)
              : ops::ApplyMomentum(vs, var, Slot(s, var, "momentum"), lr, grad, opts.momentum,
                                   opts.nesterov);
    } else if (opts.kind == OptimizerKind::kRmsprop) {
      update = ops::ApplyRMSProp(vs, var, Slot(s, var, "rms"), Slot(s, var, "rms_momentum"), lr,
                                 grad, opts.rho, opts.rmsprop_momentum, opts.epsilon);
    } else if (sparse && opts.lazy_sparse) {
      update = ops::SparseApplyAdam(vs, var, Slot(s, var, "adam_m"), Slot(s, var, "adam_v"), lr,
                                    t.global_step, grad.node->input(0), grad.node->input(1),
                                    opts.beta1, opts.beta2, opts.epsilon);
    } else {
      update = ops::ApplyAdam(vs, var, Slot(s, var, "adam_m"), Slot(s, var, "adam_v"), lr,
                              t.global_step, grad, opts.beta1, opts.beta2, opts.epsilon);
    }
    if (!update.valid()) break;
    updates.push_back(update.node);
  }
  MPIFLOW_RETURN_IF_ERROR(s.status());
  Output one = ops::Const(s, Tensor::Scalar<int64_t>(1));
  Output incr = ops::AssignAdd(s.WithControlDependencies(updates).WithOpName("increment_step"),
                               t.global_step, one);
  MPIFLOW_RETURN_IF_ERROR(s.status());
  t.train = incr.node;
  t.variables = variables;
  t.gradients = gradients;
  t.updates = updates;
  return t;
}

StatusOr<TrainOp> Minimize(const Scope& s, Output loss, const OptimizerOptions& opts,
                           std::vector<Output> vars) {
  MPIFLOW_RETURN_IF_ERROR(s.status());
  if (vars.empty()) {
    for (const VariableInfo& v : s.graph()->variables()) {
      if (v.trainable) vars.push_back(Output(v.variable));
    }
  }
  std::vector<Output> grads;
  MPIFLOW_RETURN_IF_ERROR(AddGradients(s, {loss}, vars, {}, &grads));
  return ApplyGradients(s, grads, vars, opts);
}

}  // namespace mpiflow
