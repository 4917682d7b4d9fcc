// Optimizer update ops (ApplyGradientDescent, ApplyMomentum, ApplyRMSProp, ApplyAdam, and the
// lazy sparse SparseApplyGradientDescent, SparseApplyMomentum, SparseApplyAdam) and LearningRate.
// Definition, shape fn, builder. The Optimizer classes that wire these into a graph are in
// src/autodiff/optimizer.cc.
#include <algorithm>
#include <cmath>

#include "mpiflow/enum_names.h"
#include "op_util.h"

namespace mpiflow {
namespace {

// Checks input 0 (var), its slots 1..num_slots (var's dtype and shape), lr (a scalar of var's
// dtype) and, with has_step, an int64 step; returns the index of the input after them.
StatusOr<int> CheckVarSlotsLr(InferenceContext& c, int num_slots, bool has_step) {
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 0, op_util::kFloatTypes));
  const Shape& var = c.input_shape(0);
  for (int i = 1; i <= num_slots; ++i) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, i));
    if (c.input_shape(i) != var) {
      return c.Error("slot ", i, " has shape ", c.input_shape(i).ToString(), ", the variable has ",
                     var.ToString());
    }
  }
  const int lr = num_slots + 1;
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, lr));
  if (c.input_shape(lr).rank() != 0) return c.Error("lr must be a scalar");
  if (!has_step) return lr + 1;
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, lr + 1, {DType::kInt64}));
  return lr + 2;
}

// Inputs: var and its slots (same dtype and shape as var), lr (scalar), [step], the gradient.
ShapeFn ApplyShape(int num_slots, bool has_step) {
  return [num_slots, has_step](InferenceContext& c) {
    StatusOr<int> grad = CheckVarSlotsLr(c, num_slots, has_step);
    if (!grad.ok()) return grad.status();
    const Shape& var = c.input_shape(0);
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, *grad));
    if (!c.input_shape(*grad).IsCompatibleWith(var)) {
      return c.Error("gradient shape ", c.input_shape(*grad).ToString(),
                     " does not match the variable's ", var.ToString());
    }
    return op_util::UnchangedShape(c);
  };
}

// Inputs: var and its slots, lr, [step], then values (n, row...) and indices (n) int32/int64.
ShapeFn SparseApplyShape(int num_slots, bool has_step) {
  return [num_slots, has_step](InferenceContext& c) {
    const Shape& var = c.input_shape(0);
    if (var.rank() < 1) return c.Error("the variable must have rows, got ", var.ToString());
    StatusOr<int> values = CheckVarSlotsLr(c, num_slots, has_step);
    if (!values.ok()) return values.status();
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, *values));
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, *values + 1, {DType::kInt32, DType::kInt64}));
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, *values + 1, 1));
    const Shape& vals = c.input_shape(*values);
    if (vals.rank() != var.rank()) {
      return c.Error("values ", vals.ToString(), " and variable ", var.ToString(),
                     " differ in rank");
    }
    return op_util::UnchangedShape(c);
  };
}

OpDef ApplyDef(const std::string& name, std::vector<std::string> inputs, ShapeFn fn) {
  OpDef d = op_util::Def(name, std::move(inputs), std::move(fn));
  d.outputs = {"var"};
  d.stateful = true;
  d.differentiable = false;
  return d;
}

}  // namespace

namespace {
constexpr EnumName<ops::LearningRateSchedule> kSchedules[] = {
    {ops::LearningRateSchedule::kConstant, "constant"},
    {ops::LearningRateSchedule::kStep, "step"},
    {ops::LearningRateSchedule::kCosine, "cosine"}};
}  // namespace

StatusOr<ops::LearningRateSchedule> ops::ParseLearningRateSchedule(const std::string& name) {
  return ParseEnum(kSchedules, "learning-rate schedule", name);
}

const char* ops::LearningRateScheduleName(LearningRateSchedule s) {
  return EnumToName(kSchedules, s);
}

Status ops::ValidateLearningRateOptions(const LearningRateOptions& o) {
  if (!(o.base > 0) || !std::isfinite(o.base)) {
    return InvalidArgument("learning rate must be positive, got ", o.base);
  }
  if (o.warmup_steps < 0) return InvalidArgument("warm-up steps must be >= 0");
  if (o.kind != LearningRateSchedule::kConstant && o.decay_steps <= 0) {
    return InvalidArgument("decay steps must be positive for the ",
                           LearningRateScheduleName(o.kind), " schedule");
  }
  return Status::OK();
}

double ops::LearningRateAt(const LearningRateOptions& o, int64_t step) {
  if (o.warmup_steps > 0 && step < o.warmup_steps) {
    return o.base * static_cast<double>(step + 1) / static_cast<double>(o.warmup_steps);
  }
  const int64_t t = step - o.warmup_steps;
  if (o.kind == LearningRateSchedule::kStep) {
    return o.base * std::pow(o.decay_rate, static_cast<double>(t / o.decay_steps));
  }
  if (o.kind == LearningRateSchedule::kCosine) {
    const double p =
        static_cast<double>(std::min(t, o.decay_steps)) / static_cast<double>(o.decay_steps);
    const double cosine = 0.5 * (1.0 + std::cos(3.141592653589793 * p));
    return o.base * ((1.0 - o.alpha) * cosine + o.alpha);
  }
  return o.base;
}

void RegisterTrainOps(OpRegistry& r) {
  r.Register(ApplyDef("ApplyGradientDescent", {"var", "lr", "grad"}, ApplyShape(0, false)));
  r.Register(ApplyDef("SparseApplyGradientDescent", {"var", "lr", "values", "indices"},
                      SparseApplyShape(0, false)));
  r.Register(ApplyDef("SparseApplyMomentum", {"var", "accum", "lr", "values", "indices"},
                      SparseApplyShape(1, false)));
  r.Register(ApplyDef("SparseApplyAdam", {"var", "m", "v", "lr", "step", "values", "indices"},
                      SparseApplyShape(2, true)));
  r.Register(ApplyDef("ApplyMomentum", {"var", "accum", "lr", "grad"}, ApplyShape(1, false)));
  r.Register(ApplyDef("ApplyRMSProp", {"var", "ms", "mom", "lr", "grad"}, ApplyShape(2, false)));
  r.Register(ApplyDef("ApplyAdam", {"var", "m", "v", "lr", "step", "grad"}, ApplyShape(2, true)));
  OpDef lr = op_util::Def("LearningRate", {"global_step"}, nullptr);
  lr.outputs = {"lr"};
  lr.differentiable = false;
  lr.shape_fn = [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 0, {DType::kInt64}));
    ops::LearningRateOptions o;
    DType dtype = DType::kInvalid;
    std::string kind;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("kind", &kind));
    StatusOr<ops::LearningRateSchedule> parsed = ops::ParseLearningRateSchedule(kind);
    if (!parsed.ok()) return c.Error(parsed.status().message());
    o.kind = *parsed;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("base", &o.base));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("warmup_steps", &o.warmup_steps));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("decay_steps", &o.decay_steps));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("decay_rate", &o.decay_rate));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("alpha", &o.alpha));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &dtype));
    Status s = ops::ValidateLearningRateOptions(o);
    if (!s.ok()) return c.Error(s.message());
    c.set_output(0, dtype, Shape{});
    return Status::OK();
  };
  r.Register(std::move(lr));
}

namespace ops {

Output ApplyGradientDescent(const Scope& s, Output var, Output lr, Output grad) {
  return s.AddOp("ApplyGradientDescent", {var, lr, grad});
}
Output SparseApplyGradientDescent(const Scope& s, Output var, Output lr, Output values,
                                  Output indices) {
  return s.AddOp("SparseApplyGradientDescent", {var, lr, values, indices});
}
Output SparseApplyMomentum(const Scope& s, Output var, Output accum, Output lr, Output values,
                           Output indices, double momentum, bool nesterov) {
  return s.AddOp("SparseApplyMomentum", {var, accum, lr, values, indices},
                 {{"momentum", momentum}, {"nesterov", nesterov}});
}
Output SparseApplyAdam(const Scope& s, Output var, Output m, Output v, Output lr, Output step,
                       Output values, Output indices, double beta1, double beta2, double epsilon) {
  return s.AddOp("SparseApplyAdam", {var, m, v, lr, step, values, indices},
                 {{"beta1", beta1}, {"beta2", beta2}, {"epsilon", epsilon}});
}
Output ApplyMomentum(const Scope& s, Output var, Output accum, Output lr, Output grad,
                     double momentum, bool nesterov) {
  return s.AddOp("ApplyMomentum", {var, accum, lr, grad},
                 {{"momentum", momentum}, {"nesterov", nesterov}});
}
Output ApplyRMSProp(const Scope& s, Output var, Output ms, Output mom, Output lr, Output grad,
                    double rho, double momentum, double epsilon) {
  return s.AddOp("ApplyRMSProp", {var, ms, mom, lr, grad},
                 {{"rho", rho}, {"momentum", momentum}, {"epsilon", epsilon}});
}
Output ApplyAdam(const Scope& s, Output var, Output m, Output v, Output lr, Output step,
                 Output grad, double beta1, double beta2, double epsilon) {
  return s.AddOp("ApplyAdam", {var, m, v, lr, step, grad},
                 {{"beta1", beta1}, {"beta2", beta2}, {"epsilon", epsilon}});
}
Output LearningRate(const Scope& s, Output global_step, const LearningRateOptions& o) {
  return s.AddOp("LearningRate", {global_step},
                 {{"kind", std::string(LearningRateScheduleName(o.kind))},
                  {"base", o.base},
                  {"warmup_steps", o.warmup_steps},
                  {"decay_steps", o.decay_steps},
                  {"decay_rate", o.decay_rate},
                  {"alpha", o.alpha},
                  {"dtype", DType::kFloat32}});
}

}  // namespace ops
}  // namespace mpiflow
