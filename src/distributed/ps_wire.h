// The parameter servers' message format, shared by the worker's and the server's link (see
// parameter_server.h for what a message holds): the tags, the header's fields, counts as two
// exact floats, and the sparse section's reader. Private to src/distributed; not the protocol
// (parameter_server.h) and not the layout. Defined in ps_wire.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "parameter_server.h"

namespace mpiflow {
namespace ps_wire {

constexpr int kPushTag = 7001;   // worker -> server: a push's head (header, sparse section)
constexpr int kReplyTag = 7002;  // server -> worker: values
// worker -> server: the body of a push's whole variable j of the shard (j < kMaxBodies).
constexpr int kBodyTag = 10000;
constexpr int kMaxBodies = 20000;  // tags stay below MPI's guaranteed 32767

// The header's fields (float32 each; counters as two floats, exact below 2^48).
enum Field {
  kVersion = 0,     // [0, 1]: the values' version (push: the one computed on)
  kLoss = 2,        // push: loss sum; reply: mean loss
  kExamples = 3,    // push: examples; reply: examples the update used
  kStop = 4,        // preemption vote / decision
  kDone = 5,        // reply: push no more
  kNonFinite = 6,   // a NaN or Inf: training failed
  kDropped = 7,     // reply: stale pushes dropped so far
  kStep = 8,        // [8, 9] push: the pusher's data step (async)
  kLeave = 10,      // push: no gradient, the pusher is done (async)
  kUpdates = 11,    // [11, 12] reply: updates applied (async)
  kRawBodies = 13,  // push: 1: the bodies are gradients as computed, the server weighs them
                    // by kExamples; 0: weighted already (a hybrid group's sum)
  kWants = 14,      // push: 1: the head ends with the rows the pusher's next batch reads
  kStaleness = 16,  // [16, 32) reply: the staleness histogram (async)
  kHeader = kStaleness + kStalenessBuckets
};
static_assert(kHeader == kPsHeaderFloats, "parameter_server.h says how long the header is");

inline void PutCount(float* h, int64_t v) {
  h[0] = static_cast<float>(v >> 24);
  h[1] = static_cast<float>(v & ((int64_t{1} << 24) - 1));
}
inline int64_t GetCount(const float* h) {
  return (static_cast<int64_t>(h[0]) << 24) + static_cast<int64_t>(h[1]);
}

using Clock = std::chrono::steady_clock;

std::string List(const std::vector<int>& v);  // "1, 2, 3"

// Floats a sparse section takes for parts of n[j] rows of width[j] floats (width 0: dense).
int64_t SectionFloats(const std::vector<int64_t>& width, const std::vector<int64_t>& n);

// Where a sparse section puts one variable's rows.
struct SectionPart {
  int64_t n = 0;
  const float* indices = nullptr;  // n counts
  const float* rows = nullptr;     // [n, width]
};
// Reads a sparse section from `p` (at most `left` floats): per sparse variable (width > 0) n,
// where its indices and rows start; indices checked against rows[j]. Error: what is wrong.
// Without `used`, the section must end at `left`; with it, *used gets the floats it took.
Status ReadSection(const float* p, int64_t left, const std::vector<int64_t>& width,
                   const std::vector<int64_t>& rows, std::vector<SectionPart>* parts,
                   int64_t* used = nullptr);
// A push's wants: per sparse variable (width > 0) n as a count and n row indices (two floats
// each), ascending; the floats they take, and their reader (which checks the order and range,
// and that they end at `left`). `wants` gets per variable its rows (empty for a dense one).
int64_t WantsFloats(const std::vector<int64_t>& width, const std::vector<int64_t>& n);
Status ReadWants(const float* p, int64_t left, const std::vector<int64_t>& width,
                 const std::vector<int64_t>& rows, std::vector<std::vector<int64_t>>* wants);

// Per shard variable of server k: floats per row if sparse, else 0; and its rows.
std::vector<int64_t> Widths(const PsLayout& l, int k);
std::vector<int64_t> RowCounts(const PsLayout& l, int k, const std::vector<Shape>& shapes);

}  // namespace ps_wire
}  // namespace mpiflow
