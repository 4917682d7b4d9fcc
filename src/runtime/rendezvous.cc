// Session::RunPartitioned: the executor of a partitioned plan (the protocol is in rendezvous.h).
// Not the plan's construction (session.cc) and not the MPI calls (the communicator's thread).
#include "rendezvous.h"

#include <chrono>
#include <cstring>
#include <queue>

#include "mpiflow/communicator.h"
#include "mpiflow/timeline.h"
#include "plan.h"

namespace mpiflow {

Status Session::RunPartitioned(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                               RunStats* timing, const FetchReady* fetched) {
  Communicator* comm = options_.rendezvous;
  const int num_steps = static_cast<int>(plan.steps.size());
  std::vector<int> pending(num_steps), uses = plan.uses;
  // Ready kernels by priority: first those whose output another rank waits for (it goes out the
  // moment it exists: a microbatch's last backward op before the forward of the next), then the
  // rest, each in plan order. Keys are step + (feeds a Send ? 0 : num_steps).
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  std::vector<char> feeds_send(num_steps, 0);
  for (int i = 0; i < num_steps; ++i) {
    for (int succ : plan.steps[i].successors) {
      if (plan.steps[succ].kind == Plan::Kind::kSend) feeds_send[i] = 1;
    }
  }
  // Sends and Recvs go before any kernel the moment they are ready: they cost nothing here, and
  // a peer may be waiting for what a Send carries.
  std::vector<int> ready_transfers;
  auto make_ready = [&](int i) {
    if (plan.steps[i].kind == Plan::Kind::kKernel) {
      ready.push(feeds_send[i] ? i : i + num_steps);
    } else {
      ready_transfers.push_back(i);
    }
  };
  for (int i = 0; i < num_steps; ++i) {
    pending[i] = plan.steps[i].num_preds;
    if (pending[i] == 0) make_ready(i);
  }
  if (!peer_errors_) {  // step 8: hear of the other ranks' failures from now on
    peer_errors_ = std::make_unique<PeerErrors>();
    peer_errors_->comm = comm;
    for (int r = 0; r < comm->size(); ++r) {
      if (r == comm->rank()) continue;
      auto text = std::make_shared<Tensor>();
      peer_errors_->peers.push_back(r);
      peer_errors_->texts.push_back(text);
      peer_errors_->works.push_back(
          comm->RecvShaped(text, DType::kBool, Shape{-1}, r, kRendezvousErrorTag));
    }
  }
  PeerErrors& errors = *peer_errors_;
  if (!errors.failed.ok()) {  // step 7: out of step with the other ranks for good
    return errors.failed.WithContext(StrCat("run ", step, " refused: an earlier run failed"));
  }
  auto peer_failed = [&](size_t k) {
    Status s = errors.works[k]->status();
    if (!s.ok()) return s.WithContext(StrCat("the error channel from rank ", errors.peers[k]));
    const Tensor& text = *errors.texts[k];
    return Status(Code::kAborted,
                  StrCat("rank ", errors.peers[k], " failed in run ", step, ": ",
                         std::string(static_cast<const char*>(text.raw()), text.bytes())));
  };
  for (size_t k = 0; k < errors.works.size(); ++k) {
    if (errors.works[k]->Completed()) return peer_failed(k);
  }
  // Step 7: every other rank hears of a failure here.
  auto fail = [&](const Status& s) {
    errors.failed = s;
    const std::string text = s.ToString();
    Tensor bytes(DType::kBool, Shape{static_cast<int64_t>(text.size())});
    std::memcpy(bytes.raw(), text.data(), text.size());
    for (int r : errors.peers) comm->Send(bytes, r, kRendezvousErrorTag);
    return s;
  };
  struct InFlight {
    int step;
    std::shared_ptr<Tensor> value;
  };
  // What the executor waits for: the error channel's Recvs first, then the run's.
  const size_t num_errors = errors.works.size();
  std::vector<std::shared_ptr<Work>> recv_works = errors.works, send_works;
  std::vector<InFlight> recvs;  // recvs[k] is recv_works[num_errors + k]
  // A run that ends early withdraws its Recvs still in flight (their messages may never come).
  struct Withdraw {
    Communicator* comm;
    const std::vector<std::shared_ptr<Work>>& works;
    size_t from;
    ~Withdraw() {
      for (size_t k = from; k < works.size(); ++k) {
        if (!works[k]->Completed()) comm->CancelRecv(works[k]);
      }
    }
  } withdraw{comm, recv_works, num_errors};
  auto complete = [&](int i) {
    const Plan::Step& st = plan.steps[i];
    if (st.kind != Plan::Kind::kRecv) {
      for (int s : st.in_slots) {
        if (--uses[s] == 0 && !plan.keep[s]) values[s] = Tensor();
      }
    }
    for (int succ : st.successors) {
      if (--pending[succ] == 0) make_ready(succ);
    }
  };
  auto describe = [&](const Transfer& t) {
    return StrCat(t.control ? "the control edge of '" : "tensor '",
                  t.control ? t.from.node->name() : t.from.name(), "' from rank ", t.src,
                  " to rank ", t.dst, " (edge ", t.tag,
                  t.microbatch >= 0 ? StrCat(", microbatch ", t.microbatch) : std::string(),
                  ", run ", step, ")");
  };
  const auto since = std::chrono::steady_clock::now();
  int done = 0;
  // recv_works[k] completed: a peer's failure, or a Recv whose consumers may now run.
  auto take = [&](size_t k) -> Status {
    if (k < num_errors) return peer_failed(k);
    const size_t r = k - num_errors;
    const int i = recvs[r].step;
    const Plan::Step& st = plan.steps[i];
    Status s = recv_works[k]->status();
    if (!s.ok()) {
      return fail(s.WithContext(StrCat("receiving ", describe(plan.transfers[st.transfer]))));
    }
    if (st.out_base >= 0) values[st.out_base] = std::move(*recvs[r].value);
    recv_works.erase(recv_works.begin() + static_cast<long>(k));
    recvs.erase(recvs.begin() + static_cast<long>(r));
    complete(i);
    ++done;
    return Status::OK();
  };
  // Before each node: every message already here joins the ready queue, so a node it releases
  // runs in its turn (plan order) rather than after everything that happened to be ready.
  auto take_arrived = [&]() -> Status {
    for (size_t k = 0; k < recv_works.size();) {
      if (!recv_works[k]->Completed()) {
        ++k;
        continue;
      }
      MPIFLOW_RETURN_IF_ERROR(take(k));  // erases k
    }
    return Status::OK();
  };
  while (true) {
    while (!ready.empty() || !ready_transfers.empty()) {
      int i;
      if (!ready_transfers.empty()) {
        i = ready_transfers.back();
        ready_transfers.pop_back();
      } else {
        if (recv_works.size() > num_errors) MPIFLOW_RETURN_IF_ERROR(take_arrived());
        if (!ready_transfers.empty()) continue;
        i = ready.top() % num_steps;
        ready.pop();
      }
      const Plan::Step& st = plan.steps[i];
      if (st.kind == Plan::Kind::kKernel) {
        Status s = RunNode(plan, i, values, step, timing, fetched);
        if (!s.ok()) return fail(s);
      } else if (st.kind == Plan::Kind::kSend) {
        const Transfer& t = plan.transfers[st.transfer];
        Tensor value = t.control ? Tensor(DType::kBool, Shape{0}) : values[st.in_slots[0]];
        send_works.push_back(comm->Send(std::move(value), t.dst, t.tag));
      } else {
        const Transfer& t = plan.transfers[st.transfer];
        auto value = std::make_shared<Tensor>();
        recv_works.push_back(
            t.control ? comm->RecvShaped(value, DType::kBool, Shape{0}, t.src, t.tag)
                      : comm->RecvShaped(value, t.from.dtype(), t.from.shape(), t.src, t.tag));
        recvs.push_back({i, std::move(value)});
        continue;  // completes when its message is here
      }
      complete(i);
      ++done;
    }
    if (recvs.empty()) break;
    // Nothing to run: wait for a message.
    const size_t k = comm->WaitAnyWatched(
        recv_works, since,
        [&](double waited) {
          std::string list;
          for (const InFlight& f : recvs) {
            list += StrCat(list.empty() ? "" : "; ",
                           describe(plan.transfers[plan.steps[f.step].transfer]));
          }
          return StrCat("rank ", comm->rank(), ": waiting ", static_cast<int>(waited), " s for ",
                        recvs.size(), " Recv(s): ", list);
        },
        /*urgent=*/true);
    MPIFLOW_RETURN_IF_ERROR(take(k));
  }
  if (done < num_steps) {
    return fail(Internal("partitioned run ", step, " stopped with ", num_steps - done,
                         " step(s) never ready"));
  }
  // The run ends when its Sends are received (or a peer fails: it will not receive them).
  std::vector<std::shared_ptr<Work>> sending = errors.works;
  sending.insert(sending.end(), send_works.begin(), send_works.end());
  while (sending.size() > num_errors) {
    const size_t k = comm->WaitAnyWatched(
        sending, since,
        [&](double waited) {
          return StrCat("rank ", comm->rank(), ": waiting ", static_cast<int>(waited), " s for ",
                        sending.size() - num_errors, " Send(s) of run ", step, " to be received");
        },
        /*urgent=*/true);
    if (k < num_errors) return peer_failed(k);
    Status s = sending[k]->status();
    if (!s.ok()) return fail(s.WithContext(StrCat("sending in run ", step)));
    sending.erase(sending.begin() + static_cast<long>(k));
  }
  return Status::OK();
}

}  // namespace mpiflow
