// The rendezvous: how the ranks of a partitioned graph exchange the tensors that cross them,
// over MPI point-to-point on the Session's rendezvous communicator. Private to src/runtime; the
// executor that follows it is Session::RunPartitioned (rendezvous.cc). Not placement or the
// partition (placement.h), and not collectives.
//
// The protocol, for one Session::Run that every rank of the communicator makes alike:
//   1. every rank prunes the whole graph for the run's feeds, fetches and targets, and lists the
//      run's transfers with PartitionRun: one per (tensor, destination rank), a zero-byte one per
//      control edge that crosses ranks, a fetch made elsewhere sent to every rank; sorted by
//      (node id, output, destination), so every rank derives the same list without asking;
//   2. the key of a transfer is (source, destination, edge, step, microbatch): the edge is its
//      place in the list and is the MPI tag; the microbatch is part of the edge (each
//      microbatch's copy of a tensor is its own node); the step is not in the tag: MPI keeps
//      the messages of one (source, tag, communicator) in order, every rank makes the same runs
//      in the same order, and each run sends and receives every transfer exactly once, so the
//      n-th message on an edge is the n-th run's;
//   3. at the start of the run a rank posts a Recv for every transfer whose destination it is
//      (Communicator::RecvShaped: an unknown batch dimension comes from the message's size);
//   4. it runs its own nodes as a dataflow in the plan's order; when a node's output is sent
//      somewhere, the Send starts at once and the executor goes on (Send never blocks it);
//   5. a completed Recv releases its consumers: before each node, the executor takes in every
//      Recv completed meanwhile (its consumers then run in plan order, a microbatch's forward
//      before the backward that happened to be ready); with nothing ready to run, it waits for
//      any Recv in flight (the communication thread polls without naps meanwhile);
//   6. the run ends when every local node has run and every Send has been received (a peer's
//      failure, step 8, ends that wait too); a Recv waiting past the stall limits is reported by
//      name (tensor, source rank, edge, microbatch, run), a Send by its count, and then the job
//      ends (exit code 3);
//   7. a failure here (a kernel's error, a failed Recv, a failed Send when the run waits for
//      it) ends the run with that error, after sending its text to every other rank of the
//      communicator on the error tag
//      (kRendezvousErrorTag); its Recvs still in flight are withdrawn (Communicator::CancelRecv;
//      the ranks are out of step now: the Session refuses every later run with that error);
//      mpiflow-train then ends the whole job with the reason (Communicator::Abort);
//   8. the error channel: the first partitioned run posts a Recv from every other rank on the
//      error tag, kept until the Session ends (then withdrawn, Communicator::CancelRecv); every
//      wait of step 5 waits for these too, and one that completes fails the run with the other
//      rank's error ("rank R failed in run N: ...") instead of waiting for tensors that will not
//      come. An error is never forwarded: the rank that failed tells every other rank itself.
//      Sessions that share a rendezvous communicator take turns: every rank destroys one before
//      any rank runs the next (the error tag is the communicator's, not a Session's, and a live
//      Session's error Recvs would take a peer's error meant for the other). In a 2-D layout the
//      channel reaches the ranks of one replica; the others learn of it from mpiflow-train's
//      Abort (or the stall limits) in the allreduces they wait in.
#pragma once

#include <memory>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/session.h"

namespace mpiflow {

// Above every transfer's tag (a partition of more transfers is refused).
constexpr int kRendezvousErrorTag = 32767;  // the least MPI_TAG_UB the MPI standard allows

// Step 8's Recvs, one per other rank of the communicator.
struct Session::PeerErrors {
  Communicator* comm = nullptr;
  std::vector<int> peers;
  std::vector<std::shared_ptr<Tensor>> texts;  // each a kBool[bytes] of the error's text
  std::vector<std::shared_ptr<Work>> works;
  Status failed;  // this rank's failure in a run (step 7): every later run is refused
  ~PeerErrors() {
    for (const auto& w : works) {
      if (!w->Completed()) comm->CancelRecv(w);
    }
  }
};

}  // namespace mpiflow
