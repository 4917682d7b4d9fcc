// Model files: parsing (every malformed case a clear error naming the file, line, section and
// key), building (shape errors naming the layer), the built-in files against the graphs that
// were hard-coded before them (bit-identical weights after training steps), and the layers
// model files add (batch_norm, layer_norm, add) by finite differences and by closed form.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>

#include "mpiflow/data.h"
#include "mpiflow/gradients.h"
#include "mpiflow/models.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/session.h"
#include "test_util.h"

namespace mpiflow {
namespace {

// ---- The reference: the hard-coded MLP, CNN and wide MLP as they were built before model
// files replaced them (src/train/models.cc at b4efd5a), fed (batch, 28, 28, 1).
Output RefDense(const Scope& s, Output x, int64_t units, bool relu, int64_t seed) {
  const int64_t in = x.shape().dim(x.shape().rank() - 1);
  Output w = ops::Variable(s.WithOpName("kernel"), ops::GlorotUniform(s, Shape{in, units}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
  Output y = ops::BiasAdd(s, ops::MatMul(s, x, w), b);
  return relu ? ops::Relu(s, y) : y;
}

Output RefConvRelu(const Scope& s, Output x, int64_t size, int64_t filters, int64_t seed) {
  const int64_t in = x.shape().dim(3);
  Output f = ops::Variable(s.WithOpName("kernel"),
                           ops::GlorotUniform(s, Shape{size, size, in, filters}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{filters}));
  return ops::Relu(s, ops::BiasAdd(s, ops::Conv2D(s, x, f, {1, 1}, "SAME"), b));
}

struct RefModel {
  Output features, labels, loss;
};

RefModel BuildReference(const Scope& s, const std::string& kind, int64_t seed) {
  RefModel m;
  m.features = ops::Placeholder(s.WithOpName("features"), DType::kFloat32, Shape{-1, 28, 28, 1});
  m.labels = ops::Placeholder(s.WithOpName("labels"), DType::kInt32, Shape{-1});
  Output logits;
  if (kind == "mlp" || kind == "wide_mlp") {
    const int64_t width = kind == "mlp" ? 256 : 2048;
    const int hidden = kind == "mlp" ? 2 : 3;
    Output h = ops::Reshape(s, m.features, {-1, 784});
    for (int l = 1; l <= hidden; ++l) {
      h = RefDense(s.NewSubScope(StrCat("dense_", l)), h, width, true, seed * 1000 + l);
    }
    logits = RefDense(s.NewSubScope(StrCat("dense_", hidden + 1)), h, 10, false,
                      seed * 1000 + hidden + 1);
  } else {
    Output x = m.features;
    x = RefConvRelu(s.NewSubScope("conv_1"), x, 5, 32, seed * 1000 + 1);
    x = ops::MaxPool(s, x, {2, 2}, {2, 2}, "VALID");
    x = RefConvRelu(s.NewSubScope("conv_2"), x, 5, 64, seed * 1000 + 2);
    x = ops::MaxPool(s, x, {2, 2}, {2, 2}, "VALID");
    x = ops::Reshape(s, x, {-1, 7 * 7 * 64});
    x = RefDense(s.NewSubScope("dense_1"), x, 128, true, seed * 1000 + 3);
    logits = RefDense(s.NewSubScope("dense_2"), x, 10, false, seed * 1000 + 4);
  }
  m.loss = ops::Mean(s, ops::SparseSoftmaxCrossEntropyWithLogits(s, logits, m.labels)[0], {0});
  return m;
}

// Trains `steps` Adam steps on synthetic batches; returns every variable by name.
std::map<std::string, std::vector<float>> TrainSteps(const Scope& s, Output features, Output labels,
                                                     Output loss, int steps) {
  OptimizerOptions adam;
  adam.kind = OptimizerKind::kAdam;
  adam.lr.base = 1e-3;
  StatusOr<TrainOp> train = Minimize(s, loss, adam);
  EXPECT_TRUE(train.ok()) << train.status();
  Node* init = ops::InitOp(s);
  EXPECT_TRUE(s.ok()) << s.status();
  Session session(s.graph());
  EXPECT_TRUE(session.RunTargets({init}).ok());
  Dataset data = SyntheticDataset(16 * steps, 10, 5);
  BatchStreamOptions o;
  o.batch_size = 16;
  o.prefetch = 0;
  BatchStream stream(&data, o);
  Batch b;
  for (int i = 0; i < steps && stream.Next(&b); ++i) {
    Status st =
        session.Run({{features, b.features}, {labels, b.labels}}, {}, {train->train}, nullptr);
    EXPECT_TRUE(st.ok()) << st;
  }
  std::map<std::string, std::vector<float>> vars;
  for (const VariableInfo& v : s.graph()->variables()) {
    StatusOr<Tensor> t = session.ReadVariable(v.variable->name());
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) continue;
    vars[v.variable->name()].assign(t->data<float>(), t->data<float>() + t->num_elements());
  }
  return vars;
}

class BuiltinModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BuiltinModelTest, TrainsToTheSameBitsAsTheHardCodedGraph) {
  const std::string name = GetParam();
  const int steps = name == "wide_mlp" ? 2 : 5;
  Scope ref_scope = Scope::NewRootScope();
  RefModel ref = BuildReference(ref_scope, name, 42);
  auto want = TrainSteps(ref_scope, ref.features, ref.labels, ref.loss, steps);

  Scope s = Scope::NewRootScope();
  StatusOr<Model> m = BuildModel(s, name, ModelInput{Shape{28, 28, 1}, 10}, 42);
  ASSERT_TRUE(m.ok()) << m.status();
  auto got = TrainSteps(s, m->features, m->labels, m->loss, steps);
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [var, values] : want) {
    ASSERT_EQ(got.count(var), 1u) << var;
    ASSERT_EQ(got[var].size(), values.size()) << var;
    EXPECT_EQ(std::memcmp(got[var].data(), values.data(), values.size() * sizeof(float)), 0)
        << var << " differs after " << steps << " steps";
  }
}

INSTANTIATE_TEST_SUITE_P(Builtins, BuiltinModelTest, ::testing::Values("mlp", "cnn", "wide_mlp"));

TEST(ModelFile, TheBuiltinsAreTheFilesInModels) {
  EXPECT_EQ(BuiltinModelNames(), (std::vector<std::string>{"cnn", "embed_bag", "mlp", "wide_mlp"}));
  for (const std::string& name : BuiltinModelNames()) {
    std::ifstream f(StrCat(MPIFLOW_SOURCE_DIR, "/models/", name, ".ini"));
    std::stringstream text;
    text << f.rdbuf();
    EXPECT_EQ(BuiltinModelText(name), text.str()) << name;
  }
}

TEST(ModelFile, SummaryCountsParametersAndFlops) {
  Scope s = Scope::NewRootScope();
  StatusOr<ModelSpec> spec = LoadModelSpec("cnn");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const ModelInput in{Shape{28, 28, 1}, 10};
  StatusOr<Model> m = BuildModel(s, *spec, in, 1);
  ASSERT_TRUE(m.ok()) << m.status();
  // conv 5x5x1x32 + 32, conv 5x5x32x64 + 64, dense 3136x128 + 128, dense 128x10 + 10
  const int64_t params = 832 + 51264 + 401536 + 1290;
  int64_t total = 0;
  for (const LayerSummary& l : m->layers) total += l.parameters;
  EXPECT_EQ(total, params);
  const double fwd = 2.0 * (28 * 28 * 32 * 25 + 14 * 14 * 64 * 25 * 32 + 3136 * 128 + 128 * 10);
  EXPECT_DOUBLE_EQ(m->forward_flops_per_example, fwd);
  EXPECT_DOUBLE_EQ(m->train_flops_per_example, 3 * fwd - 2.0 * 28 * 28 * 32 * 25);
  const std::string text = ModelSummaryText(*spec, in, *m);
  EXPECT_NE(text.find("models/cnn.ini (built in): 7 layers, input (batch, 28, 28, 1), 10 classes"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("pool_2           max_pool    (batch, 7, 7, 64)"), std::string::npos) << text;
  EXPECT_NE(text.find(StrCat("total: ", params, " parameters")), std::string::npos) << text;
}

// ---- The layers model files add, in closed form.

// A model of `layers` over (batch, 4) examples and 4 classes, built and initialised.
struct Small {
  Scope s = Scope::NewRootScope();
  Model m;
  std::unique_ptr<Session> session;
};

void BuildSmall(const std::string& layers, Small* out) {
  StatusOr<ModelSpec> spec = ParseModelSpec(layers, "small.ini");
  ASSERT_TRUE(spec.ok()) << spec.status();
  StatusOr<Model> m = BuildModel(out->s, *spec, ModelInput{Shape{4}, 4}, 1);
  ASSERT_TRUE(m.ok()) << m.status();
  out->m = *m;
  Node* init = ops::InitOp(out->s);
  out->session = std::make_unique<Session>(out->s.graph());
  ASSERT_TRUE(out->session->RunTargets({init}).ok());
}

Tensor RunSmall(Small& small, Output fetch, const Tensor& x) {
  std::vector<Tensor> out;
  std::vector<int32_t> alternate;  // 0, 1, 0, ...
  for (int64_t i = 0; i < x.shape().dim(0); ++i) alternate.push_back(static_cast<int32_t>(i % 2));
  Tensor labels = Tensor::FromVector<int32_t>(Shape{x.shape().dim(0)}, alternate);
  Status st =
      small.session->Run({{small.m.features, x}, {small.m.labels, labels}}, {fetch}, {}, &out);
  EXPECT_TRUE(st.ok()) << st;
  return st.ok() ? out[0] : Tensor();
}

TEST(ModelLayers, BatchNormTrainsOnTheBatchAndInfersWithMovingStatistics) {
  Small n;
  BuildSmall("[bn]\ntype = batch_norm\nmomentum = 0.9\nepsilon = 0.001\n", &n);
  // Two examples: per channel mean (1, 2, 3, 4) and population variance (1, 4, 0, 1).
  const Tensor x = testing::F32(Shape{2, 4}, {0, 0, 3, 3, 2, 4, 3, 5});
  // Training path: (x - mean) / sqrt(var + eps) (gamma 1, beta 0).
  const double s1 = 1 / std::sqrt(1.001), s4 = 1 / std::sqrt(4.001), s0 = 1 / std::sqrt(0.001);
  testing::ExpectNear(RunSmall(n, n.m.logits, x), Shape{2, 4},
                      {-s1, -2 * s4, 0 * s0, -s1, s1, 2 * s4, 0, s1}, 1e-5);
  // That run moved the moving statistics 10% of the way from (0, 1) to the batch's.
  StatusOr<Tensor> mean = n.session->ReadVariable("bn/moving_mean");
  StatusOr<Tensor> var = n.session->ReadVariable("bn/moving_variance");
  ASSERT_TRUE(mean.ok() && var.ok());
  testing::ExpectNear(*mean, Shape{4}, {0.1, 0.2, 0.3, 0.4});
  testing::ExpectNear(*var, Shape{4}, {1.0, 1.3, 0.9, 1.0});
  // Inference path: the moving statistics, and it moves nothing.
  std::vector<double> want;
  const std::vector<double> mu = {0.1, 0.2, 0.3, 0.4}, v = {1.0, 1.3, 0.9, 1.0};
  for (int e = 0; e < 2; ++e) {
    for (int c = 0; c < 4; ++c) {
      want.push_back((testing::AsDoubles(x)[e * 4 + c] - mu[c]) / std::sqrt(v[c] + 0.001));
    }
  }
  testing::ExpectNear(RunSmall(n, n.m.inference_logits, x), Shape{2, 4}, want, 1e-5);
  EXPECT_EQ(testing::AsDoubles(*n.session->ReadVariable("bn/moving_mean")),
            testing::AsDoubles(*mean));
}

TEST(ModelLayers, LayerNormNormalisesEachExample) {
  Small n;
  BuildSmall("[ln]\ntype = layer_norm\nepsilon = 0.001\n", &n);
  // (0, 2, 4, 6): mean 3, variance 5; (1, 1, 1, 5): mean 2, variance 3.
  const Tensor x = testing::F32(Shape{2, 4}, {0, 2, 4, 6, 1, 1, 1, 5});
  const double a = 1 / std::sqrt(5.001), b = 1 / std::sqrt(3.001);
  testing::ExpectNear(RunSmall(n, n.m.logits, x), Shape{2, 4},
                      {-3 * a, -a, a, 3 * a, -b, -b, -b, 3 * b}, 1e-5);
  EXPECT_EQ(n.m.logits, n.m.inference_logits);  // nothing differs: one path
}

TEST(ModelLayers, AddSumsAnEarlierLayersOutputAndDropoutIsOffForInference) {
  Small n;
  BuildSmall(
      "[in]\ntype = reshape\nshape = 4\n[drop]\ntype = dropout\nrate = 0.5\n"
      "[skip]\ntype = add\nfrom = in\n",
      &n);
  const Tensor x = testing::F32(Shape{2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  // Training: x + dropout(x), each dropped element 0 and each kept one 2x.
  std::vector<double> got = testing::AsDoubles(RunSmall(n, n.m.logits, x));
  const std::vector<double> xs = testing::AsDoubles(x);
  int kept = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    ASSERT_TRUE(got[i] == xs[i] || got[i] == 3 * xs[i]) << i << ": " << got[i];
    kept += got[i] == 3 * xs[i];
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, 8);
  // Inference: x + x.
  testing::ExpectNear(RunSmall(n, n.m.inference_logits, x), Shape{2, 4},
                      {2, 4, 6, 8, 10, 12, 14, 16});
  EXPECT_EQ(testing::AsDoubles(RunSmall(n, n.m.predictions, x)), (std::vector<double>{3, 3}));
}

TEST(ModelLayers, EmbeddingBagAveragesTheRowsOfAnExamplesIds) {
  for (const char* combiner : {"mean", "sum"}) {
    SCOPED_TRACE(combiner);
    Small n;
    BuildSmall(StrCat("[e]\ntype = embedding_bag\nvocab = 6\ndim = 4\ncombiner = ", combiner, "\n"),
               &n);
    // Ids 0, 1 (two padding slots); 2, 2, 5 and a padding slot; no word at all.
    const Tensor x = testing::F32(Shape{3, 4}, {0, 1, -1, -1, 2, 2, 5, -1, -1, -1, -1, -1});
    const std::vector<double> table = testing::AsDoubles(*n.session->ReadVariable("e/embeddings"));
    ASSERT_EQ(table.size(), 24u);
    for (double v : table) ASSERT_TRUE(v >= -0.05 && v <= 0.05) << v;  // uniform(-0.05, 0.05)
    const bool mean = std::string(combiner) == "mean";
    std::vector<double> want;
    for (int c = 0; c < 4; ++c) want.push_back((table[0 + c] + table[4 + c]) / (mean ? 2 : 1));
    for (int c = 0; c < 4; ++c) {
      want.push_back((2 * table[8 + c] + table[20 + c]) / (mean ? 3 : 1));
    }
    for (int c = 0; c < 4; ++c) want.push_back(0.0);
    testing::ExpectNear(RunSmall(n, n.m.logits, x), Shape{3, 4}, want, 1e-6);
  }
}

TEST(ModelLayers, EmbeddingBagStepUpdatesOnlyTheRowsItsBatchTouched) {
  Scope s = Scope::NewRootScope();
  StatusOr<ModelSpec> spec = ParseModelSpec(
      "[e]\ntype = embedding_bag\nvocab = 6\ndim = 3\n[d]\ntype = dense\nunits = 2\n", "bag.ini");
  ASSERT_TRUE(spec.ok()) << spec.status();
  StatusOr<Model> m = BuildModel(s, *spec, ModelInput{Shape{3}, 2}, 7);
  ASSERT_TRUE(m.ok()) << m.status();
  OptimizerOptions sgd;  // the sparse update (SparseApplyGradientDescent)
  sgd.kind = OptimizerKind::kSgd;
  sgd.lr.base = 0.5;
  StatusOr<TrainOp> train = Minimize(s, m->loss, sgd);
  ASSERT_TRUE(train.ok()) << train.status();
  Node* init = ops::InitOp(s);
  Session session(s.graph());
  ASSERT_TRUE(session.RunTargets({init}).ok());
  const std::vector<double> before = testing::AsDoubles(*session.ReadVariable("e/embeddings"));
  const Tensor x = testing::F32(Shape{2, 3}, {1, 4, -1, 4, 4, 4});
  const Tensor y = Tensor::FromVector<int32_t>(Shape{2}, {0, 1});
  ASSERT_TRUE(session.Run({{m->features, x}, {m->labels, y}}, {}, {train->train}, nullptr).ok());
  const std::vector<double> after = testing::AsDoubles(*session.ReadVariable("e/embeddings"));
  for (int row = 0; row < 6; ++row) {
    bool moved = false;
    for (int c = 0; c < 3; ++c) moved = moved || after[row * 3 + c] != before[row * 3 + c];
    EXPECT_EQ(moved, row == 1 || row == 4) << "row " << row;
  }
  // An id past the table is an error naming it, not a read out of bounds.
  const Tensor bad = testing::F32(Shape{1, 3}, {1, 6, -1});
  Status st = session.Run({{m->features, bad}}, {m->logits}, {}, nullptr);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("index 6 at position 1 is out of range [0, 6)"), std::string::npos)
      << st;
}

// ---- Malformed files: each error names the place.
struct BadFile {
  const char* text;
  const char* error;
};

class MalformedModelTest : public ::testing::TestWithParam<BadFile> {};

TEST_P(MalformedModelTest, IsAClearError) {
  StatusOr<ModelSpec> spec = ParseModelSpec(GetParam().text, "my.ini");
  Status st = spec.status();
  if (spec.ok()) {  // some mistakes show only against the data's shape
    Scope s = Scope::NewRootScope();
    st = BuildModel(s, *spec, ModelInput{Shape{28, 28, 1}, 10}, 1).status();
  }
  ASSERT_FALSE(st.ok()) << GetParam().text;
  EXPECT_EQ(st.message(), GetParam().error);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, MalformedModelTest,
    ::testing::Values(
        BadFile{"[a]\ntype = dens\nunits = 3\n",
                "my.ini:2: [a] type = dens: must be dense, conv2d, max_pool, avg_pool, flatten, "
                "reshape, dropout, batch_norm, layer_norm, add or embedding_bag"},
        BadFile{"[a]\nunits = 3\n",
                "my.ini:1: [a] needs 'type = ...' (dense, conv2d, max_pool, avg_pool, flatten, "
                "reshape, dropout, batch_norm, layer_norm, add or embedding_bag)"},
        BadFile{"[a]\ntype = dense\n", "my.ini:1: [a] needs 'units = ...' (an integer)"},
        BadFile{"[a]\ntype = dense\nunits = 0\n", "my.ini:3: [a] units = 0: must be >= 1"},
        BadFile{"[a]\ntype = dense\nunits = ten\n", "my.ini:3: [a] units = ten: not an integer"},
        BadFile{"[a]\ntype = dense\nunits = 10\nfilters = 3\n",
                "my.ini:4: [a] filters = 3: 'filters' is not a key of a dense layer"},
        BadFile{"[a]\ntype = dense\nunits = 10\nunits = 3\n",
                "my.ini:4: [a] units again (first on line 3)"},
        BadFile{"[a]\ntype = flatten\n[a]\ntype = flatten\n",
                "my.ini:3: section [a] again (first on line 1): names must differ"},
        BadFile{"units = 3\n",
                "my.ini:1: 'units = 3' comes before the first [section]: every key belongs to a "
                "layer"},
        BadFile{"[a b]\n",
                "my.ini:1: '[a b]' is not a section name (letters, digits and _ in [ ])"},
        BadFile{"[a]\ntype dense\n", "my.ini:2: 'type dense' is neither [section] nor key = value"},
        BadFile{"# nothing\n",
                "my.ini: no layers (a model file has one [section] per layer; see "
                "models/README.md)"},
        BadFile{"[a]\ntype = dropout\nrate = 1\n", "my.ini:3: [a] rate = 1: must be in [0, 1)"},
        BadFile{"[a]\ntype = conv2d\nfilters = 4\nkernel = 3\npadding = full\n",
                "my.ini:5: [a] padding = full: must be same or valid"},
        BadFile{"[a]\ntype = flatten\n[b]\ntype = add\nfrom = c\n[c]\ntype = flatten\n",
                "my.ini:5: [b] from = c: not an earlier section: 'from' must name a layer above "
                "this one (a later one would make a cycle)"},
        BadFile{"[b]\ntype = add\nfrom = b\n",
                "my.ini:3: [b] from = b: a layer cannot add its own output (a cycle)"},
        BadFile{"[l]\ntype = softmax\n[loss]\ntype = hinge\n",
                "my.ini:2: [l] type = softmax: must be dense, conv2d, max_pool, avg_pool, "
                "flatten, reshape, dropout, batch_norm, layer_norm, add or embedding_bag"},
        BadFile{"[f]\ntype = flatten\n[loss]\ntype = hinge\n",
                "my.ini:4: [loss] type = hinge: must be softmax_cross_entropy"},
        // Shapes, against (batch, 28, 28, 1) and 10 classes.
        BadFile{"[d]\ntype = dense\nunits = 10\n",
                "my.ini:1: [d] (dense): needs a flat input (batch, features), gets (batch, 28, "
                "28, 1): put a [flatten] layer before it"},
        BadFile{"[f]\ntype = flatten\n[c]\ntype = conv2d\nfilters = 3\nkernel = 3\n",
                "my.ini:3: [c] (conv2d): needs (batch, height, width, channels), gets (batch, "
                "784): use data with a channel dimension or a [reshape] layer"},
        BadFile{"[r]\ntype = reshape\nshape = 5, -1\n",
                "my.ini:1: [r] (reshape): cannot reshape (batch, 28, 28, 1) (784 values per "
                "example) to (batch, 5, -1)"},
        BadFile{"[f]\ntype = flatten\n[d]\ntype = dense\nunits = 7\n",
                "my.ini:3: [d] (dense): the last layer gives the logits and must output (batch, "
                "10) for the data's 10 classes, not (batch, 7)"},
        BadFile{"[f]\ntype = flatten\n[d]\ntype = dense\nunits = 10\n[s]\ntype = add\nfrom = f\n",
                "my.ini:6: [s] (add): adds [f]'s (batch, 784) to the previous layer's (batch, "
                "10): the shapes must be the same"},
        BadFile{"[p]\ntype = max_pool\nsize = 64\n",
                "my.ini:1: [p] (max_pool): MaxPool node 'p/MaxPool': window 64 is larger than the "
                "input dimension 28 with VALID padding"},
        BadFile{"[e]\ntype = embedding_bag\nvocab = 10\n",
                "my.ini:1: [e] needs 'dim = ...' (an integer)"},
        BadFile{"[e]\ntype = embedding_bag\nvocab = 20000000\ndim = 4\n",
                "my.ini:3: [e] vocab = 20000000: must be at most 16777216 (ids travel as "
                "float32)"},
        BadFile{"[e]\ntype = embedding_bag\nvocab = 16000000\ndim = 100000\n",
                "my.ini:4: [e] dim = 100000: a 16000000 x 100000 table is more than 2^40 values"},
        BadFile{"[e]\ntype = embedding_bag\nvocab = 10\ndim = 4\ncombiner = max\n",
                "my.ini:5: [e] combiner = max: must be mean or sum"},
        BadFile{"[e]\ntype = embedding_bag\nvocab = 10\ndim = 4\n",
                "my.ini:1: [e] (embedding_bag): needs (batch, ids): each example a row of word "
                "ids, gets (batch, 28, 28, 1)"}));

}  // namespace
}  // namespace mpiflow
