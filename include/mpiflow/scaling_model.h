// A scaling model for synchronous data-parallel training: from one rank's measured step time,
// the gradient size and the measured cost of a message (alpha: latency, beta: seconds per byte
// of the allreduce sweep), predict throughput and efficiency at any rank count for the ring,
// halving-doubling and parameter-server strategies, with or without overlap of communication
// and backward pass, and with backup workers against stragglers. Closed forms only, so every
// number can be checked by hand (tests/scaling_model_test.cc does).
// Not a simulator of contention inside a node, and not a measurement (benchmarks/ measures).
#pragma once

#include <cstdint>
#include <string>

#include "mpiflow/status.h"

namespace mpiflow {
namespace scaling {

// Ring allreduce of n bytes over p ranks: 2(p-1) alpha + 2 n (p-1)/p beta.
double RingAllreduceSeconds(int64_t p, double bytes, double alpha, double beta);
// Recursive halving-doubling (p a power of two; otherwise rounded up): 2 log2(p) alpha +
// 2 n (p-1)/p beta.
double HalvingDoublingSeconds(int64_t p, double bytes, double alpha, double beta);
// Parameter servers: every worker pushes n bytes and pulls n bytes, the n bytes split over
// `servers` ranks, each of which receives p/servers of every shard's traffic:
// 2 alpha + 2 n beta max(1, p / servers).
double ParameterServerSeconds(int64_t p, int64_t servers, double bytes, double alpha, double beta);

// Expected time until k of m workers have finished when each takes base + X, X exponential with
// mean `tail` (stragglers): base + tail (H_m - H_(m-k)), H the harmonic numbers. k = m: the
// slowest of m; k = m - b: synchronous training with b backup workers.
double KthOfMFinishSeconds(int64_t k, int64_t m, double base, double tail);

struct Job {
  double compute_seconds = 0;      // one rank's forward + backward + update at its batch
  double backward_fraction = 0.6;  // of compute_seconds that communication can hide behind
  double gradient_bytes = 0;
  double batch = 64;             // examples per rank per step
  double straggler_seconds = 0;  // mean of the exponential tail added to each rank's compute
};

struct Network {
  double alpha = 5e-6;     // seconds per message
  double beta = 1 / 10e9;  // seconds per byte
};

enum class ModeledScheme { kRing, kHalvingDoubling, kParameterServer };
StatusOr<ModeledScheme> ParseModeledScheme(const std::string& name);  // ring, hd, ps
const char* ModeledSchemeName(ModeledScheme s);

struct Options {
  ModeledScheme strategy = ModeledScheme::kRing;
  bool overlap = true;     // communication hidden behind the backward pass where it fits
  int64_t backups = 0;     // extra workers; each step waits for the first `ranks` of them
  int64_t ps_servers = 0;  // parameter servers (0: one per 8 workers, at least 1)
  // Cores of the one node every rank runs on (0: a core per rank, as on a cluster). More ranks
  // (workers and servers) than cores share them: compute slows by ranks / cores.
  int64_t cores = 0;
};

struct Prediction {
  int64_t ranks = 1;  // workers contributing examples
  double step_seconds = 0;
  double compute_seconds = 0;  // the slowest needed worker, stragglers included
  double comm_seconds = 0;     // the collective (or push + pull)
  double hidden_seconds = 0;   // of comm_seconds, overlapped with the backward pass
  double samples_per_second = 0;
  double speedup = 0;     // against one rank without communication
  double efficiency = 0;  // speedup / ranks
};

// One rank is the baseline: no communication, compute_seconds + its expected straggler tail.
Prediction Predict(const Job& job, const Network& net, const Options& options, int64_t ranks);

}  // namespace scaling
}  // namespace mpiflow
