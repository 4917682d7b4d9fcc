// Neural-network ops: BiasAdd, Softmax, LogSoftmax, SparseSoftmaxCrossEntropyWithLogits, Conv2D,
// MaxPool, AvgPool, Dropout, with their gradient ops. Definition, shape fn, gradient, builder.
#include "mpiflow/window.h"
#include "op_util.h"

namespace mpiflow {
namespace {

using op_util::Def;

using Grad = std::vector<Output>;
using op_util::CheckDType;

Output Self(const Node& n) { return Output(const_cast<Node*>(&n), 0); }

Status LastDimFloat(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  if (c.input_shape(0).rank() < 1) return c.Error("input must have rank >= 1, got a scalar");
  return op_util::UnchangedShape(c);
}

Status SamePairShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  if (!c.input_shape(0).IsCompatibleWith(c.input_shape(1))) {
    return c.Error("shapes ", c.input_shape(0).ToString(), " and ", c.input_shape(1).ToString(),
                   " differ");
  }
  return op_util::UnchangedShape(c);
}

struct Window {
  std::vector<int64_t> ksize, strides;
  std::string padding;
};

Status GetWindow(const InferenceContext& c, bool has_ksize, Window* w) {
  if (has_ksize) MPIFLOW_RETURN_IF_ERROR(c.GetAttr("ksize", &w->ksize));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("strides", &w->strides));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("padding", &w->padding));
  if (w->strides.size() != 2 || w->strides[0] < 1 || w->strides[1] < 1) {
    return c.Error("strides must be two positive integers {height, width}");
  }
  if (has_ksize && (w->ksize.size() != 2 || w->ksize[0] < 1 || w->ksize[1] < 1)) {
    return c.Error("ksize must be two positive integers {height, width}");
  }
  return Status::OK();
}

// NHWC input with a (kh, kw) window -> (N, OH, OW) into dims[0..2].
Status SpatialOutput(const InferenceContext& c, const Shape& in, int64_t kh, int64_t kw,
                     const Window& w, std::vector<int64_t>* dims) {
  int64_t oh = 0, ow = 0, pad = 0;
  Status s = WindowGeometry(in.dim(1), kh, w.strides[0], w.padding, &oh, &pad);
  if (s.ok()) s = WindowGeometry(in.dim(2), kw, w.strides[1], w.padding, &ow, &pad);
  if (!s.ok()) return c.Error(s.message());
  *dims = {in.dim(0), oh, ow};
  return Status::OK();
}

Status Conv2DShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 4));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 4));
  Window w;
  MPIFLOW_RETURN_IF_ERROR(GetWindow(c, false, &w));
  const Shape &in = c.input_shape(0), &f = c.input_shape(1);
  if (!Shape{f.dim(0), f.dim(1), f.dim(2), f.dim(3)}.IsFullyDefined()) {
    return c.Error("filter shape ", f.ToString(), " must be fully known");
  }
  if (in.dim(3) >= 0 && in.dim(3) != f.dim(2)) {
    return c.Error("input has ", in.dim(3), " channels (shape ", in.ToString(),
                   ") but the filter expects ", f.dim(2), " (shape ", f.ToString(), ")");
  }
  std::vector<int64_t> dims;
  MPIFLOW_RETURN_IF_ERROR(SpatialOutput(c, in, f.dim(0), f.dim(1), w, &dims));
  dims.push_back(f.dim(3));
  c.set_output(0, c.input_dtype(0), Shape(dims));
  return Status::OK();
}

Status PoolShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 4));
  Window w;
  MPIFLOW_RETURN_IF_ERROR(GetWindow(c, true, &w));
  std::vector<int64_t> dims;
  MPIFLOW_RETURN_IF_ERROR(SpatialOutput(c, c.input_shape(0), w.ksize[0], w.ksize[1], w, &dims));
  dims.push_back(c.input_shape(0).dim(3));
  c.set_output(0, c.input_dtype(0), Shape(dims));
  if (c.out_dtypes().size() > 1) c.set_output(1, DType::kInt32, Shape(dims));  // MaxPool argmax
  return Status::OK();
}

// MaxPoolGrad(x_like, argmax, dy): dx shaped like x.
Status MaxPoolGradShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 1, {DType::kInt32}));
  if (!c.input_shape(1).IsCompatibleWith(c.input_shape(2))) {
    return c.Error("argmax ", c.input_shape(1).ToString(), " and dy ", c.input_shape(2).ToString(),
                   " differ");
  }
  Window w;
  MPIFLOW_RETURN_IF_ERROR(GetWindow(c, true, &w));
  c.set_output(0, c.input_dtype(0), c.input_shape(0));
  return Status::OK();
}

// Gradient ops whose output is shaped like input `like_index`.
ShapeFn ShapedLike(int like_index, bool has_ksize) {
  return [like_index, has_ksize](InferenceContext& c) {
    for (int i = 1; i < c.num_inputs(); ++i) {
      MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, i));
    }
    Window w;
    MPIFLOW_RETURN_IF_ERROR(GetWindow(c, has_ksize, &w));
    c.set_output(0, c.input_dtype(like_index), c.input_shape(like_index));
    return Status::OK();
  };
}

AttrMap WindowAttrs(const Node& n, bool has_ksize) {
  AttrMap a = {{"strides", n.attr<std::vector<int64_t>>("strides")},
               {"padding", n.attr<std::string>("padding")}};
  if (has_ksize) a["ksize"] = n.attr<std::vector<int64_t>>("ksize");
  return a;
}

Status XentShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 1, {DType::kInt32, DType::kInt64}));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 0, 2));
  MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 1));
  const int64_t b0 = c.input_shape(0).dim(0), b1 = c.input_shape(1).dim(0);
  if (b0 >= 0 && b1 >= 0 && b0 != b1) {
    return c.Error("logits ", c.input_shape(0).ToString(), " and labels ",
                   c.input_shape(1).ToString(), " have different batch sizes");
  }
  const int64_t batch = b0 >= 0 ? b0 : b1;
  c.set_output(0, c.input_dtype(0), Shape{batch});
  c.set_output(1, c.input_dtype(0), Shape{batch, c.input_shape(0).dim(1)});
  return Status::OK();
}

Status DropoutShape(InferenceContext& c) {
  MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
  double rate = 0;
  int64_t seed = 0;
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("rate", &rate));
  MPIFLOW_RETURN_IF_ERROR(c.GetAttr("seed", &seed));
  if (!(rate >= 0.0 && rate < 1.0)) return c.Error("rate must be in [0, 1), got ", rate);
  return op_util::UnchangedShape(c);
}

}  // namespace

void RegisterNnOps(OpRegistry& r) {
  r.Register(Def(
      "BiasAdd", {"x", "bias"},
      [](InferenceContext& c) {
        MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckRank(c, 1, 1));
        const Shape& x = c.input_shape(0);
        if (x.rank() < 1) return c.Error("x must have rank >= 1");
        const int64_t last = x.dim(x.rank() - 1), nb = c.input_shape(1).dim(0);
        if (last >= 0 && nb >= 0 && last != nb) {
          return c.Error("bias ", c.input_shape(1).ToString(),
                         " does not match the last dimension of x ", x.ToString());
        }
        return op_util::UnchangedShape(c);
      },
      [](const Scope& s, const Node&, const Grad& dy, Grad* dx) {
        (*dx)[0] = dy[0];
        (*dx)[1] = ops::BiasAddGrad(s, dy[0]);
        return Status::OK();
      }));
  r.Register(Def("BiasAddGrad", {"dy"}, [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(CheckDType(c, 0, op_util::kFloatTypes));
    const Shape& dy = c.input_shape(0);
    if (dy.rank() < 1) return c.Error("dy must have rank >= 1");
    c.set_output(0, c.input_dtype(0), Shape{dy.dim(dy.rank() - 1)});
    return Status::OK();
  }));
  r.Register(Def("Softmax", {"logits"}, LastDimFloat,
                 [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
                   (*dx)[0] = ops::SoftmaxGrad(s, Self(n), dy[0]);
                   return Status::OK();
                 }));
  r.Register(Def("LogSoftmax", {"logits"}, LastDimFloat,
                 [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
                   (*dx)[0] = ops::LogSoftmaxGrad(s, Self(n), dy[0]);
                   return Status::OK();
                 }));
  r.Register(Def("SoftmaxGrad", {"y", "dy"}, SamePairShape));
  r.Register(Def("LogSoftmaxGrad", {"y", "dy"}, SamePairShape));
  {
    OpDef d = Def("SparseSoftmaxCrossEntropyWithLogits", {"logits", "labels"}, XentShape,
                  [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
                    if (dy[1].valid()) {
                      return InvalidArgument("node '", n.name(),
                                             "': the backprop output has no gradient");
                    }
                    const Output backprop(const_cast<Node*>(&n), 1);
                    (*dx)[0] = ops::Mul(s, backprop, ops::Reshape(s, dy[0], {-1, 1}));
                    return Status::OK();
                  });
    d.outputs = {"loss", "backprop"};
    r.Register(std::move(d));
  }
  r.Register(Def("Conv2D", {"input", "filter"}, Conv2DShape,
                 [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
                   const auto& st = n.attr<std::vector<int64_t>>("strides");
                   const auto& pad = n.attr<std::string>("padding");
                   (*dx)[0] = ops::Conv2DBackpropInput(s, n.input(0), n.input(1), dy[0], st, pad);
                   (*dx)[1] = ops::Conv2DBackpropFilter(s, n.input(0), n.input(1), dy[0], st, pad);
                   return Status::OK();
                 }));
  r.Register(Def("Conv2DBackpropInput", {"input_like", "filter", "dy"}, ShapedLike(0, false)));
  r.Register(Def("Conv2DBackpropFilter", {"input", "filter_like", "dy"}, ShapedLike(1, false)));
  {
    OpDef d = Def(
        "MaxPool", {"x"}, PoolShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
          const Output argmax(const_cast<Node*>(&n), 1);
          (*dx)[0] =
              Output(s.AddOp("MaxPoolGrad", {n.input(0), argmax, dy[0]}, WindowAttrs(n, true)));
          return Status::OK();
        });
    d.outputs = {"output", "argmax"};
    r.Register(std::move(d));
  }
  r.Register(Def("MaxPoolGrad", {"x_like", "argmax", "dy"}, MaxPoolGradShape));
  r.Register(
      Def("AvgPool", {"x"}, PoolShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
        (*dx)[0] = Output(s.AddOp("AvgPoolGrad", {n.input(0), dy[0]}, WindowAttrs(n, true)));
        return Status::OK();
      }));
  r.Register(Def("AvgPoolGrad", {"x_like", "dy"}, ShapedLike(0, true)));
  r.Register(Def(
      "Dropout", {"x"}, DropoutShape, [](const Scope& s, const Node& n, const Grad& dy, Grad* dx) {
        (*dx)[0] = ops::DropoutGrad(s, dy[0], n.attr<double>("rate"), n.attr<int64_t>("seed"));
        return Status::OK();
      }));
  r.Register(Def("DropoutGrad", {"dy"}, DropoutShape));
}

namespace ops {

Output BiasAdd(const Scope& s, Output x, Output bias) { return s.AddOp("BiasAdd", {x, bias}); }
Output BiasAddGrad(const Scope& s, Output dy) { return s.AddOp("BiasAddGrad", {dy}); }
Output Softmax(const Scope& s, Output logits) { return s.AddOp("Softmax", {logits}); }
Output LogSoftmax(const Scope& s, Output logits) { return s.AddOp("LogSoftmax", {logits}); }
Output SoftmaxGrad(const Scope& s, Output y, Output dy) { return s.AddOp("SoftmaxGrad", {y, dy}); }
Output LogSoftmaxGrad(const Scope& s, Output y, Output dy) {
  return s.AddOp("LogSoftmaxGrad", {y, dy});
}
std::vector<Output> SparseSoftmaxCrossEntropyWithLogits(const Scope& s, Output logits,
                                                        Output labels) {
  Node* n = s.AddOp("SparseSoftmaxCrossEntropyWithLogits", {logits, labels}, {}, "xent");
  if (!n) return {Output(), Output()};
  return {Output(n, 0), Output(n, 1)};
}
Output Conv2D(const Scope& s, Output input, Output filter, const std::vector<int64_t>& strides,
              const std::string& padding) {
  return s.AddOp("Conv2D", {input, filter}, {{"strides", strides}, {"padding", padding}});
}
Output Conv2DBackpropInput(const Scope& s, Output input_like, Output filter, Output dy,
                           const std::vector<int64_t>& strides, const std::string& padding) {
  return s.AddOp("Conv2DBackpropInput", {input_like, filter, dy},
                 {{"strides", strides}, {"padding", padding}});
}
Output Conv2DBackpropFilter(const Scope& s, Output input, Output filter_like, Output dy,
                            const std::vector<int64_t>& strides, const std::string& padding) {
  return s.AddOp("Conv2DBackpropFilter", {input, filter_like, dy},
                 {{"strides", strides}, {"padding", padding}});
}
Output MaxPool(const Scope& s, Output x, const std::vector<int64_t>& ksize,
               const std::vector<int64_t>& strides, const std::string& padding) {
  return s.AddOp("MaxPool", {x}, {{"ksize", ksize}, {"strides", strides}, {"padding", padding}});
}
Output MaxPoolGrad(const Scope& s, Output x_like, Output argmax, Output dy,
                   const std::vector<int64_t>& ksize, const std::vector<int64_t>& strides,
                   const std::string& padding) {
  return s.AddOp("MaxPoolGrad", {x_like, argmax, dy},
                 {{"ksize", ksize}, {"strides", strides}, {"padding", padding}});
}
Output AvgPool(const Scope& s, Output x, const std::vector<int64_t>& ksize,
               const std::vector<int64_t>& strides, const std::string& padding) {
  return s.AddOp("AvgPool", {x}, {{"ksize", ksize}, {"strides", strides}, {"padding", padding}});
}
Output AvgPoolGrad(const Scope& s, Output x_like, Output dy, const std::vector<int64_t>& ksize,
                   const std::vector<int64_t>& strides, const std::string& padding) {
  return s.AddOp("AvgPoolGrad", {x_like, dy},
                 {{"ksize", ksize}, {"strides", strides}, {"padding", padding}});
}
Output Dropout(const Scope& s, Output x, double rate, int64_t seed) {
  return s.AddOp("Dropout", {x}, {{"rate", rate}, {"seed", seed}});
}
Output DropoutGrad(const Scope& s, Output dy, double rate, int64_t seed) {
  return s.AddOp("DropoutGrad", {dy}, {{"rate", rate}, {"seed", seed}});
}

// Composites: built from the ops above, so their gradients are those ops' gradients.
std::vector<Output> Moments(const Scope& s, Output x, const std::vector<int64_t>& axes,
                            bool keep_dims) {
  Output mean = Mean(s, x, axes, keep_dims);
  Output var = Mean(s, Square(s, Sub(s, x, mean)), axes, keep_dims);
  return {mean, var};
}

Output Normalize(const Scope& s, Output x, Output mean, Output variance, Output gamma, Output beta,
                 double epsilon) {
  if (!x.valid()) return {};
  Output eps = ScalarConst(s, epsilon, x.dtype());
  Output scale = Div(s, gamma, Sqrt(s, Add(s, variance, eps)));
  return Add(s, Mul(s, Sub(s, x, mean), scale), beta);
}

Output LayerNorm(const Scope& s, Output x, Output gamma, Output beta, double epsilon) {
  if (!x.valid()) return {};
  std::vector<Output> m = Moments(s, x, {x.shape().rank() - 1}, /*keep_dims=*/true);
  return Normalize(s, x, m[0], m[1], gamma, beta, epsilon);
}

}  // namespace ops
}  // namespace mpiflow
