// The parameter servers' wire protocol (synchronous, with backup workers) and their layout
// (which ranks serve, which variable lives on which server). Ranks 0..W-1 are workers,
// W..W+P-1 servers. Private to src/distributed: ps_strategy.h is the strategy built on it.
// Not the optimizer (the server runs the graph's update ops, ps_server.cc) and not the
// collectives (communicator.h): this is a message protocol over Communicator Send/Recv.
//
// Messages are float32 tensors: an 8-float header (version as two floats, loss sum, examples,
// stop, done, NaN, dropped), then the shard's variables in shard order. Per server:
//   1. Start: the server sends its shard's values as version v to every worker and posts a
//      receive for each worker's push.
//   2. Receive: a worker waits for one reply from every server still serving and takes the
//      values (views of the reply buffer) and the version.
//   3. Push: the worker sends examples * gradient, its loss sum and its stop vote, tagged with
//      the version it holds.
//   4. Gather: the server takes pushes as they arrive. One of the current version counts; an
//      older one (a straggler's) is dropped and answered at once with the current values, so a
//      slow worker never falls more than one step behind. After N = W - b pushes (b backup
//      workers) it averages them, summing in worker order: the same bits whatever the order of
//      arrival.
//   5. Publish: after the update, version v+1 goes to the N workers gathered, whose receives are
//      posted again. With `done`, every other worker's next push is answered with done, and the
//      server returns once no message is in flight.
//   6. Every wait on either side is under the communicator's stall limits (WaitAnyWatched): the
//      missing peer is named after the warning limit, and the job ends after the abort limit.
// Why not graph-level Send/Recv ops: which pushes a step uses is decided at run time (the
// first N to arrive), which a fixed dataflow plan cannot express.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

struct PsLayout {
  int workers = 0, servers = 0, backups = 0;
  std::vector<int> owner;                // variable index -> server index
  std::vector<std::vector<int>> shards;  // server index -> its variable indices, ascending
  std::vector<int64_t> shard_elements;   // server index -> float32 elements it holds
  int aggregate() const { return workers - backups; }  // N: pushes averaged per step
  int server_rank(int k) const { return workers + k; }
  bool IsServer(int rank) const { return rank >= workers; }
  int ServerIndex(int rank) const { return rank - workers; }
};

// Places variables (by element count) on `servers` servers: largest first onto the least
// loaded, ties to the lower index, so every rank computes the same layout. Errors name the
// option to change: too few ranks for the servers, no worker left, backups >= workers.
StatusOr<PsLayout> MakePsLayout(int ranks, int servers, int backups,
                                const std::vector<int64_t>& variable_elements);

// What a server's reply says (the same for every worker a step answers).
struct PsReply {
  int64_t version = 0;      // the values' version: the number of steps applied
  double loss = 0;          // mean loss of the pushes the last step averaged
  double examples = 0;      // examples those pushes held
  bool stop = false;        // preempted: stop after this step (a checkpoint was written)
  bool done = false;        // training is over: push no more
  bool non_finite = false;  // the last step's loss or gradient was NaN or Inf: training failed
  int64_t dropped = 0;      // stale pushes dropped so far
};

// A worker's side: receive values from every server still serving, push gradients to them.
class PsWorkerLink {
 public:
  // `shapes[i]`: the shape of float32 variable i.
  PsWorkerLink(Communicator* comm, const PsLayout& layout, std::vector<Shape> shapes);
  // Blocks for one reply from every server that has not said done; sets their variables in
  // `values` (indexed like shapes; entries of finished servers are left as they are) to views
  // of the reply buffers: valid until the next Receive.
  // `reply` gets server 0's header when it replied, else any replier's; version is the newest.
  Status Receive(std::vector<Tensor>* values, PsReply* reply);
  // Sends examples * grads[i] (grads indexed like shapes; float32, the variable's shape) to
  // every server still serving, each tagged with the version that server last sent.
  Status Push(const std::vector<Tensor>& grads, double examples, double loss_sum, bool stop);
  bool AllDone() const;

 private:
  Communicator* comm_;
  PsLayout layout_;
  std::vector<Shape> shapes_;
  std::vector<int64_t> version_;      // per server
  std::vector<char> done_;            // per server
  std::vector<Tensor> push_, reply_;  // per server, reused: float32 [8 + shard elements]
  std::vector<std::shared_ptr<Work>> sends_;
};

// A server's side.
class PsServerLink {
 public:
  PsServerLink(Communicator* comm, const PsLayout& layout, int server, std::vector<Shape> shapes);
  ~PsServerLink();
  // Sends `values` (this shard's, in shard order) as `version` to every worker and posts a
  // receive for each worker's push (none when `done`: a resumed run that has nothing left).
  Status Start(int64_t version, const std::vector<Tensor>& values, bool done);
  // Waits for the first N pushes of the current version, answering stale ones with the current
  // values; `mean` gets their example-weighted mean gradient per shard variable, `loss` the
  // mean loss, `examples` their examples, `stop_votes` whether any push asked to stop.
  Status Gather(std::vector<Tensor>* mean, double* loss, double* examples, bool* stop_votes);
  // The step is applied: `values` becomes version + 1 and goes to the N workers gathered.
  // With reply.done set, then answers every other worker's next push with done, and returns
  // once no message is left in flight.
  Status Publish(const std::vector<Tensor>& values, PsReply reply);
  int64_t version() const { return version_; }
  int64_t dropped() const { return dropped_; }

 private:
  Status Reply(int worker);
  void PostRecv(int worker);

  Communicator* comm_;
  PsLayout layout_;
  int server_;
  std::vector<Shape> shapes_;  // this shard's
  int64_t version_ = 0, dropped_ = 0;
  Tensor current_;                            // float32 [8 + elements]: the reply now
  std::vector<Tensor> inbox_;                 // per worker, reused: float32 [8 + elements]
  std::vector<std::shared_ptr<Work>> recvs_;  // per worker; null when none posted
  std::vector<int> gathered_;                 // workers whose push this step averages
  std::vector<std::shared_ptr<Work>> sends_;
};

}  // namespace mpiflow
