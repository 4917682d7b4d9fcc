// BuiltinOps and the shared op helpers. Every op family registers here, once, explicitly
// (no static registrars, which a static library link would drop).
#include <algorithm>
#include <mutex>

#include "op_util.h"

namespace mpiflow {

OpRegistry& BuiltinOps() {
  static OpRegistry* registry = [] {
    auto* r = new OpRegistry();
    RegisterArrayOps(*r);
    RegisterMathOps(*r);
    RegisterNnOps(*r);
    RegisterStateOps(*r);
    RegisterTrainOps(*r);
    RegisterCollectiveOps(*r);
    return r;
  }();
  return *registry;
}

namespace op_util {

OpDef Def(const std::string& name, std::vector<std::string> inputs, ShapeFn shape_fn,
          GradFn grad_fn) {
  OpDef d;
  d.name = name;
  d.inputs = std::move(inputs);
  d.outputs = {"output"};
  d.shape_fn = std::move(shape_fn);
  d.grad_fn = std::move(grad_fn);
  return d;
}

Status UnchangedShape(InferenceContext& c) {
  c.set_output(0, c.input_dtype(0), c.input_shape(0));
  return Status::OK();
}

Status BroadcastShapes(const InferenceContext& c, const Shape& a, const Shape& b, Shape* out) {
  const int rank = std::max(a.rank(), b.rank());
  std::vector<int64_t> dims(rank);
  for (int i = 0; i < rank; ++i) {
    const int ia = a.rank() - rank + i, ib = b.rank() - rank + i;
    const int64_t da = ia >= 0 ? a.dim(ia) : 1, db = ib >= 0 ? b.dim(ib) : 1;
    if (da == 1) {
      dims[i] = db;
    } else if (db == 1) {
      dims[i] = da;
    } else if (da < 0 || db < 0) {
      dims[i] = da < 0 ? db : da;  // unknown vs known n>1: must be n (or 1, checked at run time)
      if (da < 0 && db < 0) dims[i] = -1;
    } else if (da != db) {
      return c.Error("shapes ", a.ToString(), " and ", b.ToString(),
                     " cannot be broadcast (dimension ", i, ": ", da, " vs ", db, ")");
    } else {
      dims[i] = da;
    }
  }
  *out = Shape(dims);
  return Status::OK();
}

Status CheckDType(const InferenceContext& c, int i, std::initializer_list<DType> allowed) {
  if (std::find(allowed.begin(), allowed.end(), c.input_dtype(i)) != allowed.end()) {
    return Status::OK();
  }
  std::string names;
  for (DType t : allowed) names += std::string(names.empty() ? "" : ", ") + DTypeName(t);
  return c.Error("input ", i, " has dtype ", DTypeName(c.input_dtype(i)), "; expected one of ",
                 names);
}

Status CheckSameDType(const InferenceContext& c, int i, int j) {
  if (c.input_dtype(i) == c.input_dtype(j)) return Status::OK();
  return c.Error("inputs ", i, " and ", j, " have different dtypes (", DTypeName(c.input_dtype(i)),
                 " vs ", DTypeName(c.input_dtype(j)), ")");
}

Status CheckRank(const InferenceContext& c, int i, int rank) {
  if (c.input_shape(i).rank() == rank) return Status::OK();
  return c.Error("input ", i, " must have rank ", rank, ", got shape ",
                 c.input_shape(i).ToString());
}

Status NormalizeAxes(const InferenceContext& c, std::vector<int64_t> axes, int rank,
                     std::vector<int64_t>* out) {
  out->clear();
  for (int64_t a : axes) {
    const int64_t n = a < 0 ? a + rank : a;
    if (n < 0 || n >= rank) {
      return c.Error("axis ", a, " is out of range for rank ", rank);
    }
    if (std::find(out->begin(), out->end(), n) != out->end()) {
      return c.Error("axis ", a, " is repeated");
    }
    out->push_back(n);
  }
  std::sort(out->begin(), out->end());
  return Status::OK();
}

Output SumToShapeIfNeeded(const Scope& s, Output dy, Output x) {
  if (x.shape() == dy.shape() && x.shape().IsFullyDefined()) return dy;
  return ops::SumToShapeOf(s, dy, x);
}

}  // namespace op_util
}  // namespace mpiflow
