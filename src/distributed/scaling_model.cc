// The closed forms of scaling_model.h. Not a network simulator: one alpha-beta cost per message
// and an exponential straggler tail, which is what the measured points can calibrate.
#include "mpiflow/scaling_model.h"

#include <algorithm>
#include <cmath>

namespace mpiflow {
namespace scaling {

namespace {
double Harmonic(int64_t n) {
  double h = 0;
  for (int64_t i = 1; i <= n; ++i) h += 1.0 / static_cast<double>(i);
  return h;
}
}  // namespace

double RingAllreduceSeconds(int64_t p, double bytes, double alpha, double beta) {
  if (p <= 1) return 0;
  const double pd = static_cast<double>(p);
  return 2 * (pd - 1) * alpha + 2 * bytes * (pd - 1) / pd * beta;
}

double HalvingDoublingSeconds(int64_t p, double bytes, double alpha, double beta) {
  if (p <= 1) return 0;
  const double pd = static_cast<double>(p);
  return 2 * std::ceil(std::log2(pd)) * alpha + 2 * bytes * (pd - 1) / pd * beta;
}

double ParameterServerSeconds(int64_t p, int64_t servers, double bytes, double alpha, double beta) {
  if (p <= 1 && servers <= 1) return 0;
  const double fan_in = std::max(1.0, static_cast<double>(p) / std::max<int64_t>(1, servers));
  return 2 * alpha + 2 * bytes * beta * fan_in;
}

double KthOfMFinishSeconds(int64_t k, int64_t m, double base, double tail) {
  if (k <= 0 || m <= 0) return base;
  k = std::min(k, m);
  return base + tail * (Harmonic(m) - Harmonic(m - k));
}

StatusOr<ModeledScheme> ParseModeledScheme(const std::string& name) {
  if (name == "ring") return ModeledScheme::kRing;
  if (name == "hd") return ModeledScheme::kHalvingDoubling;
  if (name == "ps") return ModeledScheme::kParameterServer;
  return InvalidArgument("unknown strategy '", name, "': use ring, hd or ps");
}

const char* ModeledSchemeName(ModeledScheme s) {
  switch (s) {
    case ModeledScheme::kRing:
      return "ring";
    case ModeledScheme::kHalvingDoubling:
      return "hd";
    case ModeledScheme::kParameterServer:
      return "ps";
  }
  return "?";
}

Prediction Predict(const Job& job, const Network& net, const Options& o, int64_t ranks) {
  Prediction p;
  p.ranks = std::max<int64_t>(1, ranks);
  const int64_t workers = p.ranks + std::max<int64_t>(0, o.backups);
  const int64_t servers =
      o.strategy != ModeledScheme::kParameterServer
          ? 0
          : (o.ps_servers > 0 ? o.ps_servers : std::max<int64_t>(1, workers / 8));
  double compute = job.compute_seconds;
  if (o.cores > 0 && workers + servers > o.cores) {
    compute *= static_cast<double>(workers + servers) / static_cast<double>(o.cores);
  }
  p.compute_seconds = KthOfMFinishSeconds(p.ranks, workers, compute, job.straggler_seconds);
  if (p.ranks > 1 || o.backups > 0) {
    switch (o.strategy) {
      case ModeledScheme::kRing:
        p.comm_seconds = RingAllreduceSeconds(workers, job.gradient_bytes, net.alpha, net.beta);
        break;
      case ModeledScheme::kHalvingDoubling:
        p.comm_seconds = HalvingDoublingSeconds(workers, job.gradient_bytes, net.alpha, net.beta);
        break;
      case ModeledScheme::kParameterServer: {
        p.comm_seconds =
            ParameterServerSeconds(workers, servers, job.gradient_bytes, net.alpha, net.beta);
        break;
      }
    }
  }
  if (o.overlap) {
    p.hidden_seconds = std::min(p.comm_seconds, job.backward_fraction * compute);
  }
  p.step_seconds = p.compute_seconds + p.comm_seconds - p.hidden_seconds;
  p.samples_per_second = static_cast<double>(p.ranks) * job.batch / p.step_seconds;
  const double one =
      job.batch / KthOfMFinishSeconds(1, 1, job.compute_seconds, job.straggler_seconds);
  p.speedup = p.samples_per_second / one;
  p.efficiency = p.speedup / static_cast<double>(p.ranks);
  return p;
}

}  // namespace scaling
}  // namespace mpiflow
