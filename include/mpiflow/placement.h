// Placement and partition: which rank runs each node of a graph that every rank builds alike,
// and which tensors cross ranks in one run. Every rank computes both from the same graph with
// the same rules, so no graph is shipped and no rank asks another where a node is.
// Not the transfers themselves (the Session runs them: session.h, rendezvous protocol in
// src/runtime/rendezvous.h) and not microbatches (src/distributed/pipeline_strategy.cc).
//
// The placer's rules, in order:
//   1. colocation groups: a node with Scope::ColocatedWith joins that node's group (gradient ops
//      join their forward op, optimizer slots their variable); an update op (Assign*, Apply*)
//      joins the group of the variable it updates (its input 0);
//   2. hints: a group with a device hint (Scope::WithDevice("/rank:1/cpu:0")) goes there; two
//      different hints in one group, a rank outside the job or an unknown device are errors
//      naming the node;
//   3. stages (PlacementOptions::stages > 1): the forward nodes (those between the inputs and
//      the roots) without a hint, in graph order, are cut into contiguous stages by the cost
//      model: the cut minimises the slowest stage's estimated time, counting its FLOPs (x3 for
//      forward and backward) and the bytes that enter it (activations forward, their gradients
//      back); stage s runs on rank s;
//   4. a variable's group goes where its first reader runs;
//   5. every other group follows its inputs (the first placed input, in graph order), then its
//      consumers (the first placed one, in reverse graph order), repeated until nothing
//      changes; what is left (a graph with no hint and no stages) runs on rank 0.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mpiflow/graph.h"
#include "mpiflow/status.h"

namespace mpiflow {

// "/rank:R/cpu:0" (or "/rank:R/gpu:G"); each part optional ("/rank:1", "/cpu:0").
struct DeviceSpec {
  int rank = -1;          // -1: not said
  std::string type = "";  // "cpu", "gpu", or "" (not said)
  int index = 0;
};
StatusOr<DeviceSpec> ParseDevice(const std::string& text);
std::string DeviceString(int rank);  // "/rank:R/cpu:0"

// What the stage split balances: estimated seconds of compute and of transfer.
struct CostModel {
  double flops_per_second = 50e9;  // one core, roughly (a GEMM reaches ~100 GFLOP/s here)
  double bytes_per_second = 5e9;   // shared memory between ranks of a node, roughly
  int64_t batch = 64;              // the size of an unknown (batch) dimension
};
// The FLOPs of one node's forward kernel: 2mnk for MatMul, 2 x outputs x window x channels for
// Conv2D, one per output element otherwise.
double NodeFlops(const Node& n, int64_t batch);
// Bytes of one output, unknown dimensions as `batch`.
int64_t OutputBytes(const Output& o, int64_t batch);

struct PlacementOptions {
  int ranks = 1;
  int stages = 0;             // > 1: rule 3 over ranks 0..stages-1
  std::vector<Output> roots;  // what the forward pass computes (the loss), for rule 3
  CostModel cost;
};

class Placement {
 public:
  Placement() = default;
  Placement(const Graph* g, int ranks, std::vector<int> rank_of)
      : graph_(g), ranks_(ranks), rank_of_(std::move(rank_of)) {}
  int ranks() const { return ranks_; }
  // The rank that runs `n`. A node added to the graph after placement runs with the node it is
  // colocated with, else with the variable it updates, else with its first input (or control
  // input), else on rank 0.
  int RankOf(const Node* n) const;
  int num_placed() const { return static_cast<int>(rank_of_.size()); }
  // A hash of every placed node's rank: ranks that computed the same placement agree on it (the
  // pipeline's start-up check compares it, as it compares the graph).
  uint64_t Fingerprint() const;

 private:
  const Graph* graph_ = nullptr;
  int ranks_ = 1;
  std::vector<int> rank_of_;  // by node id
};

StatusOr<Placement> PlaceGraph(const Graph& g, const PlacementOptions& options);

// One tensor that crosses ranks in a run, or a control edge (no data: a zero-byte message that
// says the node ran).
struct Transfer {
  Output from;
  bool control = false;
  int src = 0, dst = 0;
  int tag = 0;  // the position in the run's list: the same on every rank
  // The microbatch of `from` (its "microbatch_<m>/" name prefix), -1 when none: for messages.
  int microbatch = -1;
};

// The transfers of one run: `needed` (by node id) are the nodes the run executes on some rank,
// `fed` the outputs every rank is given, `fetches` what every rank asks for (a fetch made on
// another rank is sent to each rank). One transfer per tensor per destination, a control edge
// only where no tensor of that node goes to that rank; ordered by (node id, output, dst), which
// every rank computes alike.
std::vector<Transfer> PartitionRun(const Graph& g, const Placement& p,
                                   const std::vector<char>& needed, const std::set<Output>& fed,
                                   const std::vector<Output>& fetches);

// For --print-placement: every node with its device, then per pair of ranks the tensors of the
// forward pass of `roots` that cross from one to the other and their bytes per example.
std::string DescribePlacement(const Graph& g, const Placement& p, const std::vector<Output>& roots);

}  // namespace mpiflow
