// The parameter servers' wire protocols (synchronous with backup workers, asynchronous, hybrid)
// and their layout (which ranks serve, which push, which variable lives on which server). Ranks
// 0..W-1 are workers, W..W+P-1 servers. Private to src/distributed: ps_strategy.h is the
// strategy built on it. Not the optimizer (the server runs the graph's update ops, ps_server.cc)
// and not the collectives (communicator.h): this is a message protocol over Send/Recv.
//
// Messages are float32 tensors. A reply is one message: a 32-float header (its fields:
// ps_wire.h), then the shard's whole (dense) variables in shard order, then its sparse section.
// A push is one message per whole variable (its body: the gradient as computed, which the
// server weighs by the push's examples; a hybrid group's sum of weighted gradients, kRawBodies
// 0), tagged with the variable's index in the shard, each sent as soon as the backward pass has
// computed it, then the head, sent last: the header and the sparse section (its rows weighted
// by the worker; a hybrid group's leader sends every body after the group's sum). The server
// receives each body where it averages it, and takes a push once its head and its bodies have all
// come. The sparse section: for each variable whose rows travel alone (PsLayout::row_width; an
// embedding table that the optimizer updates by rows), in shard order, n as a count (two floats), n
// row indices (two floats each), and the n rows (float32 [n, width]). With several servers such
// a table is split by rows (PsLayout::split): each server holds, updates and checkpoints one
// range of its rows (and of their optimizer slots: Session::KeepRows), and a section's indices
// count from the first row of the receiving or sending server's range. A push carries the rows
// the worker's batch touched in that range (each once, ascending, the gradient's duplicates
// summed), and, when the worker knows them (ParameterServerStrategy::NextFeeds: its next batch
// is the next thing to read its values), its wants: per such variable a count and the rows its
// next batch looks up (header kWants). A reply carries the rows that changed since the values
// that worker last held whole (the server keeps each row's version; at the start all of them):
// of its wants only, when its push had them, else every one, which makes its copy of the table
// equal the servers' bit for bit again. So a worker always reads current rows, while only the
// rows a batch touches go out and only those it reads next come back. A synchronous dropped
// push's reply (its worker skips to another batch), a reply that ends training (done, stop,
// NaN) and a leave's carry every changed row; an asynchronous push dropped as too stale is
// answered as any other (its worker goes on to the batch it named). Heads and replies with
// a sparse section have the size they say (RecvShaped). The pushing ranks are the workers (sync,
// async) or the group leaders (hybrid; hybrid moves whole tables: a group sums its pushes by
// allreduce, which needs one layout).
//
// Synchronous (--ps-mode sync), per server:
//   1. Start: the server sends its shard's values as version v to every pusher and posts a
//      receive for each pusher's push.
//   2. Receive: a worker waits for one reply from every server still serving and takes the
//      values (views of the reply buffer) and the version.
//   3. Push: the worker sends its gradient (each variable's body as the backward pass computes
//      it) over its examples, its loss sum and its stop vote, tagged with the version it holds.
//   4. Gather: the server takes pushes as they arrive. One of the current version counts; an
//      older one (a straggler's) is dropped and answered at once with the current values, so a
//      slow worker never falls more than one step behind. After N = W - b pushes (b backup
//      workers) it averages them, summing in worker order: the same bits whatever the order of
//      arrival.
//   5. Publish: after the update, version v+1 goes to the N workers gathered, whose receives are
//      posted again. With `done`, every other worker's next push is answered with done, and the
//      server returns once no message is in flight.
// Asynchronous (--ps-mode async), per server:
//   1. Start as above. The version counts the updates applied.
//   2. A worker pushes its gradient and examples for its next batch (its data step s, counted from
//      the run's start), tagged with the version its values came from, and waits for every
//      server's reply.
//   3. The server takes the pushes one at a time in arrival order (WaitPush). Staleness = its
//      version - the push's. Beyond --max-staleness the push is dropped; else its gradient /
//      examples is applied at once and the version goes up by one (a push of no examples, an
//      empty share of an epoch's last batch, is answered without an update).
//   4. It answers that worker alone (Answer) with the values it holds now (of a table by rows,
//      as the sparse section above says). A worker's push of the run's last step is answered
//      with done.
//   5. Stop (a preemption vote or signal) or a NaN: every later push is answered with done and
//      the flag. A worker told so by one server sends a `leave` message to the others (answered
//      with done, and telling them the flag), so every server learns it and no server waits for
//      a push that never comes. A server ends once every pusher is done.
//   6. Checkpoints are taken at data steps that every pusher has passed (each server sees every
//      push, so all servers pass the same steps and save together without a message), and a
//      resume starts every worker there: a worker that was ahead pushes its last batches again,
//      which the servers' values already hold (asynchronous training has no consistent cut
//      across workers or servers: a checkpoint is a state to go on from, not a replay). Once
//      every pusher is done the servers agree (one allreduce among them) on stop and NaN: after
//      a stop each writes its shard at the last step every pusher passed; after a NaN, none.
// Hybrid (--ps-mode hybrid --group-size G): workers 0..G-1, G..2G-1, ... are groups (the last
// one takes the rest). In a group
// every worker packs its push as in async, the group sums the packed messages by allreduce, and
// the leader (the group's first worker) pushes the sum as one asynchronous push and broadcasts
// each server's reply to the group, which all take the same values and decisions from.
// In every mode, every wait on either side is under the communicator's stall limits
// (WaitAnyWatched): the missing peer is named after the warning limit, and the job ends after
// the abort limit.
// Why not graph-level Send/Recv ops: which pushes a step uses is decided at run time (the
// first N to arrive), which a fixed dataflow plan cannot express.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/status.h"
#include "mpiflow/strategy.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

namespace ps_wire {
struct SectionPart;  // ps_wire.h
}  // namespace ps_wire

struct PsLayout {
  int workers = 0, servers = 0, backups = 0;
  PsMode mode = PsMode::kSync;
  int group_size = 1;  // hybrid: workers per group; else 1
  // Variable index -> the server that holds it whole, or -1 for a table split by rows.
  std::vector<int> owner;
  // Server index -> its variable indices, ascending (a split table's too, for its part).
  std::vector<std::vector<int>> shards;
  std::vector<int64_t> shard_elements;  // server index -> float32 elements it holds
  // Variable index -> floats per row when only the rows a step touches travel (see above),
  // else 0; server index -> the elements of its other (whole) variables.
  std::vector<int64_t> row_width;
  std::vector<int64_t> shard_dense_elements;
  // Variable index -> where a table split by rows breaks: servers 0..n-1 hold parts, server k
  // rows [split[v][k], split[v][k + 1]); empty for a variable one server holds whole.
  std::vector<std::vector<int64_t>> split;
  bool Sparse(int v) const { return row_width[v] > 0; }
  bool Split(int v) const { return !split[v].empty(); }
  bool Holds(int k, int v) const {
    return Split(v) ? k + 1 < static_cast<int>(split[v].size()) : owner[v] == k;
  }
  // The first row of v that server k holds (0 for a whole variable), and the shape of its part.
  int64_t FirstRow(int k, int v) const { return Split(v) ? split[v][k] : 0; }
  Shape PartShape(int k, int v, const Shape& whole) const {
    if (!Split(v)) return whole;
    std::vector<int64_t> dims = whole.dims();
    dims[0] = split[v][k + 1] - split[v][k];
    return Shape(dims);
  }
  bool ShardSparse(int k) const {
    for (int v : shards[k]) {
      if (Sparse(v)) return true;
    }
    return false;
  }
  // Workers, or hybrid groups (of group_size workers, the last of the rest).
  int pushers() const { return (workers + group_size - 1) / group_size; }
  int pusher_rank(int p) const { return p * group_size; }
  int aggregate() const { return workers - backups; }  // sync: N, pushes averaged per step
  int server_rank(int k) const { return workers + k; }
  bool IsServer(int rank) const { return rank >= workers; }
  int ServerIndex(int rank) const { return rank - workers; }
};

// Places variables (by element count) on `o.servers` servers: a table whose rows travel alone
// (row_width > 0) split by rows into near-equal parts over every server (at most one part per
// row), then the others whole, largest first onto the least loaded, ties to the lower index, so
// every rank computes the same layout. Errors name the
// option to change: too few ranks for the servers, no worker left, backups >= workers, backups
// or a staleness bound in a mode that has none, a group larger than the workers.
// `row_width` (empty: none) gives PsLayout::row_width.
StatusOr<PsLayout> MakePsLayout(int ranks, const ParameterServerOptions& o,
                                const std::vector<int64_t>& variable_elements,
                                const std::vector<int64_t>& row_width = {});

// Staleness buckets the replies carry: 0 .. kStalenessBuckets - 2, then "that or more".
inline constexpr int kStalenessBuckets = 16;
// Floats of every message's header.
inline constexpr int kPsHeaderFloats = 32;

// What a server's reply says (the same for every worker a step answers).
struct PsReply {
  int64_t version = 0;      // the values' version: the number of steps applied
  double loss = 0;          // mean loss of the pushes the last step averaged
  double examples = 0;      // examples those pushes held
  bool stop = false;        // preempted: stop after this step (a checkpoint was written)
  bool done = false;        // training is over: push no more
  bool non_finite = false;  // the last step's loss or gradient was NaN or Inf: training failed
  int64_t dropped = 0;      // stale pushes dropped so far
  int64_t updates = 0;      // async: updates applied so far
  std::vector<int64_t> staleness = std::vector<int64_t>(kStalenessBuckets);  // async: histogram
};

// What a push says (async: PsServerLink::WaitPush).
struct PsPush {
  int pusher = 0;           // index in the layout's pushers
  int64_t version = 0;      // the values' version the gradient was computed on
  int64_t step = 0;         // the pusher's data step (async)
  double loss_sum = 0;      // loss * examples
  double examples = 0;      // examples the gradient is the sum over
  bool stop = false;        // a preemption vote
  bool leave = false;       // async: no gradient; the pusher is done with this server
  bool non_finite = false;  // with leave: another server saw a NaN
};

// The rows of a sparse variable that a reply carries.
struct PsRows {
  int variable = 0;              // index in the layout's variables
  std::vector<int64_t> indices;  // ascending
  Tensor values;                 // float32 [indices.size(), width]: a view of the reply buffer
};

// A worker's side: receive values from every server still serving, push gradients to them.
class PsWorkerLink {
 public:
  // `shapes[i]`: the shape of float32 variable i.
  PsWorkerLink(Communicator* comm, const PsLayout& layout, std::vector<Shape> shapes);
  // Blocks for one reply from every server that has not said done; sets their whole variables
  // in `values` (indexed like shapes; entries of finished servers and sparse variables are left
  // as they are) to views of the reply buffers, valid until the next Receive, and puts the rows
  // of their sparse variables in `rows` (views too).
  // `reply` gets server 0's header when it replied, else any replier's; version is the newest.
  // With `group` (hybrid, a group of workers whose rank 0 is the leader): the leader receives
  // from the servers and broadcasts each reply buffer to the group; the others take them from
  // the broadcast. Every member then holds the same values and reply.
  Status Receive(std::vector<Tensor>* values, std::vector<PsRows>* rows, PsReply* reply,
                 Communicator* group = nullptr);
  // Pushes grads (indexed like shapes; float32, the variable's shape; for a sparse variable the
  // rows [k, width] at `indices[i]`, int32 or int64 [k], repeats allowed) over `examples` to
  // every server still serving, each tagged with the version that server last sent (and with
  // the data step `step`, which async servers read). The bodies are the gradient tensors
  // themselves (no copy; the server weighs them by examples); a sparse variable's rows go
  // weighted in the head. Streaming: StartPush, then PushBody of each whole variable's gradient
  // as the backward pass computes it (it leaves at once), then Push sends the rest and the heads.
  // With `wants` (indexed like shapes; for each sparse variable the rows the worker's next batch
  // reads, ascending, each once), the replies carry of a sparse variable only those rows (that
  // changed since this worker last had them); without, every row that changed.
  Status Push(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices, double examples,
              double loss_sum, bool stop, int64_t step = 0,
              const std::vector<std::vector<int64_t>>* wants = nullptr);
  // Hybrid, in two halves: Pack weighs the push into push_buffers (header and bodies), a group
  // sums them, the leader Sends.
  Status Pack(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices, double examples,
              double loss_sum, bool stop);
  std::vector<Tensor>& push_buffers() { return push_; }  // per server (done ones: unused)
  Status Send(int64_t step);
  // A push begins: waits until the last one's messages are gone.
  Status StartPush();
  // Sends grad (float32, v's shape, unchanged until the next StartPush) as whole variable v's
  // body now. Safe to call from several threads at once (the inter-op pool); once per variable
  // and push.
  Status PushBody(int v, const Tensor& grad);
  // Async: tells every server that has not said done that this worker is done (with the stop or
  // NaN that ended it), and takes their done replies (`reply`: their stop and NaN). With
  // `group` (hybrid), the leader sends and every member takes the replies.
  // Their replies' values go to `values` and `rows` as Receive's do (every changed row: the
  // worker's copy is whole again).
  Status Leave(bool stop, bool non_finite, Communicator* group, std::vector<Tensor>* values,
               std::vector<PsRows>* rows, PsReply* reply);
  bool AllDone() const;
  bool Done(int server) const { return done_[server] != 0; }
  // Bytes this worker's pushes and the replies it took have moved so far (messages whole).
  int64_t pushed_bytes() const { return pushed_bytes_; }
  int64_t received_bytes() const { return received_bytes_; }

 private:
  std::vector<Shape> ShardShapes(int k) const;  // server k's variables'
  // The header (and a sparse shard's section, weighted) of every server's push; with `weigh`,
  // the whole variables' bodies weighted into push_ too (else they go as they are: raw).
  Status MakeHeads(const std::vector<Tensor>& grads, const std::vector<Tensor>& indices,
                   double examples, double loss_sum, bool stop, bool weigh,
                   const std::vector<std::vector<int64_t>>* wants);
  // Sends the bodies not sent yet (raw: from `grads`; else push_) and the heads.
  Status SendAll(int64_t step, const std::vector<Tensor>* grads);

  Communicator* comm_;
  PsLayout layout_;
  std::vector<Shape> shapes_;
  std::vector<int64_t> version_;  // per server
  std::vector<char> done_;        // per server
  // Per server: float32 [header + whole variables], the push's header and bodies (reused); for a
  // shard with a sparse section, head_ is the last push's head, float32 [header + section].
  std::vector<Tensor> push_, head_;
  // Per server: the last reply (reused), or as long as it said (a shard with a sparse section).
  std::vector<std::shared_ptr<Tensor>> reply_;
  std::vector<int64_t> offset_;  // per whole variable: where its body is in push_[owner]
  std::vector<int> slot_;        // per variable: its index in its shard (its body's tag)
  std::vector<char> sent_;       // per variable: its body of this push has left
  bool started_ = false;         // StartPush was called for the push being made
  std::mutex mu_;                // guards sends_ and sent_ for PushBody
  std::vector<std::shared_ptr<Work>> sends_;
  int64_t pushed_bytes_ = 0, received_bytes_ = 0;
};

// How a server's link reads its shard's current values (the session's variables), straight
// into the message it sends.
struct PsShardReader {
  // Shard variable j's whole value into `out` (float32, its shape; a view of the message).
  std::function<Status(int j, Tensor out)> whole;
  // Rows `rows` of shard variable j (a sparse one): float32 [rows.size(), width].
  std::function<StatusOr<Tensor>(int j, const std::vector<int64_t>& rows)> rows;
};

// A server's side.
class PsServerLink {
 public:
  // `read` gives the values every message carries (read when it is made).
  PsServerLink(Communicator* comm, const PsLayout& layout, int server, std::vector<Shape> shapes,
               PsShardReader read);
  ~PsServerLink();
  // Sends the shard's values as `version` to every worker and posts a receive for each worker's
  // push (none when `done`: a resumed run that has nothing left).
  Status Start(int64_t version, bool done);
  // Waits for the first N pushes of the current version, answering stale ones with the current
  // values; `mean` gets their example-weighted mean gradient per shard variable (a whole one's
  // in the first gathered push's inbox, valid until the replies are published; a sparse one's:
  // the pushes' rows one after another, in worker order, each over the examples, at indices(j)),
  // `loss` the mean loss, `examples` their examples, `stop_votes` whether any push asked to stop,
  // `finite` whether the loss and every mean gradient are free of NaN and Inf.
  Status Gather(std::vector<Tensor>* mean, double* loss, double* examples, bool* stop_votes,
                bool* finite);
  // Sparse shard variable j's rows in the last Gather's or MeanOf's mean: int64 [rows].
  const Tensor& indices(int j) const { return indices_[j]; }
  // The step is applied: the values become version + 1 and go to the N workers gathered.
  // With reply.done set, then answers every other worker's next push with done, and returns
  // once no message is left in flight.
  Status Publish(PsReply reply);

  // Async. Waits for the next push from any pusher still pushing; `push` gets what its header
  // says.
  Status WaitPush(PsPush* push);
  // The gradient push.pusher sent, divided by its examples (float32, shard order, in its inbox
  // until it is answered; a sparse variable's rows at indices(j)): the same arithmetic as
  // Gather's mean of one push. `finite` as for Gather.
  void MeanOf(const PsPush& push, std::vector<Tensor>* mean, bool* finite);
  // Answers that pusher alone with the values as the current version; unless reply.done, posts
  // its next receive. version and dropped are the link's own.
  Status Answer(int pusher, PsReply reply);
  // The push whose MeanOf was taken last was applied (the version goes up; the rows it touched
  // take that version) or dropped.
  void Applied(int pusher);
  void Dropped() { ++dropped_; }
  // Waits for every reply in flight (before the server returns, and before the shard's values
  // change while the replies are the variables' memory: Storage).
  Status Flush();
  // Synchronous, a shard of whole variables only: the memory its replies are sent from, shard
  // variable j's part (float32, its shape), for the server's variables to live in
  // (Session::ShareVariable), so that a reply is its header plus the variables as they are, not
  // a copy. An unallocated tensor otherwise (the replies are made afresh).
  Tensor Storage(int j) const;

  int64_t version() const { return version_; }
  int64_t dropped() const { return dropped_; }
  // Pushes averaged or applied, per pusher.
  const std::vector<int64_t>& applied_per_pusher() const { return applied_; }

 private:
  // Sends the reply to `pusher`: the last published values, with the rows changed since the
  // values it holds (one message per distinct version in `cache`), or, unless `whole`, when its
  // push said which rows its next batch reads, those of them.
  Status Reply(int pusher, bool whole, std::vector<std::pair<int64_t, Tensor>>* cache = nullptr);
  void PostRecv(int pusher);
  // Pusher p's head has arrived: waits for the bodies that came before it (under the stall
  // limits, from `start`), and takes a sparse shard's header into the inbox.
  Status Arrived(int p, std::chrono::steady_clock::time_point start);
  // A reply: the header, the whole variables, the rows changed since version `since` (of
  // `wants`, per shard variable, when given). In published_ when there is one (after every send
  // of its last contents has completed).
  StatusOr<Tensor> Message(int64_t since, const std::vector<std::vector<int64_t>>* wants = nullptr);
  // Reads pusher p's sparse section into parts_[p] (checking its sizes and rows).
  Status ReadParts(int p);
  void MarkRows();  // the rows in indices_ take the current version

  Communicator* comm_;
  PsLayout layout_;
  int server_;
  std::vector<Shape> shapes_;   // this shard's
  std::vector<int64_t> width_;  // per shard variable: floats per row if sparse, else 0
  PsShardReader read_;
  int64_t version_ = 0, dropped_ = 0;
  PsReply reply_;  // the last published or answered
  // Per pusher: float32 [header + whole variables], its push's header and bodies (reused); for a
  // shard with a sparse section, head_ is the push's head, as long as it said.
  std::vector<std::shared_ptr<Tensor>> inbox_, head_;
  std::vector<std::vector<std::shared_ptr<Work>>> bodies_;  // per pusher: receives posted
  // Per pusher, per shard variable: where its push's sparse section has the rows; and the rows
  // its next batch reads, when its last push said (else empty).
  std::vector<std::vector<ps_wire::SectionPart>> parts_;
  std::vector<std::vector<std::vector<int64_t>>> wants_;
  std::vector<std::shared_ptr<Work>> recvs_;       // per pusher; null when none posted
  std::vector<int> gathered_;                      // pushers whose push this step averages
  std::vector<int64_t> applied_;                   // per pusher
  std::vector<int64_t> sent_;                      // per pusher: the version of its last reply
  std::vector<std::vector<int64_t>> row_version_;  // per sparse shard variable, per row
  std::vector<Tensor> indices_;                    // per shard variable: the mean's rows
  std::vector<std::shared_ptr<Work>> sends_;
  Tensor published_;  // sync, whole variables only: float32 [header + shard elements], reused
};

}  // namespace mpiflow
