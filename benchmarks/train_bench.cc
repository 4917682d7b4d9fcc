// End-to-end training benchmark: trains the MLP or CNN for a fixed number of steps several
// times and prints the median samples/s, the training step's GFLOP/s against one-thread
// sgemm measured in the same process, and peak RSS. Run one model per process (RSS is a
// process maximum).
//   mpiflow_train_bench [--model mlp|cnn] [--steps N] [--repeats R] [--batch B] [--threads T]
//                       [--optimizer adam] [--dataset fashion-mnist|synthetic]

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>

#include "kernels/cpu/blas.h"
#include "mpiflow/trainer.h"

namespace {

double SgemmPeakGflops() {
  mpiflow::blas::SetThreads(1);
  const int n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * n * n * n / s / 1e9);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::TrainConfig c;
  c.data_dir = MPIFLOW_FASHION_MNIST_DIR;
  c.optimizer.kind = mpiflow::OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.001;
  c.eval = false;
  c.epochs = 1000;
  c.log_every = 1 << 30;
  int64_t steps = 500;
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model")
      c.model = v;
    else if (k == "--steps")
      steps = std::stoll(v);
    else if (k == "--repeats")
      repeats = std::stoi(v);
    else if (k == "--batch")
      c.batch_size = std::stoll(v);
    else if (k == "--threads")
      c.threads = std::stoi(v);
    else if (k == "--optimizer")
      c.optimizer.kind = *mpiflow::ParseOptimizer(v);
    else if (k == "--dataset")
      c.dataset = *mpiflow::ParseDataset(v);
    else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  c.max_steps = steps + 20;  // the first 20 steps are not timed
  std::vector<double> rates;
  double flops_per_example = 0;
  for (int r = 0; r < repeats; ++r) {
    std::ostringstream log;
    mpiflow::StatusOr<mpiflow::TrainResult> res = mpiflow::Train(c, log);
    if (!res.ok()) {
      std::cerr << "train_bench: " << res.status() << "\n";
      return 1;
    }
    rates.push_back(res->samples_per_sec);
    flops_per_example = res->train_flops_per_example;
    std::printf("  run %d: %.1f samples/s\n", r + 1, res->samples_per_sec);
  }
  std::sort(rates.begin(), rates.end());
  const double median = rates[rates.size() / 2];
  const double peak = SgemmPeakGflops();
  const double step_gflops = median * flops_per_example / 1e9;
  std::printf(
      "train_bench: model=%s batch=%lld threads=%d optimizer=%s steps=%lld repeats=%d\n"
      "  median %.1f samples/s (min %.1f, max %.1f)\n"
      "  %.1f GFLOP/s in the training step (%.2f MFLOP per example) = %.0f%% of "
      "one-thread sgemm %.1f GFLOP/s (1024^3, same process)\n"
      "  peak RSS %.0f MiB\n",
      c.model.c_str(), static_cast<long long>(c.batch_size), c.threads,
      mpiflow::OptimizerName(c.optimizer.kind), static_cast<long long>(steps), repeats, median,
      rates.front(), rates.back(), step_gflops, flops_per_example / 1e6, 100.0 * step_gflops / peak,
      peak, mpiflow::PeakRssMiB());
  return 0;
}
