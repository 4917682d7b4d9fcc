// End to end: the MLP learns Fashion-MNIST inside the test suite, and training is bit-for-bit
// reproducible from the seed, also with a concurrent executor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "mpiflow/data.h"
#include "mpiflow/ops.h"
#include "mpiflow/trainer.h"

namespace mpiflow {
namespace {

TrainConfig Base() {
  TrainConfig c;
  c.data_dir = MPIFLOW_FASHION_MNIST_DIR;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.001;
  c.batch_size = 64;
  c.log_every = 1000000;
  return c;
}

TEST(EndToEnd, MlpLearnsFashionMnistInOneEpoch) {
  TrainConfig c = Base();
  c.epochs = 1;
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log);
  ASSERT_TRUE(r.ok()) << r.status() << "\n(the dataset comes from Debian's dataset-fashion-mnist)";
  EXPECT_EQ(r->steps, 938);
  EXPECT_GE(r->test_accuracy, 0.80) << log.str();
  EXPECT_LT(r->final_loss, 1.0);
  EXPECT_NE(log.str().find("epoch 1/1  test_accuracy"), std::string::npos) << log.str();
}

std::vector<std::pair<std::string, Tensor>> Weights(TrainConfig c) {
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? r->variables : std::vector<std::pair<std::string, Tensor>>{};
}

void ExpectBitIdentical(const std::vector<std::pair<std::string, Tensor>>& a,
                        const std::vector<std::pair<std::string, Tensor>>& b) {
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].first, b[i].first);
    EXPECT_TRUE(a[i].second.BitEqual(b[i].second)) << a[i].first << " differs";
  }
}

TEST(EndToEnd, SameSeedGivesBitIdenticalWeights) {
  TrainConfig c = Base();
  c.epochs = 1;
  c.max_steps = 150;
  c.eval = false;
  const auto first = Weights(c), second = Weights(c);
  ExpectBitIdentical(first, second);
  c.inter_op_threads = 3;  // a concurrent executor must not change a single bit
  c.prefetch = 0;
  ExpectBitIdentical(first, Weights(c));
  c.inter_op_threads = 1;
  c.seed = 43;
  const auto other = Weights(c);
  ASSERT_EQ(other.size(), first.size());
  EXPECT_FALSE(other[0].second.BitEqual(first[0].second)) << "another seed, other weights";
}

TEST(EndToEnd, AModelFileWithEveryOtherLayerTrainsAndResumesExactly) {
  TrainConfig c = Base();
  c.model = MPIFLOW_SOURCE_DIR "/tests/data/models/residual_bn.ini";
  c.dataset = DatasetKind::kSynthetic;
  c.synthetic_train = 2048;
  c.synthetic_test = 512;
  c.epochs = 2;
  c.batch_size = 32;
  c.output_dir = ::testing::TempDir() + "/residual_bn";
  c.checkpoint.every_steps = 64;
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->test_accuracy, 0.95) << log.str();
  // The moving statistics moved, and are reported (and checkpointed) with the weights.
  bool found = false;
  for (const auto& [name, t] : r->variables) {
    if (name != "bn_1/moving_mean") continue;
    found = true;
    double sum = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) sum += std::abs(t.data<float>()[i]);
    EXPECT_GT(sum, 0.01) << "moving_mean never moved";
  }
  EXPECT_TRUE(found);
  // Resuming from the middle gives the same bits, the moving statistics included.
  TrainConfig again = c;
  again.output_dir = ::testing::TempDir() + "/residual_bn_resumed";
  again.checkpoint.dir = c.output_dir + "/checkpoints";
  again.checkpoint.resume = c.output_dir + "/checkpoints/ckpt-00000064.h5";
  again.checkpoint.every_steps = 0;
  std::ostringstream log2;
  StatusOr<TrainResult> resumed = Train(again, log2);
  ASSERT_TRUE(resumed.ok()) << resumed.status() << log2.str();
  EXPECT_EQ(resumed->resumed_from, 64);
  ExpectBitIdentical(r->variables, resumed->variables);
}

TEST(EndToEnd, AModelFunctionOnDataInMemoryTrainsAsTheSameModelFileOnTheSameData) {
  TrainConfig c = Base();
  c.dataset = DatasetKind::kSynthetic;
  c.synthetic_train = 640;
  c.synthetic_test = 100;
  c.epochs = 2;
  const auto from_file = Weights(c);
  TrainingSet set{SyntheticDataset(640, 10, 42), SyntheticDataset(100, 10, 43)};
  ModelFn mlp = [](const Scope& s, const ModelInput& input, int64_t seed) {
    return BuildModel(s, "mlp", input, seed);
  };
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(mlp, set, c, log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NE(log.str().find("mpiflow: training a model of your own on your data (640 train, 100 "
                           "test examples of 28x28x1)"),
            std::string::npos)
      << log.str();
  ExpectBitIdentical(from_file, r->variables);
  // A function that leaves out the loss is told what it must return.
  ModelFn partial = [](const Scope& s, const ModelInput&, int64_t) -> StatusOr<Model> {
    Model m;
    m.features = ops::Placeholder(s, DType::kFloat32, Shape{-1, 28, 28, 1});
    return m;
  };
  EXPECT_EQ(Train(partial, set, c, log).status().message(),
            "the model function must return the model's features, labels, loss and correct "
            "count (ClassifierModel adds the last two)");
  // Data that does not hold what it says is refused.
  set.train.labels.pop_back();
  EXPECT_EQ(Train(mlp, set, c, log).status().message(),
            "the training data holds 501760 values and 639 labels: 640 examples of [28,28,1] "
            "need 501760 and 640");
}

TEST(EndToEnd, CnnTrainsAFewStepsDeterministically) {
  TrainConfig c = Base();
  c.model = "cnn";
  c.dataset = DatasetKind::kSynthetic;
  c.synthetic_train = 512;
  c.synthetic_test = 128;
  c.epochs = 2;
  c.batch_size = 32;
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->test_accuracy, 0.9) << log.str();  // the synthetic classes are easy
  c.eval = false;
  ExpectBitIdentical(Weights(c), Weights(c));
}

// The same images from HDF5 (as mpiflow-data convert writes them) train to the same bits.
TEST(EndToEnd, Hdf5DataTrainsLikeTheIdxFiles) {
  const std::string path = ::testing::TempDir() + "/fashion.h5";
  std::remove(path.c_str());
  for (bool train : {true, false}) {
    StatusOr<Dataset> d = LoadMnistDirectory(MPIFLOW_FASHION_MNIST_DIR, train);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE(WriteHdf5Split(path, train ? "train" : "test", *d).ok());
  }
  TrainConfig idx = Base();
  idx.max_steps = 30;
  idx.eval = false;
  TrainConfig h5 = idx;
  h5.dataset = DatasetKind::kHdf5;
  h5.data_dir = path;
  const auto a = Weights(idx), b = Weights(h5);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_TRUE(a[i].second.BitEqual(b[i].second)) << a[i].first;
}

}  // namespace
}  // namespace mpiflow
