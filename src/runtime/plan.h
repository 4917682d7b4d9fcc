// Session::Plan: what one (feeds, fetches, targets) runs on this process, in order, with the
// value slots its steps read and write; on a rank of a partitioned graph also the Send and Recv
// steps of the tensors that cross ranks (rendezvous.h). Private to src/runtime. Not the
// executors (session.cc, rendezvous.cc).
#pragma once

#include <memory>
#include <vector>

#include "mpiflow/kernel.h"
#include "mpiflow/placement.h"
#include "mpiflow/session.h"

namespace mpiflow {

struct Session::Plan {
  enum class Kind { kKernel, kSend, kRecv };
  struct Step {
    Kind kind = Kind::kKernel;
    Node* node = nullptr;  // kernel: the node; send/recv: the node whose output crosses
    OpKernel* kernel = nullptr;
    bool on_device = false;       // kernel: the Session's device kernel (else a CPU kernel)
    int out_base = 0;             // kernel: values[out_base + i] holds output i; recv: its slot
    std::vector<int> in_slots;    // kernel: value slot of each input; send: the tensor's (or none)
    std::vector<int> successors;  // steps that wait on this one
    int num_preds = 0;
    int transfer = -1;  // send/recv: index into transfers
  };
  std::vector<Step> steps;  // a topological order (the sequential executor runs it as is)
  int num_slots = 0;
  std::vector<int> feed_slots;                    // per feed
  std::vector<int> fetch_slots;                   // per fetch
  std::vector<std::vector<int>> fetches_of_slot;  // per slot: the fetches it holds
  std::vector<char> fetch_computed;  // per fetch: a step of the plan computes it (else fed)
  std::vector<int> uses;             // per slot: how many step inputs read it
  std::vector<char> keep;            // per slot: fetched or fed, never released early
  std::vector<Transfer> transfers;   // partitioned: every transfer of the run, on every rank
  bool partitioned = false;          // run by Session::RunPartitioned
};

}  // namespace mpiflow
