// A model of your own in C++, trained by mpiflow's trainer: a residual MLP built from ops, on
// Fashion-MNIST (or synthetic data), data-parallel under mpirun, with checkpoints and metrics.
//   mpirun -np 2 build/mpiflow-example-custom [FASHION_MNIST_DIR | synthetic] [OUTPUT_DIR]
#include <cstdio>
#include <iostream>

#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/ops.h"
#include "mpiflow/trainer.h"

using namespace mpiflow;

// x (batch, in) -> relu(x * kernel + bias) (batch, units), variables under s.
Output DenseRelu(const Scope& s, Output x, int64_t units, int64_t seed) {
  const int64_t in = x.shape().dim(1);
  Output w = ops::Variable(s.WithOpName("kernel"), ops::GlorotUniform(s, Shape{in, units}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
  return ops::Relu(s, ops::BiasAdd(s, ops::MatMul(s, x, w), b));
}

// features (batch, example...) -> flatten -> h = dense 128 -> h + dense 128 (h) -> logits.
StatusOr<Model> ResidualMlp(const Scope& s, const ModelInput& input, int64_t seed) {
  Model m;
  m.name = "residual_mlp";
  std::vector<int64_t> dims = input.example.dims();
  dims.insert(dims.begin(), -1);  // (batch, example...)
  m.features = ops::Placeholder(s.WithOpName("features"), DType::kFloat32, Shape(dims));
  m.labels = ops::Placeholder(s.WithOpName("labels"), DType::kInt32, Shape{-1});
  Output x = ops::Reshape(s, m.features, {-1, input.example.num_elements()});
  Output h = DenseRelu(s.NewSubScope("hidden_1"), x, 128, seed * 1000 + 1);
  h = ops::Add(s, h, DenseRelu(s.NewSubScope("hidden_2"), h, 128, seed * 1000 + 2));
  const Scope out = s.NewSubScope("logits");
  Output w = ops::Variable(out.WithOpName("kernel"),
                           ops::GlorotUniform(out, Shape{128, input.num_classes}, seed * 1000 + 3));
  Output b = ops::Variable(out.WithOpName("bias"), ops::Zeros(out, Shape{input.num_classes}));
  m.logits = ops::BiasAdd(out, ops::MatMul(out, h, w), b);
  MPIFLOW_RETURN_IF_ERROR(ClassifierModel(s, &m));  // loss, predictions, correct
  return m;
}

int main(int argc, char** argv) {
  const std::string source = argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist";
  TrainingSet data;
  if (source == "synthetic") {
    data.train = SyntheticDataset(4096, 10, 1);
    data.test = SyntheticDataset(1000, 10, 2);
  } else {
    StatusOr<Dataset> train = LoadMnistDirectory(source, true);
    StatusOr<Dataset> test = LoadMnistDirectory(source, false);
    if (!train.ok() || !test.ok()) {
      std::cerr << (train.ok() ? test.status() : train.status()) << "\n";
      return 1;
    }
    data.train = std::move(*train);
    data.test = std::move(*test);
  }
  TrainConfig options;  // the same options as mpiflow-train's
  options.epochs = 1;
  options.batch_size = 64;  // per rank
  options.output_dir = argc > 2 ? argv[2] : "runs/custom_model";
  options.checkpoint.every_steps = 500;
  Communicator* comm = nullptr;  // several ranks: allreduce data parallelism
  if (LaunchedWithSeveralRanks()) {
    StatusOr<Communicator*> world = WorldCommunicator();
    if (!world.ok()) {
      std::cerr << world.status() << "\n";
      return 1;
    }
    comm = *world;
  }
  StatusOr<TrainResult> r = Train(ResidualMlp, data, options, std::cerr, comm);
  if (!r.ok()) {
    std::cerr << r.status() << "\n";
    if (comm) comm->Abort(1, r.status().ToString());
    return 1;
  }
  if (!comm || comm->rank() == 0) {
    std::printf("custom model: steps=%lld test_accuracy=%.4f ranks=%d checkpoint=%s\n",
                static_cast<long long>(r->steps), r->test_accuracy, r->ranks,
                r->last_checkpoint.c_str());
  }
  return 0;
}
