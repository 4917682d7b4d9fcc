// Graph-building functions, one per op: ops::MatMul(s, x, w). Each builder, its op definition,
// shape function and gradient live together in src/ops/<family>.cc. Not kernels (kernels/).
// A failed build records the error in the Scope and returns an invalid Output.
#pragma once

#include <string>
#include <vector>

#include "mpiflow/scope.h"

namespace mpiflow {
namespace ops {

// ---- array_ops.cc ----
Output Placeholder(const Scope& s, DType dtype, const Shape& shape);
Output Const(const Scope& s, const Tensor& value);
Output ScalarConst(const Scope& s, double value, DType dtype = DType::kFloat32);
Output Identity(const Scope& s, Output x);
Node* NoOp(const Scope& s);                                   // control dependencies only
Node* Group(const Scope& s, const std::vector<Node*>& deps);  // NoOp depending on `deps`
Output Reshape(const Scope& s, Output x, const std::vector<int64_t>& shape);  // one -1 allowed
Output Transpose(const Scope& s, Output x, const std::vector<int64_t>& perm);
Output Concat(const Scope& s, const std::vector<Output>& values, int64_t axis);
// size -1: to the end of that dimension.
Output Slice(const Scope& s, Output x, const std::vector<int64_t>& begin,
             const std::vector<int64_t>& size);
Output Cast(const Scope& s, Output x, DType dtype);
Output Equal(const Scope& s, Output a, Output b);       // bool
Output ArgMax(const Scope& s, Output x, int64_t axis);  // int64
// params (rows, ...) indexed by int32/int64 indices (n) -> (n, ...). Its gradient is sparse.
Output Gather(const Scope& s, Output params, Output indices);
// Each row of `ids` (batch, n), numbers of which a negative one means "no word" (a float is
// truncated to its row), picks rows of `table` (rows, dim): out (batch, dim) is their "mean"
// (divided by their count; an empty bag gives zeros) or "sum", added in position order. Its
// gradient is sparse (IndexedSlices of the rows used, nothing for the padding), so a step
// updates only its batch's rows. An id past the table is an error naming it.
Output EmbeddingBag(const Scope& s, Output table, Output ids, const std::string& combiner);
Output Zeros(const Scope& s, const Shape& shape, DType dtype = DType::kFloat32);
// Sparse rows as a dense tensor shaped like `like`: out = 0; out[indices[i]] += values[i].
// Gather's gradient is this node; optimizers read its (values, indices) inputs to update only
// the touched rows, so the dense form is computed only if something else consumes it.
Output IndexedSlices(const Scope& s, Output values, Output indices, Output like);

// ---- math_ops.cc (binary ops broadcast numpy-style; reductions with no axes reduce all) ----
Output Add(const Scope& s, Output a, Output b);
Output Sub(const Scope& s, Output a, Output b);
Output Mul(const Scope& s, Output a, Output b);
Output Div(const Scope& s, Output a, Output b);
Output AddN(const Scope& s, const std::vector<Output>& xs);
Output Neg(const Scope& s, Output x);
Output Exp(const Scope& s, Output x);
Output Log(const Scope& s, Output x);
Output Sqrt(const Scope& s, Output x);
Output Square(const Scope& s, Output x);
Output Relu(const Scope& s, Output x);
Output Sigmoid(const Scope& s, Output x);
Output Tanh(const Scope& s, Output x);
Output Sum(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims = false);
Output Mean(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims = false);
Output Max(const Scope& s, Output x, const std::vector<int64_t>& axes, bool keep_dims = false);
Output MatMul(const Scope& s, Output a, Output b, bool transpose_a = false,
              bool transpose_b = false);
// Gradient helpers (ops of their own, used by gradient functions).
Output SumToShapeOf(const Scope& s, Output x, Output like);  // undo broadcasting
Output ReluGrad(const Scope& s, Output dy, Output x);
Output SigmoidGrad(const Scope& s, Output y, Output dy);
Output TanhGrad(const Scope& s, Output y, Output dy);
Output ReduceGrad(const Scope& s, Output dy, Output x, const std::vector<int64_t>& axes, bool mean);
Output MaxGrad(const Scope& s, Output dy, Output x, Output y, const std::vector<int64_t>& axes);

// ---- nn_ops.cc ----
Output BiasAdd(const Scope& s, Output x, Output bias);  // bias over the last dimension
Output BiasAddGrad(const Scope& s, Output dy);
Output Softmax(const Scope& s, Output logits);  // over the last dimension
Output LogSoftmax(const Scope& s, Output logits);
Output SoftmaxGrad(const Scope& s, Output y, Output dy);
Output LogSoftmaxGrad(const Scope& s, Output y, Output dy);
// logits (batch, classes), labels (batch) int32/int64 -> {loss (batch), backprop (batch, classes)}.
std::vector<Output> SparseSoftmaxCrossEntropyWithLogits(const Scope& s, Output logits,
                                                        Output labels);
// NHWC input, HWIO filter; strides {sh, sw}; padding "SAME" or "VALID".
Output Conv2D(const Scope& s, Output input, Output filter, const std::vector<int64_t>& strides,
              const std::string& padding);
Output Conv2DBackpropInput(const Scope& s, Output input_like, Output filter, Output dy,
                           const std::vector<int64_t>& strides, const std::string& padding);
Output Conv2DBackpropFilter(const Scope& s, Output input, Output filter_like, Output dy,
                            const std::vector<int64_t>& strides, const std::string& padding);
// Output 0 is the pooled tensor; output 1 (int32, same shape) where in its window each maximum
// was, ky*kw + kx (the first in scan order), which MaxPoolGrad scatters dy back to.
Output MaxPool(const Scope& s, Output x, const std::vector<int64_t>& ksize,
               const std::vector<int64_t>& strides, const std::string& padding);
Output MaxPoolGrad(const Scope& s, Output x_like, Output argmax, Output dy,
                   const std::vector<int64_t>& ksize, const std::vector<int64_t>& strides,
                   const std::string& padding);
Output AvgPool(const Scope& s, Output x, const std::vector<int64_t>& ksize,
               const std::vector<int64_t>& strides, const std::string& padding);
Output AvgPoolGrad(const Scope& s, Output x_like, Output dy, const std::vector<int64_t>& ksize,
                   const std::vector<int64_t>& strides, const std::string& padding);
// Inverted dropout: keeps each element with probability 1-rate and scales it by 1/(1-rate).
// The mask is a pure function of (seed, step, element), so its gradient recomputes it.
Output Dropout(const Scope& s, Output x, double rate, int64_t seed);
Output DropoutGrad(const Scope& s, Output dy, double rate, int64_t seed);
// Composites of the ops above (their gradient is the ops' gradients):
// {mean, variance} of x over `axes`; the variance is the biased (population) one.
std::vector<Output> Moments(const Scope& s, Output x, const std::vector<int64_t>& axes,
                            bool keep_dims = false);
// (x - mean) * gamma / sqrt(variance + epsilon) + beta, broadcasting numpy-style: batch
// normalisation with (channels) statistics, layer normalisation with (batch, ..., 1) ones.
Output Normalize(const Scope& s, Output x, Output mean, Output variance, Output gamma, Output beta,
                 double epsilon);
// Normalize over x's last dimension, each example by its own statistics; gamma, beta (last dim).
Output LayerNorm(const Scope& s, Output x, Output gamma, Output beta, double epsilon);

// ---- state_ops.cc ----
// A variable; its initial value is `initial` (run the graph's init op, InitOp below).
Output Variable(const Scope& s, Output initial, bool trainable = true);
Output Assign(const Scope& s, Output var, Output value);
Output AssignAdd(const Scope& s, Output var, Output value);
Output AssignSub(const Scope& s, Output var, Output value);
Node* InitOp(const Scope& s);  // groups every variable's initializer
// Seeded initial values: uniform in [minval, maxval), normal truncated at 2 stddev.
Output RandomUniform(const Scope& s, const Shape& shape, double minval, double maxval, int64_t seed,
                     DType dtype = DType::kFloat32);
Output TruncatedNormal(const Scope& s, const Shape& shape, double mean, double stddev, int64_t seed,
                       DType dtype = DType::kFloat32);
// Uniform in +-sqrt(6/(fan_in+fan_out)), fans from the last two dimensions and the rest.
Output GlorotUniform(const Scope& s, const Shape& shape, int64_t seed,
                     DType dtype = DType::kFloat32);

// ---- train_ops.cc: optimizer updates, in place on the variable and its slots ----
Output ApplyGradientDescent(const Scope& s, Output var, Output lr, Output grad);
Output SparseApplyGradientDescent(const Scope& s, Output var, Output lr, Output values,
                                  Output indices);
Output ApplyMomentum(const Scope& s, Output var, Output accum, Output lr, Output grad,
                     double momentum, bool nesterov);
Output ApplyRMSProp(const Scope& s, Output var, Output ms, Output mom, Output lr, Output grad,
                    double rho, double momentum, double epsilon);
// `step` is the int64 global step before this update (bias correction uses step + 1).
Output ApplyAdam(const Scope& s, Output var, Output m, Output v, Output lr, Output step,
                 Output grad, double beta1, double beta2, double epsilon);
// Lazy sparse updates: the gradient is `values` (n, row...) for rows `indices` (n) of `var`
// (rows, row...); the values of a repeated index are summed first, in position order (the same
// bits for the same gradient, on any thread count), then only those rows of var and its slots
// take the dense rule.
Output SparseApplyMomentum(const Scope& s, Output var, Output accum, Output lr, Output values,
                           Output indices, double momentum, bool nesterov);
Output SparseApplyAdam(const Scope& s, Output var, Output m, Output v, Output lr, Output step,
                       Output values, Output indices, double beta1, double beta2, double epsilon);

// Learning rate at an int64 global step. kind: "constant", "step" (times decay_rate every
// decay_steps), "cosine" (to alpha*base over decay_steps); linear warm-up over warmup_steps.
enum class LearningRateSchedule { kConstant, kStep, kCosine };
StatusOr<LearningRateSchedule> ParseLearningRateSchedule(const std::string& name);
const char* LearningRateScheduleName(LearningRateSchedule s);  // constant, step, cosine

struct LearningRateOptions {
  LearningRateSchedule kind = LearningRateSchedule::kConstant;
  double base = 0.01;
  int64_t warmup_steps = 0;
  int64_t decay_steps = 1000;  // mpiflow-train resolves 0 to the length of the run
  double decay_rate = 0.1;
  double alpha = 0.0;
};
Output LearningRate(const Scope& s, Output global_step, const LearningRateOptions& opts);
// The schedule's value at `step` (what the LearningRate op computes, in double).
double LearningRateAt(const LearningRateOptions& opts, int64_t step);
Status ValidateLearningRateOptions(const LearningRateOptions& opts);

// ---- collective_ops.cc: gradient synchronisation (see distributed.h) ----
// Packs scale * grads (one float dtype, known shapes) into one 1-D buffer, each gradient from a
// 64-byte aligned offset, and starts an allreduce (sum) of it on the Session's communicator;
// `algorithm` is "auto", "ring", ...
// The last `unscaled` of grads are packed as they are (values every rank adds up, such as a
// loss and a vote count).
// compression: "none", "fp16" or "bf16" (AllreduceCompression's names).
Output AllreduceStart(const Scope& s, Output scale, const std::vector<Output>& grads,
                      const std::string& bucket, const std::string& algorithm, int64_t unscaled = 0,
                      const std::string& compression = "none");
// Waits for `bucket`'s allreduce; returns packed[offset, offset + size of grad) shaped like
// grad. A NaN or Inf there is an error naming `variable` (no check when `variable` is empty).
Output AllreduceWait(const Scope& s, Output packed, Output grad, int64_t offset,
                     const std::string& bucket, const std::string& variable);
// `elements` rounded up to a multiple of 64 bytes: where the next gradient of a bucket starts.
int64_t AlignedBucketOffset(int64_t elements, size_t element_size);
// Every rank's (scale * values, indices) in rank order: a sparse gradient (an IndexedSlices'
// rows) summed over the ranks by gathering its rows, which the optimizer adds up per index.
// Blocks within the step; without a communicator, this rank's alone. A NaN or Inf in the
// gathered values is an error naming `variable` (no check when it is empty).
struct GatheredRows {
  Output values, indices;
};
GatheredRows AllgatherRows(const Scope& s, Output values, Output indices, Output scale,
                           const std::string& variable);
// x summed over the ranks of the Session's communicator, within the step (x itself without
// one). `share` is ReplicaShare: the gradient weighs each rank's dy by it, as the data-parallel
// strategy weighs the ranks' gradients. Every rank runs the same ones: AddGradientSync chains
// them in graph order and starts no bucket before they are done.
Output CrossReplicaSum(const Scope& s, Output x, Output share);
// This rank's share of the step's examples (its examples / the global batch's; 0 for a stand-in
// example that must not count): the graph's one node named "replica_share", 1 unless fed.
// AddGradientSync takes it as its per-step scale, so the data-parallel strategy feeds it.
Output ReplicaShare(const Scope& s);

}  // namespace ops
}  // namespace mpiflow
