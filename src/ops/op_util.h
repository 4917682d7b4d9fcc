// Helpers shared by the op families: common shape functions, axis handling, registration hooks.
// Not a place for op definitions: each op lives in its family's file.
#pragma once

#include <string>
#include <vector>

#include "mpiflow/graph.h"
#include "mpiflow/ops.h"

namespace mpiflow {

void RegisterArrayOps(OpRegistry& r);
void RegisterMathOps(OpRegistry& r);
void RegisterNnOps(OpRegistry& r);
void RegisterStateOps(OpRegistry& r);
void RegisterTrainOps(OpRegistry& r);
void RegisterCollectiveOps(OpRegistry& r);

namespace op_util {

// An OpDef with one output named "output"; callers adjust the rest (outputs, flags).
OpDef Def(const std::string& name, std::vector<std::string> inputs, ShapeFn shape_fn,
          GradFn grad_fn = nullptr);

// Output 0 takes input 0's dtype and shape.
Status UnchangedShape(InferenceContext& c);
// numpy broadcasting of two shapes (unknown dims stay unknown unless the other side fixes them).
Status BroadcastShapes(const InferenceContext& c, const Shape& a, const Shape& b, Shape* out);
// Checks that input i has one of `allowed` dtypes.
Status CheckDType(const InferenceContext& c, int i, std::initializer_list<DType> allowed);
Status CheckSameDType(const InferenceContext& c, int i, int j);
Status CheckRank(const InferenceContext& c, int i, int rank);
// Normalises possibly negative axes against `rank`; rejects out-of-range and repeated axes.
Status NormalizeAxes(const InferenceContext& c, std::vector<int64_t> axes, int rank,
                     std::vector<int64_t>* out);
// Reduces `dy` to `x`'s shape after broadcasting, unless both are the same fully known shape.
Output SumToShapeIfNeeded(const Scope& s, Output dy, Output x);

inline constexpr std::initializer_list<DType> kFloatTypes = {DType::kFloat32, DType::kFloat64};
inline constexpr std::initializer_list<DType> kNumberTypes = {DType::kFloat32, DType::kFloat64,
                                                              DType::kInt32, DType::kInt64};

}  // namespace op_util
}  // namespace mpiflow
