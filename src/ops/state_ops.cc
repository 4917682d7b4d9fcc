// State and initializer ops: Variable, Assign/AssignAdd/AssignSub, RandomUniform,
// TruncatedNormal (and the GlorotUniform builder). Definition, shape fn, builder.
// Variable values live in the Session's VariableStore; kernels update them in place.
#include <cmath>

#include "op_util.h"

namespace mpiflow {
namespace {

using op_util::Def;

Status AssignShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  if (!c.input_shape(0).IsCompatibleWith(c.input_shape(1))) {
    return c.Error("value shape ", c.input_shape(1).ToString(), " does not match the variable's ",
                   c.input_shape(0).ToString());
  }
  return op_util::UnchangedShape(c);
}

Status RandomShape(InferenceContext& c) {
  DType dtype = DType::kInvalid;
  Shape shape;
  int64_t seed = 0;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &dtype));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("shape", &shape));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("seed", &seed));
  if (dtype != DType::kFloat32 && dtype != DType::kFloat64) {
    return c.Error("dtype must be float32 or float64, got ", DTypeName(dtype));
  }
  if (!shape.IsFullyDefined()) return c.Error("shape ", shape.ToString(), " must be known");
  c.set_output(0, dtype, shape);
  return Status::OK();
}

}  // namespace

void RegisterStateOps(OpRegistry& r) {
  {
    OpDef d = Def("Variable", {}, [](InferenceContext& c) {
      DType dtype = DType::kInvalid;
      Shape shape;
      MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &dtype));
      MPIFLOW_RETURN_IF_ERROR(c.GetAttr("shape", &shape));
      if (!shape.IsFullyDefined()) {
        return c.Error("a variable's shape must be fully known, got ", shape.ToString());
      }
      c.set_output(0, dtype, shape);
      return Status::OK();
    });
    d.stateful = true;
    r.Register(std::move(d));
  }
  for (const char* name : {"Assign", "AssignAdd", "AssignSub"}) {
    OpDef d = Def(name, {"var", "value"}, AssignShape);
    d.stateful = true;
    d.differentiable = false;
    d.reads_uninitialized_input0 = std::string(name) == "Assign";
    r.Register(std::move(d));
  }
  r.Register(Def("RandomUniform", {}, RandomShape));
  r.Register(Def("TruncatedNormal", {}, RandomShape));
}

namespace ops {

Output Variable(const Scope& s, Output initial, bool trainable) {
  if (!s.ok()) return {};
  if (!initial.valid()) {
    s.UpdateStatus(InvalidArgument("Variable: the initial value is invalid"));
    return {};
  }
  if (!initial.shape().IsFullyDefined()) {
    s.UpdateStatus(InvalidArgument("Variable: the initial value's shape ",
                                   initial.shape().ToString(), " must be fully known"));
    return {};
  }
  Node* var =
      s.AddOp("Variable", {}, {{"dtype", initial.dtype()}, {"shape", initial.shape()}}, "Variable");
  if (!var) return {};
  Node* init = s.WithAbsoluteOpName(s.graph()->UniqueName(var->name() + "/init"))
                   .AddOp("Assign", {Output(var), initial});
  if (!init) return {};
  s.graph()->AddVariable({var, init, trainable});
  return Output(var);
}

Output Assign(const Scope& s, Output var, Output value) { return s.AddOp("Assign", {var, value}); }
Output AssignAdd(const Scope& s, Output var, Output value) {
  return s.AddOp("AssignAdd", {var, value});
}
Output AssignSub(const Scope& s, Output var, Output value) {
  return s.AddOp("AssignSub", {var, value});
}

Node* InitOp(const Scope& s) {
  std::vector<Node*> inits;
  for (const VariableInfo& v : s.graph()->variables()) inits.push_back(v.initializer);
  return s.WithControlDependencies(inits).AddOp("NoOp", {}, {}, "init");
}

Output RandomUniform(const Scope& s, const Shape& shape, double minval, double maxval, int64_t seed,
                     DType dtype) {
  return s.AddOp(
      "RandomUniform", {},
      {{"shape", shape}, {"dtype", dtype}, {"seed", seed}, {"a", minval}, {"b", maxval}});
}

Output TruncatedNormal(const Scope& s, const Shape& shape, double mean, double stddev, int64_t seed,
                       DType dtype) {
  return s.AddOp("TruncatedNormal", {},
                 {{"shape", shape}, {"dtype", dtype}, {"seed", seed}, {"a", mean}, {"b", stddev}});
}

Output GlorotUniform(const Scope& s, const Shape& shape, int64_t seed, DType dtype) {
  if (shape.rank() < 1 || !shape.IsFullyDefined()) {
    s.UpdateStatus(InvalidArgument("GlorotUniform: shape ", shape.ToString(),
                                   " must be known and of rank >= 1"));
    return {};
  }
  // Dense (in, out): fans are in and out. Conv (kh, kw, in, out): both times kh*kw.
  int64_t receptive = 1;
  for (int i = 0; i + 2 < shape.rank(); ++i) receptive *= shape.dim(i);
  const int64_t fan_in = shape.rank() >= 2 ? shape.dim(shape.rank() - 2) * receptive : shape.dim(0);
  const int64_t fan_out = shape.dim(shape.rank() - 1) * receptive;
  const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
  return RandomUniform(s, shape, -limit, limit, seed, dtype);
}

}  // namespace ops
}  // namespace mpiflow
