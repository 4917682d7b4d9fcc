// Conv2D and its two gradients on the GPU through cuDNN (its convolution API), float32, NHWC
// input and HWIO filter as the CPU kernels take them. cuDNN wants the filter as (oc, kh, kw, c):
// it is transposed for each call (and the filter gradient back). cuDNN pads symmetrically; a SAME
// padding with more at the bottom or right (odd total) is done by copying the input into a
// zero-padded buffer (and cropping the input gradient). Precision fp32: plain float32 arithmetic
// (CUDNN_FMA_MATH: no TF32); tf32, bf16 and fp16 alike: cuDNN's default math, which is TF32 for
// float32 tensors (no bf16/fp16 rounding in the convolutions).
// Only algorithms cuDNN reports deterministic, chosen once per shape.
#include <cudnn.h>

#include <map>
#include <mutex>
#include <tuple>

#include "cuda_check.h"
#include "cuda_kernels.h"
#include "mpiflow/window.h"

namespace mpiflow {
namespace cuda {
namespace {

#define MPIFLOW_GRID_LOOP(i, n)                                                          \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

Status CheckCudnn(cudnnStatus_t e, const char* call, const std::string& where) {
  if (e == CUDNN_STATUS_SUCCESS) return Status::OK();
  return Internal(where, ": ", call, " failed: ", cudnnGetErrorString(e));
}
#define MPIFLOW_CUDNN(call, where) MPIFLOW_RETURN_IF_ERROR(CheckCudnn((call), #call, (where)))

// out (cols, rows) = in (rows, cols)^T
template <typename T>
__global__ void TransposeFn(int64_t rows, int64_t cols, const T* in, T* out) {
  MPIFLOW_GRID_LOOP(i, rows * cols) {
    const int64_t r = i / cols, c = i % cols;
    out[c * rows + r] = in[i];
  }
}

// Between x (n, h, w, c) and its zero-padded copy (n, hp, wp, c) with x at (top, left):
// forward pads, !forward crops (the padded gradient back to x's shape).
template <typename T>
__global__ void PadFn(int64_t n, int64_t h, int64_t w, int64_t c, int64_t hp, int64_t wp,
                      int64_t top, int64_t left, const T* in, T* out, bool forward) {
  const int64_t total = n * hp * wp * c;
  MPIFLOW_GRID_LOOP(i, total) {
    const int64_t ch = i % c, x = (i / c) % wp, y = (i / (c * wp)) % hp, b = i / (c * wp * hp);
    const int64_t sy = y - top, sx = x - left;
    const bool inside = sy >= 0 && sy < h && sx >= 0 && sx < w;
    const int64_t j = ((b * h + sy) * w + sx) * c + ch;
    if (forward) {
      out[i] = inside ? in[j] : T(0);
    } else if (inside) {
      out[j] = in[i];
    }
  }
}

struct Geom {
  int64_t n, h, w, c, kh, kw, oc, oh, ow, sh, sw;
  int64_t top, left;     // padding before (SAME) as the CPU kernels place it
  int64_t hp, wp;        // the padded input cuDNN sees (h, w when cuDNN pads by itself)
  int64_t pad_h, pad_w;  // cuDNN's symmetric padding (0 when the input is padded explicitly)
  bool explicit_pad;
};

Status MakeGeom(KernelContext* ctx, const Shape& in, const Shape& f, Geom* g) {
  const auto& s = ctx->node().attr<std::vector<int64_t>>("strides");
  const auto& pad = ctx->node().attr<std::string>("padding");
  if (in.rank() != 4 || f.rank() != 4) {
    return ctx->Error("input ", in.ToString(), " must be NHWC and filter ", f.ToString(), " HWIO");
  }
  if (in.dim(3) != f.dim(2)) {
    return ctx->Error("input has ", in.dim(3), " channels, the filter expects ", f.dim(2));
  }
  g->n = in.dim(0), g->h = in.dim(1), g->w = in.dim(2), g->c = in.dim(3);
  g->kh = f.dim(0), g->kw = f.dim(1), g->oc = f.dim(3), g->sh = s[0], g->sw = s[1];
  const Status rows = WindowGeometry(g->h, g->kh, g->sh, pad, &g->oh, &g->top);
  const Status st = rows.ok() ? WindowGeometry(g->w, g->kw, g->sw, pad, &g->ow, &g->left) : rows;
  if (!st.ok()) return ctx->Error(st.message());
  const int64_t total_h = std::max<int64_t>((g->oh - 1) * g->sh + g->kh - g->h, 0);
  const int64_t total_w = std::max<int64_t>((g->ow - 1) * g->sw + g->kw - g->w, 0);
  g->explicit_pad = pad == "SAME" && (total_h != 2 * g->top || total_w != 2 * g->left);
  if (g->explicit_pad) {
    g->hp = g->h + total_h, g->wp = g->w + total_w, g->pad_h = 0, g->pad_w = 0;
  } else {
    g->hp = g->h, g->wp = g->w, g->pad_h = g->top, g->pad_w = g->left;
  }
  return Status::OK();
}

// The descriptors of one convolution, made per call (cheap) and freed with it.
struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t f = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~Descriptors() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (f) cudnnDestroyFilterDescriptor(f);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
  Status Make(const Geom& g, MathPrecision precision, const std::string& where) {
    auto i = [](int64_t v) { return static_cast<int>(v); };
    MPIFLOW_CUDNN(cudnnCreateTensorDescriptor(&x), where);
    MPIFLOW_CUDNN(cudnnCreateTensorDescriptor(&y), where);
    MPIFLOW_CUDNN(cudnnCreateFilterDescriptor(&f), where);
    MPIFLOW_CUDNN(cudnnCreateConvolutionDescriptor(&conv), where);
    MPIFLOW_CUDNN(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, i(g.n), i(g.c),
                                             i(g.hp), i(g.wp)),
                  where);
    MPIFLOW_CUDNN(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NHWC, CUDNN_DATA_FLOAT, i(g.n),
                                             i(g.oc), i(g.oh), i(g.ow)),
                  where);
    MPIFLOW_CUDNN(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NHWC, i(g.oc),
                                             i(g.c), i(g.kh), i(g.kw)),
                  where);
    MPIFLOW_CUDNN(cudnnSetConvolution2dDescriptor(conv, i(g.pad_h), i(g.pad_w), i(g.sh), i(g.sw), 1,
                                                  1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                  where);
    MPIFLOW_CUDNN(
        cudnnSetConvolutionMathType(
            conv, precision == MathPrecision::kFp32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH),
        where);
    return Status::OK();
  }
};

using GeomKey = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t>;
GeomKey KeyOf(const Geom& g) { return {g.n, g.hp, g.wp, g.c, g.oc, g.kh, g.kw}; }

// The fastest deterministic algorithm of cuDNN's ranked list.
template <typename Perf, typename Algo>
Status Pick(const Perf* perf, int count, const std::string& where, Algo* algo, size_t* ws) {
  for (int i = 0; i < count; ++i) {
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].determinism == CUDNN_DETERMINISTIC) {
      *algo = perf[i].algo;
      *ws = perf[i].memory;
      return Status::OK();
    }
  }
  return Unimplemented(where, ": cuDNN offers no deterministic algorithm for this convolution");
}

class ConvBase : public OpKernel {
 public:
  explicit ConvBase(const KernelInitContext& c)
      : OpKernel(c.node),
        where_(c.node.op() + " node '" + c.node.name() + "'"),
        precision_(c.precision) {}

 protected:
  cudnnHandle_t Dnn() { return Dev().dnn(); }
  // The filter (kh, kw, c, oc) as cuDNN's (oc, kh, kw, c).
  Tensor ToKrsc(KernelContext* ctx, const Tensor& f, const Geom& g) {
    Tensor t(DType::kFloat32, Shape{g.oc, g.kh, g.kw, g.c}, ctx->allocator());
    const int64_t rows = g.kh * g.kw * g.c;
    TransposeFn<<<Blocks(rows * g.oc), kThreads, 0, Stream()>>>(rows, g.oc, f.data<float>(),
                                                                t.data<float>());
    return t;
  }
  // x, or its zero-padded copy where cuDNN cannot pad it.
  Tensor Padded(KernelContext* ctx, const Tensor& x, const Geom& g) {
    if (!g.explicit_pad) return x;
    Tensor p(DType::kFloat32, Shape{g.n, g.hp, g.wp, g.c}, ctx->allocator());
    PadFn<<<Blocks(p.num_elements()), kThreads, 0, Stream()>>>(
        g.n, g.h, g.w, g.c, g.hp, g.wp, g.top, g.left, x.data<float>(), p.data<float>(), true);
    return p;
  }
  Tensor Workspace(KernelContext* ctx, size_t bytes) {
    return Tensor(DType::kFloat32, Shape{static_cast<int64_t>((bytes + 3) / 4)}, ctx->allocator());
  }
  std::string where_;
  MathPrecision precision_;
};

class Conv2DKernel : public ConvBase {
 public:
  using ConvBase::ConvBase;
  Status Compute(KernelContext* ctx) override {
    std::lock_guard<std::mutex> lock(Dev().dnn_mutex());  // one thread in cuDNN's handle
    const Tensor &x = ctx->input(0), &f = ctx->input(1);
    Geom g;
    MPIFLOW_RETURN_IF_ERROR(MakeGeom(ctx, x.shape(), f.shape(), &g));
    Tensor* y = ctx->allocate_output(0, Shape{g.n, g.oh, g.ow, g.oc});  // (n, oh, ow, oc)
    if (y->num_elements() == 0) return Status::OK();
    if (g.c == 0) {  // no input channels: zeros, as the CPU's (cuDNN takes no empty dimension)
      MPIFLOW_CUDA(cudaMemsetAsync(y->raw(), 0, y->bytes(), Stream()), where_);
      return Status::OK();
    }
    Descriptors d;
    MPIFLOW_RETURN_IF_ERROR(d.Make(g, precision_, where_));
    auto it = algos_.find(KeyOf(g));
    if (it == algos_.end()) {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      int count = 0;
      MPIFLOW_CUDNN(
          cudnnGetConvolutionForwardAlgorithm_v7(Dnn(), d.x, d.f, d.conv, d.y,
                                                 CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &count, perf),
          where_);
      std::pair<cudnnConvolutionFwdAlgo_t, size_t> choice;
      MPIFLOW_RETURN_IF_ERROR(Pick(perf, count, where_, &choice.first, &choice.second));
      it = algos_.emplace(KeyOf(g), choice).first;
    }
    const Tensor xp = Padded(ctx, x, g), fk = ToKrsc(ctx, f, g);
    Tensor ws = Workspace(ctx, it->second.second);
    const float one = 1, zero = 0;
    MPIFLOW_CUDNN(cudnnConvolutionForward(Dnn(), &one, d.x, xp.data<float>(), d.f, fk.data<float>(),
                                          d.conv, it->second.first, ws.raw(), it->second.second,
                                          &zero, d.y, y->data<float>()),
                  where_);
    return LaunchStatus(ctx);
  }

 private:
  std::map<GeomKey, std::pair<cudnnConvolutionFwdAlgo_t, size_t>> algos_;
};

class Conv2DBackpropInputKernel : public ConvBase {
 public:
  using ConvBase::ConvBase;
  Status Compute(KernelContext* ctx) override {
    std::lock_guard<std::mutex> lock(Dev().dnn_mutex());  // one thread in cuDNN's handle
    const Tensor &x = ctx->input(0), &f = ctx->input(1), &dy = ctx->input(2);
    Geom g;
    MPIFLOW_RETURN_IF_ERROR(MakeGeom(ctx, x.shape(), f.shape(), &g));
    if (dy.shape() != Shape{g.n, g.oh, g.ow, g.oc}) {
      return ctx->Error("dy ", dy.shape().ToString(), " does not match the convolution output");
    }
    Tensor* dx = ctx->allocate_output(0, x.shape());
    if (dx->num_elements() == 0) return Status::OK();
    if (g.oc == 0 || g.oh * g.ow == 0) {  // nothing flows back: zeros, as the CPU's
      MPIFLOW_CUDA(cudaMemsetAsync(dx->raw(), 0, dx->bytes(), Stream()), where_);
      return Status::OK();
    }
    Descriptors d;
    MPIFLOW_RETURN_IF_ERROR(d.Make(g, precision_, where_));
    auto it = algos_.find(KeyOf(g));
    if (it == algos_.end()) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      int count = 0;
      MPIFLOW_CUDNN(
          cudnnGetConvolutionBackwardDataAlgorithm_v7(
              Dnn(), d.f, d.y, d.conv, d.x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &count, perf),
          where_);
      std::pair<cudnnConvolutionBwdDataAlgo_t, size_t> choice;
      MPIFLOW_RETURN_IF_ERROR(Pick(perf, count, where_, &choice.first, &choice.second));
      it = algos_.emplace(KeyOf(g), choice).first;
    }
    const Tensor fk = ToKrsc(ctx, f, g);
    Tensor dxp = g.explicit_pad
                     ? Tensor(DType::kFloat32, Shape{g.n, g.hp, g.wp, g.c}, ctx->allocator())
                     : *dx;
    Tensor ws = Workspace(ctx, it->second.second);
    const float one = 1, zero = 0;
    MPIFLOW_CUDNN(cudnnConvolutionBackwardData(Dnn(), &one, d.f, fk.data<float>(), d.y,
                                               dy.data<float>(), d.conv, it->second.first, ws.raw(),
                                               it->second.second, &zero, d.x, dxp.data<float>()),
                  where_);
    if (g.explicit_pad) {
      PadFn<<<Blocks(dxp.num_elements()), kThreads, 0, Stream()>>>(g.n, g.h, g.w, g.c, g.hp, g.wp,
                                                                   g.top, g.left, dxp.data<float>(),
                                                                   dx->data<float>(), false);
    }
    return LaunchStatus(ctx);
  }

 private:
  std::map<GeomKey, std::pair<cudnnConvolutionBwdDataAlgo_t, size_t>> algos_;
};

class Conv2DBackpropFilterKernel : public ConvBase {
 public:
  using ConvBase::ConvBase;
  Status Compute(KernelContext* ctx) override {
    std::lock_guard<std::mutex> lock(Dev().dnn_mutex());  // one thread in cuDNN's handle
    const Tensor &x = ctx->input(0), &f = ctx->input(1), &dy = ctx->input(2);
    Geom g;
    MPIFLOW_RETURN_IF_ERROR(MakeGeom(ctx, x.shape(), f.shape(), &g));
    if (dy.shape() != Shape{g.n, g.oh, g.ow, g.oc}) {
      return ctx->Error("dy ", dy.shape().ToString(), " does not match the convolution output");
    }
    Tensor* df = ctx->allocate_output(0, f.shape());  // (kh, kw, c, oc)
    if (df->num_elements() == 0) return Status::OK();
    if (g.n == 0 || g.oh * g.ow == 0) {
      MPIFLOW_CUDA(cudaMemsetAsync(df->raw(), 0, df->bytes(), Stream()), where_);
      return Status::OK();
    }
    Descriptors d;
    MPIFLOW_RETURN_IF_ERROR(d.Make(g, precision_, where_));
    auto it = algos_.find(KeyOf(g));
    if (it == algos_.end()) {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      int count = 0;
      MPIFLOW_CUDNN(
          cudnnGetConvolutionBackwardFilterAlgorithm_v7(
              Dnn(), d.x, d.y, d.conv, d.f, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &count, perf),
          where_);
      std::pair<cudnnConvolutionBwdFilterAlgo_t, size_t> choice;
      MPIFLOW_RETURN_IF_ERROR(Pick(perf, count, where_, &choice.first, &choice.second));
      it = algos_.emplace(KeyOf(g), choice).first;
    }
    const Tensor xp = Padded(ctx, x, g);
    Tensor dk(DType::kFloat32, Shape{g.oc, g.kh, g.kw, g.c}, ctx->allocator());  // (oc, kh, kw, c)
    Tensor ws = Workspace(ctx, it->second.second);
    const float one = 1, zero = 0;
    MPIFLOW_CUDNN(cudnnConvolutionBackwardFilter(
                      Dnn(), &one, d.x, xp.data<float>(), d.y, dy.data<float>(), d.conv,
                      it->second.first, ws.raw(), it->second.second, &zero, d.f, dk.data<float>()),
                  where_);
    const int64_t cols = g.kh * g.kw * g.c;  // (oc, cols) -> (cols, oc)
    TransposeFn<<<Blocks(cols * g.oc), kThreads, 0, Stream()>>>(g.oc, cols, dk.data<float>(),
                                                                df->data<float>());
    return LaunchStatus(ctx);
  }

 private:
  std::map<GeomKey, std::pair<cudnnConvolutionBwdFilterAlgo_t, size_t>> algos_;
};

}  // namespace

void RegisterConvKernels(KernelRegistry& r) {
  RegisterKernel<Conv2DKernel>(r, "Conv2D", kCuda, DType::kFloat32);
  RegisterKernel<Conv2DBackpropInputKernel>(r, "Conv2DBackpropInput", kCuda, DType::kFloat32);
  RegisterKernel<Conv2DBackpropFilterKernel>(r, "Conv2DBackpropFilter", kCuda, DType::kFloat32);
}

}  // namespace cuda
}  // namespace mpiflow
