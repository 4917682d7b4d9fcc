// Session::RunPartitioned: the executor of a partitioned plan (the protocol is in rendezvous.h).
// Not the plan's construction (session.cc) and not the MPI calls (the communicator's thread).
#include "rendezvous.h"

#include <chrono>
#include <queue>

#include "mpiflow/communicator.h"
#include "mpiflow/timeline.h"
#include "plan.h"

namespace mpiflow {

Status Session::RunPartitioned(const Plan& plan, std::vector<Tensor>& values, int64_t step,
                               RunStats* timing) {
  Communicator* comm = options_.rendezvous;
  const int num_steps = static_cast<int>(plan.steps.size());
  std::vector<int> pending(num_steps), uses = plan.uses;
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;  // plan order first
  for (int i = 0; i < num_steps; ++i) {
    pending[i] = plan.steps[i].num_preds;
    if (pending[i] == 0) ready.push(i);
  }
  struct InFlight {
    int step;
    std::shared_ptr<Tensor> value;
  };
  std::vector<std::shared_ptr<Work>> recv_works, send_works;
  std::vector<InFlight> recvs;
  auto complete = [&](int i) {
    const Plan::Step& st = plan.steps[i];
    if (st.kind != Plan::Kind::kRecv) {
      for (int s : st.in_slots) {
        if (--uses[s] == 0 && !plan.keep[s]) values[s] = Tensor();
      }
    }
    for (int succ : st.successors) {
      if (--pending[succ] == 0) ready.push(succ);
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
  while (true) {
    while (!ready.empty()) {
      const int i = ready.top();
      ready.pop();
      const Plan::Step& st = plan.steps[i];
      if (st.kind == Plan::Kind::kKernel) {
        MPIFLOW_RETURN_IF_ERROR(RunNode(plan, i, values, step, timing));
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
    const int i = recvs[k].step;
    const Plan::Step& st = plan.steps[i];
    Status s = recv_works[k]->status();
    if (!s.ok()) {
      return s.WithContext(StrCat("receiving ", describe(plan.transfers[st.transfer])));
    }
    if (st.out_base >= 0) values[st.out_base] = std::move(*recvs[k].value);
    recv_works.erase(recv_works.begin() + static_cast<long>(k));
    recvs.erase(recvs.begin() + static_cast<long>(k));
    complete(i);
    ++done;
  }
  if (done < num_steps) {
    return Internal("partitioned run ", step, " stopped with ", num_steps - done,
                    " step(s) never ready");
  }
  for (const auto& w : send_works) {
    Status s = w->Wait();
    if (!s.ok()) return s.WithContext(StrCat("sending in run ", step));
  }
  return Status::OK();
}

}  // namespace mpiflow
