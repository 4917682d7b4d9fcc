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
//   5. with nothing ready to run, the executor waits for any Recv in flight (the communication
//      thread polls without naps meanwhile); a completed Recv releases its consumers;
//   6. the run ends when every local node has run and every Send has completed; a Recv waiting
//      past the stall limits is reported by name (tensor, source rank, edge, microbatch, run) and
//      then ends the job (exit code 3);
//   7. a failure ends the run at once with that error (the Recvs still in flight are abandoned:
//      this rank cannot take part in another run); mpiflow-train then ends the whole job with
//      the reason (Communicator::Abort), so no rank waits for the failed one.
#pragma once
