// Array ops: Placeholder, Const, Identity, NoOp, Reshape, Transpose, Concat, Slice, Cast, Equal,
// ArgMax, Gather (sparse gradient), Zeros, IndexedSlices. Definition, shape fn, gradient, builder.
// Not kernels: those are in kernels/cpu/array_kernels.cc.
#include <numeric>

#include "op_util.h"

namespace mpiflow {
namespace {

using op_util::Def;

using op_util::CheckDType;

Status ReshapeShape(InferenceContext& c) {
  std::vector<int64_t> target;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("shape", &target));
  const Shape& in = c.input_shape(0);
  int unknown = -1;
  int64_t known = 1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == -1) {
      if (unknown >= 0) return c.Error("shape ", Shape(target).ToString(), " has more than one -1");
      unknown = static_cast<int>(i);
    } else if (target[i] < 0) {
      return c.Error("shape has a negative dimension ", target[i]);
    } else {
      known *= target[i];
    }
  }
  if (in.IsFullyDefined()) {
    const int64_t n = in.num_elements();
    if (unknown >= 0) {
      if (known == 0 || n % known != 0) {
        return c.Error("cannot reshape ", in.ToString(), " (", n, " elements) to ",
                       Shape(target).ToString());
      }
      target[unknown] = n / known;
    } else if (n != known) {
      return c.Error("cannot reshape ", in.ToString(), " (", n, " elements) to ",
                     Shape(target).ToString(), " (", known, " elements)");
    }
  }
  c.set_output(0, c.input_dtype(0), Shape(target));
  return Status::OK();
}

Status ReshapeGrad(const Scope& s, const Node& n, const std::vector<Output>& dy,
                   std::vector<Output>* dx) {
  const Shape& in = n.input(0).shape();
  int unknown = 0;
  for (int64_t d : in.dims()) unknown += d < 0;
  if (unknown > 1) {
    return InvalidArgument("gradient of Reshape '", n.name(), "': input shape ", in.ToString(),
                           " has more than one unknown dimension");
  }
  (*dx)[0] = ops::Reshape(s, dy[0], in.dims());  // unknown dims are -1 already
  return Status::OK();
}

Status TransposeShape(InferenceContext& c) {
  std::vector<int64_t> perm;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("perm", &perm));
  const Shape& in = c.input_shape(0);
  if (static_cast<int>(perm.size()) != in.rank()) {
    return c.Error("perm has ", perm.size(), " entries for an input of rank ", in.rank());
  }
  std::vector<int64_t> seen(perm.size(), 0), dims(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) {
    if (perm[i] < 0 || perm[i] >= in.rank() || seen[perm[i]]++) {
      return c.Error("perm ", Shape(perm).ToString(), " is not a permutation of 0..",
                     in.rank() - 1);
    }
    dims[i] = in.dim(static_cast<int>(perm[i]));
  }
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status ConcatShape(InferenceContext& c) {
  int64_t axis = 0;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("axis", &axis));
  const Shape& first = c.input_shape(0);
  const int rank = first.rank();
  if (axis < 0) axis += rank;
  if (axis < 0 || axis >= rank) return c.Error("axis is out of range for rank ", rank);
  std::vector<int64_t> dims = first.dims();
  for (int i = 1; i < c.num_inputs(); ++i) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, i));
    const Shape& sh = c.input_shape(i);
    if (sh.rank() != rank) {
      return c.Error("input ", i, " has shape ", sh.ToString(), ", rank differs from ",
                     first.ToString());
    }
    for (int d = 0; d < rank; ++d) {
      if (d == axis) {
        dims[d] = (dims[d] < 0 || sh.dim(d) < 0) ? -1 : dims[d] + sh.dim(d);
      } else if (dims[d] >= 0 && sh.dim(d) >= 0 && dims[d] != sh.dim(d)) {
        return c.Error("input ", i, " has shape ", sh.ToString(), ", which differs from ",
                       first.ToString(), " outside axis ", axis);
      } else if (dims[d] < 0) {
        dims[d] = sh.dim(d);
      }
    }
  }
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status ConcatGrad(const Scope& s, const Node& n, const std::vector<Output>& dy,
                  std::vector<Output>* dx) {
  int64_t axis = n.attr<int64_t>("axis");
  const int rank = n.input(0).shape().rank();
  if (axis < 0) axis += rank;
  int64_t offset = 0;
  for (int i = 0; i < n.num_inputs(); ++i) {
    const int64_t len = n.input(i).shape().dim(static_cast<int>(axis));
    if (len < 0) {
      return InvalidArgument("gradient of Concat '", n.name(), "': input ", i,
                             " has an unknown size along the concat axis");
    }
    std::vector<int64_t> begin(rank, 0), size(rank, -1);
    begin[axis] = offset;
    size[axis] = len;
    (*dx)[i] = ops::Slice(s, dy[0], begin, size);
    offset += len;
  }
  return Status::OK();
}

Status SliceShape(InferenceContext& c) {
  std::vector<int64_t> begin, size;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("begin", &begin));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("size", &size));
  const Shape& in = c.input_shape(0);
  if (static_cast<int>(begin.size()) != in.rank() || static_cast<int>(size.size()) != in.rank()) {
    return c.Error("begin and size need ", in.rank(), " entries for input ", in.ToString());
  }
  std::vector<int64_t> dims(in.rank());
  for (int i = 0; i < in.rank(); ++i) {
    const int64_t d = in.dim(i);
    if (begin[i] < 0 || (d >= 0 && begin[i] > d)) {
      return c.Error("begin[", i, "]=", begin[i], " is out of range for input ", in.ToString());
    }
    if (size[i] == -1) {
      dims[i] = d < 0 ? -1 : d - begin[i];
    } else if (size[i] < 0 || (d >= 0 && begin[i] + size[i] > d)) {
      return c.Error("slice [", begin[i], ", ", begin[i] + size[i], ") of dimension ", i,
                     " is out of range for input ", in.ToString());
    } else {
      dims[i] = size[i];
    }
  }
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status SliceGradFn(const Scope& s, const Node& n, const std::vector<Output>& dy,
                   std::vector<Output>* dx) {
  Node* g = s.AddOp("SliceGrad", {n.input(0), dy[0]},
                    {{"begin", n.attr<std::vector<int64_t>>("begin")}}, "SliceGrad");
  (*dx)[0] = Output(g, 0);
  return Status::OK();
}

Status GatherShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 1, {DType::kInt32, DType::kInt64}));
  const Shape& params = c.input_shape(0);
  if (params.rank() < 1) return c.Error("params must have rank >= 1, got a scalar");
  std::vector<int64_t> dims = c.input_shape(1).dims();
  for (int i = 1; i < params.rank(); ++i) dims.push_back(params.dim(i));
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status GatherGrad(const Scope& s, const Node& n, const std::vector<Output>& dy,
                  std::vector<Output>* dx) {
  const Shape& params = n.input(0).shape();
  std::vector<int64_t> values_shape = {-1};
  for (int i = 1; i < params.rank(); ++i) values_shape.push_back(params.dim(i));
  Output values = ops::Reshape(s, dy[0], values_shape);
  Output indices = ops::Reshape(s, n.input(1), {-1});
  (*dx)[0] = ops::IndexedSlices(s, values, indices, n.input(0));
  return Status::OK();
}

// EmbeddingBag(table (rows, dim), ids (batch, n)) -> (batch, dim).
Status EmbeddingBagShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(
      CheckDType(c, 1, {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64}));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 2));
  std::string combiner;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("combiner", &combiner));
  if (combiner != "mean" && combiner != "sum") {
    return c.Error("combiner must be mean or sum, got '", combiner, "'");
  }
  c.set_output(0, c.input_dtype(0), Shape{c.input_shape(1).dim(0), c.input_shape(0).dim(1)});
  return Status::OK();
}

// The table's gradient: the rows the bags used, each dy of its bag (over its count for a mean),
// as IndexedSlices; the ids have none.
Status EmbeddingBagGradFn(const Scope& s, const Node& n, const std::vector<Output>& dy,
                          std::vector<Output>* dx) {
  Node* g = s.AddOp("EmbeddingBagGrad", {dy[0], n.input(1), n.input(0)},
                    {{"combiner", n.attr<std::string>("combiner")}}, "EmbeddingBagGrad");
  if (!g) return s.status();
  (*dx)[0] = ops::IndexedSlices(s, Output(g, 0), Output(g, 1), n.input(0));
  return Status::OK();
}

// EmbeddingBagGrad(dy (batch, dim), ids (batch, n), table) -> values (k, dim), indices (k) int64:
// one row per id used, in (example, position) order.
Status EmbeddingBagGradShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 2));
  c.set_output(0, c.input_dtype(0), Shape{-1, c.input_shape(2).dim(1)});
  c.set_output(1, DType::kInt64, Shape{-1});
  return Status::OK();
}

Status IndexedSlicesShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 1, {DType::kInt32, DType::kInt64}));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 1));
  const Shape& values = c.input_shape(0);
  const Shape& like = c.input_shape(2);
  if (values.rank() != like.rank()) {
    return c.Error("values ", values.ToString(), " and dense shape ", like.ToString(),
                   " differ in rank");
  }
  for (int i = 1; i < like.rank(); ++i) {
    if (values.dim(i) >= 0 && like.dim(i) >= 0 && values.dim(i) != like.dim(i)) {
      return c.Error("values ", values.ToString(), " do not match rows of ", like.ToString());
    }
  }
  c.set_output(0, c.input_dtype(2), like);
  return Status::OK();
}

Status IndexedSlicesGrad(const Scope& s, const Node& n, const std::vector<Output>& dy,
                         std::vector<Output>* dx) {
  (*dx)[0] = ops::Gather(s, dy[0], n.input(1));
  return Status::OK();
}

}  // namespace

void RegisterArrayOps(OpRegistry& r) {
  r.Register(Def("EmbeddingBag", {"table", "ids"}, EmbeddingBagShape, EmbeddingBagGradFn));
  {
    OpDef d = Def("EmbeddingBagGrad", {"dy", "ids", "table"}, EmbeddingBagGradShape);
    d.outputs = {"values", "indices"};
    d.differentiable = false;
    r.Register(std::move(d));
  }
  r.Register(Def("Placeholder", {}, [](InferenceContext& c) {
    DType dtype = DType::kInvalid;
    Shape shape;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &dtype));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("shape", &shape));
    c.set_output(0, dtype, shape);
    return Status::OK();
  }));
  r.Register(Def("Const", {}, [](InferenceContext& c) {
    Tensor value;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("value", &value));
    c.set_output(0, value.dtype(), value.shape());
    return Status::OK();
  }));
  r.Register(Def("Zeros", {}, [](InferenceContext& c) {
    DType dtype = DType::kInvalid;
    Shape shape;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &dtype));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("shape", &shape));
    if (!shape.IsFullyDefined()) return c.Error("shape ", shape.ToString(), " must be known");
    c.set_output(0, dtype, shape);
    return Status::OK();
  }));
  r.Register(
      Def("Identity", {"input"}, op_util::UnchangedShape,
          [](const Scope&, const Node&, const std::vector<Output>& dy, std::vector<Output>* dx) {
            (*dx)[0] = dy[0];
            return Status::OK();
          }));
  {
    OpDef d = Def("NoOp", {}, [](InferenceContext&) { return Status::OK(); });
    d.outputs = {};
    d.stateful = true;  // never folded away: it exists for its control edges
    r.Register(std::move(d));
  }
  r.Register(Def("Reshape", {"input"}, ReshapeShape, ReshapeGrad));
  r.Register(Def(
      "Transpose", {"input"}, TransposeShape,
      [](const Scope& s, const Node& n, const std::vector<Output>& dy, std::vector<Output>* dx) {
        const auto& perm = n.attr<std::vector<int64_t>>("perm");
        std::vector<int64_t> inverse(perm.size());
        for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
        (*dx)[0] = ops::Transpose(s, dy[0], inverse);
        return Status::OK();
      }));
  {
    OpDef d = Def("Concat", {"values"}, ConcatShape, ConcatGrad);
    d.variadic = true;
    d.min_inputs = 1;
    r.Register(std::move(d));
  }
  r.Register(Def("Slice", {"input"}, SliceShape, SliceGradFn));
  r.Register(Def("SliceGrad", {"input_like", "dy"}, [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
    std::vector<int64_t> begin;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("begin", &begin));
    if (static_cast<int>(begin.size()) != c.input_shape(0).rank() ||
        c.input_shape(1).rank() != c.input_shape(0).rank()) {
      return c.Error("begin, input and dy ranks differ");
    }
    c.set_output(0, c.input_dtype(0), c.input_shape(0));
    return Status::OK();
  }));
  r.Register(Def(
      "Cast", {"input"},
      [](InferenceContext& c) {
        DType to = DType::kInvalid;
        MPIFLOW_RETURN_IF_ERROR(c.GetAttr("dtype", &to));
        c.set_output(0, to, c.input_shape(0));
        return Status::OK();
      },
      [](const Scope& s, const Node& n, const std::vector<Output>& dy, std::vector<Output>* dx) {
        if (IsFloating(n.input(0).dtype()) && IsFloating(n.output_dtype(0))) {
          (*dx)[0] = ops::Cast(s, dy[0], n.input(0).dtype());
        }
        return Status::OK();
      }));
  {
    OpDef d = Def("Equal", {"a", "b"}, [](InferenceContext& c) {
      MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
      Shape out;
      MPIFLOW_RETURN_IF_ERROR(
          op_util::BroadcastShapes(c, c.input_shape(0), c.input_shape(1), &out));
      c.set_output(0, DType::kBool, out);
      return Status::OK();
    });
    d.differentiable = false;
    r.Register(std::move(d));
  }
  {
    OpDef d = Def("ArgMax", {"input"}, [](InferenceContext& c) {
      MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kNumberTypes));
      int64_t axis = 0;
      MPIFLOW_RETURN_IF_ERROR(c.GetAttr("axis", &axis));
      const Shape& in = c.input_shape(0);
      std::vector<int64_t> axes;
      MPIFLOW_RETURN_IF_ERROR(op_util::NormalizeAxes(c, {axis}, in.rank(), &axes));
      if (in.dim(static_cast<int>(axes[0])) == 0) return c.Error("ArgMax over an empty axis");
      std::vector<int64_t> dims;
      for (int i = 0; i < in.rank(); ++i) {
        if (i != axes[0]) dims.push_back(in.dim(i));
      }
      c.set_output(0, DType::kInt64, Shape(dims));
      return Status::OK();
    });
    d.differentiable = false;
    r.Register(std::move(d));
  }
  r.Register(Def("Gather", {"params", "indices"}, GatherShape, GatherGrad));
  r.Register(
      Def("IndexedSlices", {"values", "indices", "like"}, IndexedSlicesShape, IndexedSlicesGrad));
}

namespace ops {

Output Placeholder(const Scope& s, DType dtype, const Shape& shape) {
  return s.AddOp("Placeholder", {}, {{"dtype", dtype}, {"shape", shape}});
}

Output Const(const Scope& s, const Tensor& value) {
  if (!value.allocated() || !value.shape().IsFullyDefined()) {
    s.UpdateStatus(InvalidArgument("Const: the value must be an allocated tensor"));
    return {};
  }
  return s.AddOp("Const", {}, {{"value", value}});
}

Output ScalarConst(const Scope& s, double value, DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return Const(s, Tensor::Scalar<float>(static_cast<float>(value)));
    case DType::kFloat64:
      return Const(s, Tensor::Scalar<double>(value));
    case DType::kInt32:
      return Const(s, Tensor::Scalar<int32_t>(static_cast<int32_t>(value)));
    case DType::kInt64:
      return Const(s, Tensor::Scalar<int64_t>(static_cast<int64_t>(value)));
    default:
      s.UpdateStatus(InvalidArgument("ScalarConst: unsupported dtype ", DTypeName(dtype)));
      return {};
  }
}

Output Identity(const Scope& s, Output x) { return s.AddOp("Identity", {x}); }
Node* NoOp(const Scope& s) { return s.AddOp("NoOp", {}); }
Node* Group(const Scope& s, const std::vector<Node*>& deps) {
  for (Node* d : deps) {
    if (!d) {
      s.UpdateStatus(InvalidArgument("Group: a dependency is null (an earlier op failed)"));
      return nullptr;
    }
  }
  return s.WithControlDependencies(deps).AddOp("NoOp", {}, {}, "Group");
}
Output Reshape(const Scope& s, Output x, const std::vector<int64_t>& shape) {
  return s.AddOp("Reshape", {x}, {{"shape", shape}});
}
Output Transpose(const Scope& s, Output x, const std::vector<int64_t>& perm) {
  return s.AddOp("Transpose", {x}, {{"perm", perm}});
}
Output Concat(const Scope& s, const std::vector<Output>& values, int64_t axis) {
  return s.AddOp("Concat", values, {{"axis", axis}});
}
Output Slice(const Scope& s, Output x, const std::vector<int64_t>& begin,
             const std::vector<int64_t>& size) {
  return s.AddOp("Slice", {x}, {{"begin", begin}, {"size", size}});
}
Output Cast(const Scope& s, Output x, DType dtype) {
  return s.AddOp("Cast", {x}, {{"dtype", dtype}});
}
Output Equal(const Scope& s, Output a, Output b) { return s.AddOp("Equal", {a, b}); }
Output ArgMax(const Scope& s, Output x, int64_t axis) {
  return s.AddOp("ArgMax", {x}, {{"axis", axis}});
}
Output Gather(const Scope& s, Output params, Output indices) {
  return s.AddOp("Gather", {params, indices});
}
Output EmbeddingBag(const Scope& s, Output table, Output ids, const std::string& combiner) {
  return s.AddOp("EmbeddingBag", {table, ids}, {{"combiner", combiner}});
}
Output Zeros(const Scope& s, const Shape& shape, DType dtype) {
  return s.AddOp("Zeros", {}, {{"shape", shape}, {"dtype", dtype}});
}
Output IndexedSlices(const Scope& s, Output values, Output indices, Output like) {
  return s.AddOp("IndexedSlices", {values, indices, like});
}

}  // namespace ops
}  // namespace mpiflow
