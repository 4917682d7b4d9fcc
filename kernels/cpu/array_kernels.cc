// CPU kernels for the array ops (src/ops/array_ops.cc). Most are dtype-agnostic byte movers,
// registered for every dtype. Not shape inference: runtime checks only what static shapes miss.
#include <algorithm>
#include <cstring>
#include <limits>

#include "cpu_util.h"
#include "mpiflow/thread_pool.h"

namespace mpiflow {

namespace cpu {

std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& dims,
                                      const std::vector<int64_t>& like) {
  const int rank = static_cast<int>(dims.size()), lrank = static_cast<int>(like.size());
  std::vector<int64_t> strides(rank, 0);
  int64_t stride = 1;
  for (int i = lrank - 1; i >= 0; --i) {
    const int d = rank - lrank + i;
    strides[d] = like[i] == 1 ? 0 : stride;
    stride *= like[i];
  }
  return strides;
}

bool BroadcastDims(const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                   std::vector<int64_t>* out) {
  const size_t rank = std::max(a.size(), b.size());
  out->assign(rank, 1);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i + a.size() >= rank ? a[i + a.size() - rank] : 1;
    const int64_t db = i + b.size() >= rank ? b[i + b.size() - rank] : 1;
    if (da != db && da != 1 && db != 1) return false;
    (*out)[i] = da == 1 ? db : da;
  }
  return true;
}

}  // namespace cpu

namespace {

class PlaceholderKernel : public OpKernel {
 public:
  explicit PlaceholderKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    return InvalidArgument("Placeholder '", node_.name(), "' (", DTypeName(node_.output_dtype(0)),
                           node_.output_shape(0).ToString(),
                           ") must be fed a value: pass it in the feeds of Session::Run");
    (void)ctx;
  }
};

class ConstKernel : public OpKernel {
 public:
  explicit ConstKernel(const KernelInitContext& c)
      : OpKernel(c.node), value_(c.node.attr<Tensor>("value")) {}
  Status Compute(KernelContext* ctx) override {
    ctx->set_output(0, value_);  // shared, never written: kernels do not mutate their inputs
    return Status::OK();
  }

 private:
  Tensor value_;
};

class ZerosKernel : public OpKernel {
 public:
  explicit ZerosKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    ctx->allocate_output(0, node_.output_shape(0))->FillZero();
    return Status::OK();
  }
};

class IdentityKernel : public OpKernel {
 public:
  explicit IdentityKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    ctx->set_output(0, ctx->input(0));
    return Status::OK();
  }
  bool TouchesMemory() const override { return false; }
};

class NoOpKernel : public OpKernel {
 public:
  explicit NoOpKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext*) override { return Status::OK(); }
  bool TouchesMemory() const override { return false; }
};

class ReshapeKernel : public OpKernel {
 public:
  explicit ReshapeKernel(const KernelInitContext& c)
      : OpKernel(c.node), target_(c.node.attr<std::vector<int64_t>>("shape")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    std::vector<int64_t> dims = target_;
    int64_t known = 1;
    int unknown = -1;
    for (size_t i = 0; i < dims.size(); ++i) {
      if (dims[i] < 0) {
        unknown = static_cast<int>(i);
      } else {
        known *= dims[i];
      }
    }
    const int64_t n = x.num_elements();
    if (unknown >= 0) {
      if (known == 0 || n % known) {
        return ctx->Error("cannot reshape ", x.shape().ToString(), " to ",
                          Shape(target_).ToString());
      }
      dims[unknown] = n / known;
    } else if (known != n) {
      return ctx->Error("cannot reshape ", x.shape().ToString(), " to ", Shape(target_).ToString());
    }
    ctx->set_output(0, x.Reshaped(Shape(dims)));
    return Status::OK();
  }
  bool TouchesMemory() const override { return false; }

 private:
  std::vector<int64_t> target_;
};

class TransposeKernel : public OpKernel {
 public:
  explicit TransposeKernel(const KernelInitContext& c)
      : OpKernel(c.node), perm_(c.node.attr<std::vector<int64_t>>("perm")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int rank = x.shape().rank();
    std::vector<int64_t> out_dims(rank), in_strides(rank), read_strides(rank), zeros(rank, 0);
    int64_t stride = 1;
    for (int i = rank - 1; i >= 0; --i) {
      in_strides[i] = stride;
      stride *= x.shape().dim(i);
    }
    for (int i = 0; i < rank; ++i) {
      out_dims[i] = x.shape().dim(static_cast<int>(perm_[i]));
      read_strides[i] = in_strides[perm_[i]];
    }
    Tensor* y = ctx->allocate_output(0, Shape(out_dims));
    const size_t es = DTypeSize(x.dtype());
    const char* src = static_cast<const char*>(x.raw());
    char* dst = static_cast<char*>(y->raw());
    cpu::ForEachStrided(out_dims, read_strides, zeros, [&](int64_t i, int64_t off, int64_t) {
      std::memcpy(dst + i * es, src + off * es, es);
    });
    return Status::OK();
  }

 private:
  std::vector<int64_t> perm_;
};

// Views a tensor as (outer, axis, inner) around `axis`.
void SplitAround(const Shape& s, int axis, int64_t* outer, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; ++i) *outer *= s.dim(i);
  for (int i = axis + 1; i < s.rank(); ++i) *inner *= s.dim(i);
}

class ConcatKernel : public OpKernel {
 public:
  explicit ConcatKernel(const KernelInitContext& c) : OpKernel(c.node) {
    axis_ = static_cast<int>(c.node.attr<int64_t>("axis"));
    if (axis_ < 0) axis_ += c.node.input(0).shape().rank();
  }
  Status Compute(KernelContext* ctx) override {
    const Shape& first = ctx->input(0).shape();
    std::vector<int64_t> dims = first.dims();
    dims[axis_] = 0;
    for (int i = 0; i < ctx->num_inputs(); ++i) {
      const Shape& s = ctx->input(i).shape();
      for (int d = 0; d < s.rank(); ++d) {
        if (d != axis_ && s.dim(d) != first.dim(d)) {
          return ctx->Error("input ", i, " has shape ", s.ToString(), ", input 0 has ",
                            first.ToString());
        }
      }
      dims[axis_] += s.dim(axis_);
    }
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    int64_t outer, inner;
    SplitAround(y->shape(), axis_, &outer, &inner);
    const size_t es = DTypeSize(y->dtype());
    const size_t out_row = static_cast<size_t>(dims[axis_] * inner) * es;
    size_t offset = 0;
    for (int i = 0; i < ctx->num_inputs(); ++i) {
      const Tensor& x = ctx->input(i);
      const size_t row = static_cast<size_t>(x.shape().dim(axis_) * inner) * es;
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(static_cast<char*>(y->raw()) + o * out_row + offset,
                    static_cast<const char*>(x.raw()) + o * row, row);
      }
      offset += row;
    }
    return Status::OK();
  }

 private:
  int axis_;
};

// Copies a box between a big tensor and a small one. to_small: Slice; else SliceGrad.
void CopyBox(const Tensor& big, const Tensor& small, const std::vector<int64_t>& begin,
             bool to_small) {
  const int rank = big.shape().rank();
  const size_t es = DTypeSize(big.dtype());
  std::vector<int64_t> big_strides(rank), zeros(rank, 0);
  int64_t stride = 1, start = 0;
  for (int i = rank - 1; i >= 0; --i) {
    big_strides[i] = stride;
    start += begin[i] * stride;
    stride *= big.shape().dim(i);
  }
  char* b = static_cast<char*>(big.raw()) + start * es;
  char* s = static_cast<char*>(small.raw());
  cpu::ForEachStrided(small.shape().dims(), big_strides, zeros,
                      [&](int64_t i, int64_t off, int64_t) {
                        if (to_small) {
                          std::memcpy(s + i * es, b + off * es, es);
                        } else {
                          std::memcpy(b + off * es, s + i * es, es);
                        }
                      });
}

class SliceKernel : public OpKernel {
 public:
  explicit SliceKernel(const KernelInitContext& c)
      : OpKernel(c.node),
        begin_(c.node.attr<std::vector<int64_t>>("begin")),
        size_(c.node.attr<std::vector<int64_t>>("size")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    std::vector<int64_t> dims(size_.size());
    for (size_t i = 0; i < size_.size(); ++i) {
      const int64_t d = x.shape().dim(static_cast<int>(i));
      dims[i] = size_[i] < 0 ? d - begin_[i] : size_[i];
      if (begin_[i] > d || dims[i] < 0 || begin_[i] + dims[i] > d) {
        return ctx->Error("slice out of range for input ", x.shape().ToString());
      }
    }
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    CopyBox(x, *y, begin_, true);
    return Status::OK();
  }

 private:
  std::vector<int64_t> begin_, size_;
};

class SliceGradKernel : public OpKernel {
 public:
  explicit SliceGradKernel(const KernelInitContext& c)
      : OpKernel(c.node), begin_(c.node.attr<std::vector<int64_t>>("begin")) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& like = ctx->input(0);
    const Tensor& dy = ctx->input(1);
    Tensor* dx = ctx->allocate_output(0, like.shape());
    dx->FillZero();
    CopyBox(*dx, dy, begin_, false);
    return Status::OK();
  }

 private:
  std::vector<int64_t> begin_;
};

template <typename From, typename To>
void CastLoop(const From* in, To* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<To>(in[i]);
}

template <typename From>
void CastFrom(const From* in, const Tensor& y, int64_t n) {
  switch (y.dtype()) {
    case DType::kFloat32:
      return CastLoop(in, y.data<float>(), n);
    case DType::kFloat64:
      return CastLoop(in, y.data<double>(), n);
    case DType::kInt32:
      return CastLoop(in, y.data<int32_t>(), n);
    case DType::kInt64:
      return CastLoop(in, y.data<int64_t>(), n);
    case DType::kBool:
      for (int64_t i = 0; i < n; ++i) y.data<bool>()[i] = in[i] != From(0);
      return;
    case DType::kFloat16:
      for (int64_t i = 0; i < n; ++i) y.data<Half>()[i] = FloatToHalf(static_cast<float>(in[i]));
      return;
    case DType::kInvalid:
      return;
  }
}

class CastKernel : public OpKernel {
 public:
  explicit CastKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    Tensor* y = ctx->allocate_output(0, x.shape());
    const int64_t n = x.num_elements();
    switch (x.dtype()) {
      case DType::kFloat32:
        CastFrom(x.data<float>(), *y, n);
        break;
      case DType::kFloat64:
        CastFrom(x.data<double>(), *y, n);
        break;
      case DType::kInt32:
        CastFrom(x.data<int32_t>(), *y, n);
        break;
      case DType::kInt64:
        CastFrom(x.data<int64_t>(), *y, n);
        break;
      case DType::kBool:
        CastFrom(x.data<bool>(), *y, n);
        break;
      case DType::kFloat16: {
        std::vector<float> tmp(n);
        for (int64_t i = 0; i < n; ++i) tmp[i] = HalfToFloat(x.data<Half>()[i]);
        CastFrom(tmp.data(), *y, n);
        break;
      }
      case DType::kInvalid:
        return ctx->Error("invalid input dtype");
    }
    return Status::OK();
  }
};

template <typename T>
class EqualKernel : public OpKernel {
 public:
  explicit EqualKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &a = ctx->input(0), &b = ctx->input(1);
    std::vector<int64_t> dims;
    if (!cpu::BroadcastDims(a.shape().dims(), b.shape().dims(), &dims)) {
      return ctx->Error("shapes ", a.shape().ToString(), " and ", b.shape().ToString(),
                        " cannot be broadcast");
    }
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    const T *pa = a.data<T>(), *pb = b.data<T>();
    bool* py = y->data<bool>();
    cpu::ForEachStrided(dims, cpu::BroadcastStrides(dims, a.shape().dims()),
                        cpu::BroadcastStrides(dims, b.shape().dims()),
                        [&](int64_t i, int64_t oa, int64_t ob) { py[i] = pa[oa] == pb[ob]; });
    return Status::OK();
  }
};

template <typename T>
class ArgMaxKernel : public OpKernel {
 public:
  explicit ArgMaxKernel(const KernelInitContext& c) : OpKernel(c.node) {
    axis_ = static_cast<int>(c.node.attr<int64_t>("axis"));
    if (axis_ < 0) axis_ += c.node.input(0).shape().rank();
  }
  Status Compute(KernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int64_t len = x.shape().dim(axis_);
    if (len == 0) return ctx->Error("ArgMax over an empty axis of ", x.shape().ToString());
    std::vector<int64_t> dims;
    for (int i = 0; i < x.shape().rank(); ++i) {
      if (i != axis_) dims.push_back(x.shape().dim(i));
    }
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    int64_t outer, inner;
    SplitAround(x.shape(), axis_, &outer, &inner);
    const T* px = x.data<T>();
    int64_t* py = y->data<int64_t>();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        const T* base = px + o * len * inner + in;
        int64_t best = 0;
        for (int64_t k = 1; k < len; ++k) {
          if (base[k * inner] > base[best * inner]) best = k;  // first maximum wins
        }
        py[o * inner + in] = best;
      }
    }
    return Status::OK();
  }

 private:
  int axis_;
};

template <typename Index>
Status CheckIndices(KernelContext* ctx, const Index* idx, int64_t n, int64_t rows) {
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= rows) {
      return ctx->Error("index ", static_cast<int64_t>(idx[i]), " at position ", i,
                        " is out of range [0, ", rows, ")");
    }
  }
  return Status::OK();
}

class GatherKernel : public OpKernel {
 public:
  explicit GatherKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &params = ctx->input(0), &indices = ctx->input(1);
    std::vector<int64_t> dims = indices.shape().dims();
    for (int i = 1; i < params.shape().rank(); ++i) dims.push_back(params.shape().dim(i));
    Tensor* y = ctx->allocate_output(0, Shape(dims));
    const int64_t rows = params.shape().dim(0), n = indices.num_elements();
    const size_t row_bytes = rows ? params.bytes() / rows : 0;
    if (indices.dtype() == DType::kInt32) {
      return Copy(ctx, params, indices.data<int32_t>(), n, rows, row_bytes, y);
    }
    return Copy(ctx, params, indices.data<int64_t>(), n, rows, row_bytes, y);
  }

 private:
  template <typename Index>
  Status Copy(KernelContext* ctx, const Tensor& params, const Index* idx, int64_t n, int64_t rows,
              size_t row_bytes, Tensor* y) {
    MPIFLOW_RETURN_IF_ERROR(CheckIndices(ctx, idx, n, rows));
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(static_cast<char*>(y->raw()) + i * row_bytes,
                  static_cast<const char*>(params.raw()) + idx[i] * row_bytes, row_bytes);
    }
    return Status::OK();
  }
};

// An id that names no row at all (NaN, or too large for an int64): EmbeddingBag's error.
constexpr int64_t kNotAnId = std::numeric_limits<int64_t>::max();

// A float id as a row: -1 for none (negative), the id truncated, or kNotAnId.
template <typename F>
int64_t FloatBagId(F v) {
  if (v < 0) return -1;
  if (!(v < static_cast<F>(kNotAnId))) return kNotAnId;  // NaN or beyond int64
  return static_cast<int64_t>(v);
}

// Bag b's j-th id as a row: -1 for none (a negative id), else the id truncated; ids of any of
// EmbeddingBag's dtypes.
inline int64_t BagId(const Tensor& ids, int64_t k) {
  switch (ids.dtype()) {
    case DType::kFloat32:
      return FloatBagId(ids.data<float>()[k]);
    case DType::kFloat64:
      return FloatBagId(ids.data<double>()[k]);
    case DType::kInt32:
      return std::max<int64_t>(-1, ids.data<int32_t>()[k]);
    default:
      return std::max<int64_t>(-1, ids.data<int64_t>()[k]);
  }
}

// out[b] = the sum of table[id] over bag b's ids in position order (mean: / their count).
template <typename T>
class EmbeddingBagKernel : public OpKernel {
 public:
  explicit EmbeddingBagKernel(const KernelInitContext& c)
      : OpKernel(c.node), mean_(c.node.attr<std::string>("combiner") == "mean") {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &table = ctx->input(0), &ids = ctx->input(1);
    const int64_t rows = table.shape().dim(0), dim = table.shape().dim(1);
    const int64_t batch = ids.shape().dim(0), n = ids.shape().dim(1);
    Tensor* y = ctx->allocate_output(0, Shape{batch, dim});  // (batch, dim)
    y->FillZero();
    const T* w = table.data<T>();
    T* out = y->data<T>();
    for (int64_t b = 0; b < batch; ++b) {
      T* o = out + b * dim;
      int64_t count = 0;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t id = BagId(ids, b * n + j);
        if (id < 0) continue;
        if (id == kNotAnId) {
          return ctx->Error("id at position ", b * n + j,
                            " is not a row number (NaN or beyond int64); the table has ", rows,
                            " rows");
        }
        if (id >= rows) {
          return ctx->Error("index ", id, " at position ", b * n + j, " is out of range [0, ", rows,
                            ")");
        }
        const T* row = w + id * dim;
        for (int64_t c = 0; c < dim; ++c) o[c] += row[c];
        ++count;
      }
      if (mean_ && count > 0) {
        const T k = static_cast<T>(count);
        for (int64_t c = 0; c < dim; ++c) o[c] /= k;
      }
    }
    return Status::OK();
  }

 private:
  bool mean_;
};

// values[k] = dy[b] (mean: / bag b's count) for the k-th id used, indices[k] = that id.
template <typename T>
class EmbeddingBagGradKernel : public OpKernel {
 public:
  explicit EmbeddingBagGradKernel(const KernelInitContext& c)
      : OpKernel(c.node), mean_(c.node.attr<std::string>("combiner") == "mean") {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &dy = ctx->input(0), &ids = ctx->input(1);
    const int64_t dim = ctx->input(2).shape().dim(1);
    const int64_t batch = ids.shape().dim(0), n = ids.shape().dim(1);
    if (dy.shape() != Shape{batch, dim}) {
      return ctx->Error("dy ", dy.shape().ToString(), " does not match ", batch, " bags of ", dim);
    }
    int64_t used = 0;
    for (int64_t k = 0; k < batch * n; ++k) used += BagId(ids, k) >= 0;
    Tensor* values = ctx->allocate_output(0, Shape{used, dim});  // (used, dim)
    Tensor* indices = ctx->allocate_output(1, Shape{used});      // (used) int64
    T* v = values->data<T>();
    int64_t* at = indices->data<int64_t>();
    for (int64_t b = 0; b < batch; ++b) {
      int64_t count = 0;
      for (int64_t j = 0; j < n; ++j) count += BagId(ids, b * n + j) >= 0;
      const T* g = dy.data<T>() + b * dim;
      const T k = static_cast<T>(count);
      for (int64_t j = 0; j < n; ++j) {
        const int64_t id = BagId(ids, b * n + j);
        if (id < 0) continue;
        *at++ = id;
        for (int64_t c = 0; c < dim; ++c) v[c] = mean_ ? g[c] / k : g[c];
        v += dim;
      }
    }
    return Status::OK();
  }

 private:
  bool mean_;
};

template <typename T>
class IndexedSlicesKernel : public OpKernel {
 public:
  explicit IndexedSlicesKernel(const KernelInitContext& c) : OpKernel(c.node) {}
  Status Compute(KernelContext* ctx) override {
    const Tensor &values = ctx->input(0), &indices = ctx->input(1), &like = ctx->input(2);
    Tensor* y = ctx->allocate_output(0, like.shape());
    y->FillZero();
    const int64_t n = indices.num_elements(), rows = like.shape().dim(0);
    if (values.shape().dim(0) != n) {
      return ctx->Error("values ", values.shape().ToString(), " and indices ",
                        indices.shape().ToString(), " disagree on the number of rows");
    }
    const int64_t width = rows ? like.num_elements() / rows : 0;
    if (indices.dtype() == DType::kInt32)
      return Scatter(ctx, values, indices.data<int32_t>(), n, rows, width, y);
    return Scatter(ctx, values, indices.data<int64_t>(), n, rows, width, y);
  }

 private:
  template <typename Index>
  Status Scatter(KernelContext* ctx, const Tensor& values, const Index* idx, int64_t n,
                 int64_t rows, int64_t width, Tensor* y) {
    MPIFLOW_RETURN_IF_ERROR(CheckIndices(ctx, idx, n, rows));
    const T* v = values.data<T>();
    T* out = y->data<T>();
    for (int64_t i = 0; i < n; ++i) {
      T* row = out + idx[i] * width;
      for (int64_t j = 0; j < width; ++j) row[j] += v[i * width + j];
    }
    return Status::OK();
  }
};

}  // namespace

void RegisterArrayKernels(KernelRegistry& r) {
  const DType any = DType::kInvalid;
  RegisterKernel<PlaceholderKernel>(r, "Placeholder", kCpu, any);
  RegisterKernel<ConstKernel>(r, "Const", kCpu, any);
  RegisterKernel<ZerosKernel>(r, "Zeros", kCpu, any);
  // These three never read their inputs' memory: the same kernel serves every device.
  for (const char* device : {kCpu, kCuda}) {
    RegisterKernel<IdentityKernel>(r, "Identity", device, any);
    RegisterKernel<NoOpKernel>(r, "NoOp", device, any);
    RegisterKernel<ReshapeKernel>(r, "Reshape", device, any);
  }
  RegisterKernel<TransposeKernel>(r, "Transpose", kCpu, any);
  RegisterKernel<ConcatKernel>(r, "Concat", kCpu, any);
  RegisterKernel<SliceKernel>(r, "Slice", kCpu, any);
  RegisterKernel<SliceGradKernel>(r, "SliceGrad", kCpu, any);
  RegisterKernel<CastKernel>(r, "Cast", kCpu, any);
  RegisterKernel<GatherKernel>(r, "Gather", kCpu, any);
  RegisterKernel<EqualKernel<float>>(r, "Equal", kCpu, DType::kFloat32);
  RegisterKernel<EqualKernel<double>>(r, "Equal", kCpu, DType::kFloat64);
  RegisterKernel<EqualKernel<int32_t>>(r, "Equal", kCpu, DType::kInt32);
  RegisterKernel<EqualKernel<int64_t>>(r, "Equal", kCpu, DType::kInt64);
  RegisterKernel<EqualKernel<bool>>(r, "Equal", kCpu, DType::kBool);
  RegisterKernel<ArgMaxKernel<float>>(r, "ArgMax", kCpu, DType::kFloat32);
  RegisterKernel<ArgMaxKernel<double>>(r, "ArgMax", kCpu, DType::kFloat64);
  RegisterKernel<ArgMaxKernel<int32_t>>(r, "ArgMax", kCpu, DType::kInt32);
  RegisterKernel<ArgMaxKernel<int64_t>>(r, "ArgMax", kCpu, DType::kInt64);
  RegisterKernel<EmbeddingBagKernel<float>>(r, "EmbeddingBag", kCpu, DType::kFloat32);
  RegisterKernel<EmbeddingBagKernel<double>>(r, "EmbeddingBag", kCpu, DType::kFloat64);
  RegisterKernel<EmbeddingBagGradKernel<float>>(r, "EmbeddingBagGrad", kCpu, DType::kFloat32);
  RegisterKernel<EmbeddingBagGradKernel<double>>(r, "EmbeddingBagGrad", kCpu, DType::kFloat64);
  RegisterKernel<IndexedSlicesKernel<float>>(r, "IndexedSlices", kCpu, DType::kFloat32);
  RegisterKernel<IndexedSlicesKernel<double>>(r, "IndexedSlices", kCpu, DType::kFloat64);
}

}  // namespace mpiflow
