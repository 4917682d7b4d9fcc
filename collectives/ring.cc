// The ring's halves and the hierarchical allreduce (see ring.h).
#include "ring.h"

#include <algorithm>
#include <vector>

#include "reduce.h"

namespace mpiflow {
namespace mpi_backend {

std::pair<int64_t, int64_t> RingSegment(int64_t n, int p, int s) {
  const int64_t base = n / p, extra = n % p;
  const int64_t offset = s * base + std::min<int64_t>(s, extra);
  return {offset, base + (s < extra ? 1 : 0)};
}

namespace {

// The chunks of segment s: (offset, length) pairs of at most `chunk` elements.
std::vector<std::pair<int64_t, int64_t>> Chunks(int64_t n, int p, int s, int64_t chunk) {
  const auto [begin, length] = RingSegment(n, p, ((s % p) + p) % p);
  std::vector<std::pair<int64_t, int64_t>> c;
  for (int64_t o = begin; o < begin + length; o += chunk) {
    c.emplace_back(o, std::min(chunk, begin + length - o));
  }
  return c;
}

// The conversions over arrays, the format chosen outside the loops (bf16's vectorise).
void Narrow(const float* in, uint16_t* out, int64_t n, AllreduceCompression wire) {
  if (wire == AllreduceCompression::kBf16) {
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalf(in[i]).bits;
  }
}
void Widen(const uint16_t* in, float* out, int64_t n, AllreduceCompression wire) {
  if (wire == AllreduceCompression::kBf16) {
    for (int64_t i = 0; i < n; ++i) out[i] = Bf16ToFloat(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = HalfToFloat(Half{in[i]});
  }
}
void WidenAdd(const uint16_t* in, float* out, int64_t n, AllreduceCompression wire) {
  if (wire == AllreduceCompression::kBf16) {
    for (int64_t i = 0; i < n; ++i) out[i] += Bf16ToFloat(in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] += HalfToFloat(Half{in[i]});
  }
}

// What both halves share: the element size and type, the chunk, this rank's neighbours, and
// its sends to the right in flight. Compressed (wire fp16/bf16, float32 data): the elements
// travel as 16-bit values through `narrow`, one slot per element of data (each element is
// sent at most once per half), so a send's buffer lives until the half ends.
struct Side {
  Side(Engine* engine, const RingGroup& group, char* base, int64_t n, DType dtype,
       AllreduceCompression w)
      : g(group),
        data(base),
        wire(dtype == DType::kFloat32 ? w : AllreduceCompression::kNone),
        es(compressed() ? 2 : DTypeSize(dtype)),
        type(compressed() ? MPI_UINT16_T : MpiType(dtype)),
        // The chunk counts data elements (float32 when compressed): the same cut either way.
        chunk(std::max<int64_t>(
            1, engine->options().ring_chunk_bytes / static_cast<int64_t>(DTypeSize(dtype)))),
        right((group.rank + 1) % group.size),
        left((group.rank + group.size - 1) % group.size),
        narrow(compressed() ? DType::kInt32 : DType::kInvalid,
               compressed() ? Shape{(n + 1) / 2} : Shape{}) {}
  bool compressed() const { return wire != AllreduceCompression::kNone; }
  float* floats() const { return reinterpret_cast<float*>(data); }
  uint16_t* wire_data() const { return reinterpret_cast<uint16_t*>(narrow.raw()); }
  // Where elements [o, ...) are sent from and received into.
  char* at(int64_t o) const {
    return compressed() ? reinterpret_cast<char*>(wire_data() + o) : data + o * es;
  }
  // Sends elements [o, o + len) to the right (compressed: rounded into `narrow` first).
  Status Send(int64_t o, int64_t len) {
    if (compressed()) Narrow(floats() + o, wire_data() + o, len, wire);
    sends.emplace_back();
    MPIFLOW_MPI(MPI_Isend(at(o), static_cast<int>(len), type, right, 0, g.comm, &sends.back()));
    return Status::OK();
  }

  const RingGroup& g;
  char* data;
  AllreduceCompression wire;
  size_t es;  // bytes per element on the wire
  MPI_Datatype type;
  int64_t chunk;
  int right, left;
  Tensor narrow;  // (n) 16-bit values when compressed (an int32 tensor holding pairs)
  std::vector<MPI_Request> sends;
};

}  // namespace

Status RingReduceScatter(Engine* engine, const RingGroup& g, char* data, int64_t n, DType dtype,
                         ReduceOp op, const std::string& what, AllreduceCompression wire) {
  const int p = g.size, r = g.rank;
  if (p == 1 || n == 0) return Status::OK();
  Side side(engine, g, data, n, dtype, wire);
  const size_t es = side.es;
  const MPI_Datatype type = side.type;
  const int64_t chunk = side.chunk;
  const int left = side.left;
  auto isend = [&](int64_t o, int64_t len) { return side.Send(o, len); };
  // After step s rank r holds segment r-s-1 reduced over s+2 ranks. Incoming chunks land in a
  // window of kWindow chunk buffers, received just ahead of their reduction, so they are still
  // in cache when added: only the local data goes through memory.
  struct Incoming {
    int step;
    int64_t offset, length;
  };
  std::vector<Incoming> in;
  for (int step = 0; step < p - 1; ++step) {
    for (auto [o, len] : Chunks(n, p, r - step - 1, chunk)) in.push_back({step, o, len});
  }
  constexpr int kWindow = 4;
  // (kWindow, chunk) receive buffers, of wire elements
  Tensor window(DType::kInt32, Shape{(kWindow * chunk * static_cast<int64_t>(es) + 3) / 4});
  char* wbase = static_cast<char*>(window.raw());
  MPI_Request recv_req[kWindow];
  auto post = [&](size_t k) -> Status {
    MPIFLOW_MPI(MPI_Irecv(wbase + (k % kWindow) * chunk * es, static_cast<int>(in[k].length), type,
                          left, 0, g.comm, &recv_req[k % kWindow]));
    return Status::OK();
  };
  for (size_t k = 0; k < in.size() && k < kWindow; ++k) MPIFLOW_RETURN_IF_ERROR(post(k));
  for (auto [o, len] : Chunks(n, p, r, chunk)) MPIFLOW_RETURN_IF_ERROR(isend(o, len));
  for (size_t k = 0; k < in.size(); ++k) {
    MPIFLOW_RETURN_IF_ERROR(engine->WaitAll(&recv_req[k % kWindow], 1, what));
    char* got = wbase + (k % kWindow) * chunk * es;
    if (side.compressed()) {  // float32 sums of the widened values
      WidenAdd(reinterpret_cast<const uint16_t*>(got), side.floats() + in[k].offset, in[k].length,
               side.wire);
    } else {
      collectives::ReduceInto(dtype, data + in[k].offset * es, got, in[k].length, op);
    }
    if (k + kWindow < in.size()) MPIFLOW_RETURN_IF_ERROR(post(k + kWindow));
    if (in[k].step + 1 < p - 1) MPIFLOW_RETURN_IF_ERROR(isend(in[k].offset, in[k].length));
  }
  return engine->WaitAll(side.sends.data(), static_cast<int>(side.sends.size()), what);
}

Status RingAllgather(Engine* engine, const RingGroup& g, char* data, int64_t n, DType dtype,
                     const std::string& what, AllreduceCompression wire) {
  const int p = g.size, r = g.rank;
  if (p == 1 || n == 0) return Status::OK();
  Side side(engine, g, data, n, dtype, wire);
  const MPI_Datatype type = side.type;
  const int64_t chunk = side.chunk;
  const int left = side.left;
  // Compressed: this rank's own segment is rounded once (its value becomes what the others
  // receive: every rank the same bits); received chunks are widened into data and forwarded as
  // received, not rounded again.
  auto isend = [&](int64_t o, int64_t len) -> Status {
    if (!side.compressed()) return side.Send(o, len);
    side.sends.emplace_back();
    MPIFLOW_MPI(MPI_Isend(side.at(o), static_cast<int>(len), type, side.right, 0, g.comm,
                          &side.sends.back()));
    return Status::OK();
  };
  if (side.compressed()) {
    for (auto [o, len] : Chunks(n, p, r + 1, chunk)) {
      Narrow(side.floats() + o, side.wire_data() + o, len, side.wire);
      Widen(side.wire_data() + o, side.floats() + o, len, side.wire);
    }
  }
  // Rank r owns segment r+1; in step s it receives segment r-s and forwards it.
  std::vector<MPI_Request> ag;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> ag_chunks;
  for (int step = 0; step < p - 1; ++step) {
    ag_chunks.push_back(Chunks(n, p, r - step, chunk));
    for (auto [o, len] : ag_chunks.back()) {
      ag.emplace_back();
      MPIFLOW_MPI(MPI_Irecv(side.at(o), static_cast<int>(len), type, left, 0, g.comm, &ag.back()));
    }
  }
  for (auto [o, len] : Chunks(n, p, r + 1, chunk)) MPIFLOW_RETURN_IF_ERROR(isend(o, len));
  size_t k = 0;
  for (int step = 0; step < p - 1; ++step) {
    for (auto [o, len] : ag_chunks[step]) {
      MPIFLOW_RETURN_IF_ERROR(engine->WaitAll(&ag[k++], 1, what));
      if (side.compressed()) Widen(side.wire_data() + o, side.floats() + o, len, side.wire);
      if (step + 1 < p - 1) MPIFLOW_RETURN_IF_ERROR(isend(o, len));
    }
  }
  return engine->WaitAll(side.sends.data(), static_cast<int>(side.sends.size()), what);
}

Status HierarchicalAllreduce(Engine* engine, const RingLevels& l, char* data, int64_t n,
                             DType dtype, ReduceOp op, const std::string& what,
                             AllreduceCompression wire) {
  MPIFLOW_RETURN_IF_ERROR(RingReduceScatter(engine, l.node, data, n, dtype, op, what, wire));
  // This rank now holds segment (node rank + 1) of its node's sum: the same segment as the
  // ranks of its node-rank on the other nodes, with whom it sums it.
  const auto [offset, length] = RingSegment(n, l.node.size, (l.node.rank + 1) % l.node.size);
  char* segment = data + offset * DTypeSize(dtype);
  MPIFLOW_RETURN_IF_ERROR(
      RingReduceScatter(engine, l.cross, segment, length, dtype, op, what, wire));
  MPIFLOW_RETURN_IF_ERROR(RingAllgather(engine, l.cross, segment, length, dtype, what, wire));
  return RingAllgather(engine, l.node, data, n, dtype, what, wire);
}

}  // namespace mpi_backend
}  // namespace mpiflow
