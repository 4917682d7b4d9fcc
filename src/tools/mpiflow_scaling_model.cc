// mpiflow-scaling-model: predicted throughput and efficiency of synchronous data parallelism at
// 1-1024 ranks from one rank's step time, the gradient size and the network's alpha and beta
// (fit them to benchmarks/allreduce_bench.cc's sweep). See include/mpiflow/scaling_model.h.
//   mpiflow-scaling-model --compute-ms 1.31 --gradient-mb 1.05 --alpha-us 15 --beta-gbs 8
//       [--batch 64] [--strategy ring|hd|ps|all] [--overlap true|false] [--backups B]
//       [--straggler-ms S] [--ps-servers N] [--ranks 1,2,4,...] [--measured 1:48893,2:50012]
//       [--cores C]
//   mpiflow-scaling-model --scenarios     the published shapes (Horovod, Dean et al.)
// Exit codes: 0 done, 2 usage (a bad value names its option).
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "mpiflow/crash_report.h"
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

// "1,2,4" -> {1, 2, 4}; false (and `bad` set) at an item that is not a positive integer.
bool ParseRanks(const std::string& text, std::vector<int64_t>* ranks, std::string* bad) {
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0) {
      *bad = item;
      return false;
    }
    ranks->push_back(v);
  }
  return !ranks->empty();
}

int Usage(const std::string& what) {
  std::fprintf(stderr, "mpiflow-scaling-model: %s (see --help)\n", what.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::InstallCrashReport("mpiflow-scaling-model");
  namespace po = boost::program_options;
  Job job;
  Network net;
  Options o;
  double compute_ms = 0, gradient_mb = -1, alpha_us = 5, beta_gbs = 10;
  std::string strategy = "all", ranks_text, measured_text;
  po::options_description d("options");
  // clang-format off
  d.add_options()
    ("help,h", "print this help and exit")
    ("version", "print mpiflow's version and exit")
    ("scenarios", "print the published shapes (Horovod, Dean et al.) and exit")
    ("compute-ms", po::value(&compute_ms), "one rank's compute time per step, ms (needed)")
    ("gradient-mb", po::value(&gradient_mb), "gradient bytes per step, MB (needed)")
    ("alpha-us", po::value(&alpha_us)->default_value(5, "5"), "network latency per message, us")
    ("beta-gbs", po::value(&beta_gbs)->default_value(10, "10"), "network bandwidth, GB/s")
    ("batch", po::value(&job.batch)->default_value(job.batch, "64"), "examples per rank and step")
    ("strategy", po::value(&strategy)->default_value(strategy), "ring, hd, ps or all")
    ("overlap", po::value(&o.overlap)->default_value(o.overlap, o.overlap ? "true" : "false"),
     "communication overlaps the backward pass (true/false)")
    ("backups", po::value(&o.backups)->default_value(o.backups), "backup workers (ps)")
    ("straggler-ms", po::value<double>()->default_value(0, "0"), "straggler tail per step, ms")
    ("ps-servers", po::value(&o.ps_servers)->default_value(o.ps_servers),
     "parameter servers (0: one per 8 workers)")
    ("cores", po::value(&o.cores)->default_value(o.cores),
     "cores of the one node every rank runs on (0: a node per rank)")
    ("ranks", po::value(&ranks_text)->value_name("1,2,4,..."), "rank counts (default 1-1024)")
    ("measured", po::value(&measured_text)->value_name("RANKS:SAMPLES_PER_S,..."),
     "measured points to print beside the prediction");
  // clang-format on
  po::variables_map vm;
  if (!mpiflow::cli::ParseCommandLine("mpiflow-scaling-model", argc, argv, d, {}, &vm)) return 2;
  if (vm.count("help")) {
    std::cout << kUsage << "\n" << d;
    return 0;
  }
  if (vm.count("version")) {
    mpiflow::cli::PrintVersion("mpiflow-scaling-model");
    return 0;
  }
  if (vm.count("scenarios")) return Scenarios();
  if (!vm.count("compute-ms") || !vm.count("gradient-mb")) {
    std::fprintf(stderr, "mpiflow-scaling-model: --compute-ms and --gradient-mb are needed\n%s",
                 kUsage);
    return 2;
  }
  if (!(compute_ms > 0))
    return Usage(mpiflow::StrCat("--compute-ms must be positive, got ", compute_ms));
  if (!(gradient_mb >= 0))
    return Usage(mpiflow::StrCat("--gradient-mb must be >= 0, got ", gradient_mb));
  if (!(alpha_us >= 0)) return Usage(mpiflow::StrCat("--alpha-us must be >= 0, got ", alpha_us));
  if (!(beta_gbs > 0)) return Usage(mpiflow::StrCat("--beta-gbs must be positive, got ", beta_gbs));
  if (!(job.batch > 0)) return Usage(mpiflow::StrCat("--batch must be positive, got ", job.batch));
  const double straggler_ms = vm["straggler-ms"].as<double>();
  if (!(straggler_ms >= 0)) {
    return Usage(mpiflow::StrCat("--straggler-ms must be >= 0, got ", straggler_ms));
  }
  if (o.backups < 0 || o.ps_servers < 0 || o.cores < 0) {
    return Usage("--backups, --ps-servers and --cores must be >= 0");
  }
  job.compute_seconds = compute_ms / 1e3;
  job.gradient_bytes = gradient_mb * 1e6;
  job.straggler_seconds = straggler_ms / 1e3;
  net.alpha = alpha_us / 1e6;
  net.beta = 1 / (beta_gbs * 1e9);
  std::vector<ModeledScheme> strategies;
  if (strategy == "all") {
    strategies = {ModeledScheme::kRing, ModeledScheme::kHalvingDoubling,
                  ModeledScheme::kParameterServer};
  } else {
    mpiflow::StatusOr<ModeledScheme> sc = ParseModeledScheme(strategy);
    if (!sc.ok()) return Usage(sc.status().message());
    strategies = {*sc};
  }
  std::vector<int64_t> ranks = PowersOfTwo();
  if (!ranks_text.empty()) {
    ranks.clear();
    std::string bad;
    if (!ParseRanks(ranks_text, &ranks, &bad)) {
      return Usage(mpiflow::StrCat("--ranks: '", bad, "' is not a positive integer"));
    }
  }
  std::map<int64_t, double> measured;
  std::stringstream in(measured_text);
  for (std::string item; std::getline(in, item, ',');) {
    const size_t colon = item.find(':');
    std::vector<int64_t> r;
    std::string bad;
    char* end = nullptr;
    const double rate =
        colon == std::string::npos ? 0 : std::strtod(item.c_str() + colon + 1, &end);
    if (colon == std::string::npos || !ParseRanks(item.substr(0, colon), &r, &bad) ||
        r.size() != 1 || *end != '\0' || !(rate > 0)) {
      return Usage(mpiflow::StrCat("--measured wants RANKS:SAMPLES_PER_S, got '", item, "'"));
    }
    measured[r[0]] = rate;
  }
  Table("prediction", job, net, o, ranks, strategies, measured);
  return 0;
}
