// Math ops: broadcasting Add/Sub/Mul/Div, AddN, unary functions, Sum/Mean/Max, MatMul, and the
// helper ops their gradients use. Definition, shape fn, gradient, builder. Kernels: kernels/cpu.
#include "op_util.h"

namespace mpiflow {
namespace {

using op_util::Def;

using op_util::CheckDType;
using op_util::SumToShapeIfNeeded;

Status BinaryShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kNumberTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  Shape out;
  MPIFLOW_RETURN_IF_ERROR(op_util::BroadcastShapes(c, c.input_shape(0), c.input_shape(1), &out));
  c.set_output(0, c.input_dtype(0), out);
  return Status::OK();
}

Status FloatUnaryShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  return op_util::UnchangedShape(c);
}

// Two same-dtype float inputs of compatible shape; output shaped like input 0.
Status FloatPairShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  if (!c.input_shape(0).IsCompatibleWith(c.input_shape(1))) {
    return c.Error("input shapes ", c.input_shape(0).ToString(), " and ",
                   c.input_shape(1).ToString(), " differ");
  }
  return op_util::UnchangedShape(c);
}

using Grad = std::vector<Output>;

Status AddGrad(const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
  (*dx)[0] = SumToShapeIfNeeded(s, dy[0], n.input(0));
  (*dx)[1] = SumToShapeIfNeeded(s, dy[0], n.input(1));
  return Status::OK();
}
Status SubGrad(const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
  (*dx)[0] = SumToShapeIfNeeded(s, dy[0], n.input(0));
  (*dx)[1] = SumToShapeIfNeeded(s, ops::Neg(s, dy[0]), n.input(1));
  return Status::OK();
}
Status MulGrad(const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
  (*dx)[0] = SumToShapeIfNeeded(s, ops::Mul(s, dy[0], n.input(1)), n.input(0));
  (*dx)[1] = SumToShapeIfNeeded(s, ops::Mul(s, dy[0], n.input(0)), n.input(1));
  return Status::OK();
}
Status DivGrad(const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
  const Output a = n.input(0), b = n.input(1), y(const_cast<Node*>(&n), 0);
  (*dx)[0] = SumToShapeIfNeeded(s, ops::Div(s, dy[0], b), a);
  // d(a/b)/db = -(a/b)/b
  (*dx)[1] = SumToShapeIfNeeded(s, ops::Neg(s, ops::Div(s, ops::Mul(s, dy[0], y), b)), b);
  return Status::OK();
}

Output Self(const Node& n) { return Output(const_cast<Node*>(&n), 0); }

Status ReduceShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kNumberTypes));
  std::vector<int64_t> axes_attr, axes;
  bool keep_dims = false;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("axes", &axes_attr));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("keep_dims", &keep_dims));
  const Shape& in = c.input_shape(0);
  if (axes_attr.empty()) {  // no axes: reduce over all of them
    for (int i = 0; i < in.rank(); ++i) axes_attr.push_back(i);
  }
  MPIFLOW_RETURN_IF_ERROR(op_util::NormalizeAxes(c, axes_attr, in.rank(), &axes));
  std::vector<int64_t> dims;
  for (int i = 0; i < in.rank(); ++i) {
    const bool reduced = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!reduced) {
      dims.push_back(in.dim(i));
    } else if (keep_dims) {
      dims.push_back(1);
    }
  }
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status MatMulShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 2));
  bool ta = false, tb = false;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("transpose_a", &ta));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("transpose_b", &tb));
  const Shape &a = c.input_shape(0), &b = c.input_shape(1);
  const int64_t m = a.dim(ta ? 1 : 0), ka = a.dim(ta ? 0 : 1);
  const int64_t kb = b.dim(tb ? 1 : 0), n = b.dim(tb ? 0 : 1);
  if (ka >= 0 && kb >= 0 && ka != kb) {
    return c.Error("inner dimensions differ: a is ", a.ToString(), ta ? " (transposed)" : "",
                   ", b is ", b.ToString(), tb ? " (transposed)" : "", " (", ka, " vs ", kb, ")");
  }
  c.set_output(0, c.input_dtype(0), Shape{m, n});
  return Status::OK();
}

Status MatMulGrad(const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
  const bool ta = n.attr<bool>("transpose_a"), tb = n.attr<bool>("transpose_b");
  const Output a = n.input(0), b = n.input(1), g = dy[0];
  if (!ta && !tb) {
    (*dx)[0] = ops::MatMul(s, g, b, false, true);
    (*dx)[1] = ops::MatMul(s, a, g, true, false);
  } else if (ta && !tb) {
    (*dx)[0] = ops::MatMul(s, b, g, false, true);
    (*dx)[1] = ops::MatMul(s, a, g, false, false);
  } else if (!ta && tb) {
    (*dx)[0] = ops::MatMul(s, g, b, false, false);
    (*dx)[1] = ops::MatMul(s, g, a, true, false);
  } else {
    (*dx)[0] = ops::MatMul(s, b, g, true, true);
    (*dx)[1] = ops::MatMul(s, g, a, true, true);
  }
  return Status::OK();
}

Status ReduceGradShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  std::vector<int64_t> axes;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("axes", &axes));
  c.set_output(0, c.input_dtype(1), c.input_shape(1));
  return Status::OK();
}

void RegisterUnary(OpRegistry& r, const std::string& name, GradFn grad) {
  r.Register(Def(name, {"x"}, FloatUnaryShape, std::move(grad)));
}

}  // namespace

void RegisterMathOps(OpRegistry& r) {
  r.Register(Def("Add", {"a", "b"}, BinaryShape, AddGrad));
  r.Register(Def("Sub", {"a", "b"}, BinaryShape, SubGrad));
  r.Register(Def("Mul", {"a", "b"}, BinaryShape, MulGrad));
  r.Register(Def("Div", {"a", "b"}, BinaryShape, DivGrad));
  {
    OpDef d = Def(
        "AddN", {"inputs"},
        [](InferenceContext& c) {
          MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kNumberTypes));
          for (int i = 1; i < c.num_inputs(); ++i) {
            MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, i));
            if (!c.input_shape(i).IsCompatibleWith(c.input_shape(0))) {
              return c.Error("input ", i, " has shape ", c.input_shape(i).ToString(),
                             ", input 0 has ", c.input_shape(0).ToString());
            }
          }
          return op_util::UnchangedShape(c);
        },
        [](const Scope&, const Node& n, const Grad& dy, Grad* dx) {
          for (int i = 0; i < n.num_inputs(); ++i) (*dx)[i] = dy[0];
          return Status::OK();
        });
    d.variadic = true;
    d.min_inputs = 1;
    r.Register(std::move(d));
  }
  r.Register(Def(
      "Neg", {"x"},
      [](InferenceContext& c) {
        MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kNumberTypes));
        return op_util::UnchangedShape(c);
      },
      [](const Scope& s, const Node&, const Grad& dy, Grad* dx) {
        (*dx)[0] = ops::Neg(s, dy[0]);
        return Status::OK();
      }));
  RegisterUnary(r, "Exp", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    (*dx)[0] = ops::Mul(s, dy[0], Self(n));
    return Status::OK();
  });
  RegisterUnary(r, "Log", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    (*dx)[0] = ops::Div(s, dy[0], n.input(0));
    return Status::OK();
  });
  RegisterUnary(r, "Sqrt", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    const Output half = ops::ScalarConst(s, 0.5, n.input(0).dtype());
    (*dx)[0] = ops::Div(s, ops::Mul(s, dy[0], half), Self(n));
    return Status::OK();
  });
  RegisterUnary(r, "Square", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    const Output two = ops::ScalarConst(s, 2.0, n.input(0).dtype());
    (*dx)[0] = ops::Mul(s, dy[0], ops::Mul(s, n.input(0), two));
    return Status::OK();
  });
  RegisterUnary(r, "Relu", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    (*dx)[0] = ops::ReluGrad(s, dy[0], Self(n));
    return Status::OK();
  });
  RegisterUnary(r, "Sigmoid", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    (*dx)[0] = ops::SigmoidGrad(s, Self(n), dy[0]);
    return Status::OK();
  });
  RegisterUnary(r, "Tanh", [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
    (*dx)[0] = ops::TanhGrad(s, Self(n), dy[0]);
    return Status::OK();
  });
  r.Register(Def("ReluGrad", {"dy", "y"}, FloatPairShape));
  r.Register(Def("SigmoidGrad", {"y", "dy"}, FloatPairShape));
  r.Register(Def("TanhGrad", {"y", "dy"}, FloatPairShape));

  r.Register(
      Def("Sum", {"x"}, ReduceShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
        (*dx)[0] =
            ops::ReduceGrad(s, dy[0], n.input(0), n.attr<std::vector<int64_t>>("axes"), false);
        return Status::OK();
      }));
  r.Register(
      Def("Mean", {"x"}, ReduceShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
        (*dx)[0] =
            ops::ReduceGrad(s, dy[0], n.input(0), n.attr<std::vector<int64_t>>("axes"), true);
        return Status::OK();
      }));
  r.Register(
      Def("Max", {"x"}, ReduceShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
        (*dx)[0] =
            ops::MaxGrad(s, dy[0], n.input(0), Self(n), n.attr<std::vector<int64_t>>("axes"));
        return Status::OK();
      }));
  // dy (the reduced shape, with or without kept dims) broadcast back to x's shape.
  r.Register(Def("ReduceGrad", {"dy", "x"}, ReduceGradShape));
  r.Register(Def("MaxGrad", {"dy", "x", "y"}, ReduceGradShape));
  r.Register(Def("SumToShapeOf", {"x", "like"}, [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
    if (c.input_shape(1).rank() > c.input_shape(0).rank()) {
      return c.Error("cannot reduce ", c.input_shape(0).ToString(), " to the larger rank of ",
                     c.input_shape(1).ToString());
    }
    c.set_output(0, c.input_dtype(1), c.input_shape(1));
    return Status::OK();
  }));
  r.Register(Def("MatMul", {"a", "b"}, MatMulShape, MatMulGrad));
}

namespace ops {

Output Add(const Scope& s, Output a, Output b) { return s.AddOp("Add", {a, b}); }
Output Sub(const Scope& s, Output a, Output b) { return s.AddOp("Sub", {a, b}); }
Output Mul(const Scope& s, Output a, Output b) { return s.AddOp("Mul", {a, b}); }
Output Div(const Scope& s, Output a, Output b) { return s.AddOp("Div", {a, b}); }
Output AddN(const Scope& s, const std::vector<Output>& xs) {
  if (xs.size() == 1) return xs[0];
  return s.AddOp("AddN", xs);
}
Output Neg(const Scope& s, Output x) { return s.AddOp("Neg", {x}); }
Output Exp(const Scope& s, Output x) { return s.AddOp("Exp", {x}); }
Output Log(const Scope& s, Output x) { return s.AddOp("Log", {x}); }
Output Sqrt(const Scope& s, Output x) { return s.AddOp("Sqrt", {x}); }
Output Square(const Scope& s, Output x) { return s.AddOp("Square", {x}); }
Output Relu(const Scope& s, Output x) { return s.AddOp("Relu", {x}); }
Output Sigmoid(const Scope& s, Output x) { return s.AddOp("Sigmoid", {x}); }
Output Tanh(const Scope& s, Output x) { return s.AddOp("Tanh", {x}); }
Output Sum(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims) {
  return s.AddOp("Sum", {x}, {{"axes", axes}, {"keep_dims", keep_dims}});
}
Output Mean(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims) {
  return s.AddOp("Mean", {x}, {{"axes", axes}, {"keep_dims", keep_dims}});
}
Output Max(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims) {
  return s.AddOp("Max", {x}, {{"axes", axes}, {"keep_dims", keep_dims}});
}
Output MatMul(const Scope& s, Output a, Output b, bool transpose_a, bool transpose_b) {
  return s.AddOp("MatMul", {a, b}, {{"transpose_a", transpose_a}, {"transpose_b", transpose_b}});
}
Output SumToShapeOf(const Scope& s, Output x, Output like) {
  return s.AddOp("SumToShapeOf", {x, like});
}
Output ReluGrad(const Scope& s, Output dy, Output y) { return s.AddOp("ReluGrad", {dy, y}); }
Output SigmoidGrad(const Scope& s, Output y, Output dy) { return s.AddOp("SigmoidGrad", {y, dy}); }
Output TanhGrad(const Scope& s, Output y, Output dy) { return s.AddOp("TanhGrad", {y, dy}); }
Output ReduceGrad(const Scope& s, Output dy, Output x, const std::vector<int64_t>& axes,
                  bool mean) {
  return s.AddOp("ReduceGrad", {dy, x}, {{"axes", axes}, {"mean", mean}});
}
Output MaxGrad(const Scope& s, Output dy, Output x, Output y, const std::vector<int64_t>& axes) {
  return s.AddOp("MaxGrad", {dy, x, y}, {{"axes", axes}});
}

}  // namespace ops
}  // namespace mpiflow
