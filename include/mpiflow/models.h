// The reference models, built from ops: an MLP 784-256-256-10, a LeNet-style CNN and a wide MLP
// 784-2048-2048-2048-10 (for model parallelism), each with
// a loss and an accuracy count. Not a layers library: Dense and Conv are the two helpers needed.
#pragma once

#include <string>

#include "mpiflow/scope.h"

namespace mpiflow {

enum class ModelKind { kMlp, kCnn, kWideMlp };
StatusOr<ModelKind> ParseModel(const std::string& name);  // "mlp", "cnn" or "wide_mlp"
const char* ModelName(ModelKind kind);

struct Model {
  std::string name;
  Output images;   // placeholder (batch, 784) float32 in [0, 1]
  Output labels;   // placeholder (batch) int32
  Output logits;   // (batch, classes)
  Output loss;     // scalar: mean sparse softmax cross-entropy
  Output correct;  // scalar float32: how many of the batch are classified right
  double forward_flops_per_example = 0;  // 2 x multiply-adds of the forward pass
  // forward + weight gradients + input gradients of every layer but the first (the images need
  // none, and the Session prunes that op): what one training step computes per example
  double train_flops_per_example = 0;
};

// Variables are seeded from `seed` (one stream per layer).
StatusOr<Model> BuildModel(const Scope& s, ModelKind kind, int64_t seed, int num_classes = 10);

// x (batch, in) -> (batch, units); variables <scope>/kernel (in, units) and <scope>/bias (units).
Output Dense(const Scope& s, Output x, int64_t units, bool relu, int64_t seed);
// x (batch, h, w, c) -> SAME 'size'x'size' conv, stride 1, bias, ReLU: (batch, h, w, filters).
Output ConvRelu(const Scope& s, Output x, int64_t size, int64_t filters, int64_t seed);

}  // namespace mpiflow
