// main() of the MPI test binaries; see mpi_test_main.h.
#include "tests/mpi_test_main.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <sstream>

#include "mpiflow/data.h"
#include "mpiflow/models.h"

namespace mpiflow {
namespace test {
Communicator* world = nullptr;

TrainConfig SmallSyntheticJob() {
  TrainConfig c;
  c.dataset = DatasetKind::kSynthetic;
  c.synthetic_train = 640;
  c.synthetic_test = 100;
  c.epochs = 1;
  c.batch_size = 16;
  c.optimizer.kind = OptimizerKind::kSgd;
  c.optimizer.lr.base = 0.05;
  c.log_every = 1000000;
  c.prefetch = 0;
  return c;
}

uint64_t HashVariables(const std::vector<std::pair<std::string, Tensor>>& variables) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const auto& [name, t] : variables) {
    const unsigned char* p = static_cast<const unsigned char*>(t.raw());
    for (size_t i = 0; i < t.bytes(); ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  return h;
}

bool SameOnRanks(uint64_t value, int first) {
  Tensor mine = Tensor::FromVector<int64_t>(Shape{1}, {static_cast<int64_t>(value)});
  Tensor all(DType::kInt64, Shape{world->size()});
  EXPECT_TRUE(world->Allgather(mine, all)->Wait().ok());
  for (int q = 0; q < first; ++q) {
    if (all.data<int64_t>()[q] != all.data<int64_t>()[0]) return false;
  }
  return true;
}

StatusOr<TrainResult> TrainThroughModelFn(const TrainConfig& c, Communicator* comm) {
  TrainingSet data{SyntheticDataset(c.synthetic_train, 10, static_cast<uint64_t>(c.seed)),
                   SyntheticDataset(c.synthetic_test, 10, static_cast<uint64_t>(c.seed) + 1)};
  const std::string name = c.model;
  ModelFn fn = [name](const Scope& s, const ModelInput& input, int64_t seed) {
    return BuildModel(s, name, input, seed);
  };
  std::ostringstream log;
  return Train(fn, data, c, log, comm);
}

double WorstRelativeDiff(const TrainResult& r, const TrainResult& ref) {
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, t] : ref.variables) by_name[name] = &t;
  double worst = 0;
  for (const auto& [name, x] : r.variables) {
    auto it = by_name.find(name);
    EXPECT_NE(it, by_name.end()) << name;
    if (it == by_name.end() || x.dtype() != DType::kFloat32) continue;
    Tensor y = *it->second;
    // A parameter server's rows of a split table, against the whole one (or the same rows).
    auto slice = r.row_slices.find(name);
    if (slice != r.row_slices.end() && ref.row_slices.count(name)) {
      EXPECT_EQ(slice->second.first, ref.row_slices.at(name).first) << name;
    } else if (slice != r.row_slices.end() && y.shape().rank() > 0 && x.shape().rank() > 0) {
      EXPECT_EQ(slice->second.rows, y.shape().dim(0)) << name;
      EXPECT_LE(slice->second.first + x.shape().dim(0), y.shape().dim(0)) << name;
      if (slice->second.first + x.shape().dim(0) > y.shape().dim(0)) continue;
      const int64_t row = y.shape().dim(0) ? y.num_elements() / y.shape().dim(0) : 0;
      y = y.View(slice->second.first * row, x.shape());
    }
    EXPECT_EQ(x.shape(), y.shape()) << name;
    if (x.shape() != y.shape()) continue;
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < x.num_elements(); ++i) {
      diff = std::max(diff, std::fabs(double(x.data<float>()[i]) - y.data<float>()[i]));
      scale = std::max(scale, std::fabs(double(y.data<float>()[i])));
    }
    worst = std::max(worst, scale > 0 ? diff / scale : diff);
  }
  return worst;
}

void ExpectAbortedTogether(const Status& st, const std::string& needle) {
  EXPECT_EQ(st.code(), Code::kAborted) << st;
  EXPECT_NE(st.message().find(needle), std::string::npos) << st;
  const uint64_t h = std::hash<std::string>()(st.message()) & 0x7fffffffffff;
  EXPECT_TRUE(SameOnRanks(h, world->size())) << "ranks ended with different messages: " << st;
}

}  // namespace test
}  // namespace mpiflow

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mpiflow::StatusOr<mpiflow::Communicator*> c = mpiflow::WorldCommunicator();
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", c.status().ToString().c_str());
    return 1;
  }
  mpiflow::test::world = *c;
  const int rc = RUN_ALL_TESTS();
  // Every rank exits with the worst result, so mpiexec reports a failure seen on any rank.
  mpiflow::Tensor t = mpiflow::Tensor::FromVector<int32_t>(mpiflow::Shape{1}, {rc});
  mpiflow::AllreduceOptions o;
  o.op = mpiflow::ReduceOp::kMax;
  (void)mpiflow::test::world->Allreduce(t, o)->Wait();
  return t.data<int32_t>()[0];
}
