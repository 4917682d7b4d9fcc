// Communicator: the collectives data-parallel training uses, every call asynchronous and
// returning a Work handle. One backend today (MPI, collectives/mpi_communicator.cc), where a
// single communication thread owns every MPI call; the interface leaves room for NCCL.
// Not a gradient synchroniser (distributed.h) and not a general MPI wrapper: only what the
// strategies need, on Tensors whose shared buffers keep data alive while a call is in flight.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

enum class ReduceOp { kSum, kAverage, kMax, kMin };
const char* ReduceOpName(ReduceOp op);

// kAuto picks from CollectiveOptions::allreduce_rules by size and rank count.
// kHierarchical: a ring inside each node, then across nodes, then inside again (the flat ring
// unless there are several nodes of several ranks, the same count on each).
enum class AllreduceAlgorithm {
  kAuto,
  kNative,
  kRing,
  kHalvingDoubling,
  kRecursiveDoubling,
  kHierarchical
};
const char* AllreduceAlgorithmName(AllreduceAlgorithm a);  // auto, native, ring, hd, rd, hier
StatusOr<AllreduceAlgorithm> ParseAllreduceAlgorithm(const std::string& name);

// One rule of the ordered candidate list: the first rule whose limits hold is used.
struct AllreduceRule {
  int64_t max_bytes = -1;  // -1: any size
  int min_ranks = 1;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kRing;
};
// "hd:<=65536,ring" style: algorithm[:<=bytes][@>=ranks], comma-separated, first match wins.
StatusOr<std::vector<AllreduceRule>> ParseAllreduceRules(const std::string& text);
std::string AllreduceRulesToString(const std::vector<AllreduceRule>& rules);
AllreduceAlgorithm ChooseAllreduce(const std::vector<AllreduceRule>& rules, int64_t bytes,
                                   int ranks);

// The handle of one asynchronous call. Thread-safe; Wait may be called from any thread.
class Work {
 public:
  bool Completed() const { return done_.load(std::memory_order_acquire); }
  Status Wait();          // blocks until completed; returns status()
  Status status() const;  // OK until completed
  // The backend's side, exactly once. The caller holds its own reference (a shared_ptr) until
  // Finish returns: a waiter may drop the last other one the moment it sees the result (a
  // reference captured by reference was a use after free, found by ThreadSanitizer).
  void Finish(Status s);
  // Threads of this process blocked in Wait right now (the backend spins rather than sleeps
  // while someone is waiting for it).
  static int Waiters();
  // The backend's: `wake(context)` is called whenever a thread starts waiting (a backend that
  // naps between polls wakes up to poll for it). One hook per process; null to remove it.
  static void SetWaitHook(void (*wake)(void*), void* context);
  // Blocks until one of `works` (not null, not empty) has completed; returns the lowest index
  // among those completed. Does not count as a Waiter: a parameter server waits whole compute
  // steps for its workers, and the backend should not spin through them.
  static size_t WaitAny(const std::vector<std::shared_ptr<Work>>& works);
  // WaitAny for at most `seconds`: works.size() when none completed in that time. `urgent`: the
  // caller has nothing else to do, so it counts as a Waiter (the backend polls without naps).
  static size_t WaitAnyFor(const std::vector<std::shared_ptr<Work>>& works, double seconds,
                           bool urgent = false);

 private:
  std::atomic<bool> done_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status status_;
};

// What a float32 allreduce puts on the wire: float32 (none), or 16-bit values (fp16, bf16)
// converted inside the ring's chunks as they are sent (sums stay float32; each hop of the
// reduce-scatter rounds the partial sum it forwards, the allgather rounds each result once, the
// same bits on every rank): half the bytes. Ring and hier only; other dtypes are not compressed.
enum class AllreduceCompression { kNone, kFp16, kBf16 };
const char* AllreduceCompressionName(AllreduceCompression c);  // none, fp16, bf16
StatusOr<AllreduceCompression> ParseAllreduceCompression(const std::string& name);

struct AllreduceOptions {
  ReduceOp op = ReduceOp::kSum;
  AllreduceAlgorithm algorithm = AllreduceAlgorithm::kAuto;
  AllreduceCompression compression = AllreduceCompression::kNone;
  std::string name;  // what this is ("bucket 2"), for stall reports and the timeline
};

// Per-communicator settings; see CollectiveOptions in mpi_communicator.cc for defaults' reasons.
struct CollectiveOptions {
  std::vector<AllreduceRule> allreduce_rules;  // empty: the measured default table
  int64_t ring_chunk_bytes = 256 << 10;        // pipelining unit of the ring
  double spin_seconds = 20e-6;                 // poll MPI this long before sleeping between polls
  double stall_warning_seconds = 60;           // report who has not arrived
  double stall_abort_seconds = 300;            // then abort the job with that report
  std::string timeline_path;  // Chrome-trace JSON of this rank, "%r" -> its rank (empty: off)
};

class Timeline;

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // This process's rank among the job's processes on its node (MPI_COMM_TYPE_SHARED over the
  // world, whatever this communicator's group): which of the node's GPUs it uses.
  virtual int node_rank() const { return 0; }

  // In place: every rank passes a tensor of the same dtype and element count.
  virtual std::shared_ptr<Work> Allreduce(Tensor t, AllreduceOptions options) = 0;
  // in: size() * k elements; out: k elements, block rank() of the reduction.
  virtual std::shared_ptr<Work> ReduceScatter(Tensor in, Tensor out, ReduceOp op) = 0;
  // in: k elements; out: size() * k elements, block r from rank r.
  virtual std::shared_ptr<Work> Allgather(Tensor in, Tensor out) = 0;
  virtual std::shared_ptr<Work> Broadcast(Tensor t, int root) = 0;
  virtual std::shared_ptr<Work> Barrier() = 0;
  // Point to point; a Recv's tensor must have the sent element count and dtype.
  virtual std::shared_ptr<Work> Send(Tensor t, int dst, int tag) = 0;
  virtual std::shared_ptr<Work> Recv(Tensor t, int src, int tag) = 0;
  // A Recv whose size the message says: *out becomes a `dtype` tensor of `shape`, its one unknown
  // dimension (if any) given by the message's byte count, before the Work completes. (The
  // pipeline's activations have a batch dimension only the sender knows.) The default handles
  // fully known shapes only.
  virtual std::shared_ptr<Work> RecvShaped(std::shared_ptr<Tensor> out, DType dtype, Shape shape,
                                           int src, int tag);
  // Withdraws a Recv or RecvShaped whose message has not arrived: its Work finishes with
  // kAborted (one whose message arrived completes as usual). For a protocol that gives up on
  // messages that will not come. The default does nothing (the Recv stays posted).
  virtual void CancelRecv(const std::shared_ptr<Work>& recv) {}
  // A sub-communicator of the ranks that pass the same color, ordered by key (blocking,
  // collective over this communicator).
  virtual StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // Ends the whole job now, from any thread: prints `message` (say which rank) on stderr and
  // aborts every rank with `exit_code`. Use when one rank cannot go on and the others would wait
  // for it forever.
  [[noreturn]] virtual void Abort(int exit_code, const std::string& message) = 0;
  // A line the stall inspector's reports and Abort's message end with (the trainer keeps the
  // last checkpoint there, so a job that dies says where to resume from). Thread-safe.
  virtual void SetReportNote(const std::string& note) = 0;
  // The timeline collectives are recorded on (null when off); ops may add their own events.
  virtual Timeline* timeline() = 0;
  virtual const CollectiveOptions& options() const = 0;

  // Work::WaitAny for point-to-point protocols built on this communicator (the parameter
  // servers), under the same stall limits as the collectives: after stall_warning_seconds since
  // `since` prints report(seconds waited) on stderr, after stall_abort_seconds ends the job with
  // it (Abort, exit code 3, with the report note). Returns the index of a completed Work.
  // `urgent` as for Work::WaitAnyFor.
  size_t WaitAnyWatched(const std::vector<std::shared_ptr<Work>>& works,
                        std::chrono::steady_clock::time_point since,
                        const std::function<std::string(double)>& report, bool urgent = false);
};

// The world communicator of this process: the first call starts the communication thread,
// which initialises MPI (MPI_THREAD_FUNNELED, checked); MPI is finalised at exit. Under a
// launcher that started one process (or none) size() is 1.
StatusOr<Communicator*> WorldCommunicator(const CollectiveOptions& options = {});
// True when this process was started by mpirun/mpiexec/srun with more than one rank, judged
// from the launcher's environment without initialising MPI.
bool LaunchedWithSeveralRanks();

}  // namespace mpiflow
