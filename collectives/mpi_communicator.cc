// The MPI backend of Communicator: one communication thread, the allreduce algorithms (the MPI
// library's own, a chunked pipelined ring and the hierarchical one (ring.cc), recursive
// halving-doubling and doubling), and the stall inspector.
//
// Why one thread owns MPI. Open MPI 4.1 as Debian builds it grants MPI_THREAD_MULTIPLE, but
// concurrent calls from several threads serialise on internal locks, make progress only when
// some thread polls, and would let two ranks issue collectives in different orders when two
// session threads race. So the communication thread calls MPI_Init_thread (asking only for
// MPI_THREAD_FUNNELED, and checking it), runs every MPI call in the order callers submitted
// them, and calls MPI_Finalize at exit. Callers get a Work handle and never block in MPI. The
// same FIFO is what makes the collective order identical on every rank: the gradient
// synchroniser submits buckets in an order fixed by the graph.
//
// Collectives run one at a time to completion on that thread, polling nonblocking requests;
// point-to-point calls stay in flight beside them. The stall inspector, as a protocol:
//   1. every rank keeps a ProgressRecord: how many collectives it has started, whether it is
//      inside one now, and that one's name;
//   2. while polling, the thread answers every "what are you doing?" query (kQueryTag on a
//      private duplicate of the world) with its record, so a rank answers even while it waits;
//   3. a collective still waiting after stall_warning_seconds sends the query to every rank,
//      gathers the answers for up to 3 s and prints, per rank, whether it is in this collective,
//      in another, or silent (dead, or stuck outside mpiflow's thread), and the report note (the
//      last checkpoint to resume from);
//   4. still waiting after stall_abort_seconds: the same report, then MPI_Abort with exit code 3,
//      which ends every rank of the job.
//
// Not the gradient synchroniser (src/distributed) and not NCCL.
#include <mpi.h>
#include <sched.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <thread>

#include "mpi_engine.h"
#include "mpiflow/communicator.h"
#include "mpiflow/timeline.h"
#include "reduce.h"
#include "ring.h"

namespace mpiflow {

namespace {

using namespace mpi_backend;  // NOLINT: this backend's own helpers

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (a communicator only the engine's thread uses).
  MpiCommunicator(Engine* engine, MPI_Comm comm) : engine_(engine), coll_(comm) {
    MPI_Comm_set_errhandler(coll_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(coll_, &rank_);
    MPI_Comm_size(coll_, &size_);
    MPI_Comm_dup(coll_, &p2p_);
    rules_ = engine->options().allreduce_rules;
    if (rules_.empty()) rules_ = *ParseAllreduceRules(kDefaultRules);
  }
  ~MpiCommunicator() override {
    // Freed on the communication thread, after everything submitted before.
    MPI_Comm coll = coll_, p2p = p2p_, node = levels_.node.comm, cross = levels_.cross.comm;
    auto done = std::make_shared<Work>();
    engine_->Submit([coll, p2p, node, cross, done]() mutable {
      MPI_Comm_free(&coll);
      MPI_Comm_free(&p2p);
      if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
      if (cross != MPI_COMM_NULL) MPI_Comm_free(&cross);
      done->Finish(Status::OK());
    });
    (void)done->Wait();
  }

  // Measured on the 2-core development machine with benchmarks/mpiflow_allreduce_bench (2 and
  // 4 ranks): see the README's collectives section.
  static constexpr const char* kDefaultRules = "rd:<=32768,hd:<=2097152@>=3,ring";

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int node_rank() const override { return engine_->node_rank(); }
  Timeline* timeline() override { return engine_->timeline(); }
  void SetReportNote(const std::string& note) override { engine_->SetNote(note); }
  const CollectiveOptions& options() const override { return engine_->options(); }
  [[noreturn]] void Abort(int exit_code, const std::string& message) override {
    engine_->Abort(exit_code, message);
  }

  std::shared_ptr<Work> Allreduce(Tensor t, AllreduceOptions o) override {
    Status s = CheckCollectiveDType(t.dtype(), "Allreduce");
    // Nothing to combine: done here, without two hand-offs to the engine's thread (~100 us, and
    // milliseconds when it naps; a parameter server alone agrees with itself every step).
    if (!s.ok() || size_ == 1 || t.num_elements() == 0) return Done(s);
    auto work = std::make_shared<Work>();
    engine_->Submit([this, t, o, work] { work->Finish(RunAllreduce(t, o)); });
    return work;
  }

  std::shared_ptr<Work> ReduceScatter(Tensor in, Tensor out, ReduceOp op) override {
    Status s = CheckBlocks("ReduceScatter", in, out, /*input_is_whole=*/true);
    if (!s.ok()) return Done(s);
    auto work = std::make_shared<Work>();
    engine_->Submit([this, in, out, op, work] {
      work->Finish(Staged(in, out, "reduce-scatter", [&](const Tensor& a, const Tensor& b) {
        MPI_Request req;
        MPIFLOW_MPI(MPI_Ireduce_scatter_block(a.raw(), b.raw(), static_cast<int>(b.num_elements()),
                                              MpiType(a.dtype()), MpiOp(op), coll_, &req));
        MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(&req, 1, "reduce-scatter"));
        if (op == ReduceOp::kAverage) collectives::DivideBy(b, size_);
        return Status::OK();
      }));
    });
    return work;
  }

  std::shared_ptr<Work> Allgather(Tensor in, Tensor out) override {
    Status s = CheckBlocks("Allgather", in, out, /*input_is_whole=*/false);
    if (!s.ok()) return Done(s);
    return NonblockingCollective("allgather", [this, in, out](MPI_Request* req) {
      return MPI_Iallgather(in.raw(), static_cast<int>(in.bytes()), MPI_BYTE, out.raw(),
                            static_cast<int>(in.bytes()), MPI_BYTE, coll_, req);
    });
  }

  std::shared_ptr<Work> Broadcast(Tensor t, int root) override {
    if (root < 0 || root >= size_) {
      return Done(InvalidArgument("Broadcast: root ", root, " is not a rank of this ", size_,
                                  "-rank communicator"));
    }
    return NonblockingCollective("broadcast", [this, t, root](MPI_Request* req) {
      return MPI_Ibcast(t.raw(), static_cast<int>(t.bytes()), MPI_BYTE, root, coll_, req);
    });
  }

  std::shared_ptr<Work> Barrier() override {
    return NonblockingCollective("barrier",
                                 [this](MPI_Request* req) { return MPI_Ibarrier(coll_, req); });
  }

  std::shared_ptr<Work> Send(Tensor t, int dst, int tag) override {
    return PointToPoint(/*send=*/true, std::move(t), dst, tag);
  }

  std::shared_ptr<Work> Recv(Tensor t, int src, int tag) override {
    return PointToPoint(/*send=*/false, std::move(t), src, tag);
  }

  std::shared_ptr<Work> RecvShaped(std::shared_ptr<Tensor> out, DType dtype, Shape shape, int src,
                                   int tag) override {
    if (shape.IsFullyDefined()) return Communicator::RecvShaped(out, dtype, shape, src, tag);
    const std::string what = StrCat("Recv from rank ", src, " tag ", tag);
    int unknown = 0;
    for (int64_t d : shape.dims()) unknown += d < 0;
    if (src < 0 || src >= size_ || tag < 0 || unknown > 1 || !out) {
      return Done(InvalidArgument(what, " of ", shape.ToString(),
                                  ": needs a rank of this communicator, a tag >= 0, an output, "
                                  "and at most one unknown dimension"));
    }
    auto work = std::make_shared<Work>();
    engine_->Submit([this, out, dtype, shape, src, tag, what, work] {
      engine_->AddShapedRecv(p2p_, src, tag, out, dtype, shape, work, what);
    });
    return work;
  }

  void CancelRecv(const std::shared_ptr<Work>& recv) override {
    engine_->Submit([this, recv] { engine_->CancelRecv(recv); });
  }

  StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    MPI_Comm sub = MPI_COMM_NULL;
    auto work = std::make_shared<Work>();
    engine_->Submit([this, &sub, color, key, work] {  // `work` by value: see Work::Finish
      const int rc = MPI_Comm_split(coll_, color < 0 ? MPI_UNDEFINED : color, key, &sub);
      work->Finish(rc == MPI_SUCCESS ? Status::OK()
                                     : Status(Code::kUnavailable,
                                              StrCat("MPI_Comm_split: ", MpiErrorString(rc))));
    });
    MPIFLOW_RETURN_IF_ERROR(work->Wait());
    if (sub == MPI_COMM_NULL) {
      return InvalidArgument("Split: color ", color, " is negative, so this rank joins no group");
    }
    // The constructor's MPI calls must also run on the communication thread.
    std::unique_ptr<Communicator> result;
    auto made = std::make_shared<Work>();
    engine_->Submit([&result, this, sub, made] {  // `made` by value: see Work::Finish
      result = std::make_unique<MpiCommunicator>(engine_, sub);
      made->Finish(Status::OK());
    });
    MPIFLOW_RETURN_IF_ERROR(made->Wait());
    return result;
  }

 private:
  // Reduce-scatter and allgather: one side holds size() blocks of the other's size.
  Status CheckBlocks(const char* what, const Tensor& in, const Tensor& out, bool input_is_whole) {
    MPIFLOW_RETURN_IF_ERROR(CheckCollectiveDType(in.dtype(), what));
    const Tensor& whole = input_is_whole ? in : out;
    const Tensor& block = input_is_whole ? out : in;
    if (in.dtype() != out.dtype() || whole.num_elements() != block.num_elements() * size_) {
      return InvalidArgument(what, ": the input has ", in.num_elements(), " ",
                             DTypeName(in.dtype()), " elements, the output ", out.num_elements(),
                             " ", DTypeName(out.dtype()), "; the ",
                             input_is_whole ? "input" : "output", " must hold size() = ", size_,
                             " times the ", input_is_whole ? "output" : "input");
    }
    return Status::OK();
  }

  // Submits a collective that one nonblocking MPI call starts (`start` fills the request).
  template <typename Start>
  std::shared_ptr<Work> NonblockingCollective(const char* name, Start start) {
    auto work = std::make_shared<Work>();
    engine_->Submit([this, name, start, work] {
      engine_->BeginCollective(name);
      MPI_Request req;
      const int rc = start(&req);
      Status st = rc == MPI_SUCCESS
                      ? engine_->WaitAll(&req, 1, name)
                      : Status(Code::kUnavailable, StrCat(name, " failed: ", MpiErrorString(rc)));
      engine_->EndCollective();
      work->Finish(st);
    });
    return work;
  }

  // Send or Recv: posted on the communication thread, completed in the background.
  std::shared_ptr<Work> PointToPoint(bool send, Tensor t, int peer, int tag) {
    const std::string what = StrCat(send ? "Send to rank " : "Recv from rank ", peer, " tag ", tag);
    if (peer < 0 || peer >= size_ || tag < 0) {
      return Done(InvalidArgument(what, ": no such rank in this ", size_,
                                  "-rank communicator, or a negative tag"));
    }
    auto work = std::make_shared<Work>();
    engine_->Submit([this, send, t, peer, tag, what, work] {
      MPI_Request req;
      const int count = static_cast<int>(t.bytes());
      const int rc = send ? MPI_Isend(t.raw(), count, MPI_BYTE, peer, tag, p2p_, &req)
                          : MPI_Irecv(t.raw(), count, MPI_BYTE, peer, tag, p2p_, &req);
      if (rc != MPI_SUCCESS) {
        return work->Finish(
            Status(Code::kUnavailable, StrCat(what, " failed: ", MpiErrorString(rc))));
      }
      engine_->AddP2P(req, work, t, send ? -1 : static_cast<int64_t>(t.bytes()), what);
    });
    return work;
  }

  // Runs `body` on float32 copies when the tensors are float16, then converts back.
  template <typename Body>
  Status Staged(const Tensor& a, const Tensor& b, const char* what, Body body) {
    engine_->BeginCollective(what);
    Status s;
    if (a.dtype() == DType::kFloat16) {
      Tensor fa = collectives::HalfToFloat(a);
      Tensor fb = &a == &b ? fa : collectives::HalfToFloat(b);
      s = body(fa, fb);
      if (s.ok()) collectives::FloatToHalfInto(fb, b);
    } else {
      s = body(a, b);
    }
    engine_->EndCollective();
    return s;
  }

  Status RunAllreduce(const Tensor& t, const AllreduceOptions& o) {
    if (t.num_elements() == 0 || size_ == 1) return Status::OK();
    AllreduceAlgorithm alg = o.algorithm;
    if (alg == AllreduceAlgorithm::kAuto) alg = ChooseAllreduce(rules_, t.bytes(), size_);
    const AllreduceCompression wire = o.compression;
    if (wire != AllreduceCompression::kNone) {
      if (t.dtype() != DType::kFloat32 && t.dtype() != DType::kFloat16) {
        return InvalidArgument("allreduce compression ", AllreduceCompressionName(wire),
                               " needs float32 (or float16) data, not ", DTypeName(t.dtype()));
      }
      if (o.op != ReduceOp::kSum && o.op != ReduceOp::kAverage) {
        return InvalidArgument("allreduce compression ", AllreduceCompressionName(wire),
                               " sums or averages only");
      }
      if (o.algorithm == AllreduceAlgorithm::kAuto && alg != AllreduceAlgorithm::kHierarchical) {
        alg = AllreduceAlgorithm::kRing;  // the algorithms that compress in their chunks
      } else if (alg != AllreduceAlgorithm::kRing && alg != AllreduceAlgorithm::kHierarchical) {
        return InvalidArgument("allreduce compression ", AllreduceCompressionName(wire),
                               " runs in the ring's chunks: use the ring or hier algorithm, not ",
                               AllreduceAlgorithmName(alg));
      }
    }
    const std::string what =
        StrCat(o.name.empty() ? std::string("allreduce") : o.name, " (", t.num_elements(), " x ",
               DTypeName(t.dtype()), ", ", AllreduceAlgorithmName(alg), ")");
    const Clock::time_point start = Clock::now();
    Status s = Staged(t, t, what.c_str(), [&](const Tensor& x, const Tensor&) -> Status {
      switch (alg) {
        case AllreduceAlgorithm::kRing:
          MPIFLOW_RETURN_IF_ERROR(Ring(x, o.op, what, wire));
          break;
        case AllreduceAlgorithm::kHierarchical:
          MPIFLOW_RETURN_IF_ERROR(Hierarchical(x, o.op, what, &alg, wire));
          break;
        case AllreduceAlgorithm::kRecursiveDoubling:
          MPIFLOW_RETURN_IF_ERROR(RecursiveDoubling(x, o.op, what));
          break;
        case AllreduceAlgorithm::kHalvingDoubling:
          MPIFLOW_RETURN_IF_ERROR(HalvingDoubling(x, o.op, what));
          break;
        default:
          // The library's own, tuned, blocking MPI_Allreduce: the stall inspector cannot watch
          // it (MPI_Iallreduce can be watched but runs Open MPI's slower libnbc schedules),
          // so the default rules use it for nothing; it is here as the baseline.
          MPIFLOW_MPI(MPI_Allreduce(MPI_IN_PLACE, x.raw(), static_cast<int>(x.num_elements()),
                                    MpiType(x.dtype()), MpiOp(o.op), coll_));
      }
      if (o.op == ReduceOp::kAverage) collectives::DivideBy(x, size_);
      return Status::OK();
    });
    if (Timeline* tl = engine_->timeline()) {
      tl->Add(
          o.name.empty() ? "allreduce" : o.name, "allreduce", start, Clock::now(),
          Timeline::kCommunication,
          StrCat("\"bytes\":", t.bytes(), ",\"algorithm\":\"", AllreduceAlgorithmName(alg), "\""));
    }
    return s;
  }

  // Ring allreduce (ring.h): reduce-scatter then allgather around rank -> rank+1, chunked and
  // pipelined; all ranks hold the same bits.
  Status Ring(const Tensor& x, ReduceOp op, const std::string& what,
              AllreduceCompression wire = AllreduceCompression::kNone) {
    const RingGroup all{coll_, rank_, size_};
    char* data = static_cast<char*>(x.raw());
    MPIFLOW_RETURN_IF_ERROR(
        RingReduceScatter(engine_, all, data, x.num_elements(), x.dtype(), op, what, wire));
    return RingAllgather(engine_, all, data, x.num_elements(), x.dtype(), what, wire);
  }

  // Hierarchical (ring.h): over nodes of one rank count each, else the flat ring (`ran` says
  // which, for the timeline). The levels are made at its first use (every rank runs the same
  // collectives in the same order, so they all make them here), with blocking calls that the
  // stall inspector does not watch, as Split's.
  Status Hierarchical(const Tensor& x, ReduceOp op, const std::string& what,
                      AllreduceAlgorithm* ran, AllreduceCompression wire) {
    if (!levels_made_) {
      MPIFLOW_MPI(MPI_Comm_split_type(coll_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL,
                                      &levels_.node.comm));
      MPI_Comm_rank(levels_.node.comm, &levels_.node.rank);
      MPI_Comm_size(levels_.node.comm, &levels_.node.size);
      MPIFLOW_MPI(MPI_Comm_split(coll_, levels_.node.rank, rank_, &levels_.cross.comm));
      MPI_Comm_rank(levels_.cross.comm, &levels_.cross.rank);
      MPI_Comm_size(levels_.cross.comm, &levels_.cross.size);
      int sizes[2] = {levels_.node.size, -levels_.node.size};  // max, -min
      MPIFLOW_MPI(MPI_Allreduce(MPI_IN_PLACE, sizes, 2, MPI_INT, MPI_MAX, coll_));
      levels_.uniform = sizes[0] == -sizes[1];
      levels_made_ = true;
    }
    if (!levels_.uniform || levels_.node.size == 1 || levels_.cross.size == 1) {
      *ran = AllreduceAlgorithm::kRing;
      return Ring(x, op, what, wire);
    }
    return HierarchicalAllreduce(engine_, levels_, static_cast<char*>(x.raw()), x.num_elements(),
                                 x.dtype(), op, what, wire);
  }

  // Recursive doubling: in step k every rank swaps its whole buffer with rank ^ 2^k and adds.
  // One round trip per step and no segmenting: the fastest for buffers that fit in cache. Both
  // partners add the same two values (x + y == y + x exactly), so every rank ends with the same
  // bits. Ranks beyond the largest power of two fold in first, as in HalvingDoubling.
  Status RecursiveDoubling(const Tensor& x, ReduceOp op, const std::string& what) {
    const int p = size_, r = rank_;
    const int64_t n = x.num_elements();
    char* data = static_cast<char*>(x.raw());
    const MPI_Datatype type = MpiType(x.dtype());
    int p2 = 1;
    while (p2 * 2 <= p) p2 *= 2;
    const int extra = p - p2;
    Tensor tmp(x.dtype(), Shape{n});
    MPI_Request req[2];
    if (r < 2 * extra && r % 2 == 0) {  // hand everything to r+1, get the result back
      MPIFLOW_MPI(MPI_Isend(data, static_cast<int>(n), type, r + 1, 2, coll_, &req[0]));
      MPIFLOW_MPI(MPI_Irecv(data, static_cast<int>(n), type, r + 1, 2, coll_, &req[1]));
      return engine_->WaitAll(req, 2, what);
    }
    if (r < 2 * extra) {
      MPIFLOW_MPI(MPI_Irecv(tmp.raw(), static_cast<int>(n), type, r - 1, 2, coll_, &req[0]));
      MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 1, what));
      collectives::ReduceInto(x.dtype(), data, tmp.raw(), n, op);
    }
    const int nr = r < 2 * extra ? r / 2 : r - extra;
    auto real = [&](int q) { return q < extra ? 2 * q + 1 : q + extra; };
    for (int mask = 1; mask < p2; mask *= 2) {
      const int peer = real(nr ^ mask);
      MPIFLOW_MPI(MPI_Irecv(tmp.raw(), static_cast<int>(n), type, peer, 2, coll_, &req[0]));
      MPIFLOW_MPI(MPI_Isend(data, static_cast<int>(n), type, peer, 2, coll_, &req[1]));
      MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 2, what));
      collectives::ReduceInto(x.dtype(), data, tmp.raw(), n, op);
    }
    if (r < 2 * extra) {
      MPIFLOW_MPI(MPI_Isend(data, static_cast<int>(n), type, r - 1, 2, coll_, &req[0]));
      MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 1, what));
    }
    return Status::OK();
  }

  // Recursive halving (reduce-scatter) then recursive doubling (allgather) over the largest
  // power of two p2 <= size(); the first 2*(size()-p2) ranks pair up first, the even one of a
  // pair handing its data to the odd one and getting the result back at the end.
  Status HalvingDoubling(const Tensor& x, ReduceOp op, const std::string& what) {
    const int p = size_, r = rank_;
    const int64_t n = x.num_elements();
    const size_t es = DTypeSize(x.dtype());
    char* data = static_cast<char*>(x.raw());
    const MPI_Datatype type = MpiType(x.dtype());
    int p2 = 1;
    while (p2 * 2 <= p) p2 *= 2;
    const int extra = p - p2;
    Tensor tmp(x.dtype(), Shape{n});
    char* t = static_cast<char*>(tmp.raw());
    MPI_Request req[2];
    auto exchange = [&](int peer, int64_t send_off, int64_t send_len, int64_t recv_off,
                        int64_t recv_len, char* recv_base) -> Status {
      MPIFLOW_MPI(MPI_Irecv(recv_base + recv_off * es, static_cast<int>(recv_len), type, peer, 1,
                            coll_, &req[0]));
      MPIFLOW_MPI(MPI_Isend(data + send_off * es, static_cast<int>(send_len), type, peer, 1, coll_,
                            &req[1]));
      return engine_->WaitAll(req, 2, what);
    };
    int nr;  // rank among the p2
    if (r < 2 * extra) {
      if (r % 2 == 0) {  // hand everything to r+1, get the result back
        MPIFLOW_MPI(MPI_Isend(data, static_cast<int>(n), type, r + 1, 1, coll_, &req[0]));
        MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 1, what));
        MPIFLOW_MPI(MPI_Irecv(data, static_cast<int>(n), type, r + 1, 1, coll_, &req[0]));
        return engine_->WaitAll(req, 1, what);
      }
      MPIFLOW_MPI(MPI_Irecv(t, static_cast<int>(n), type, r - 1, 1, coll_, &req[0]));
      MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 1, what));
      collectives::ReduceInto(x.dtype(), data, t, n, op);
      nr = r / 2;
    } else {
      nr = r - extra;
    }
    auto real = [&](int q) { return q < extra ? 2 * q + 1 : q + extra; };
    std::vector<std::pair<int64_t, int64_t>> ranges;  // [lo, hi) before each halving
    int64_t lo = 0, hi = n;
    for (int mask = p2 / 2; mask >= 1; mask /= 2) {
      const int peer = real(nr ^ mask);
      const int64_t mid = lo + (hi - lo) / 2;
      ranges.emplace_back(lo, hi);
      const bool low = (nr & mask) == 0;
      const int64_t keep_lo = low ? lo : mid, keep_hi = low ? mid : hi;
      const int64_t give_lo = low ? mid : lo, give_hi = low ? hi : mid;
      MPIFLOW_RETURN_IF_ERROR(
          exchange(peer, give_lo, give_hi - give_lo, keep_lo, keep_hi - keep_lo, t));
      collectives::ReduceInto(x.dtype(), data + keep_lo * es, t + keep_lo * es, keep_hi - keep_lo,
                              op);
      lo = keep_lo;
      hi = keep_hi;
    }
    for (int mask = 1, level = static_cast<int>(ranges.size()) - 1; mask < p2; mask *= 2, --level) {
      const int peer = real(nr ^ mask);
      const auto [plo, phi] = ranges[level];
      const int64_t other_lo = lo == plo ? hi : plo, other_hi = lo == plo ? phi : lo;
      MPIFLOW_RETURN_IF_ERROR(exchange(peer, lo, hi - lo, other_lo, other_hi - other_lo, data));
      lo = plo;
      hi = phi;
    }
    if (r < 2 * extra) {  // odd partner: return the result
      MPIFLOW_MPI(MPI_Isend(data, static_cast<int>(n), type, r - 1, 1, coll_, &req[0]));
      MPIFLOW_RETURN_IF_ERROR(engine_->WaitAll(req, 1, what));
    }
    return Status::OK();
  }

  Engine* engine_;
  MPI_Comm coll_, p2p_;
  int rank_ = 0, size_ = 1;
  std::vector<AllreduceRule> rules_;
  RingLevels levels_;  // the hierarchical allreduce's, once levels_made_ (engine thread only)
  bool levels_made_ = false;
};

Engine* g_engine = nullptr;
MpiCommunicator* g_world = nullptr;

void ShutdownAtExit() {
  if (!g_engine) return;
  delete g_world;
  g_world = nullptr;
  g_engine->Shutdown();
}

}  // namespace

bool LaunchedWithSeveralRanks() {
  // mpirun/mpiexec (Open MPI), a PMI launcher, or srun: SLURM_STEP_NUM_TASKS is set in a step
  // srun started, unlike SLURM_NTASKS, which the batch script itself also sees.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
    const char* v = std::getenv(var);
    if (v && std::atoi(v) > 1) return true;
  }
  return false;
}

StatusOr<Communicator*> WorldCommunicator(const CollectiveOptions& options) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  if (g_world) return static_cast<Communicator*>(g_world);
  if (options.stall_warning_seconds <= 0 ||
      options.stall_abort_seconds <= options.stall_warning_seconds) {
    return InvalidArgument("stall limits must satisfy 0 < warning (", options.stall_warning_seconds,
                           " s) < abort (", options.stall_abort_seconds, " s)");
  }
  if (options.ring_chunk_bytes <= 0) {
    return InvalidArgument("the ring chunk size must be positive, got ", options.ring_chunk_bytes);
  }
  auto engine = std::make_unique<Engine>(options);
  MPIFLOW_RETURN_IF_ERROR(engine->Start());
  g_engine = engine.release();
  auto made = std::make_shared<Work>();
  g_engine->Submit([made] {  // `made` by value: see Work::Finish
    MPI_Comm comm;
    MPI_Comm_dup(MPI_COMM_WORLD, &comm);
    g_world = new MpiCommunicator(g_engine, comm);
    made->Finish(Status::OK());
  });
  MPIFLOW_RETURN_IF_ERROR(made->Wait());
  std::atexit(ShutdownAtExit);
  return static_cast<Communicator*>(g_world);
}

}  // namespace mpiflow
