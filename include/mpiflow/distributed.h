// Synchronous data parallelism over a Communicator: gradient buckets whose allreduce overlaps
// the backward pass, the start-up check that every rank runs the same graph and options, and
// the per-step agreement (loss, stop, checkpoint, NaN) every rank acts on together. One step,
// on every rank:
//   1. as the backward pass produces a bucket's gradients, its AllreduceStart packs scale *
//      gradient into one buffer and hands it to the communication thread; each start depends on
//      the previous one, so the buckets start in the same order on every rank;
//   2. the communicator sums the bucket over all ranks while the backward pass goes on;
//   3. the last bucket also carries the agreement, unscaled: loss * examples, examples, stop
//      votes, checkpoint votes;
//   4. each AllreduceWait gives its update op a view of the reduced gradient after checking it
//      is finite: the sums are the same everywhere, so a NaN fails the step on every rank;
//   5. every rank reads the same agreement and decides alike (allreduce_strategy.cc).
// Not the training loop (trainer.h), not the strategy (strategy.h), not the collectives
// (communicator.h).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/scope.h"

namespace mpiflow {

// How a sparse gradient (an IndexedSlices: a Gather's or an EmbeddingBag's rows) is summed over
// the ranks:
//   allgather  every rank's (index, row) pairs are gathered (AllgatherRows) and the optimizer
//              adds them up per index: only the rows the batches touched move, and a lazy
//              optimizer updates only those;
//   dense      the gradient is scattered into the variable's shape and joins the buckets;
//   auto       allgather when it moves fewer bytes: ranks * the rows a rank may send * (row + 1)
//              < the variable's elements, counting a gradient whose row count has no static
//              bound (an EmbeddingBag's) as sparse.
enum class SparseSync { kAuto, kAllgather, kDense };
StatusOr<SparseSync> ParseSparseSync(const std::string& name);  // auto, allgather, dense
const char* SparseSyncName(SparseSync s);

struct GradientSyncOptions {
  // A bucket closes once it holds this many bytes (the gradient that crosses it included).
  // Measured in the README: small models want small buckets, so the first allreduce starts
  // early in the backward pass.
  int64_t bucket_bytes = 1 << 20;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kAuto;  // per bucket
  SparseSync sparse = SparseSync::kAuto;
  int ranks = 1;  // the communicator's size, for kAuto's estimate
  // float32 buckets' wire format (communicator.h); the agreement then has an exact bucket.
  AllreduceCompression compression = AllreduceCompression::kNone;
};

struct GradientSync {
  std::vector<Output> gradients;  // averaged over ranks, in the order of the gradients given
  // Feed a float32 scalar every step: this rank's examples / the global batch's examples. The
  // buckets sum scale * gradient, which is the mean gradient over the global batch even when
  // ranks hold different numbers of examples (and 0 for a rank that holds none).
  Output scale;
  // Feed float32 scalars every step: this rank's example count; 1 to ask every rank to stop
  // after this step (preemption), and 1 to ask for a checkpoint after it (0 otherwise).
  Output examples, stop, checkpoint;
  // Fetch: float32 (4) summed over ranks: loss * examples, examples, stop votes, checkpoint
  // votes. Packed
  // (unscaled) at the end of the last bucket, so it costs no collective of its own. A NaN or
  // Inf loss on any rank makes the first value NaN or Inf on every rank.
  Output agreement;
  std::vector<std::vector<int>> buckets;  // indices into gradients, in the order they start
  std::vector<int> gathered;  // indices into gradients that go by AllgatherRows, in that order
};

// Packs gradients into buckets in the order their producing nodes were added to the graph
// (identical on every rank, roughly the order the backward pass produces them), and adds an
// AllreduceStart per bucket, each ordered after the previous one, and one AllreduceWait per
// gradient (and one for the step agreement on `loss`, in the last bucket). Gradients of one bucket
// share a dtype. Run the graph in a Session whose SessionOptions::communicator is set. Without a
// `loss` (an invalid Output) there is no agreement: `examples`, `stop`, `checkpoint` and
// `agreement` stay invalid (a pipeline's stage, whose ranks agree on the world instead).
// A sparse gradient that options.sparse sends by allgather joins no bucket: after the last
// bucket's start, an AllgatherRows gathers every rank's scaled rows, and its gradient is an
// IndexedSlices of them (which the optimizer applies sparsely).
StatusOr<GradientSync> AddGradientSync(const Scope& s, Output loss,
                                       const std::vector<Output>& gradients,
                                       const std::vector<Output>& variables,
                                       const GradientSyncOptions& options);

// Every rank compares the graph's fingerprint and each (name, value) option with every other
// rank's. A difference is an error on every rank naming the first differing node or option and
// what the ranks hold; nobody is left waiting in a collective.
Status CheckSameOnAllRanks(Communicator* comm, const Graph& graph,
                           const std::vector<std::pair<std::string, std::string>>& options);

}  // namespace mpiflow
