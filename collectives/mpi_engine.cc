// Engine: the communication thread that owns every MPI call, its polling loop, and the stall
// inspector (see the protocol at the top of mpi_communicator.cc). Private to collectives/.
#include "mpi_engine.h"

#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace mpiflow {
namespace mpi_backend {

Status Engine::Start() {
  thread_ = std::thread([this] { Loop(); });
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return started_; });
  Work::SetWaitHook([](void* engine) { static_cast<Engine*>(engine)->Wake(); }, this);
  return init_status_;
}

void Engine::Abort(int code, const std::string& message) {
  const std::string note = Note();
  std::fprintf(stderr, "%s%s\n", message.c_str(), note.empty() ? "" : ("\n  " + note).c_str());
  std::fflush(stderr);
  if (std::this_thread::get_id() == thread_.get_id()) DoAbort(code);
  abort_code_.store(code);
  cv_.notify_one();
  // The communication thread aborts at its next poll; if it is stuck inside a blocking MPI
  // call, abort from here rather than hang.
  std::this_thread::sleep_for(std::chrono::seconds(10));
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

Status Engine::WaitAll(MPI_Request* reqs, int n, const std::string& what) {
  if (n == 0) return Status::OK();
  const Clock::time_point start = Clock::now();
  bool warned = false;
  int64_t polls = 0;
  while (true) {
    int flag = 0;
    MPIFLOW_MPI(MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE));
    if (flag) return Status::OK();
    ++polls;
    if ((polls & 15) == 0) {
      if ((polls & 1023) == 0) ServeQueries();  // answering stalled peers can wait ~1 ms
      PollP2P();
      if (abort_code_.load() >= 0) DoAbort(abort_code_.load());
      const double waited = Since(start);
      if (!warned && waited >= options_.stall_warning_seconds) {
        warned = true;
        ReportStall(what, waited, false);
      } else if (warned && waited >= options_.stall_abort_seconds) {
        ReportStall(what, waited, true);
      }
      // While some thread of this process is blocked in Work::Wait, its core is free:
      // spin, the answer is wanted at once (unless this node runs more ranks than it has
      // cores: then the core is wanted by another rank). Otherwise compute is running beside us:
      // past a short spin, sleep between polls, since a spinning thread takes a core (or its SMT
      // sibling) from the compute threads, and with as many ranks as cores there is none to
      // spare. Timer slack is 1 us on this thread, so a 5 us sleep costs ~10 us; a late
      // peer (waits of milliseconds) costs a few hundred wake-ups per second, not 100000.
      if (waited > options_.spin_seconds && (oversubscribed_ || Work::Waiters() == 0)) {
        // 5 us at first, then longer as the wait grows (at most 1/8 of it, up to 200 us).
        const double nap = std::min(200e-6, std::max(5e-6, waited / 8));
        std::this_thread::sleep_for(std::chrono::duration<double>(nap));
      }
    }
  }
}

void Engine::Loop() {
  prctl(PR_SET_TIMERSLACK, 1000UL);  // 1 us: the short sleeps in WaitAll stay short
  int provided = 0;
  Status init;
  int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) {
    init = Status(Code::kUnavailable, StrCat("MPI_Init_thread failed: ", MpiErrorString(rc)));
  } else if (provided < MPI_THREAD_FUNNELED) {
    init = Status(Code::kUnavailable,
                  StrCat("the MPI library grants thread level ", provided,
                         ", below MPI_THREAD_FUNNELED, which mpiflow's communication thread "
                         "needs; use an MPI built with thread support"));
  } else {
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
    MPI_Comm_dup(MPI_COMM_WORLD, &control_);
    MPI_Comm node;
    int local_ranks = 1;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &local_ranks);
    MPI_Comm_rank(node, &node_rank_);
    node_size_ = local_ranks;
    MPI_Comm_free(&node);
    oversubscribed_ = local_ranks > static_cast<int>(std::thread::hardware_concurrency());
    if (!options_.timeline_path.empty()) {
      std::string path = options_.timeline_path;
      const size_t at = path.find("%r");
      if (at != std::string::npos) path.replace(at, 2, std::to_string(world_rank_));
      timeline_ = std::make_unique<Timeline>(path, world_rank_);
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    init_status_ = init;
    started_ = true;
  }
  cv_.notify_all();
  if (!init.ok()) return;

  while (true) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (tasks_.empty() && !shutdown_ && abort_code_.load() < 0) {
        // Idle: wake up now and then to answer stall queries and progress sends/recvs. With
        // sends/recvs in flight and a thread of this process waiting for one (its core is
        // free), poll without a pause; otherwise compute runs beside us on the same core (mpirun
        // binds a rank to one), so nap, longer while nothing completes: a 50 us period took
        // half of a pipeline stage's time in context switches. A thread that starts waiting
        // wakes us (Work::SetWaitHook).
        if (p2p_.empty()) {
          cv_.wait_for(lock, std::chrono::microseconds(20000));
        } else if (Work::Waiters() > 0 && oversubscribed_) {
          // A thread of this rank waits for a message, but the core may be another rank's:
          // nap briefly, without growing the nap (a parameter server's worker waits for a reply
          // a few hundred microseconds after its push; naps grown to 1 ms cost it 3x).
          cv_.wait_for(lock, std::chrono::microseconds(kMinP2PNapUs));
        } else if (Work::Waiters() == 0) {
          cv_.wait_for(lock, std::chrono::microseconds(p2p_nap_us_));
          p2p_nap_us_ = std::min(kMaxP2PNapUs, p2p_nap_us_ * 2);
        }
      }
      if (!tasks_.empty()) {
        task = std::move(tasks_.front());
        tasks_.pop_front();
      } else if (shutdown_ && p2p_.empty()) {
        break;
      }
    }
    if (abort_code_.load() >= 0) DoAbort(abort_code_.load());
    if (task) task();
    PollP2P();
    ServeQueries();
  }
  if (timeline_) (void)timeline_->Write();
  MPI_Comm_free(&control_);
  MPI_Finalize();
}

bool Engine::ProbeArrived(P2P& p) {
  Probe& pr = *p.probe;
  int flag = 0;
  MPI_Message msg;
  MPI_Status st;
  int rc = MPI_Improbe(pr.src, pr.tag, pr.comm, &flag, &msg, &st);
  if (rc == MPI_SUCCESS && !flag) return false;
  int bytes = 0;
  if (rc == MPI_SUCCESS) rc = MPI_Get_count(&st, MPI_BYTE, &bytes);
  if (rc != MPI_SUCCESS) {
    p.work->Finish(Status(Code::kUnavailable, StrCat(p.what, " failed: ", MpiErrorString(rc))));
    return true;
  }
  // The unknown dimension from the size: bytes / (dtype size x the known dimensions).
  Shape shape = pr.shape;
  int64_t known = DTypeSize(pr.dtype);
  int unknown = -1;
  for (int d = 0; d < shape.rank(); ++d) {
    if (shape.dim(d) < 0) {
      unknown = d;
    } else {
      known *= shape.dim(d);
    }
  }
  Status bad;
  if (unknown >= 0 && known > 0 && bytes % known == 0) {
    shape.set_dim(unknown, bytes / known);
  } else if (unknown >= 0 && known == 0 && bytes == 0) {
    shape.set_dim(unknown, 0);
  } else if (unknown >= 0 || known != bytes) {
    bad = InvalidArgument(p.what, " received ", bytes, " bytes, which is no ", DTypeName(pr.dtype),
                          pr.shape.ToString());
  }
  Tensor t = bad.ok() ? Tensor(pr.dtype, shape) : Tensor(DType::kBool, Shape{bytes});
  MPI_Request req;
  rc = MPI_Imrecv(t.raw(), bytes, MPI_BYTE, &msg, &req);  // the message is taken either way
  if (rc != MPI_SUCCESS) {
    p.work->Finish(Status(Code::kUnavailable, StrCat(p.what, " failed: ", MpiErrorString(rc))));
    return true;
  }
  if (!bad.ok()) {
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    p.work->Finish(bad);
    return true;
  }
  *pr.out = t;
  p.probe.reset();
  p.arrived = std::chrono::steady_clock::now();
  p.req = req;
  p.keep = t;
  p.expect_bytes = bytes;
  return false;  // now an ordinary receive in flight
}

void Engine::CancelRecv(const std::shared_ptr<Work>& work) {
  for (auto it = p2p_.begin(); it != p2p_.end(); ++it) {
    if (it->work != work || (!it->probe && it->expect_bytes < 0)) continue;  // not this, a send
    // A message that is there already is received (it would be left for a later receive).
    if (it->probe && ProbeArrived(*it)) {  // finished: an error
      p2p_.erase(it);
      return;
    }
    bool cancelled = true;
    if (!it->probe) {  // posted: MPI_Cancel, then the request ends one way or the other
      MPI_Status st;
      MPI_Cancel(&it->req);
      MPI_Wait(&it->req, &st);
      int flag = 0;
      MPI_Test_cancelled(&st, &flag);
      cancelled = flag != 0;
      int got = 0;
      if (!cancelled) MPI_Get_count(&st, MPI_BYTE, &got);
      if (!cancelled && got != it->expect_bytes) {
        it->work->Finish(
            InvalidArgument(it->what, " received ", got, " bytes, expected ", it->expect_bytes));
        p2p_.erase(it);
        return;
      }
    }
    if (!cancelled) RecordP2P(*it, std::chrono::steady_clock::now());
    it->work->Finish(cancelled ? Status(Code::kAborted, StrCat(it->what, ": cancelled"))
                               : Status::OK());
    p2p_.erase(it);
    return;
  }
}

void Engine::RecordP2P(const P2P& p, std::chrono::steady_clock::time_point now) {
  if (!timeline_) return;
  timeline_->Add(p.what, "p2p", p.posted, now, Timeline::kCommunication,
                 StrCat("\"bytes\":", p.keep.allocated() ? p.keep.bytes() : 0));
  if (p.arrived != std::chrono::steady_clock::time_point()) {
    timeline_->Add(p.what, "p2p_arrived", p.arrived, now, Timeline::kData);
  }
}

void Engine::PollP2P() {
  for (size_t i = 0; i < p2p_.size();) {
    P2P& p = p2p_[i];
    if (p.probe) {
      if (ProbeArrived(p)) {
        p2p_.erase(p2p_.begin() + static_cast<long>(i));
      } else {
        ++i;
      }
      continue;
    }
    int flag = 0;
    MPI_Status st;
    const int rc = MPI_Test(&p.req, &flag, &st);
    if (rc == MPI_SUCCESS && !flag) {
      ++i;
      continue;
    }
    const auto done = std::chrono::steady_clock::now();
    if (rc != MPI_SUCCESS) {
      p.work->Finish(Status(Code::kUnavailable, StrCat(p.what, " failed: ", MpiErrorString(rc))));
    } else if (p.expect_bytes >= 0) {
      int got = 0;
      MPI_Get_count(&st, MPI_BYTE, &got);
      if (got != p.expect_bytes) {
        p.work->Finish(
            InvalidArgument(p.what, " received ", got, " bytes, expected ", p.expect_bytes));
      } else {
        p.work->Finish(Status::OK());
      }
    } else {
      p.work->Finish(Status::OK());
    }
    RecordP2P(p, done);
    p2p_.erase(p2p_.begin() + static_cast<long>(i));
    p2p_nap_us_ = kMinP2PNapUs;
  }
}

void Engine::ServeQueries() {
  while (true) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kQueryTag, control_, &flag, &st);
    if (!flag) break;
    int from = 0;
    MPI_Recv(&from, 1, MPI_INT, st.MPI_SOURCE, kQueryTag, control_, MPI_STATUS_IGNORE);
    replies_out_.push_back(progress_);
    replies_out_.back().rank = world_rank_;
    MPI_Request req;
    MPI_Isend(&replies_out_.back(), sizeof(ProgressRecord), MPI_BYTE, st.MPI_SOURCE, kReplyTag,
              control_, &req);
    MPI_Request_free(&req);
    if (replies_out_.size() > 64) replies_out_.pop_front();
  }
  while (true) {
    int flag = 0;
    MPI_Status st;
    MPI_Iprobe(MPI_ANY_SOURCE, kReplyTag, control_, &flag, &st);
    if (!flag) break;
    ProgressRecord r;
    MPI_Recv(&r, sizeof(r), MPI_BYTE, st.MPI_SOURCE, kReplyTag, control_, MPI_STATUS_IGNORE);
    answers_[st.MPI_SOURCE] = r;
  }
}

void Engine::ReportStall(const std::string& what, double waited, bool abort) {
  answers_.clear();
  static int query_payload = 0;
  query_payload = world_rank_;
  for (int r = 0; r < world_size_; ++r) {
    if (r == world_rank_) continue;
    MPI_Request req;
    MPI_Isend(&query_payload, 1, MPI_INT, r, kQueryTag, control_, &req);
    MPI_Request_free(&req);
  }
  const Clock::time_point asked = Clock::now();
  while (static_cast<int>(answers_.size()) < world_size_ - 1 && Since(asked) < 3.0) {
    ServeQueries();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::string missing, report;
  for (int r = 0; r < world_size_; ++r) {
    if (r == world_rank_) continue;
    auto it = answers_.find(r);
    if (it == answers_.end()) {
      missing += StrCat(missing.empty() ? "" : ", ", r);
      report += StrCat("\n  rank ", r, ": no answer (dead, or stuck outside mpiflow's ",
                       "communication thread)");
      continue;
    }
    const ProgressRecord& p = it->second;
    const bool here = p.inside && p.seq == progress_.seq;
    if (!here) missing += StrCat(missing.empty() ? "" : ", ", r);
    report += StrCat("\n  rank ", r, ": ",
                     here ? "waiting in this collective too"
                          : StrCat(p.inside ? "inside" : "last finished", " collective #", p.seq,
                                   " '", p.name, "'"));
  }
  std::string msg =
      StrCat("stall: collective #", progress_.seq, " '", what, "' has waited ",
             static_cast<int64_t>(waited), " s; ranks not in it: ",
             missing.empty() ? "none (all are inside; a peer may be slow)" : missing, report);
  const std::string note = Note();
  if (!note.empty()) msg += "\n  " + note;
  if (abort) {
    msg += StrCat("\n  aborting the job after ", options_.stall_abort_seconds,
                  " s (--stall-abort-seconds)");
  } else {
    msg += StrCat("\n  the job aborts if it is still waiting after ", options_.stall_abort_seconds,
                  " s (--stall-abort-seconds)");
  }
  std::fprintf(stderr, "mpiflow: rank %d: %s\n", world_rank_, msg.c_str());
  std::fflush(stderr);
  if (abort) DoAbort(3);
}

}  // namespace mpi_backend
}  // namespace mpiflow
