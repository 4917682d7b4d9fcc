// Data-parallel training under mpiexec (CTest runs it with 1, 2 and 4 ranks): N ranks with
// per-rank batch B end with the weights of one process with batch N*B on the same samples, the
// same bits on every rank and on a rerun, uneven last batches included, across a resume on
// another rank count; mismatched graphs or
// options are a clear error on every rank; a NaN gradient stops every rank at the same step.
#include "mpiflow/distributed.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/models.h"
#include "mpiflow/random.h"
#include "mpiflow/trainer.h"
#include "tests/bags.h"
#include "tests/mpi_test_main.h"

namespace mpiflow {
namespace {

Communicator*& comm = test::world;

TrainConfig Base() { return test::SmallSyntheticJob(); }

StatusOr<TrainResult> TrainWith(const TrainConfig& c, Communicator* with) {
  std::ostringstream log;
  return Train(c, log, with);
}

using test::WorstRelativeDiff;

// The same variable bits on every rank.
bool SameBitsOnEveryRank(const TrainResult& r) {
  return test::SameOnRanks(test::HashVariables(r.variables), comm->size());
}

void ExpectEquivalent(TrainConfig c, double tolerance) {
  const int n = comm->size();
  StatusOr<TrainResult> dist = TrainWith(c, comm);
  ASSERT_TRUE(dist.ok()) << dist.status();
  TrainConfig one = c;
  one.batch_size = c.batch_size * n;
  StatusOr<TrainResult> ref = TrainWith(one, nullptr);  // this process alone, the global batch
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(dist->steps, ref->steps);
  EXPECT_EQ(dist->ranks, n);
  EXPECT_EQ(dist->variables.size(), ref->variables.size());
  EXPECT_LE(WorstRelativeDiff(*dist, *ref), tolerance) << n << " ranks, batch " << c.batch_size;
  EXPECT_NEAR(dist->final_loss, ref->final_loss,
              std::max(1e-5, tolerance) * std::fabs(ref->final_loss));
  EXPECT_NEAR(dist->test_accuracy, ref->test_accuracy, 1e-12);
  EXPECT_TRUE(SameBitsOnEveryRank(*dist));
}

TEST(DataParallel, SameWeightsAsOneProcessWithTheGlobalBatch) {
  TrainConfig c = Base();
  c.max_steps = 12;
  ExpectEquivalent(c, 1e-6);
}

TEST(DataParallel, MomentumAndSmallBucketsToo) {
  TrainConfig c = Base();
  c.max_steps = 10;
  c.optimizer.kind = OptimizerKind::kMomentum;
  c.allreduce.bucket_mb = 0.01;  // a bucket per gradient or two
  c.allreduce.algorithm = *ParseAllreduceAlgorithm("hd");
  ExpectEquivalent(c, 1e-6);
}

// 100 examples in global batches of 16 * N: the last one is partial and split unevenly.
TEST(DataParallel, UnevenLastBatch) {
  TrainConfig c = Base();
  c.synthetic_train = 100;
  c.epochs = 2;
  ExpectEquivalent(c, 1e-6);
}

// A last global batch smaller than the rank count: some ranks hold no example and take part
// with weight 0.
TEST(DataParallel, LastBatchSmallerThanTheRankCount) {
  TrainConfig c = Base();
  c.batch_size = 4;
  c.synthetic_train = 4 * comm->size() + comm->size() / 2 + (comm->size() == 1 ? 1 : 0);
  ExpectEquivalent(c, 1e-6);
}

TEST(DataParallel, RerunIsBitIdentical) {
  TrainConfig c = Base();
  c.max_steps = 8;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.001;
  StatusOr<TrainResult> a = TrainWith(c, comm), b = TrainWith(c, comm);
  ASSERT_TRUE(a.ok() && b.ok());
  for (size_t v = 0; v < a->variables.size(); ++v) {
    EXPECT_TRUE(a->variables[v].second.BitEqual(b->variables[v].second)) << a->variables[v].first;
  }
}

// Train K steps with a checkpoint, resume for M more: the bits of an uninterrupted K+M run.
TEST(DataParallel, ResumeIsBitIdentical) {
  const std::string dir = ::testing::TempDir() + "/dp_resume_" + std::to_string(comm->size());
  TrainConfig c = Base();
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.002;
  c.output_dir = dir;
  c.checkpoint.dir = dir + "/checkpoints";
  TrainConfig whole = c;
  whole.output_dir = dir + "/whole";
  whole.checkpoint.dir = dir + "/whole_checkpoints";
  whole.max_steps = 9;
  StatusOr<TrainResult> w = TrainWith(whole, comm);
  ASSERT_TRUE(w.ok()) << w.status();
  TrainConfig part = c;
  part.max_steps = 4;
  part.checkpoint.every_steps = 4;
  ASSERT_TRUE(TrainWith(part, comm).ok());
  ASSERT_TRUE(comm->Barrier()->Wait().ok());  // rank 0 has written it
  TrainConfig rest = c;
  rest.max_steps = 9;
  rest.checkpoint.resume = dir + "/checkpoints/ckpt-00000004.h5";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 4);
  for (size_t v = 0; v < r->variables.size(); ++v) {
    EXPECT_TRUE(r->variables[v].second.BitEqual(w->variables[v].second)) << r->variables[v].first;
  }
  EXPECT_TRUE(SameBitsOnEveryRank(*r));
}

// A checkpoint resumes on another rank count at the example it records: N ranks of batch B to
// step 3, one process of batch N*B (the same global batch) to step 7, N ranks again to step 12
// end within rounding of one process that never stopped.
TEST(DataParallel, ResumeOnAnotherRankCountKeepsThePlace) {
  const int n = comm->size();
  const std::string dir = ::testing::TempDir() + "/dp_ranks_" + std::to_string(n);
  if (comm->rank() == 0) {
    ASSERT_EQ(std::system(("rm -rf '" + dir + "'").c_str()), 0);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = Base();
  c.epochs = 3;  // 40 / N steps per epoch: step 12 is in the second epoch on 4 ranks
  TrainConfig one = c;
  one.batch_size = c.batch_size * n;
  TrainConfig whole = one;
  whole.max_steps = 12;
  StatusOr<TrainResult> w = TrainWith(whole, nullptr);
  ASSERT_TRUE(w.ok()) << w.status();
  TrainConfig a = c;
  a.max_steps = 3;
  a.checkpoint.dir = dir + "/a";
  a.checkpoint.every_steps = 3;
  ASSERT_TRUE(TrainWith(a, comm).ok());
  ASSERT_TRUE(comm->Barrier()->Wait().ok());  // rank 0 has written it
  if (comm->rank() == 0) {
    TrainConfig b = one;
    b.max_steps = 7;
    b.checkpoint.dir = dir + "/b";
    b.checkpoint.every_steps = 7;
    b.checkpoint.resume = dir + "/a/ckpt-00000003.h5";
    StatusOr<TrainResult> rb = TrainWith(b, nullptr);
    ASSERT_TRUE(rb.ok()) << rb.status();
    EXPECT_EQ(rb->resumed_from, 3);
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig rest = c;
  rest.max_steps = 12;
  rest.checkpoint.dir = dir + "/c";
  rest.checkpoint.resume = dir + "/b/ckpt-00000007.h5";
  StatusOr<TrainResult> r = TrainWith(rest, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->resumed_from, 7);
  EXPECT_EQ(r->steps, 12);
  EXPECT_LE(WorstRelativeDiff(*r, *w), 1e-6) << n << " ranks";
  EXPECT_NEAR(r->test_accuracy, w->test_accuracy, 1e-12);
  EXPECT_TRUE(SameBitsOnEveryRank(*r));
}

// Local sharding: each rank holds ceil or floor of 101/N examples; all run the same number of
// steps, end with the same bits, and reading the shares from HDF5 (hyperslabs) gives the bits
// of slicing them in memory.
TEST(DataParallel, LocalShardsFromMemoryAndFromHdf5Agree) {
  TrainConfig c = Base();
  c.synthetic_train = 101;
  c.synthetic_test = 37;
  c.batch_size = 8;
  c.epochs = 2;
  c.data_sharding = DataSharding::kLocal;
  std::ostringstream log;
  StatusOr<TrainResult> mem = Train(c, log, comm);
  ASSERT_TRUE(mem.ok()) << mem.status();
  // Accuracy is over every rank's share, and the line says so (rank 0 logs).
  if (comm->rank() == 0) {
    EXPECT_NE(log.str().find("(37 examples"), std::string::npos) << log.str();
  }
  const int64_t largest = (101 + comm->size() - 1) / comm->size();
  EXPECT_EQ(mem->steps, 2 * ((largest + 7) / 8));
  EXPECT_TRUE(SameBitsOnEveryRank(*mem));
  const std::string path = ::testing::TempDir() + "/local_" + std::to_string(comm->size()) + ".h5";
  if (comm->rank() == 0) {
    std::remove(path.c_str());
    ASSERT_TRUE(WriteHdf5Split(path, "train", SyntheticDataset(101, 10, c.seed), 16, 1).ok());
    ASSERT_TRUE(WriteHdf5Split(path, "test", SyntheticDataset(37, 10, c.seed + 1)).ok());
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig h5 = c;
  h5.dataset = DatasetKind::kHdf5;
  h5.data_dir = path;
  StatusOr<TrainResult> file = TrainWith(h5, comm);
  ASSERT_TRUE(file.ok()) << file.status();
  for (size_t v = 0; v < file->variables.size(); ++v) {
    EXPECT_TRUE(file->variables[v].second.BitEqual(mem->variables[v].second));
  }
  EXPECT_EQ(file->test_accuracy, mem->test_accuracy);
}

TEST(DataParallel, DifferentOptionIsAnErrorOnEveryRank) {
  TrainConfig c = Base();
  c.max_steps = 2;
  if (comm->rank() == 1) c.optimizer.lr.base = 0.07;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  if (comm->size() == 1) {  // nobody to disagree with
    EXPECT_TRUE(r.ok()) << r.status();
    return;
  }
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kAborted);
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("the ranks were given different values of option 'lr' (rank"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(": 0.05; rank 1: 0.07)"), std::string::npos) << msg;
}

// `count` float32 32x32x3 images of 4 classes: class c brightens colour channel c % 3 in one
// quadrant (c) of the image, on noise from the seed.
Dataset ColourImages(int64_t count, uint64_t seed) {
  Dataset d;
  d.count = count;
  d.example = Shape{32, 32, 3};
  d.is_float = true;
  d.scale = 1.0f;
  d.num_classes = 4;
  d.class_names = {"red top-left", "green top-right", "blue bottom-left", "red bottom-right"};
  for (int64_t i = 0; i < count; ++i) {
    const int c = static_cast<int>((i * 7 + seed) % 4);
    d.labels.push_back(c);
    for (int64_t y = 0; y < 32; ++y) {
      for (int64_t x = 0; x < 32; ++x) {
        const bool in = (y < 16) == (c < 2) && (x < 16) == (c % 2 == 0);
        for (int ch = 0; ch < 3; ++ch) {
          const double noise = RandomUniform01(seed, i, (y * 32 + x) * 3 + ch);
          d.floats.push_back(static_cast<float>(noise - 0.5 + (in && ch == c % 3 ? 1.0 : 0.0)));
        }
      }
    }
  }
  return d;
}

TEST(DataParallel, AModelFileTrainsOnAnHdf5FileOfFloatColourImages) {
  const std::string path = ::testing::TempDir() + "/colour32.h5";
  if (comm->rank() == 0) {
    std::remove(path.c_str());
    ASSERT_TRUE(WriteHdf5Split(path, "train", ColourImages(384, 1)).ok());
    ASSERT_TRUE(WriteHdf5Split(path, "test", ColourImages(128, 2)).ok());
  }
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  TrainConfig c = Base();
  c.model = MPIFLOW_SOURCE_DIR "/tests/data/models/cnn32.ini";
  c.dataset = DatasetKind::kHdf5;
  c.data_dir = path;
  c.epochs = 2;
  c.batch_size = 16 / comm->size();
  c.max_steps = -1;
  ExpectEquivalent(c, 1e-5);
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->test_accuracy, 0.9);
  EXPECT_EQ(r->steps, 2 * 384 / 16);
}

// The embedding table's gradient is sparse: by allgather of the ranks' rows (and, for SGD, as
// dense buckets too) N ranks end with one process's weights with the global batch; lazy Adam
// updates the same rows either way. Uneven last batches included (100 examples, batch 8 * N).
TEST(DataParallel, SparseGradientsByAllgatherTrainAsOneProcess) {
  const std::string path = ::testing::TempDir() + "/bags.h5";
  ASSERT_TRUE(test::BagsFile(comm, path).ok());
  TrainConfig c = Base();
  test::UseBags(&c, path);
  for (SparseSync how : {SparseSync::kAllgather, SparseSync::kDense}) {
    c.allreduce.sparse = how;
    ExpectEquivalent(c, 1e-6);
  }
  c.allreduce.sparse = SparseSync::kAuto;  // no static bound on an EmbeddingBag's rows: gathered
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.01;
  ExpectEquivalent(c, 1e-5);
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log, comm);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GE(r->test_accuracy, 0.75);            // 4 classes: 0.25 by chance
  if (comm->size() > 1 && comm->rank() == 0) {  // rank 0 describes the run
    EXPECT_NE(log.str().find("1 sparse gradient(s) by allgather"), std::string::npos) << log.str();
  }
}

// batch_norm with sync = true: the statistics over every rank's examples, so N ranks train as
// one process with the global batch (moving statistics included); with sync = false each rank
// normalises by its own shard's, which differs as soon as there are two.
TEST(DataParallel, SyncBatchNormTrainsAsOneProcessWithTheGlobalBatch) {
  TrainConfig c = Base();
  c.model = MPIFLOW_SOURCE_DIR "/tests/data/models/sync_bn.ini";
  c.epochs = 2;
  c.max_steps = -1;
  // Each epoch ends with an uneven batch: 99 examples leave 3 on 2 ranks (2 + 1) and 35 on 4;
  // 67 leave 3 on 4 ranks, one of which holds a stand-in example that must not count. A
  // batch_norm over 3 examples magnifies rounding (seen: up to 6e-4 after the 2 epochs); the
  // gradient without the ranks' shares was off by 0.46 to 12.8.
  for (int64_t examples : {99, 67}) {
    c.synthetic_train = examples;
    ExpectEquivalent(c, 1e-3);
  }
  c.max_steps = 8;
  c.synthetic_train = 100;

  std::ifstream in(c.model);
  std::stringstream text;
  text << in.rdbuf();
  std::string per_rank = text.str();
  for (size_t at; (at = per_rank.find("sync = true")) != std::string::npos;) {
    per_rank.replace(at, 11, "sync = false");
  }
  c.model = ::testing::TempDir() + "/per_rank_bn.ini";
  if (comm->rank() == 0) std::ofstream(c.model) << per_rank;
  ASSERT_TRUE(comm->Barrier()->Wait().ok());
  StatusOr<TrainResult> dist = TrainWith(c, comm);
  ASSERT_TRUE(dist.ok()) << dist.status();
  TrainConfig one = c;
  one.batch_size = c.batch_size * comm->size();
  StatusOr<TrainResult> ref = TrainWith(one, nullptr);
  ASSERT_TRUE(ref.ok()) << ref.status();
  if (comm->size() > 1) {
    EXPECT_GT(WorstRelativeDiff(*dist, *ref), 1e-3);
  } else {
    EXPECT_LE(WorstRelativeDiff(*dist, *ref), 1e-6);
  }
}

TEST(DataParallel, DifferentGraphNamesTheFirstDifferentNode) {
  Scope s = Scope::NewRootScope();
  // Rank 1 builds the CNN, the others the MLP.
  StatusOr<Model> m =
      BuildModel(s, comm->rank() == 1 ? "cnn" : "mlp", ModelInput{Shape{28, 28, 1}, 10}, 1);
  ASSERT_TRUE(m.ok());
  const Status st = CheckSameOnAllRanks(comm, *s.graph(), {{"x", "1"}});
  if (comm->size() == 1) {
    EXPECT_TRUE(st.ok()) << st;
    return;
  }
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_NE(st.message().find("the ranks built different graphs"), std::string::npos) << st;
  EXPECT_NE(st.message().find(": 36 nodes; rank 1: 47 nodes)"), std::string::npos) << st;
  EXPECT_NE(st.message().find("the first difference is node #2: rank"), std::string::npos) << st;
  EXPECT_NE(st.message().find(": 'flatten/Reshape' = Reshape(features:0) shape=list:[-1,784]"),
            std::string::npos)
      << st;
  EXPECT_NE(st.message().find("rank 1: 'conv_1/RandomUniform' = RandomUniform()"),
            std::string::npos)
      << st;
}

TEST(DataParallel, NanGradientStopsEveryRankAtTheSameStep) {
  TrainConfig c = Base();
  c.optimizer.lr.base = 1e30;
  StatusOr<TrainResult> r = TrainWith(c, comm);
  ASSERT_FALSE(r.ok());
  // The same message (same step, same variable) on every rank.
  test::ExpectAbortedTogether(r.status(), "NaN or Inf");
}

}  // namespace
}  // namespace mpiflow
