// BuildModel: the MLP and CNN graphs with loss and accuracy. Not the training loop (trainer.cc).
#include "mpiflow/models.h"

#include "mpiflow/enum_names.h"
#include "mpiflow/ops.h"

namespace mpiflow {

Output Dense(const Scope& s, Output x, int64_t units, bool relu, int64_t seed) {
  if (!x.valid()) return {};
  const int64_t in = x.shape().dim(x.shape().rank() - 1);
  Output w = ops::Variable(s.WithOpName("kernel"), ops::GlorotUniform(s, Shape{in, units}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
  Output y = ops::BiasAdd(s, ops::MatMul(s, x, w), b);
  return relu ? ops::Relu(s, y) : y;
}

Output ConvRelu(const Scope& s, Output x, int64_t size, int64_t filters, int64_t seed) {
  if (!x.valid()) return {};
  const int64_t in = x.shape().dim(3);
  Output f = ops::Variable(s.WithOpName("kernel"),
                           ops::GlorotUniform(s, Shape{size, size, in, filters}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{filters}));
  return ops::Relu(s, ops::BiasAdd(s, ops::Conv2D(s, x, f, {1, 1}, "SAME"), b));
}

namespace {
constexpr EnumName<ModelKind> kModels[] = {
    {ModelKind::kMlp, "mlp"}, {ModelKind::kCnn, "cnn"}, {ModelKind::kWideMlp, "wide_mlp"}};
}  // namespace

StatusOr<ModelKind> ParseModel(const std::string& name) {
  return ParseEnum(kModels, "--model", name);
}

const char* ModelName(ModelKind kind) { return EnumToName(kModels, kind); }

StatusOr<Model> BuildModel(const Scope& s, ModelKind kind, int64_t seed, int num_classes) {
  Model m;
  m.name = ModelName(kind);
  m.images = ops::Placeholder(s.WithOpName("images"), DType::kFloat32, Shape{-1, 784});
  m.labels = ops::Placeholder(s.WithOpName("labels"), DType::kInt32, Shape{-1});
  if (kind == ModelKind::kMlp) {
    Output h = Dense(s.NewSubScope("dense_1"), m.images, 256, true, seed * 1000 + 1);
    h = Dense(s.NewSubScope("dense_2"), h, 256, true, seed * 1000 + 2);
    m.logits = Dense(s.NewSubScope("dense_3"), h, num_classes, false, seed * 1000 + 3);
    m.forward_flops_per_example = 2.0 * (784 * 256 + 256 * 256 + 256 * num_classes);
    m.train_flops_per_example = 3 * m.forward_flops_per_example - 2.0 * 784 * 256;
  } else if (kind == ModelKind::kWideMlp) {
    // Wide enough that one rank's step is long and a split across ranks pays (the pipeline).
    constexpr int64_t kWidth = 2048;
    Output h = m.images;
    for (int l = 1; l <= 3; ++l) {
      h = Dense(s.NewSubScope(StrCat("dense_", l)), h, kWidth, true, seed * 1000 + l);
    }
    m.logits = Dense(s.NewSubScope("dense_4"), h, num_classes, false, seed * 1000 + 4);
    m.forward_flops_per_example = 2.0 * (784 * kWidth + 2 * kWidth * kWidth + kWidth * num_classes);
    m.train_flops_per_example = 3 * m.forward_flops_per_example - 2.0 * 784 * kWidth;
  } else {
    Output x = ops::Reshape(s, m.images, {-1, 28, 28, 1});
    x = ConvRelu(s.NewSubScope("conv_1"), x, 5, 32, seed * 1000 + 1);
    x = ops::MaxPool(s, x, {2, 2}, {2, 2}, "VALID");  // (batch, 14, 14, 32)
    x = ConvRelu(s.NewSubScope("conv_2"), x, 5, 64, seed * 1000 + 2);
    x = ops::MaxPool(s, x, {2, 2}, {2, 2}, "VALID");  // (batch, 7, 7, 64)
    x = ops::Reshape(s, x, {-1, 7 * 7 * 64});
    x = Dense(s.NewSubScope("dense_1"), x, 128, true, seed * 1000 + 3);
    m.logits = Dense(s.NewSubScope("dense_2"), x, num_classes, false, seed * 1000 + 4);
    m.forward_flops_per_example =
        2.0 * (28 * 28 * 32 * 25 * 1 + 14 * 14 * 64 * 25 * 32 + 3136 * 128 + 128 * num_classes);
    m.train_flops_per_example = 3 * m.forward_flops_per_example - 2.0 * 28 * 28 * 32 * 25;
  }
  std::vector<Output> xent = ops::SparseSoftmaxCrossEntropyWithLogits(s, m.logits, m.labels);
  m.loss = ops::Mean(s.WithOpName("loss"), xent[0], {0});
  Output predicted = ops::ArgMax(s, m.logits, 1);
  Output hits = ops::Equal(s, predicted, ops::Cast(s, m.labels, DType::kInt64));
  m.correct = ops::Sum(s.WithOpName("correct"), ops::Cast(s, hits, DType::kFloat32), {0});
  MPIFLOW_RETURN_IF_ERROR(s.status());
  return m;
}

}  // namespace mpiflow
