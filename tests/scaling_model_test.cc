// The scaling model's formulas against their closed forms, worked by hand, and the shapes of the
// published results it is meant to reproduce.
#include "mpiflow/scaling_model.h"

#include <gtest/gtest.h>

#include <cmath>

namespace mpiflow {
namespace scaling {
namespace {

TEST(ScalingModel, CollectiveCostsAreTheClosedForms) {
  const double a = 10e-6, b = 1e-9, n = 100e6;  // 10 us, 1 GB/s, 100 MB
  EXPECT_EQ(RingAllreduceSeconds(1, n, a, b), 0);
  // 2(p-1)a + 2n(p-1)/p b at p = 4: 60 us + 150 ms.
  EXPECT_NEAR(RingAllreduceSeconds(4, n, a, b), 6 * a + 1.5 * n * b, 1e-15);
  // 2 log2(p) a + 2n(p-1)/p b at p = 8: 60 us + 175 ms; p = 6 rounds log2 up to 3.
  EXPECT_NEAR(HalvingDoublingSeconds(8, n, a, b), 6 * a + 1.75 * n * b, 1e-15);
  EXPECT_NEAR(HalvingDoublingSeconds(6, n, a, b), 6 * a + 2.0 * n * 5 / 6 * b, 1e-15);
  // PS: 2a + 2nb max(1, p/S): 16 workers on 4 servers -> fan-in 4.
  EXPECT_NEAR(ParameterServerSeconds(16, 4, n, a, b), 2 * a + 8 * n * b, 1e-15);
  EXPECT_NEAR(ParameterServerSeconds(2, 4, n, a, b), 2 * a + 2 * n * b, 1e-15);
}

TEST(ScalingModel, StragglersAndBackupWorkersAreOrderStatistics) {
  // The slowest of 4 exponential tails has mean tail * H_4 = tail * 25/12.
  EXPECT_NEAR(KthOfMFinishSeconds(4, 4, 1.0, 0.12), 1.0 + 0.12 * 25.0 / 12, 1e-12);
  // The 4th of 6 (2 backups): tail * (H_6 - H_2) = tail * (49/20 - 3/2).
  EXPECT_NEAR(KthOfMFinishSeconds(4, 6, 1.0, 0.12), 1.0 + 0.12 * (49.0 / 20 - 1.5), 1e-12);
  EXPECT_EQ(KthOfMFinishSeconds(1, 1, 2.0, 0.0), 2.0);
}

TEST(ScalingModel, PredictionAddsWhatOverlapCannotHide) {
  Job job;
  job.compute_seconds = 0.1;
  job.backward_fraction = 0.5;
  job.gradient_bytes = 40e6;
  job.batch = 32;
  Network net;
  net.alpha = 0;
  net.beta = 1e-9;
  Options o;
  o.overlap = false;
  const Prediction p = Predict(job, net, o, 2);
  EXPECT_NEAR(p.comm_seconds, 0.04, 1e-12);  // 2 n (1/2) b
  EXPECT_NEAR(p.step_seconds, 0.14, 1e-12);
  EXPECT_NEAR(p.efficiency, 0.1 / 0.14, 1e-12);
  EXPECT_NEAR(p.samples_per_second, 64 / 0.14, 1e-9);
  o.overlap = true;  // 0.05 s of backward hides all 0.04 s
  EXPECT_NEAR(Predict(job, net, o, 2).efficiency, 1.0, 1e-12);
  job.gradient_bytes = 100e6;  // 0.1 s of communication, 0.05 s hidden
  EXPECT_NEAR(Predict(job, net, o, 2).step_seconds, 0.15, 1e-12);
  EXPECT_EQ(Predict(job, net, o, 1).efficiency, 1.0);
}

// More ranks than the node's cores share them: 4 ranks on 2 cores compute at half speed; a
// parameter server counts as a rank.
TEST(ScalingModel, RanksBeyondTheCoresShareThem) {
  Job job;
  job.compute_seconds = 0.1;
  job.gradient_bytes = 0;
  job.batch = 10;
  Network net;
  net.alpha = 0;
  Options o;
  o.overlap = false;
  o.cores = 2;
  EXPECT_NEAR(Predict(job, net, o, 2).step_seconds, 0.1, 1e-12);
  EXPECT_NEAR(Predict(job, net, o, 4).step_seconds, 0.2, 1e-12);
  EXPECT_NEAR(Predict(job, net, o, 4).efficiency, 0.5, 1e-12);
  o.strategy = ModeledScheme::kParameterServer;
  o.ps_servers = 1;
  EXPECT_NEAR(Predict(job, net, o, 3).compute_seconds, 0.2, 1e-12);  // 3 workers + 1 server
}

// The published shapes (parameters in tools/mpiflow_scaling_model.cc's scenarios).
TEST(ScalingModel, HorovodShapedCaseIsAboutNinetyPercentAt128) {
  Job job;  // ResNet-101 on a P100: 44.5M float32 parameters, ~0.58 s per 64-image step
  job.compute_seconds = 0.58;
  job.gradient_bytes = 44.5e6 * 4;
  job.straggler_seconds = 0.02 * 0.58;
  Network net;  // 25 GbE
  net.alpha = 20e-6;
  net.beta = 1 / 3.125e9;
  const Prediction p = Predict(job, net, Options(), 128);
  EXPECT_GT(p.efficiency, 0.85);
  EXPECT_LT(p.efficiency, 0.95);
}

TEST(ScalingModel, DenseParameterServerCaseIsThirtyToFortyAtFifty) {
  Job job;  // Inception-sized dense model, 2012-2016 CPUs/GPUs, stragglers
  job.compute_seconds = 2.0;
  job.gradient_bytes = 100e6;
  job.straggler_seconds = 0.2;
  Network net;  // 10 GbE
  net.alpha = 50e-6;
  net.beta = 1 / 1.25e9;
  Options o;
  o.strategy = ModeledScheme::kParameterServer;
  o.ps_servers = 13;
  const Prediction p = Predict(job, net, o, 50);
  EXPECT_GT(p.speedup, 30);
  EXPECT_LT(p.speedup, 40);
  o.backups = 4;  // backup workers cut the straggler tail
  EXPECT_GT(Predict(job, net, o, 50).speedup, p.speedup);
}

}  // namespace
}  // namespace scaling
}  // namespace mpiflow
