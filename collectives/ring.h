// The ring allreduce's two halves over any MPI communicator, run on the engine's thread, and
// the hierarchical allreduce built from them: a reduce-scatter inside each node (shared
// memory), an allreduce of each node-rank's segment among the ranks of that node-rank on every
// node (the network), an allgather inside each node. Private to collectives/; the algorithm
// choice (rules) and the flat algorithms' driver are mpi_communicator.cc's.
#pragma once

#include <mpi.h>

#include <cstdint>
#include <string>
#include <utility>

#include "mpi_engine.h"
#include "mpiflow/communicator.h"
#include "mpiflow/tensor.h"

namespace mpiflow {
namespace mpi_backend {

// The ranks a ring runs over: an MPI communicator and this rank's place in it.
struct RingGroup {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
};

// Segment s of n elements cut into p near-equal segments (the first n % p one longer):
// (offset, length).
std::pair<int64_t, int64_t> RingSegment(int64_t n, int p, int s);

// Reduce-scatter around rank -> rank + 1 of `data` ([n] elements of `dtype`), each segment cut
// into chunks of ring_chunk_bytes, a chunk forwarded as soon as it is reduced: afterwards rank
// r holds segment (r + 1) % p reduced over the group, each segment reduced by one rank in one
// fixed order. Allgather: every rank's segment (r + 1) % p to every rank, copied, so every
// rank holds the same bits. Ring allreduce = the two.
// With `wire` fp16 or bf16 (float32 data, sum or average only): each chunk travels as 16-bit
// values, converted as it is sent and widened as it is added or stored (AllreduceCompression).
Status RingReduceScatter(Engine* engine, const RingGroup& g, char* data, int64_t n, DType dtype,
                         ReduceOp op, const std::string& what,
                         AllreduceCompression wire = AllreduceCompression::kNone);
Status RingAllgather(Engine* engine, const RingGroup& g, char* data, int64_t n, DType dtype,
                     const std::string& what,
                     AllreduceCompression wire = AllreduceCompression::kNone);

// The two levels of a communicator: `node`, its ranks on this node (MPI_COMM_TYPE_SHARED);
// `cross`, the ranks with this rank's node-rank on every node. `uniform`: every node has the
// same number of ranks (else the hierarchy is not used).
struct RingLevels {
  RingGroup node, cross;
  bool uniform = false;
};
// Hierarchical allreduce of `data` over levels `l` (node reduce-scatter, cross-node ring
// allreduce of this rank's segment, node allgather); every rank ends with the same bits, which
// differ from a flat ring's (another order of additions).
Status HierarchicalAllreduce(Engine* engine, const RingLevels& l, char* data, int64_t n,
                             DType dtype, ReduceOp op, const std::string& what,
                             AllreduceCompression wire = AllreduceCompression::kNone);

}  // namespace mpi_backend
}  // namespace mpiflow
