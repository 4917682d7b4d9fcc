// Allreduce sweep in the style of nccl-tests: for each size and algorithm (the MPI library's own,
// ring, halving-doubling, and the auto choice), the median over repetitions of the slowest rank's
// time, algbw = bytes / time and busbw = algbw * 2(n-1)/n. Run under mpiexec:
//   mpiexec -np 2 build/benchmarks/mpiflow_allreduce_bench [--min-bytes 1024] [--max-bytes
//   268435456]
//       [--algorithms native,ring,hd,auto] [--csv FILE]
// Every result is validated (closed form) before it is timed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mpiflow/communicator.h"

using namespace mpiflow;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double MaxOverRanks(Communicator* comm, double v) {
  Tensor t = Tensor::Scalar<double>(v);
  AllreduceOptions o;
  o.op = ReduceOp::kMax;
  o.algorithm = AllreduceAlgorithm::kNative;
  MPIFLOW_CHECK(comm->Allreduce(t, o)->Wait().ok());
  return *t.data<double>();
}

}  // namespace

int main(int argc, char** argv) {
  int64_t min_bytes = 1024, max_bytes = int64_t{256} << 20;
  std::string algorithms = "native,ring,hd,auto", csv_path;
  CollectiveOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--min-bytes") {
      min_bytes = std::atoll(value().c_str());
    } else if (a == "--max-bytes") {
      max_bytes = std::atoll(value().c_str());
    } else if (a == "--algorithms") {
      algorithms = value();
    } else if (a == "--ring-chunk-bytes") {
      options.ring_chunk_bytes = std::atoll(value().c_str());
    } else if (a == "--csv") {
      csv_path = value();
    } else {
      std::fprintf(stderr,
                   "usage: mpiexec -np N %s [--min-bytes B] [--max-bytes B] "
                   "[--algorithms native,ring,hd,auto] [--ring-chunk-bytes B] [--csv FILE]\n",
                   argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  std::vector<AllreduceAlgorithm> algs;
  for (size_t pos = 0; pos <= algorithms.size();) {
    size_t comma = algorithms.find(',', pos);
    if (comma == std::string::npos) comma = algorithms.size();
    StatusOr<AllreduceAlgorithm> alg = ParseAllreduceAlgorithm(algorithms.substr(pos, comma - pos));
    if (!alg.ok()) {
      std::fprintf(stderr, "%s\n", alg.status().ToString().c_str());
      return 2;
    }
    algs.push_back(*alg);
    pos = comma + 1;
  }
  StatusOr<Communicator*> world = WorldCommunicator(options);
  if (!world.ok()) {
    std::fprintf(stderr, "%s\n", world.status().ToString().c_str());
    return 1;
  }
  Communicator* comm = *world;
  const int p = comm->size(), r = comm->rank();
  FILE* csv = nullptr;
  if (r == 0) {
    std::printf("# allreduce float32 sum, %d ranks; time = median of the slowest rank's time\n", p);
    std::printf("# %12s %12s %8s %12s %10s %10s\n", "bytes", "count", "algo", "time_us",
                "algbw_GBs", "busbw_GBs");
    if (!csv_path.empty()) {
      csv = std::fopen(csv_path.c_str(), "w");
      if (!csv) {
        std::fprintf(stderr, "cannot write '%s'\n", csv_path.c_str());
        return 1;
      }
      std::fprintf(csv, "ranks,bytes,algorithm,time_us,algbw_GBs,busbw_GBs\n");
    }
  }
  for (int64_t bytes = min_bytes; bytes <= max_bytes; bytes *= 2) {
    const int64_t n = bytes / 4;
    Tensor t(DType::kFloat32, Shape{n});
    for (AllreduceAlgorithm alg : algs) {
      AllreduceOptions o;
      o.algorithm = alg;
      // Validate: rank q contributes q + (i % 7); the sum is closed-form.
      for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = static_cast<float>(r + i % 7);
      MPIFLOW_CHECK(comm->Allreduce(t, o)->Wait().ok());
      for (int64_t i = 0; i < n; ++i) {
        MPIFLOW_CHECK(t.data<float>()[i] == static_cast<float>(p * (i % 7) + p * (p - 1) / 2));
      }
      // Repeat until 0.3 s or 200 repetitions, at least 5.
      std::vector<double> times;
      double total = 0;
      while ((total < 0.3 && times.size() < 200) || times.size() < 5) {
        MPIFLOW_CHECK(comm->Barrier()->Wait().ok());
        const auto t0 = std::chrono::steady_clock::now();
        MPIFLOW_CHECK(comm->Allreduce(t, o)->Wait().ok());
        const double dt =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const double slowest = MaxOverRanks(comm, dt);
        times.push_back(slowest);
        total += slowest;
        // Every rank must take the same decision to go on.
        total = MaxOverRanks(comm, total);
      }
      const double sec = Median(times);
      const double algbw = bytes / sec / 1e9;
      const double busbw = algbw * 2.0 * (p - 1) / p;
      if (r == 0) {
        std::printf("  %12lld %12lld %8s %12.1f %10.3f %10.3f\n", static_cast<long long>(bytes),
                    static_cast<long long>(n), AllreduceAlgorithmName(alg), sec * 1e6, algbw,
                    busbw);
        std::fflush(stdout);
        if (csv) {
          std::fprintf(csv, "%d,%lld,%s,%.3f,%.4f,%.4f\n", p, static_cast<long long>(bytes),
                       AllreduceAlgorithmName(alg), sec * 1e6, algbw, busbw);
        }
      }
    }
  }
  if (csv) std::fclose(csv);
  return 0;
}
