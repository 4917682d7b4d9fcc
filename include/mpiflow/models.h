// Models from model files: an INI text with one section per layer, in order, parsed once into
// typed layer specs (ParseModelSpec) and built into a graph for the shape of the data
// (BuildModel). The built-in models (mlp, cnn, wide_mlp, embed_bag) are the files in models/,
// compiled in, so a built-in name and a file take the same path. Not the training loop (trainer.h).
//
// The file format (models/README.md has the reference):
//   # a comment
//   [conv_1]                 a layer: the section name scopes its variables (conv_1/kernel)
//   type = conv2d            dense, conv2d, max_pool, avg_pool, flatten, reshape, dropout,
//   filters = 32               batch_norm, layer_norm, add, embedding_bag
//   kernel = 5
//   activation = relu        none, relu, tanh, sigmoid
//   [loss]                   optional; type = softmax_cross_entropy (the default)
// The input shape comes from the data; the last layer's output is the logits (batch, classes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mpiflow/scope.h"

namespace mpiflow {

enum class LayerType {
  kDense,
  kConv2D,
  kMaxPool,
  kAvgPool,
  kFlatten,
  kReshape,
  kDropout,
  kBatchNorm,
  kLayerNorm,
  kAdd,
  kEmbeddingBag
};
const char* LayerTypeName(LayerType t);  // as written in a model file: dense, conv2d, ...
enum class Activation { kNone, kRelu, kTanh, kSigmoid };
enum class Combiner { kMean, kSum };  // embedding_bag: of an example's rows
const char* ActivationName(Activation a);

// One section of a model file, its keys parsed into types (defaults as the format says).
struct LayerSpec {
  std::string name;  // the section
  LayerType type = LayerType::kDense;
  int line = 0;         // of its [section] line
  int64_t units = 0;    // dense; 0 for `units = classes`: the data's class count
  int64_t filters = 0;  // conv2d
  int64_t kernel = 0;   // conv2d: the window's side; pools: `size`
  int64_t stride = 0;   // conv2d (default 1), pools (default: the size)
  std::string padding;  // "SAME" or "VALID": conv2d same, pools valid
  Activation activation = Activation::kNone;  // dense, conv2d
  std::vector<int64_t> shape;                 // reshape: the example's new shape, one -1 allowed
  double rate = 0;                            // dropout
  double momentum = 0.99;  // batch_norm: moving = momentum*moving + (1-momentum)*batch
  double epsilon = 1e-3;   // batch_norm, layer_norm
  bool sync = false;       // batch_norm: statistics over every replica's examples
  std::string from;        // add: an earlier section, added to the previous output
  int64_t vocab = 0;       // embedding_bag: the table's rows (ids 0 to vocab - 1)
  int64_t dim = 0;         // embedding_bag: values per row
  Combiner combiner = Combiner::kMean;
};

enum class LossType { kSoftmaxCrossEntropy };

struct ModelSpec {
  std::string source;  // the file it came from ("models/mlp.ini (built in)" for built-ins)
  std::string name;    // the file's stem: mlp, cnn, ...
  std::vector<LayerSpec> layers;
  LossType loss = LossType::kSoftmaxCrossEntropy;
};

// Parses a model file's text; `source` names it in errors, which say the line, the section and
// the key ("models/x.ini:7: [conv_1] filters = 0: must be >= 1").
StatusOr<ModelSpec> ParseModelSpec(const std::string& text, const std::string& source);
// A built-in name (BuiltinModelNames) or the path of a model file.
StatusOr<ModelSpec> LoadModelSpec(const std::string& name_or_path);
std::vector<std::string> BuiltinModelNames();  // cnn, embed_bag, mlp, wide_mlp
// The text of a built-in model file, "" when there is none of that name.
std::string BuiltinModelText(const std::string& name);

// What the data gives a model: the shape of one example (28x28 grayscale images: (28, 28, 1))
// and the number of classes.
struct ModelInput {
  Shape example;
  int num_classes = 10;
};

// One layer as built: for --print-model and the FLOP count.
struct LayerSummary {
  std::string name, type;
  Shape output;  // (?, ...)
  int64_t parameters = 0;
  double forward_flops = 0;  // per example: 2 x multiply-adds
};

struct Model {
  std::string name;
  Output features;  // placeholder (batch, example...) float32
  Output labels;    // placeholder (batch) int32
  Output logits;    // (batch, classes), the training path (dropout on, batch statistics)
  Output loss;      // scalar: mean sparse softmax cross-entropy
  // scalar float32: how many of the batch are classified right, by the inference path (dropout
  // off, moving statistics); the same nodes as the training path when no layer differs.
  Output correct;
  Output inference_logits;               // (batch, classes): the inference path's logits
  Output predictions;                    // (batch) int64: its class
  double forward_flops_per_example = 0;  // 2 x multiply-adds of the forward pass
  // forward + weight gradients + input gradients of every layer but the first (the features
  // need none, and the Session prunes that op): what one training step computes per example
  double train_flops_per_example = 0;
  std::vector<LayerSummary> layers;
};

// Builds `spec` for `input` under `s`. Variables are seeded from `seed` (one stream per layer
// with variables, seed * 1000 + its number from 1). Shapes are checked layer by layer: an error
// names the file, the section and what does not fit.
StatusOr<Model> BuildModel(const Scope& s, const ModelSpec& spec, const ModelInput& input,
                           int64_t seed);
// LoadModelSpec + BuildModel.
StatusOr<Model> BuildModel(const Scope& s, const std::string& name_or_path, const ModelInput& input,
                           int64_t seed);

// The classifier's head for a graph you build yourself: m.features, m.labels and m.logits (and
// m.inference_logits when it differs: else the logits) set; adds the loss (mean softmax
// cross-entropy), predictions and the correct count.
Status ClassifierModel(const Scope& s, Model* m);

// The layers, their output shapes and parameter counts, and the totals: --print-model.
std::string ModelSummaryText(const ModelSpec& spec, const ModelInput& input, const Model& m);

}  // namespace mpiflow
