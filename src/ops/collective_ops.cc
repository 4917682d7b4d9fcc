// Collective ops for data-parallel gradient synchronisation: AllreduceStart packs a bucket of
// gradients (times a per-step scale) into one buffer and starts its allreduce; AllreduceWait
// waits for it and hands one gradient back. CrossReplicaSum sums a value over the replicas
// inside a step (batch_norm's statistics with sync = true). AllgatherRows gathers a sparse
// gradient's rows from every rank. Definitions, shape functions,
// gradients and builders; the kernels are in kernels/cpu/collective_kernels.cc, the bucketing
// in src/distributed/.
#include "op_util.h"

namespace mpiflow {

void RegisterCollectiveOps(OpRegistry& r) {
  // inputs: scale (scalar), then the bucket's gradients, all of one float dtype; the last
  // `unscaled` of them are packed without the scale.
  // output: packed, each gradient from an offset aligned to 64 bytes (AlignedBucketOffset).
  OpDef start = op_util::Def("AllreduceStart", {"scale_and_grads"}, [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 0, op_util::kFloatTypes));
    if (c.input_shape(0).rank() != 0) return c.Error("input 0 (the scale) must be a scalar");
    std::string bucket;
    int64_t unscaled = 0;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("bucket", &bucket));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("unscaled", &unscaled));
    if (unscaled < 0 || unscaled > c.num_inputs() - 1) {
      return c.Error("unscaled = ", unscaled, " but there are ", c.num_inputs() - 1, " inputs");
    }
    int64_t total = 0;
    for (int i = 1; i < c.num_inputs(); ++i) {
      if (!c.input_shape(i).IsFullyDefined()) {
        return c.Error("gradient ", i - 1, " has shape ", c.input_shape(i).ToString(),
                       "; a bucket needs fully known shapes");
      }
      total = ops::AlignedBucketOffset(total + c.input_shape(i).num_elements(),
                                       DTypeSize(c.input_dtype(0)));
    }
    c.set_output(0, c.input_dtype(0), Shape{total});
    return Status::OK();
  });
  start.variadic = true;
  start.min_inputs = 2;
  start.outputs = {"packed"};
  start.stateful = true;
  start.differentiable = false;
  start.schedule = -1;
  r.Register(std::move(start));

  // inputs: packed (from AllreduceStart), grad (this gradient, for its shape).
  // output: packed[offset : offset + grad's elements], shaped like grad.
  OpDef wait = op_util::Def("AllreduceWait", {"packed", "grad"}, [](InferenceContext& c) {
    MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 1));
    int64_t offset = 0;
    std::string bucket, variable;
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("offset", &offset));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("bucket", &bucket));
    MPIFLOW_RETURN_IF_ERROR(c.GetAttr("variable", &variable));
    const int64_t n = c.input_shape(1).num_elements();
    if (c.input_shape(0).rank() != 1 || offset < 0 || offset + n > c.input_shape(0).dim(0)) {
      return c.Error("slice [", offset, ", ", offset + n, ") is outside the packed buffer ",
                     c.input_shape(0).ToString());
    }
    c.set_output(0, c.input_dtype(1), c.input_shape(1));
    return Status::OK();
  });
  wait.stateful = true;
  wait.differentiable = false;
  wait.schedule = 1;
  r.Register(std::move(wait));

  // x (any shape, float), share (scalar float32: this rank's share of the step's examples) ->
  // the sum of x over the ranks of the Session's communicator; x itself without one. The
  // data-parallel strategy scales each rank's gradients by its share s_q before summing them, so
  // rank q's dx must be (sum over ranks r of s_r dy_r) / s_q: then s_q dx_q carries every rank's
  // weighted term. A rank with share 0 (a stand-in example) gets the unweighted sum, which its
  // scale of 0 removes.
  OpDef sum = op_util::Def(
      "CrossReplicaSum", {"x", "share"},
      [](InferenceContext& c) {
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 0, op_util::kFloatTypes));
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 1, {DType::kFloat32}));
        if (c.input_shape(1).rank() != 0) return c.Error("input 1 (the share) must be a scalar");
        c.set_output(0, c.input_dtype(0), c.input_shape(0));
        return Status::OK();
      },
      [](const Scope& s, const Node& n, const std::vector<Output>& dy, std::vector<Output>* dx) {
        const Output share = n.input(1);
        Output w = dy[0].dtype() == DType::kFloat32 ? share : ops::Cast(s, share, dy[0].dtype());
        // share, or 1 where it is 0
        Output safe = ops::Add(
            s, w, ops::Cast(s, ops::Equal(s, w, ops::ScalarConst(s, 0, w.dtype())), w.dtype()));
        (*dx)[0] = ops::Div(s, ops::CrossReplicaSum(s, ops::Mul(s, dy[0], w), share), safe);
        return Status::OK();
      });
  sum.stateful = true;  // never folded or deduplicated: every rank runs each one
  r.Register(std::move(sum));

  // values (k, ...) float, indices (k) int32/int64, scale (scalar, values' dtype) -> every
  // rank's (scale * values, indices) one after another in rank order: values (K, ...), indices
  // (K), K the sum of the ranks' k. A sparse gradient's synchronisation (AddGradientSync).
  OpDef rows =
      op_util::Def("AllgatherRows", {"values", "indices", "scale"}, [](InferenceContext& c) {
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 0, op_util::kFloatTypes));
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckDType(c, 1, {DType::kInt32, DType::kInt64}));
        MPIFLOW_RETURN_IF_ERROR(op_util::CheckSameDType(c, 0, 2));
        const Shape& values = c.input_shape(0);
        if (values.rank() < 1 || c.input_shape(1).rank() != 1 || c.input_shape(2).rank() != 0) {
          return c.Error("needs values (k, ...), indices (k) and a scalar scale, got ",
                         values.ToString(), ", ", c.input_shape(1).ToString(), " and ",
                         c.input_shape(2).ToString());
        }
        std::vector<int64_t> dims = values.dims();
        for (size_t d = 1; d < dims.size(); ++d) {
          if (dims[d] < 0) return c.Error("the rows' shape must be known, got ", values.ToString());
        }
        std::string variable;
        MPIFLOW_RETURN_IF_ERROR(c.GetAttr("variable", &variable));
        dims[0] = -1;
        c.set_output(0, c.input_dtype(0), Shape(dims));
        c.set_output(1, c.input_dtype(1), Shape{-1});
        return Status::OK();
      });
  rows.outputs = {"values", "indices"};
  rows.stateful = true;
  rows.differentiable = false;
  r.Register(std::move(rows));
}

namespace ops {

int64_t AlignedBucketOffset(int64_t elements, size_t element_size) {
  const int64_t per_line = static_cast<int64_t>(64 / element_size);
  return (elements + per_line - 1) / per_line * per_line;
}

Output AllreduceStart(const Scope& s, Output scale, const std::vector<Output>& grads,
                      const std::string& bucket, const std::string& algorithm, int64_t unscaled,
                      const std::string& compression) {
  std::vector<Output> inputs = {scale};
  inputs.insert(inputs.end(), grads.begin(), grads.end());
  AttrMap attrs = {{"bucket", bucket}, {"algorithm", algorithm}, {"unscaled", unscaled}};
  if (compression != "none") attrs["compression"] = compression;  // absent: none
  return s.AddOp("AllreduceStart", inputs, attrs);
}

Output AllreduceWait(const Scope& s, Output packed, Output grad, int64_t offset,
                     const std::string& bucket, const std::string& variable) {
  return s.AddOp("AllreduceWait", {packed, grad},
                 {{"offset", offset}, {"bucket", bucket}, {"variable", variable}});
}

GatheredRows AllgatherRows(const Scope& s, Output values, Output indices, Output scale,
                           const std::string& variable) {
  Node* n = s.AddOp("AllgatherRows", {values, indices, scale}, {{"variable", variable}});
  if (n == nullptr) return {};
  return {Output(n, 0), Output(n, 1)};
}

Output CrossReplicaSum(const Scope& s, Output x, Output share) {
  return s.AddOp("CrossReplicaSum", {x, share}, {});
}

Output ReplicaShare(const Scope& s) {
  if (Node* n = s.graph()->FindNode("replica_share")) return Output(n);
  const Scope root(s.graph());
  return ops::Identity(root.WithOpName("replica_share"), ops::ScalarConst(root, 1.0));
}

}  // namespace ops
}  // namespace mpiflow
