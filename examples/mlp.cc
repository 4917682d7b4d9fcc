// The README's example: a two-layer MLP on Fashion-MNIST, built from ops, differentiated and
// trained by a loop of its own.
#include <iostream>

#include "mpiflow/data.h"
#include "mpiflow/ops.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/session.h"

using namespace mpiflow;

// x (batch, in) -> (batch, units): x * kernel + bias, then ReLU if asked.
Output Dense(const Scope& s, Output x, int64_t units, bool relu, int64_t seed) {
  const int64_t in = x.shape().dim(1);
  Output w = ops::Variable(s.WithOpName("kernel"), ops::GlorotUniform(s, Shape{in, units}, seed));
  Output b = ops::Variable(s.WithOpName("bias"), ops::Zeros(s, Shape{units}));
  Output y = ops::BiasAdd(s, ops::MatMul(s, x, w), b);
  return relu ? ops::Relu(s, y) : y;
}

int main(int argc, char** argv) {
  Scope s = Scope::NewRootScope();
  // Batches are (batch, 28, 28, 1) images and (batch) labels.
  Output x = ops::Placeholder(s.WithOpName("images"), DType::kFloat32, Shape{-1, 28, 28, 1});
  Output y = ops::Placeholder(s.WithOpName("labels"), DType::kInt32, Shape{-1});
  Output flat = ops::Reshape(s, x, {-1, 784});
  Output h = Dense(s.NewSubScope("hidden"), flat, 128, /*relu=*/true, /*seed=*/1);
  Output logits = Dense(s.NewSubScope("out"), h, 10, /*relu=*/false, /*seed=*/2);
  Output loss = ops::Mean(s, ops::SparseSoftmaxCrossEntropyWithLogits(s, logits, y)[0], {0});
  OptimizerOptions adam;
  adam.kind = OptimizerKind::kAdam;
  adam.lr.base = 1e-3;
  StatusOr<TrainOp> train = Minimize(s, loss, adam);  // adds gradient and update ops
  Node* init = ops::InitOp(s);
  StatusOr<Dataset> data =
      LoadMnistDirectory(argc > 1 ? argv[1] : "/usr/share/datasets/fashion-mnist", true);
  if (!train.ok() || !data.ok()) {
    std::cerr << (train.ok() ? data.status() : train.status()) << "\n";
    return 1;
  }
  Session session(s.graph());
  Status st = session.RunTargets({init});
  BatchStream batches(&*data, BatchStreamOptions());  // batch 64, one epoch, shuffled
  Batch b;
  std::vector<Tensor> out;
  for (int step = 1; st.ok() && batches.Next(&b); ++step) {
    st = session.Run({{x, b.features}, {y, b.labels}}, {loss}, {train->train}, &out);
    if (st.ok() && step % 200 == 0) std::cout << step << ": " << *out[0].data<float>() << "\n";
  }
  if (!st.ok()) std::cerr << st << "\n";
  return st.ok() ? 0 : 1;
}
