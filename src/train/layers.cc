// BuildModel: a ModelSpec's layers as graph ops, with shape checks that name the file and the
// section, the loss and the accuracy count, and the layer summary (--print-model).
// Not the file format (model_file.cc) and not the training loop (trainer.cc).
//
// Each layer builds two paths that share its variables: the training path (dropout on, batch
// statistics, which update the moving ones) feeds the loss, the inference path (dropout off,
// moving statistics) feeds `correct` and `predictions`. A layer whose two paths compute the same
// builds its ops once, so a model without dropout or batch_norm has a single path.
#include <cstdio>
#include <map>
#include <sstream>

#include "mpiflow/models.h"
#include "mpiflow/ops.h"

namespace mpiflow {
namespace {

struct Paths {
  Output train, eval;
  bool one() const { return train == eval; }
};

// Where a layer is, for errors.
struct Place {
  const ModelSpec& spec;
  const LayerSpec& layer;
  Status Error(const std::string& what) const {
    return InvalidArgument(spec.source, ":", layer.line, ": [", layer.name, "] (",
                           LayerTypeName(layer.type), "): ", what);
  }
};

std::string JoinDims(const std::vector<int64_t>& dims) {
  std::string t;
  for (size_t i = 0; i < dims.size(); ++i) t += (i == 0 ? "" : ", ") + std::to_string(dims[i]);
  return t;
}

std::string ShapeText(const Shape& s) {
  std::string t = "(";
  for (int i = 0; i < s.rank(); ++i) {
    t += i == 0 ? "" : ", ";
    t += s.dim(i) < 0 ? "batch" : std::to_string(s.dim(i));
  }
  return t + ")";
}

Output Activate(const Scope& s, Output x, Activation a) {
  switch (a) {
    case Activation::kRelu:
      return ops::Relu(s, x);
    case Activation::kTanh:
      return ops::Tanh(s, x);
    case Activation::kSigmoid:
      return ops::Sigmoid(s, x);
    case Activation::kNone:
      break;
  }
  return x;
}

// Builds f on the training path, and on the inference path when that differs.
template <typename F>
Paths Both(const Paths& in, F f) {
  Paths out;
  out.train = f(in.train);
  out.eval = in.one() ? out.train : f(in.eval);
  return out;
}

// The layers in one place: each returns its output paths and fills `sum` (parameters, FLOPs).
class Builder {
 public:
  Builder(const Scope& root, const ModelSpec& spec, int64_t seed, int classes)
      : root_(root), spec_(spec), seed_(seed), classes_(classes) {}

  StatusOr<Paths> Layer(const LayerSpec& l, const Paths& x, LayerSummary* sum) {
    const Place at{spec_, l};
    const Scope s = root_.NewSubScope(l.name);
    const Shape& in = x.train.shape();
    switch (l.type) {
      case LayerType::kDense: {
        if (in.rank() != 2) {
          return at.Error(StrCat("needs a flat input (batch, features), gets ", ShapeText(in),
                                 ": put a [flatten] layer before it"));
        }
        const int64_t fan_in = in.dim(1);
        const int64_t units = l.units > 0 ? l.units : classes_;  // `units = classes`
        Output w = ops::Variable(s.WithOpName("kernel"),
                                 ops::GlorotUniform(s, Shape{fan_in, units}, NextSeed()));
        Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
        sum->parameters = fan_in * units + units;
        sum->forward_flops = 2.0 * fan_in * units;
        return Both(x, [&](Output v) {
          return Activate(s, ops::BiasAdd(s, ops::MatMul(s, v, w), b), l.activation);
        });
      }
      case LayerType::kConv2D: {
        if (in.rank() != 4) {
          return at.Error(StrCat("needs (batch, height, width, channels), gets ", ShapeText(in),
                                 ": use data with a channel dimension or a [reshape] layer"));
        }
        const int64_t channels = in.dim(3);
        Output f = ops::Variable(
            s.WithOpName("kernel"),
            ops::GlorotUniform(s, Shape{l.kernel, l.kernel, channels, l.filters}, NextSeed()));
        Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{l.filters}));
        Paths y = Both(x, [&](Output v) {
          return Activate(s,
                          ops::BiasAdd(s, ops::Conv2D(s, v, f, {l.stride, l.stride}, l.padding), b),
                          l.activation);
        });
        if (y.train.valid()) {
          const Shape& o = y.train.shape();
          sum->forward_flops =
              2.0 * o.dim(1) * o.dim(2) * l.filters * l.kernel * l.kernel * channels;
        }
        sum->parameters = l.kernel * l.kernel * channels * l.filters + l.filters;
        return y;
      }
      case LayerType::kMaxPool:
      case LayerType::kAvgPool: {
        if (in.rank() != 4) {
          return at.Error(StrCat("needs (batch, height, width, channels), gets ", ShapeText(in)));
        }
        const bool max = l.type == LayerType::kMaxPool;
        return Both(x, [&](Output v) {
          return max ? ops::MaxPool(s, v, {l.kernel, l.kernel}, {l.stride, l.stride}, l.padding)
                     : ops::AvgPool(s, v, {l.kernel, l.kernel}, {l.stride, l.stride}, l.padding);
        });
      }
      case LayerType::kFlatten:
      case LayerType::kReshape: {
        std::vector<int64_t> to = {-1};
        int64_t have = 1;  // values per example
        for (int i = 1; i < in.rank(); ++i) have *= in.dim(i);
        if (l.type == LayerType::kFlatten) {
          to.push_back(have);
        } else {
          int64_t known = 1;
          bool unknown = false;
          for (int64_t d : l.shape) {
            if (d == -1) {
              unknown = true;
            } else {
              known *= d;
            }
          }
          if (unknown ? have % known != 0 : have != known) {
            return at.Error(StrCat("cannot reshape ", ShapeText(in), " (", have,
                                   " values per example) to (batch, ", JoinDims(l.shape), ")"));
          }
          for (int64_t d : l.shape) to.push_back(d == -1 ? have / known : d);
        }
        return Both(x, [&](Output v) { return ops::Reshape(s, v, to); });
      }
      case LayerType::kDropout: {
        if (l.rate == 0) return x;
        Paths y;
        y.train = ops::Dropout(s, x.train, l.rate, seed_ * 1000 + 500 + ++dropouts_);
        y.eval = x.eval;
        return y;
      }
      case LayerType::kLayerNorm:
      case LayerType::kBatchNorm:
        return Norm(s, at, l, x, sum);
      case LayerType::kAdd: {
        const Paths& other = outputs_.at(l.from);
        if (other.train.shape() != in) {
          return at.Error(StrCat("adds [", l.from, "]'s ", ShapeText(other.train.shape()),
                                 " to the previous layer's ", ShapeText(in),
                                 ": the shapes must be the same"));
        }
        Paths y;
        y.train = ops::Add(s, x.train, other.train);
        y.eval = x.one() && other.one() ? y.train : ops::Add(s, x.eval, other.eval);
        return y;
      }
      case LayerType::kEmbeddingBag: {
        if (in.rank() != 2) {
          return at.Error(
              StrCat("needs (batch, ids): each example a row of word ids, gets ", ShapeText(in)));
        }
        Output table =
            ops::Variable(s.WithOpName("embeddings"),
                          ops::RandomUniform(s, Shape{l.vocab, l.dim}, -0.05, 0.05, NextSeed()));
        sum->parameters = l.vocab * l.dim;
        sum->forward_flops = 2.0 * in.dim(1) * l.dim;
        return Both(x, [&](Output v) { return EmbeddingBag(s, table, v, l); });
      }
    }
    return at.Error("unknown layer type");
  }

  void Remember(const std::string& name, const Paths& p) { outputs_[name] = p; }

 private:
  int64_t NextSeed() { return seed_ * 1000 + ++parametric_; }

  // layer_norm: over each example's last dimension; batch_norm: each channel (the last
  // dimension) over the batch and every other dimension. y = (x - mean) / sqrt(var + epsilon) *
  // gamma + beta, with var the biased (population) variance.
  StatusOr<Paths> Norm(const Scope& s, const Place& at, const LayerSpec& l, const Paths& x,
                       LayerSummary* sum) {
    const Shape& in = x.train.shape();
    if (in.rank() < 2) return at.Error(StrCat("needs (batch, ...), gets ", ShapeText(in)));
    const int64_t c = in.dim(in.rank() - 1);
    const bool batch = l.type == LayerType::kBatchNorm;
    Output gamma = ops::Variable(s.WithOpName("gamma"), Filled(s, c, 1.0f));
    Output beta = ops::Variable(s.WithOpName("beta"), ops::Zeros(s, Shape{c}));
    sum->parameters = 2 * c;
    if (!batch) {
      return Both(x, [&](Output v) { return ops::LayerNorm(s, v, gamma, beta, l.epsilon); });
    }
    // batch_norm: the training path normalises by the batch's statistics and moves the moving
    // ones toward them (moving -= (1 - momentum) * (moving - batch)) whenever it runs; the
    // inference path uses the moving statistics.
    Output moving_mean =
        ops::Variable(s.WithOpName("moving_mean"), ops::Zeros(s, Shape{c}), /*trainable=*/false);
    Output moving_var =
        ops::Variable(s.WithOpName("moving_variance"), Filled(s, c, 1.0f), /*trainable=*/false);
    std::vector<int64_t> axes;  // every dimension but the channels
    for (int i = 0; i + 1 < in.rank(); ++i) axes.push_back(i);
    std::vector<Output> moments =
        l.sync ? SyncMoments(s, x.train, axes, c) : ops::Moments(s, x.train, axes);  // (c), (c)
    const Output& mean = moments[0];
    const Output& var = moments[1];
    Output rate = ops::ScalarConst(s, 1.0 - l.momentum);
    Output update_mean =
        ops::AssignSub(s, moving_mean, ops::Mul(s, ops::Sub(s, moving_mean, mean), rate));
    Output update_var =
        ops::AssignSub(s, moving_var, ops::Mul(s, ops::Sub(s, moving_var, var), rate));
    if (!update_mean.valid() || !update_var.valid()) return x;  // the scope holds the error
    Paths y;
    y.train = ops::Identity(s.WithControlDependencies({update_mean.node, update_var.node}),
                            ops::Normalize(s, x.train, mean, var, gamma, beta, l.epsilon));
    y.eval = ops::Normalize(s, x.eval, moving_mean, moving_var, gamma, beta, l.epsilon);
    return y;
  }

  // ids (batch, n) as numbers, a negative one marking no word -> (batch, dim): the mean (or sum)
  // of the table's rows of an example's ids, one fused op whose gradient is sparse (the rows
  // the batch used, not the padding): a step updates only those rows.
  static Output EmbeddingBag(const Scope& s, Output table, Output ids, const LayerSpec& l) {
    return ops::EmbeddingBag(s, table, ids, l.combiner == Combiner::kSum ? "sum" : "mean");
  }

  // The mean and (population) variance of each channel over every replica's examples: the
  // replicas' sums of x, of x^2 and their counts added up by one CrossReplicaSum (3c values),
  // then mean = sum / n and var = sum of squares / n - mean^2 (at least 0), in float64. Shards
  // of different sizes (an uneven last batch) weigh by their counts, the gradient by the ranks'
  // shares (CrossReplicaSum); a stand-in example counts for nothing. One process: its own.
  static std::vector<Output> SyncMoments(const Scope& s, Output x, const std::vector<int64_t>& axes,
                                         int64_t c) {
    // In float64: var = E[x^2] - mean^2 cancels, and float32 sums lose digits to it.
    Output x64 = ops::Cast(s, x, DType::kFloat64);
    Output ones = ops::Add(s, ops::Mul(s, x64, ops::ScalarConst(s, 0, DType::kFloat64)),
                           ops::ScalarConst(s, 1, DType::kFloat64));
    Output local = ops::Concat(
        s,
        {ops::Sum(s, x64, axes), ops::Sum(s, ops::Square(s, x64), axes), ops::Sum(s, ones, axes)},
        0);  // (3c): sums, sums of squares, counts
    // A rank whose share is 0 holds a stand-in example: it adds nothing.
    Output share = ops::ReplicaShare(s);
    Output counts =
        ops::Sub(s, ops::ScalarConst(s, 1, DType::kFloat64),
                 ops::Cast(s, ops::Equal(s, share, ops::ScalarConst(s, 0)), DType::kFloat64));
    Output all = ops::CrossReplicaSum(s, ops::Mul(s, local, counts), share);
    Output n = ops::Slice(s, all, {2 * c}, {c});
    Output mean = ops::Div(s, ops::Slice(s, all, {0}, {c}), n);
    Output var = ops::Relu(
        s, ops::Sub(s, ops::Div(s, ops::Slice(s, all, {c}, {c}), n), ops::Square(s, mean)));
    return {ops::Cast(s, mean, DType::kFloat32), ops::Cast(s, var, DType::kFloat32)};
  }

  // (n) float32 filled with `value`.
  static Output Filled(const Scope& s, int64_t n, float value) {
    Tensor t(DType::kFloat32, Shape{n});
    for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = value;
    return ops::Const(s, t);
  }

  const Scope& root_;
  const ModelSpec& spec_;
  int64_t seed_;
  int classes_;
  int parametric_ = 0, dropouts_ = 0;
  std::map<std::string, Paths> outputs_;
};

}  // namespace

StatusOr<Model> BuildModel(const Scope& root, const ModelSpec& spec, const ModelInput& input,
                           int64_t seed) {
  Model m;
  m.name = spec.name;
  std::vector<int64_t> dims = {-1};
  for (int64_t d : input.example.dims()) dims.push_back(d);
  m.features = ops::Placeholder(root.WithOpName("features"), DType::kFloat32, Shape(dims));
  m.labels = ops::Placeholder(root.WithOpName("labels"), DType::kInt32, Shape{-1});
  MPIFLOW_RETURN_IF_ERROR(root.status());
  Builder b(root, spec, seed, input.num_classes);
  Paths x{m.features, m.features};
  bool input_layers = true;  // only reshapes so far: the first layer with weights reads the data
  for (const LayerSpec& l : spec.layers) {
    LayerSummary sum;
    sum.name = l.name;
    sum.type = LayerTypeName(l.type);
    StatusOr<Paths> y = b.Layer(l, x, &sum);
    if (!y.ok()) return y.status();
    if (!root.ok()) return Place{spec, l}.Error(root.status().message());
    x = *y;
    b.Remember(l.name, x);
    sum.output = x.train.shape();
    m.forward_flops_per_example += sum.forward_flops;
    // The input gradient of the first layer with weights is pruned: a step does not compute it.
    m.train_flops_per_example += (input_layers ? 2 : 3) * sum.forward_flops;
    if (sum.parameters > 0) input_layers = false;
    m.layers.push_back(sum);
  }
  const Shape& out = x.train.shape();
  const LayerSpec& last = spec.layers.back();
  if (out.rank() != 2 || out.dim(1) != input.num_classes) {
    return Place{spec, last}.Error(
        StrCat("the last layer gives the logits and must output (batch, ", input.num_classes,
               ") for the data's ", input.num_classes, " classes, not ", ShapeText(out)));
  }
  m.logits = x.train;
  m.inference_logits = x.eval;
  MPIFLOW_RETURN_IF_ERROR(ClassifierModel(root, &m));
  return m;
}

Status ClassifierModel(const Scope& root, Model* m) {
  if (!m->inference_logits.valid()) m->inference_logits = m->logits;
  if (!m->features.valid() || !m->labels.valid() || !m->logits.valid()) {
    return InvalidArgument("ClassifierModel needs the model's features, labels and logits");
  }
  std::vector<Output> xent = ops::SparseSoftmaxCrossEntropyWithLogits(root, m->logits, m->labels);
  m->loss = ops::Mean(root.WithOpName("loss"), xent[0], {0});
  m->predictions = ops::ArgMax(root.WithOpName("predictions"), m->inference_logits, 1);
  Output hits = ops::Equal(root, m->predictions, ops::Cast(root, m->labels, DType::kInt64));
  m->correct = ops::Sum(root.WithOpName("correct"), ops::Cast(root, hits, DType::kFloat32), {0});
  return root.status();
}

StatusOr<Model> BuildModel(const Scope& s, const std::string& name_or_path, const ModelInput& input,
                           int64_t seed) {
  StatusOr<ModelSpec> spec = LoadModelSpec(name_or_path);
  if (!spec.ok()) return spec.status();
  return BuildModel(s, *spec, input, seed);
}

std::string ModelSummaryText(const ModelSpec& spec, const ModelInput& input, const Model& m) {
  std::ostringstream o;
  std::vector<int64_t> in = input.example.dims();
  in.insert(in.begin(), -1);
  o << spec.source << ": " << spec.layers.size() << " layers, input " << ShapeText(Shape(in))
    << ", " << input.num_classes << " classes\n";
  char line[160];
  std::snprintf(line, sizeof(line), "  %-16s %-11s %-22s %12s %14s\n", "layer", "type", "output",
                "parameters", "MFLOP/example");
  o << line;
  int64_t total = 0;
  for (const LayerSummary& l : m.layers) {
    std::snprintf(line, sizeof(line), "  %-16s %-11s %-22s %12lld %14.3f\n", l.name.c_str(),
                  l.type.c_str(), ShapeText(l.output).c_str(), static_cast<long long>(l.parameters),
                  l.forward_flops / 1e6);
    o << line;
    total += l.parameters;
  }
  std::snprintf(line, sizeof(line),
                "  total: %lld parameters (%.2f MiB as float32); %.3f MFLOP forward, %.3f MFLOP "
                "per trained example\n",
                static_cast<long long>(total), total * 4.0 / (1 << 20),
                m.forward_flops_per_example / 1e6, m.train_flops_per_example / 1e6);
  o << line;
  return o.str();
}

}  // namespace mpiflow
