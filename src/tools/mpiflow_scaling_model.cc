// mpiflow-scaling-model: predicted throughput and efficiency of synchronous data parallelism at
// 1-1024 ranks from one rank's step time, the gradient size and the network's alpha and beta
// (fit them to benchmarks/allreduce_bench.cc's sweep). See include/mpiflow/scaling_model.h.
//   mpiflow-scaling-model --compute-ms 1.31 --gradient-mb 1.05 --alpha-us 15 --beta-gbs 8
//       [--batch 64] [--strategy ring|hd|ps|all] [--overlap true|false] [--backups B]
//       [--straggler-ms S] [--ps-servers N] [--ranks 1,2,4,...] [--measured 1:48893,2:50012]
//       [--cores C]
//   mpiflow-scaling-model --scenarios     the published shapes (Horovod, Dean et al.)
// Exit codes: 0 done, 2 usage.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "mpiflow/scaling_model.h"

using namespace mpiflow::scaling;

namespace {

constexpr const char* kUsage =
    "Usage: mpiflow-scaling-model --compute-ms MS --gradient-mb MB --alpha-us US --beta-gbs GBS\n"
    "           [--batch 64] [--strategy ring|hd|ps|all] [--overlap true|false] [--backups B]\n"
    "           [--straggler-ms MS] [--ps-servers N] [--ranks 1,2,4,...,1024]\n"
    "           [--measured RANKS:SAMPLES_PER_S,...] [--cores C]\n"
    "       mpiflow-scaling-model --scenarios\n"
    "Predicts samples/s and efficiency of synchronous data parallelism per rank count: ring,\n"
    "halving-doubling (hd) or parameter servers (ps); --measured prints measured points beside;\n"
    "--cores C: every rank on one node of C cores (more ranks than cores slow compute).\n";

void Table(const std::string& title, const Job& job, const Network& net, Options o,
           const std::vector<int64_t>& ranks, const std::vector<ModeledScheme>& strategies,
           const std::map<int64_t, double>& measured) {
  std::printf("# %s\n", title.c_str());
  std::printf(
      "# compute %.3f ms/step, batch %.0f, gradients %.2f MB, alpha %.1f us, beta %.3f GB/s,"
      " overlap %s, backups %lld, straggler tail %.3f ms\n",
      job.compute_seconds * 1e3, job.batch, job.gradient_bytes / 1e6, net.alpha * 1e6,
      1e-9 / net.beta, o.overlap ? "yes" : "no", static_cast<long long>(o.backups),
      job.straggler_seconds * 1e3);
  std::printf("%8s %6s %12s %10s %10s %14s %9s %10s%s\n", "strategy", "ranks", "step_ms", "comm_ms",
              "hidden_ms", "samples_per_s", "speedup", "efficiency",
              measured.empty() ? "" : "   measured  meas_eff");
  for (ModeledScheme s : strategies) {
    o.strategy = s;
    const double one = Predict(job, net, o, 1).samples_per_second;
    for (int64_t p : ranks) {
      const Prediction r = Predict(job, net, o, p);
      std::printf("%8s %6lld %12.3f %10.3f %10.3f %14.1f %9.2f %10.3f", ModeledSchemeName(s),
                  static_cast<long long>(p), r.step_seconds * 1e3, r.comm_seconds * 1e3,
                  r.hidden_seconds * 1e3, r.samples_per_second, r.speedup, r.efficiency);
      auto m = measured.find(p);
      if (m != measured.end()) {
        auto base = measured.find(1);
        const double base_rate = base != measured.end() ? base->second : one;
        std::printf(" %10.1f %9.3f", m->second, m->second / base_rate / static_cast<double>(p));
      }
      std::printf("\n");
    }
  }
}

std::vector<int64_t> PowersOfTwo() {
  std::vector<int64_t> v;
  for (int64_t p = 1; p <= 1024; p *= 2) v.push_back(p);
  return v;
}

int Scenarios() {
  Options o;
  {  // Horovod (Sergeev & Del Balso 2018): ~90% at 128 GPUs on 25 GbE for these two models.
    Network net;
    net.alpha = 20e-6;
    net.beta = 1 / 3.125e9;
    Job inception;
    inception.compute_seconds = 0.46;  // P100, 64 images
    inception.gradient_bytes = 23.8e6 * 4;
    inception.straggler_seconds = 0.02 * inception.compute_seconds;
    Table("Inception V3 (23.8M parameters), ring over 25 GbE, 2% straggler tail", inception, net, o,
          {1, 8, 32, 128, 512}, {ModeledScheme::kRing}, {});
    Job resnet = inception;
    resnet.compute_seconds = 0.58;
    resnet.gradient_bytes = 44.5e6 * 4;
    resnet.straggler_seconds = 0.02 * resnet.compute_seconds;
    Table("ResNet-101 (44.5M parameters), ring over 25 GbE, 2% straggler tail", resnet, net, o,
          {1, 8, 32, 128, 512}, {ModeledScheme::kRing}, {});
  }
  {  // Dean et al. / Chen et al. 2016: dense Inception-sized models, 30-40x on 50 replicas.
    Network net;
    net.alpha = 50e-6;
    net.beta = 1 / 1.25e9;
    Job dense;
    dense.compute_seconds = 2.0;
    dense.gradient_bytes = 100e6;
    dense.straggler_seconds = 0.2;
    Options ps;
    ps.strategy = ModeledScheme::kParameterServer;
    ps.ps_servers = 13;
    Table("dense model with parameter servers (13 PS) over 10 GbE, 10% straggler tail", dense, net,
          ps, {1, 10, 25, 50, 100}, {ModeledScheme::kParameterServer}, {});
    ps.backups = 4;
    Table("... the same with 4 backup workers", dense, net, ps, {1, 10, 25, 50, 100},
          {ModeledScheme::kParameterServer}, {});
    // Sparse embedding models: only touched rows travel, so the gradient per step is small.
    Job sparse;
    sparse.compute_seconds = 0.2;
    sparse.gradient_bytes = 5e6;
    sparse.straggler_seconds = 0.02 * sparse.compute_seconds;
    Options sps;
    sps.strategy = ModeledScheme::kParameterServer;
    Table("sparse embedding model (5 MB of touched rows per step), PS (one per 8 workers)", sparse,
          net, sps, {1, 16, 64, 256, 512}, {ModeledScheme::kParameterServer}, {});
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Job job;
  Network net;
  Options o;
  std::string strategy = "all", ranks_text, measured_text;
  bool have_compute = false, have_grad = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (a == "--scenarios") return Scenarios();
    if (i + 1 >= argc) {
      std::fprintf(stderr, "mpiflow-scaling-model: %s needs a value\n%s", a.c_str(), kUsage);
      return 2;
    }
    const std::string v = argv[++i];
    const double x = std::atof(v.c_str());
    if (a == "--compute-ms") {
      job.compute_seconds = x / 1e3;
      have_compute = x > 0;
    } else if (a == "--gradient-mb") {
      job.gradient_bytes = x * 1e6;
      have_grad = x >= 0;
    } else if (a == "--alpha-us") {
      net.alpha = x / 1e6;
    } else if (a == "--beta-gbs") {
      net.beta = 1 / (x * 1e9);
    } else if (a == "--batch") {
      job.batch = x;
    } else if (a == "--strategy") {
      strategy = v;
    } else if (a == "--overlap") {
      o.overlap = v == "true" || v == "1";
    } else if (a == "--backups") {
      o.backups = static_cast<int64_t>(x);
    } else if (a == "--straggler-ms") {
      job.straggler_seconds = x / 1e3;
    } else if (a == "--ps-servers") {
      o.ps_servers = static_cast<int64_t>(x);
    } else if (a == "--cores") {
      o.cores = static_cast<int64_t>(x);
    } else if (a == "--ranks") {
      ranks_text = v;
    } else if (a == "--measured") {
      measured_text = v;
    } else {
      std::fprintf(stderr, "mpiflow-scaling-model: unknown option '%s'\n%s", a.c_str(), kUsage);
      return 2;
    }
  }
  if (!have_compute || !have_grad) {
    std::fprintf(stderr, "mpiflow-scaling-model: --compute-ms and --gradient-mb are needed\n%s",
                 kUsage);
    return 2;
  }
  std::vector<ModeledScheme> strategies;
  if (strategy == "all") {
    strategies = {ModeledScheme::kRing, ModeledScheme::kHalvingDoubling,
                  ModeledScheme::kParameterServer};
  } else {
    mpiflow::StatusOr<ModeledScheme> s = ParseModeledScheme(strategy);
    if (!s.ok()) {
      std::fprintf(stderr, "mpiflow-scaling-model: %s\n", s.status().message().c_str());
      return 2;
    }
    strategies = {*s};
  }
  std::vector<int64_t> ranks = PowersOfTwo();
  if (!ranks_text.empty()) {
    ranks.clear();
    std::stringstream in(ranks_text);
    for (std::string item; std::getline(in, item, ',');) ranks.push_back(std::atoll(item.c_str()));
  }
  std::map<int64_t, double> measured;
  std::stringstream in(measured_text);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t colon = item.find(':');
    if (colon == std::string::npos) {
      std::fprintf(stderr,
                   "mpiflow-scaling-model: --measured wants RANKS:SAMPLES_PER_S, got '%s'\n",
                   item.c_str());
      return 2;
    }
    measured[std::atoll(item.substr(0, colon).c_str())] = std::atof(item.substr(colon + 1).c_str());
  }
  Table("prediction", job, net, o, ranks, strategies, measured);
  return 0;
}
