// The MPI backend's communication thread (Engine) and the helpers the backend's files share.
// Private to collectives/: mpi_engine.cc runs the thread, polls requests and holds the stall
// inspector; mpi_communicator.cc issues the collectives on it. Why one thread owns MPI is
// written at the top of mpi_communicator.cc.
#pragma once

#include <mpi.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "mpiflow/communicator.h"
#include "mpiflow/timeline.h"

namespace mpiflow {
namespace mpi_backend {

using Clock = std::chrono::steady_clock;

inline double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

inline std::string MpiErrorString(int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) return StrCat("MPI error ", rc);
  return std::string(text, len);
}

#define MPIFLOW_MPI(call)                                                                        \
  do {                                                                                           \
    const int mpiflow_rc = (call);                                                               \
    if (mpiflow_rc != MPI_SUCCESS) {                                                             \
      return Status(Code::kUnavailable, StrCat(#call, " failed: ", MpiErrorString(mpiflow_rc))); \
    }                                                                                            \
  } while (0)

inline MPI_Datatype MpiType(DType t) {
  switch (t) {
    case DType::kFloat32:
      return MPI_FLOAT;
    case DType::kFloat64:
      return MPI_DOUBLE;
    case DType::kInt32:
      return MPI_INT32_T;
    case DType::kInt64:
      return MPI_INT64_T;
    default:
      return MPI_DATATYPE_NULL;
  }
}

inline MPI_Op MpiOp(ReduceOp op) {
  switch (op) {
    case ReduceOp::kMax:
      return MPI_MAX;
    case ReduceOp::kMin:
      return MPI_MIN;
    default:
      return MPI_SUM;
  }
}

inline Status CheckCollectiveDType(DType t, const char* what) {
  if (t == DType::kFloat32 || t == DType::kFloat64 || t == DType::kInt32 || t == DType::kInt64 ||
      t == DType::kFloat16) {
    return Status::OK();
  }
  return InvalidArgument(what, " supports float32, float64, float16, int32 and int64, not ",
                         DTypeName(t));
}

// What a rank tells a stalled peer about itself (sent as bytes).
struct ProgressRecord {
  int64_t seq = 0;     // collectives started on this rank so far
  int32_t inside = 0;  // 1: inside collective `seq` now
  int32_t rank = 0;
  char name[112] = {};  // that collective
};

constexpr int kQueryTag = 101;
constexpr int kReplyTag = 102;

inline std::shared_ptr<Work> Done(Status s) {
  auto w = std::make_shared<Work>();
  w->Finish(std::move(s));
  return w;
}

// The process-wide communication thread and the state only it touches.
class Engine {
 public:
  explicit Engine(CollectiveOptions options) : options_(std::move(options)) {}

  Status Start();

  // Runs `task` on the communication thread after every earlier task.
  void Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

  // Wakes the idle loop (a thread started waiting: poll for it now).
  void Wake() {
    std::lock_guard<std::mutex> lock(mu_);
    cv_.notify_one();
  }

  void Shutdown() {
    Work::SetWaitHook(nullptr, nullptr);
    {
      std::lock_guard<std::mutex> lock(mu_);
      shutdown_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

  void SetNote(const std::string& note) {
    std::lock_guard<std::mutex> lock(note_mu_);
    note_ = note;
  }
  std::string Note() {
    std::lock_guard<std::mutex> lock(note_mu_);
    return note_;
  }

  [[noreturn]] void Abort(int code, const std::string& message);

  // --- communication thread only ---

  // Polls until every request completes, serving queries and inspecting stalls.
  Status WaitAll(MPI_Request* reqs, int n, const std::string& what);

  void BeginCollective(const std::string& name) {
    ++progress_.seq;
    progress_.inside = 1;
    std::snprintf(progress_.name, sizeof(progress_.name), "%s", name.c_str());
  }
  void EndCollective() { progress_.inside = 0; }

  // A point-to-point request completing in the background.
  void AddP2P(MPI_Request req, std::shared_ptr<Work> work, Tensor keep, int64_t expect_bytes,
              std::string what) {
    P2P p;
    p.req = req;
    p.work = std::move(work);
    p.keep = std::move(keep);
    p.expect_bytes = expect_bytes;
    p.what = std::move(what);
    p2p_.push_back(std::move(p));
  }
  // A receive of unknown size: probed (MPI_Improbe) until the message is there, then *out is
  // allocated as `dtype` of `shape` with its unknown dimension from the size, and received.
  void AddShapedRecv(MPI_Comm comm, int src, int tag, std::shared_ptr<Tensor> out, DType dtype,
                     Shape shape, std::shared_ptr<Work> work, std::string what) {
    P2P p;
    p.work = std::move(work);
    p.what = std::move(what);
    p.probe =
        std::make_unique<Probe>(Probe{comm, src, tag, std::move(out), dtype, std::move(shape)});
    p2p_.push_back(std::move(p));
  }

  // Withdraws the receive of `work` if its message has not arrived (`work` finishes aborted);
  // one already received finishes as PollP2P would have finished it.
  void CancelRecv(const std::shared_ptr<Work>& work);

  int world_rank() const { return world_rank_; }
  int world_size() const { return world_size_; }
  // This process among the world's ranks on its node (MPI_COMM_TYPE_SHARED): which GPU it takes.
  int node_rank() const { return node_rank_; }
  int node_size() const { return node_size_; }
  const CollectiveOptions& options() const { return options_; }
  Timeline* timeline() { return timeline_.get(); }

 private:
  struct Probe {
    MPI_Comm comm;
    int src, tag;
    std::shared_ptr<Tensor> out;
    DType dtype;
    Shape shape;  // at most one unknown dimension
  };
  struct P2P {
    MPI_Request req = MPI_REQUEST_NULL;
    std::shared_ptr<Work> work;
    Tensor keep;                // the buffer stays alive until the request completes
    int64_t expect_bytes = -1;  // recv: the size the caller expects; -1 for sends
    std::string what;
    std::unique_ptr<Probe> probe;  // set until a shaped receive's message has arrived
    std::chrono::steady_clock::time_point posted = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point arrived;  // a shaped receive's message matched
  };
  // The timeline's "p2p" event of a completed send or receive (posted -> done), and for a
  // shaped receive its "arrived" part (matched -> done). `done`: when MPI said so (taken before
  // the waiter is woken, which may take this thread's core).
  void RecordP2P(const P2P& p, std::chrono::steady_clock::time_point done);
  // A shaped receive's probe: false while its message has not arrived; otherwise the receive
  // is posted (or p.work finished with the error).
  bool ProbeArrived(P2P& p);

  void Loop();

  [[noreturn]] void DoAbort(int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

  void PollP2P();

  // Answers "what are you doing?" from stalled peers, and collects their answers to ours.
  void ServeQueries();

  // Asks every rank where it is (waiting up to 3 s for answers), prints who has not arrived
  // at this collective, and aborts the job when `abort` is set.
  void ReportStall(const std::string& what, double waited, bool abort);

  CollectiveOptions options_;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool started_ = false, shutdown_ = false;
  Status init_status_;
  std::atomic<int> abort_code_{-1};
  std::mutex note_mu_;
  std::string note_;  // SetReportNote's line

  int world_rank_ = 0, world_size_ = 1;
  int node_rank_ = 0, node_size_ = 1;
  bool oversubscribed_ = false;  // more ranks on this node than cores
  MPI_Comm control_ = MPI_COMM_NULL;
  std::deque<P2P> p2p_;
  static constexpr int kMinP2PNapUs = 50, kMaxP2PNapUs = 1000;
  int p2p_nap_us_ = kMinP2PNapUs;  // the idle loop's pause with sends/recvs in flight
  ProgressRecord progress_;
  std::deque<ProgressRecord> replies_out_;  // send buffers of answers in flight
  std::map<int, ProgressRecord> answers_;
  std::unique_ptr<Timeline> timeline_;
};

}  // namespace mpi_backend
}  // namespace mpiflow
