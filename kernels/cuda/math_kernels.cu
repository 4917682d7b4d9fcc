// CUDA kernels for the math ops (src/ops/math_ops.cc) except MatMul, float32 and float64:
// broadcasting binary ops, AddN, unary functions and their gradients, reductions and their
// gradients. Integer math stays on the CPU kernels. Reductions sum in the CPU kernels' order
// (each output's elements in row-major order) unless one output gathers many elements, where a
// block sums them as a fixed tree: the same bits every run, either way.
#include <cfloat>
#include <string>

#include "../cpu/cpu_util.h"
#include "cuda_check.h"
#include "cuda_kernels.h"

namespace mpiflow {
namespace cuda {

Status MakeStrides(const KernelContext* ctx, const std::vector<int64_t>& dims,
                   const std::vector<int64_t>& sa, const std::vector<int64_t>& sb, Strides* s) {
  if (dims.size() > static_cast<size_t>(kMaxRank)) {
    return ctx->Error("rank ", dims.size(), " is above the CUDA kernels' ", kMaxRank);
  }
  s->rank = static_cast<int>(dims.size());
  for (int d = 0; d < s->rank; ++d) {
    s->dims[d] = dims[d];
    s->a[d] = sa.empty() ? 0 : sa[d];
    s->b[d] = sb.empty() ? 0 : sb[d];
  }
  return Status::OK();
}

namespace {

constexpr int kColumns = 32, kRowLanes = 8;  // ColumnReduce's block: a warp of columns x 8

// kMax as the CPU kernel's: a value replaces the running maximum only when greater (a NaN
// never does), starting from the lowest finite value.
template <typename T, bool kMax>
__device__ inline T Combine(T a, T b) {
  return kMax ? (b > a ? b : a) : a + b;
}
template <typename T, bool kMax>
__device__ inline T Identity() {
  return kMax ? (sizeof(T) == 4 ? T(-FLT_MAX) : T(-DBL_MAX)) : T(0);
}

// Block (kColumns, kRowLanes) over columns [blockIdx.x * kColumns, ...) and the rows of chunk
// blockIdx.y: lane ty sums rows ty, ty + kRowLanes, ... of the chunk in order; the lanes are
// then combined as a fixed tree; out[chunk, col] = the result / divisor.
template <typename T, bool kMax>
__global__ void ColumnReduceFn(int64_t rows, int64_t cols, int64_t rows_per_chunk, const T* in,
                               T* out, T divisor) {
  __shared__ T part[kRowLanes][kColumns];
  const int64_t col = blockIdx.x * static_cast<int64_t>(kColumns) + threadIdx.x;
  const int64_t begin = blockIdx.y * rows_per_chunk;
  const int64_t end = begin + rows_per_chunk < rows ? begin + rows_per_chunk : rows;
  T acc = Identity<T, kMax>();
  if (col < cols) {
    for (int64_t r = begin + threadIdx.y; r < end; r += kRowLanes) {
      acc = Combine<T, kMax>(acc, in[r * cols + col]);
    }
  }
  // Lanes without rows (a chunk of fewer than kRowLanes rows) are left out below.
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < cols) {
    T total = part[0][threadIdx.x];
    const int64_t lanes = end - begin < kRowLanes ? end - begin : kRowLanes;
    for (int64_t l = 1; l < lanes; ++l) total = Combine<T, kMax>(total, part[l][threadIdx.x]);
    out[blockIdx.y * cols + col] = kMax ? total : total / divisor;
  }
}

}  // namespace

template <typename T, bool kMax>
Status ColumnReduce(const KernelContext* ctx, int64_t rows, int64_t cols, const T* in, T* out,
                    T divisor) {
  if (cols == 0) return Status::OK();
  if (rows == 0) {  // an empty sum: zeros (Max over nothing is refused by its kernel)
    MPIFLOW_RETURN_IF_ERROR(CheckCuda(cudaMemsetAsync(out, 0, cols * sizeof(T), Stream()),
                                      "cudaMemsetAsync", ctx->node().name()));
    return Status::OK();
  }
  const unsigned col_blocks = static_cast<unsigned>((cols + kColumns - 1) / kColumns);
  const dim3 block(kColumns, kRowLanes);
  // Chunks of at least 64 rows, at most 1024 of them (the second pass sums <= 1024 rows).
  const int64_t chunks = std::min<int64_t>(1024, (rows + 63) / 64);
  const int64_t per_chunk = (rows + chunks - 1) / chunks;
  const int64_t used = (rows + per_chunk - 1) / per_chunk;  // chunks with rows in them
  if (used == 1) {
    ColumnReduceFn<T, kMax>
        <<<dim3(col_blocks, 1), block, 0, Stream()>>>(rows, cols, rows, in, out, divisor);
    return LaunchStatus(ctx);
  }
  Tensor partial(DTypeOf<T>::value, Shape{used, cols}, Dev().allocator());  // (used, cols)
  ColumnReduceFn<T, kMax><<<dim3(col_blocks, static_cast<unsigned>(used)), block, 0, Stream()>>>(
      rows, cols, per_chunk, in, partial.data<T>(), T(1));
  MPIFLOW_RETURN_IF_ERROR(LaunchStatus(ctx));
  ColumnReduceFn<T, kMax><<<dim3(col_blocks, 1), block, 0, Stream()>>>(
      used, cols, used, partial.data<T>(), out, divisor);
  return LaunchStatus(ctx);
}

template Status ColumnReduce<float, false>(const KernelContext*, int64_t, int64_t, const float*,
                                           float*, float);
template Status ColumnReduce<double, false>(const KernelContext*, int64_t, int64_t, const double*,
                                            double*, double);
template Status ColumnReduce<float, true>(const KernelContext*, int64_t, int64_t, const float*,
                                          float*, float);
template Status ColumnReduce<double, true>(const KernelContext*, int64_t, int64_t, const double*,
                                           double*, double);

namespace {

// The offsets into two operands of element i of the row-major index space s.dims.
__device__ inline void Offsets(const Strides& s, int64_t i, int64_t* oa, int64_t* ob) {
  int64_t a = 0, b = 0;
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t q = i % s.dims[d];
    i /= s.dims[d];
    a += q * s.a[d];
    b += q * s.b[d];
  }
  *oa = a;
  *ob = b;
}

#define MPIFLOW_GRID_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

struct AddF {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct SubF {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a - b;
  }
};
struct MulF {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a * b;
  }
};
struct DivF {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a / b;
  }
};
struct NegF {
  template <typename T>
  __device__ T operator()(T x) const {
    return -x;
  }
};
struct ExpF {
  template <typename T>
  __device__ T operator()(T x) const {
    return exp(x);
  }
};
struct LogF {
  template <typename T>
  __device__ T operator()(T x) const {
    return log(x);
  }
};
struct SqrtF {
  template <typename T>
  __device__ T operator()(T x) const {
    return sqrt(x);
  }
};
struct SquareF {
  template <typename T>
  __device__ T operator()(T x) const {
    return x * x;
  }
};
struct ReluF {
  template <typename T>
  __device__ T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
};
struct SigmoidF {
  template <typename T>
  __device__ T operator()(T x) const {
    return T(1) / (T(1) + exp(-x));
  }
};
struct TanhF {
  template <typename T>
  __device__ T operator()(T x) const {
    return tanh(x);
  }
};
struct ReluGradF {  // (dy, y)
  template <typename T>
  __device__ T operator()(T dy, T y) const {
    return y > T(0) ? dy : T(0);
  }
};
struct SigmoidGradF {  // (y, dy)
  template <typename T>
  __device__ T operator()(T y, T dy) const {
    return dy * y * (T(1) - y);
  }
};
struct TanhGradF {  // (y, dy)
  template <typename T>
  __device__ T operator()(T y, T dy) const {
    return dy * (T(1) - y * y);
  }
};

template <typename T, typename F>
__global__ void SameShapeKernel(int64_t n, const T* a, const T* b, T* y, F f) {
  MPIFLOW_GRID_LOOP(i, n) { y[i] = f(a[i], b[i]); }
}

template <typename T, typename F>
__global__ void BroadcastKernel(Strides s, int64_t n, const T* a, const T* b, T* y, F f) {
  MPIFLOW_GRID_LOOP(i, n) {
    int64_t oa, ob;
    Offsets(s, i, &oa, &ob);
    y[i] = f(a[oa], b[ob]);
  }
}

template <typename T, typename F>
__global__ void UnaryKernelFn(int64_t n, const T* x, T* y, F f) {
  MPIFLOW_GRID_LOOP(i, n) { y[i] = f(x[i]); }
}

template <typename T, typename F>
class BinaryKernel : public OpKernel {
 public:
  explicit BinaryKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);
    if (a.shape() == b.shape()) {
      Tensor* y = ctx->allocate_output(0, a.shape());
      const int64_t n = a.num_elements();
      if (n) {
        SameShapeKernel<<<Blocks(n), kThreads, 0, Stream()>>>(n, a.data<T>(), b.data<T>(),
                                                              y->data<T>(), F());
      }
      return LaunchStatus(ctx);
    }
    std::vector<int64_t> dims;
    if (!cpu::BroadcastDims(a.shape().dims(), b.shape().dims(), &dims)) {
      return ctx->Error("shapes ", a.shape().ToString(), " and ", b.shape().ToString(),
                        " cannot be broadcast");
    }
    Strides s;
    MPIFLOW_RETURN_IF_ERROR(MakeStrides(ctx, dims, cpu::BroadcastStrides(dims, a.shape().dims()),
                                        cpu::BroadcastStrides(dims, b.shape().dims()), &s));
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    const int64_t n = y->num_elements();
    if (n) {
      BroadcastKernel<<<Blocks(n), kThreads, 0, Stream()>>>(s, n, a.data<T>(), b.data<T>(),
                                                            y->data<T>(), F());
    }
    return LaunchStatus(ctx);
  }
};

template <typename T, typename F>
class UnaryKernel : public OpKernel {
 public:
  explicit UnaryKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = ctx->allocate_output(0, x.shape());
    const int64_t n = x.num_elements();
    if (n) UnaryKernelFn<<<Blocks(n), kThreads, 0, Stream()>>>(n, x.data<T>(), y->data<T>(), F());
    return LaunchStatus(ctx);
  }
};

// out[i] = f(a[i], b[i]) for two same-shape inputs (the activations' gradients).
template <typename T, typename F>
class PairKernel : public OpKernel {
 public:
  explicit PairKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);
    if (a.shape() != b.shape()) {
      return ctx->Error("shapes ", a.shape().ToString(), " and ", b.shape().ToString(), " differ");
    }
    Tensor* y = ctx->allocate_output(0, a.shape());
    const int64_t n = a.num_elements();
    if (n) {
      SameShapeKernel<<<Blocks(n), kThreads, 0, Stream()>>>(n, a.data<T>(), b.data<T>(),
                                                            y->data<T>(), F());
    }
    return LaunchStatus(ctx);
  }
};

// Up to 8 inputs per launch; y = x0 + x1 + ... in input order (the CPU kernel's sums).
constexpr int kAddNChunk = 8;
template <typename T>
struct Pointers {
  const T* p[kAddNChunk];
};

template <typename T>
__global__ void AddNChunkKernel(int64_t n, Pointers<T> in, int count, bool accumulate, T* y) {
  MPIFLOW_GRID_LOOP(j, n) {
    T acc = accumulate ? y[j] : in.p[0][j];
    for (int i = accumulate ? 0 : 1; i < count; ++i) acc += in.p[i][j];
    y[j] = acc;
  }
}

template <typename T>
class AddNKernel : public OpKernel {
 public:
  explicit AddNKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Shape& shape = ctx->input(0).shape();
    for (int i = 1; i < ctx->num_inputs(); ++i) {
      if (ctx->input(i).shape() != shape) {
        return ctx->Error("input ", i, " has shape ", ctx->input(i).shape().ToString(),
                          ", input 0 has ", shape.ToString());
      }
    }
    Tensor* y = ctx->allocate_output(0, shape);
    const int64_t n = shape.num_elements();
    if (!n) return Status::OK();
    for (int first = 0; first < ctx->num_inputs(); first += kAddNChunk) {
      Pointers<T> in{};
      const int count = std::min(kAddNChunk, ctx->num_inputs() - first);
      for (int i = 0; i < count; ++i) in.p[i] = ctx->input(first + i).data<T>();
      AddNChunkKernel<<<Blocks(n), kThreads, 0, Stream()>>>(n, in, count, first > 0, y->data<T>());
      MPIFLOW_RETURN_IF_ERROR(LaunchStatus(ctx));
    }
    return Status::OK();
  }
};

// ---- reductions ----

// Input dims split into the kept ones (the output's, in order) and the reduced ones, each with
// its stride in the input.
struct ReduceGeom {
  int kept_rank = 0, red_rank = 0;
  int64_t kept_dims[kMaxRank] = {}, kept_str[kMaxRank] = {};
  int64_t red_dims[kMaxRank] = {}, red_str[kMaxRank] = {};
  int64_t n_out = 1, n_red = 1;
};

Status MakeReduceGeom(const KernelContext* ctx, const std::vector<int64_t>& dims,
                      const std::vector<char>& reduced, ReduceGeom* g) {
  if (dims.size() > static_cast<size_t>(kMaxRank)) {
    return ctx->Error("rank ", dims.size(), " is above the CUDA kernels' ", kMaxRank);
  }
  int64_t stride = 1;
  std::vector<int64_t> strides(dims.size());
  for (int d = static_cast<int>(dims.size()) - 1; d >= 0; --d) {
    strides[d] = stride;
    stride *= dims[d];
  }
  for (size_t d = 0; d < dims.size(); ++d) {
    if (reduced[d]) {
      g->red_dims[g->red_rank] = dims[d];
      g->red_str[g->red_rank++] = strides[d];
      g->n_red *= dims[d];
    } else {
      g->kept_dims[g->kept_rank] = dims[d];
      g->kept_str[g->kept_rank++] = strides[d];
      g->n_out *= dims[d];
    }
  }
  return Status::OK();
}

__device__ inline int64_t Offset(int rank, const int64_t* dims, const int64_t* str, int64_t i) {
  int64_t off = 0;
  for (int d = rank - 1; d >= 0; --d) {
    off += (i % dims[d]) * str[d];
    i /= dims[d];
  }
  return off;
}

// One thread per output, its elements in row-major order: the CPU kernel's order.
template <typename T, bool kMax>
__global__ void ReduceSequential(ReduceGeom g, const T* x, T* y, T divisor) {
  MPIFLOW_GRID_LOOP(o, g.n_out) {
    const int64_t base = Offset(g.kept_rank, g.kept_dims, g.kept_str, o);
    T acc = kMax ? (sizeof(T) == 4 ? T(-FLT_MAX) : T(-DBL_MAX)) : T(0);
    for (int64_t r = 0; r < g.n_red; ++r) {
      const T v = x[base + Offset(g.red_rank, g.red_dims, g.red_str, r)];
      if (kMax) {
        if (v > acc) acc = v;
      } else {
        acc += v;
      }
    }
    y[o] = kMax ? acc : acc / divisor;
  }
}

// One block per output: each thread a strided share, then a fixed tree over the block.
template <typename T, bool kMax>
__global__ void ReduceTree(ReduceGeom g, const T* x, T* y, T divisor) {
  __shared__ T part[kThreads];
  const int64_t o = blockIdx.x;
  const int64_t base = Offset(g.kept_rank, g.kept_dims, g.kept_str, o);
  T acc = kMax ? (sizeof(T) == 4 ? T(-FLT_MAX) : T(-DBL_MAX)) : T(0);
  for (int64_t r = threadIdx.x; r < g.n_red; r += blockDim.x) {
    const T v = x[base + Offset(g.red_rank, g.red_dims, g.red_str, r)];
    if (kMax) {
      if (v > acc) acc = v;
    } else {
      acc += v;
    }
  }
  part[threadIdx.x] = acc;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (threadIdx.x < w) {
      const T other = part[threadIdx.x + w];
      if (kMax) {
        if (other > part[threadIdx.x]) part[threadIdx.x] = other;
      } else {
        part[threadIdx.x] += other;
      }
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) y[o] = kMax ? part[0] : part[0] / divisor;
}

// The reduced dimensions all come before the kept ones: a column reduction of a (n_red, n_out)
// matrix (a batch's sum, a bias gradient).
// (The innermost reduced dimension's stride is the product of every dimension after it: n_out
// exactly when every kept dimension of size > 1 comes after it.)
bool LeadingReduced(const ReduceGeom& g) {
  return g.red_rank > 0 && g.red_str[g.red_rank - 1] == g.n_out;
}

template <typename T, bool kMax>
Status LaunchReduce(const KernelContext* ctx, const ReduceGeom& g, const T* x, T* y, T divisor) {
  if (g.n_out == 0) return Status::OK();
  if (LeadingReduced(g) && g.n_red > 64 && g.n_out >= 8) {
    return ColumnReduce<T, kMax>(ctx, g.n_red, g.n_out, x, y, divisor);
  }
  // Many outputs, or few elements each: a thread per output. Few outputs of many elements each
  // (a loss's mean over a large batch): a block per output.
  if (g.n_out >= 1024 || g.n_red <= 2048) {
    ReduceSequential<T, kMax><<<Blocks(g.n_out), kThreads, 0, Stream()>>>(g, x, y, divisor);
  } else {
    ReduceTree<T, kMax>
        <<<static_cast<unsigned>(g.n_out), kThreads, 0, Stream()>>>(g, x, y, divisor);
  }
  return LaunchStatus(ctx);
}

enum class Reduction { kSum, kMean, kMax };

template <typename T, Reduction R>
class ReduceKernel : public OpKernel {
 public:
  explicit ReduceKernel(const KernelInitContext& c)
      : OpKernel(c.node), axes_(c.node.attr<std::vector<int64_t>>("axes")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int rank = x.shape().rank();
    std::vector<char> reduced(rank, axes_.empty() ? 1 : 0);
    for (int64_t a : axes_) reduced[a < 0 ? a + rank : a] = 1;
    std::vector<int64_t> out_dims;
    const bool keep = node_.attr<bool>("keep_dims");
    for (int i = 0; i < rank; ++i) {
      if (!reduced[i]) {
        out_dims.push_back(x.shape().dim(i));
      } else if (keep) {
        out_dims.push_back(1);
      }
    }
    ReduceGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakeReduceGeom(ctx, x.shape().dims(), reduced, &g));
    Tensor* y = ctx->allocate_output(0, Shape(out_dims));
    if (R == Reduction::kMax && g.n_red == 0 && g.n_out > 0) {
      return ctx->Error("Max over an empty dimension of ", x.shape().ToString());
    }
    const T divisor = R == Reduction::kMean && g.n_red > 0 ? static_cast<T>(g.n_red) : T(1);
    return LaunchReduce<T, R == Reduction::kMax>(ctx, g, x.data<T>(), y->data<T>(), divisor);
  }

 private:
  std::vector<int64_t> axes_;
};

template <typename T>
__global__ void ScaledBroadcastKernel(Strides s, int64_t n, const T* x, T* y, T scale) {
  MPIFLOW_GRID_LOOP(i, n) {
    int64_t ox, unused;
    Offsets(s, i, &ox, &unused);
    y[i] = x[ox] * scale;
  }
}

// dy broadcast back over the reduced axes of x (divided by the count for Mean).
template <typename T>
class ReduceGradKernel : public OpKernel {
 public:
  explicit ReduceGradKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        axes_(c.node.attr<std::vector<int64_t>>("axes")),
        mean_(c.node.attr<bool>("mean")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &x = ctx->input(1);
    const int rank = x.shape().rank();
    std::vector<int64_t> kept = x.shape().dims();
    if (axes_.empty()) {
      for (int64_t& d : kept) d = 1;
    }
    for (int64_t a : axes_) kept[a < 0 ? a + rank : a] = 1;
    if (Shape(kept).num_elements() != dy.num_elements()) {
      return ctx->Error("dy ", dy.shape().ToString(), " does not match the reduction of ",
                        x.shape().ToString());
    }
    Tensor* dx = ctx->allocate_output(0, x.shape());
    const int64_t n_out = dy.num_elements();
    const T scale = mean_ && n_out ? T(1) / static_cast<T>(x.num_elements() / n_out) : T(1);
    Strides s;
    MPIFLOW_RETURN_IF_ERROR(
        MakeStrides(ctx, x.shape().dims(), cpu::BroadcastStrides(x.shape().dims(), kept), {}, &s));
    const int64_t n = x.num_elements();
    if (n) {
      ScaledBroadcastKernel<<<Blocks(n), kThreads, 0, Stream()>>>(s, n, dy.data<T>(), dx->data<T>(),
                                                                  scale);
    }
    return LaunchStatus(ctx);
  }

 private:
  std::vector<int64_t> axes_;
  bool mean_;
};

// Sums x over the dimensions that broadcasting added to `like`'s shape.
template <typename T>
class SumToShapeOfKernel : public OpKernel {
 public:
  explicit SumToShapeOfKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &x = ctx->input(0), &like = ctx->input(1);
    if (x.shape() == like.shape()) {
      ctx->set_output(0, x);
      return Status::OK();
    }
    const auto& xd = x.shape().dims();
    const auto& ld = like.shape().dims();
    const size_t lead = xd.size() - ld.size();
    std::vector<char> reduced(xd.size(), 1);
    for (size_t i = 0; i < ld.size(); ++i) {
      const int64_t d = xd[lead + i];
      if (ld[i] != 1 && ld[i] != d) {
        return ctx->Error("cannot reduce ", x.shape().ToString(), " to ", like.shape().ToString());
      }
      reduced[lead + i] = ld[i] == 1 && d != 1;
    }
    ReduceGeom g;
    MPIFLOW_RETURN_IF_ERROR(MakeReduceGeom(ctx, xd, reduced, &g));
    Tensor* y = ctx->allocate_output(0, like.shape());
    return LaunchReduce<T, false>(ctx, g, x.data<T>(), y->data<T>(), T(1));
  }
};

template <typename T>
void RegisterFor(KernelRegistry& r, DType t) {
  RegisterKernel<BinaryKernel<T, AddF>>(r, "Add", kCuda, t);
  RegisterKernel<BinaryKernel<T, SubF>>(r, "Sub", kCuda, t);
  RegisterKernel<BinaryKernel<T, MulF>>(r, "Mul", kCuda, t);
  RegisterKernel<BinaryKernel<T, DivF>>(r, "Div", kCuda, t);
  RegisterKernel<AddNKernel<T>>(r, "AddN", kCuda, t);
  RegisterKernel<UnaryKernel<T, NegF>>(r, "Neg", kCuda, t);
  RegisterKernel<ReduceKernel<T, Reduction::kSum>>(r, "Sum", kCuda, t);
  RegisterKernel<ReduceKernel<T, Reduction::kMean>>(r, "Mean", kCuda, t);
  RegisterKernel<ReduceKernel<T, Reduction::kMax>>(r, "Max", kCuda, t);
  RegisterKernel<ReduceGradKernel<T>>(r, "ReduceGrad", kCuda, t);
  RegisterKernel<SumToShapeOfKernel<T>>(r, "SumToShapeOf", kCuda, t);
  RegisterKernel<UnaryKernel<T, ExpF>>(r, "Exp", kCuda, t);
  RegisterKernel<UnaryKernel<T, LogF>>(r, "Log", kCuda, t);
  RegisterKernel<UnaryKernel<T, SqrtF>>(r, "Sqrt", kCuda, t);
  RegisterKernel<UnaryKernel<T, SquareF>>(r, "Square", kCuda, t);
  RegisterKernel<UnaryKernel<T, ReluF>>(r, "Relu", kCuda, t);
  RegisterKernel<UnaryKernel<T, SigmoidF>>(r, "Sigmoid", kCuda, t);
  RegisterKernel<UnaryKernel<T, TanhF>>(r, "Tanh", kCuda, t);
  RegisterKernel<PairKernel<T, ReluGradF>>(r, "ReluGrad", kCuda, t);
  RegisterKernel<PairKernel<T, SigmoidGradF>>(r, "SigmoidGrad", kCuda, t);
  RegisterKernel<PairKernel<T, TanhGradF>>(r, "TanhGrad", kCuda, t);
}

}  // namespace

void RegisterMathKernels(KernelRegistry& r) {
  RegisterFor<float>(r, DType::kFloat32);
  RegisterFor<double>(r, DType::kFloat64);
}

}  // namespace cuda
}  // namespace mpiflow
