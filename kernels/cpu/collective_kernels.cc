// CPU kernels of the collective ops. AllreduceStart packs scale * gradients into the output
// buffer and hands it to the Session's CollectiveResource (whose communicator reduces it in place
// on its own thread); AllreduceWait blocks until that bucket is reduced, then outputs a view of
// its slice (no copy) after checking it is finite. CrossReplicaSum and AllgatherRows start and
// wait within the kernel. The kernels never call the communicator themselves.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <type_traits>
#include <vector>

#include "cpu_util.h"
#include "mpiflow/ops.h"
#include "mpiflow/timeline.h"

namespace mpiflow {
namespace {

using Clock = std::chrono::steady_clock;

// True when no element is NaN or Inf: the max over elements of the exponent bits is below
// all-ones. Integer max vectorises; a floating-point test chain would not (no reassociation).
template <typename T>
bool AllFinite(const T* p, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits kExponent =
      static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits worst = 0;
  for (int64_t k = 0; k < n; ++k) {
    Bits b;
    std::memcpy(&b, p + k, sizeof(b));
    worst = std::max<Bits>(worst, b & kExponent);
  }
  return worst != kExponent;
}

template <typename T>
class AllreduceStartKernel : public OpKernel {
 public:
  explicit AllreduceStartKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        state_(c.collectives),
        bucket_(c.node.attr<std::string>("bucket")),
        algorithm_(c.node.attr<std::string>("algorithm")),
        compression_(c.node.attr_or<std::string>("compression", "none")),
        first_unscaled_(c.node.num_inputs() - c.node.attr<int64_t>("unscaled")) {}

  Status Compute(KernelContext* ctx) override {
    if (!state_) {
      return ctx->Error("needs a Session with a communicator (SessionOptions::communicator)");
    }
    const auto t0 = Clock::now();
    const T scale = *ctx->input(0).data<T>();
    // (packed elements) scale * grads in order, each starting at a multiple of kAlignElements
    // (the gaps zero), so that AllreduceWait's views of it stay 64-byte aligned.
    Tensor* packed = ctx->allocate_output(0, node_.output_shape(0));
    T* base = packed->data<T>();
    int64_t offset = 0;
    for (int i = 1; i < ctx->num_inputs(); ++i) {
      const Tensor& g = ctx->input(i);
      const T* in = g.data<T>();
      T* out = base + offset;
      const int64_t n = g.num_elements();
      if (scale == T(1) || i >= first_unscaled_) {
        std::memcpy(out, in, n * sizeof(T));
      } else {
        for (int64_t k = 0; k < n; ++k) out[k] = in[k] * scale;
      }
      const int64_t next = ops::AlignedBucketOffset(offset + n, sizeof(T));
      std::fill(out + n, base + next, T(0));
      offset = next;
    }
    MPIFLOW_RETURN_IF_ERROR(state_->StartAllreduce(
        bucket_, *packed, algorithm_, StrCat(bucket_, " (run ", ctx->step(), ")"), compression_));
    if (Timeline* tl = state_->timeline()) {
      tl->Add("pack " + bucket_, "bucket", t0, Clock::now(), Timeline::kCompute,
              StrCat("\"bytes\":", packed->bytes(), ",\"gradients\":", ctx->num_inputs() - 1));
    }
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
  std::string bucket_, algorithm_, compression_;
  int first_unscaled_;  // inputs from here on are packed without the scale
};

template <typename T>
class AllreduceWaitKernel : public OpKernel {
 public:
  explicit AllreduceWaitKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        state_(c.collectives),
        bucket_(c.node.attr<std::string>("bucket")),
        variable_(c.node.attr<std::string>("variable")),
        offset_(c.node.attr<int64_t>("offset")) {}

  Status Compute(KernelContext* ctx) override {
    if (!state_) {
      return ctx->Error("needs a Session with a communicator (SessionOptions::communicator)");
    }
    Status s = state_->WaitAllreduce(bucket_);
    if (s.code() == Code::kNotFound) {
      return Internal("AllreduceWait '", node_.name(), "': bucket '", bucket_, "' never started");
    }
    if (!s.ok()) {
      return Status(s.code(), StrCat("allreduce of ", bucket_, " (gradient of '", variable_,
                                     "') failed: ", s.message()));
    }
    // The output is a view of the reduced bucket: no copy.
    const Tensor& grad = ctx->input(1);
    ctx->set_output(0, ctx->input(0).View(offset_, grad.shape()));
    if (variable_.empty()) return Status::OK();  // not a gradient: the caller checks it
    if (!AllFinite(ctx->input(0).data<T>() + offset_, grad.num_elements())) {
      return Status(Code::kAborted,
                    StrCat("the averaged gradient of '", variable_,
                           "' holds NaN or Inf (it is the allreduced value, so every rank stops "
                           "here together)"));
    }
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
  std::string bucket_, variable_;
  int64_t offset_;
};

}  // namespace

// The sum over the ranks, started and waited for here (a step's few small statistics); the
// input itself without a communicator (one process).
template <typename T>
class CrossReplicaSumKernel : public OpKernel {
 public:
  explicit CrossReplicaSumKernel(const KernelInitContext& c)
      : OpKernel(c.node), state_(c.collectives) {}

  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    if (!state_) {
      ctx->set_output(0, x);
      return Status::OK();
    }
    Tensor* y = ctx->allocate_output(0, x.shape());  // reduced in place
    std::memcpy(y->raw(), x.raw(), x.bytes());
    // Keyed by the node (one in flight at a time: it waits here), labelled with the run.
    MPIFLOW_RETURN_IF_ERROR(state_->StartAllreduce(
        node_.name(), *y, "auto", StrCat(node_.name(), " (run ", ctx->step(), ")")));
    Status s = state_->WaitAllreduce(node_.name());
    if (!s.ok())
      return Status(s.code(), StrCat("allreduce of '", node_.name(), "' failed: ", s.message()));
    return Status::OK();
  }

 private:
  CollectiveResource* state_;
};

// Every rank's (scale * values, indices), in rank order. Two allgathers: each rank's row count,
// then the rows, each packed as int64 words (its index, then its values' bytes) and padded to
// the largest count, so that one fixed-size allgather carries them; the padding is dropped.
template <typename T>
class AllgatherRowsKernel : public OpKernel {
 public:
  explicit AllgatherRowsKernel(const KernelInitContext& c)
      : OpKernel(c.node), state_(c.collectives), variable_(c.node.attr<std::string>("variable")) {}

  Status Compute(KernelContext* ctx) override {
    const Tensor& values = ctx->input(0);
    const Tensor& indices = ctx->input(1);
    const T scale = *ctx->input(2).data<T>();
    const int64_t k = values.shape().dim(0);
    if (indices.num_elements() != k) {
      return ctx->Error(k, " rows of values but ", indices.num_elements(), " indices");
    }
    std::vector<int64_t> row_dims = values.shape().dims();
    row_dims.erase(row_dims.begin());
    const int64_t row = Shape(row_dims).num_elements();  // elements per row
    const bool wide = indices.dtype() == DType::kInt64;
    auto index = [&](int64_t i) {
      return wide ? indices.data<int64_t>()[i] : int64_t{indices.data<int32_t>()[i]};
    };
    const int ranks = state_ ? state_->ranks() : 1;
    std::vector<int64_t> counts(ranks, k);
    if (state_ && ranks > 1) {
      Tensor mine(DType::kInt64, Shape{1}), all(DType::kInt64, Shape{ranks});
      *mine.data<int64_t>() = k;
      MPIFLOW_RETURN_IF_ERROR(Gathered(state_->Allgather(mine, all), "row counts"));
      std::copy(all.data<int64_t>(), all.data<int64_t>() + ranks, counts.begin());
    }
    int64_t total = 0, most = 0;
    for (int64_t n : counts) total += n, most = std::max(most, n);
    row_dims.insert(row_dims.begin(), total);
    T* out = ctx->allocate_output(0, Shape(row_dims))->template data<T>();
    Tensor* out_indices = ctx->allocate_output(1, Shape{total});
    auto set_index = [&](int64_t i, int64_t v) {
      if (wide) {
        out_indices->data<int64_t>()[i] = v;
      } else {
        out_indices->data<int32_t>()[i] = static_cast<int32_t>(v);
      }
    };
    if (ranks == 1 || !state_) {
      const T* in = values.data<T>();
      for (int64_t e = 0; e < k * row; ++e) out[e] = in[e] * scale;
      for (int64_t i = 0; i < k; ++i) set_index(i, index(i));
    } else if (most > 0) {
      // (most, words) int64 per rank: [index, row values' bytes, zero padding]
      const int64_t words = 1 + (row * static_cast<int64_t>(sizeof(T)) + 7) / 8;
      Tensor mine(DType::kInt64, Shape{most * words}),
          all(DType::kInt64, Shape{ranks * most * words});
      int64_t* w = mine.data<int64_t>();
      std::fill(w, w + most * words, int64_t{0});
      const T* in = values.data<T>();
      for (int64_t i = 0; i < k; ++i) {
        int64_t* dst = w + i * words;
        dst[0] = index(i);
        char* v = reinterpret_cast<char*>(dst + 1);
        for (int64_t e = 0; e < row; ++e) {
          const T scaled = in[i * row + e] * scale;
          std::memcpy(v + e * sizeof(T), &scaled, sizeof(T));
        }
      }
      MPIFLOW_RETURN_IF_ERROR(Gathered(state_->Allgather(mine, all), "rows"));
      const int64_t* from = all.data<int64_t>();
      int64_t next = 0;
      for (int r = 0; r < ranks; ++r) {
        for (int64_t i = 0; i < counts[r]; ++i, ++next) {
          const int64_t* src = from + (r * most + i) * words;
          set_index(next, src[0]);
          std::memcpy(out + next * row, src + 1, row * sizeof(T));
        }
      }
    }
    if (!variable_.empty() && !AllFinite(out, total * row)) {
      return Status(Code::kAborted,
                    StrCat("the gathered sparse gradient of '", variable_,
                           "' holds NaN or Inf (every rank gathers the same rows, so every rank "
                           "stops here together)"));
    }
    return Status::OK();
  }

 private:
  Status Gathered(Status s, const char* what) const {
    if (s.ok()) return s;
    return Status(s.code(), StrCat("allgather of the ", what, " of '", variable_, "' (",
                                   node_.name(), ") failed: ", s.message()));
  }

  CollectiveResource* state_;
  std::string variable_;
};

void RegisterCollectiveKernels(KernelRegistry& r) {
  RegisterKernel<CrossReplicaSumKernel<float>>(r, "CrossReplicaSum", kCpu, DType::kFloat32);
  RegisterKernel<CrossReplicaSumKernel<double>>(r, "CrossReplicaSum", kCpu, DType::kFloat64);
  RegisterKernel<AllreduceStartKernel<float>>(r, "AllreduceStart", kCpu, DType::kFloat32);
  RegisterKernel<AllreduceStartKernel<double>>(r, "AllreduceStart", kCpu, DType::kFloat64);
  RegisterKernel<AllreduceWaitKernel<float>>(r, "AllreduceWait", kCpu, DType::kFloat32);
  RegisterKernel<AllreduceWaitKernel<double>>(r, "AllreduceWait", kCpu, DType::kFloat64);
  RegisterKernel<AllgatherRowsKernel<float>>(r, "AllgatherRows", kCpu, DType::kFloat32);
  RegisterKernel<AllgatherRowsKernel<double>>(r, "AllgatherRows", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
