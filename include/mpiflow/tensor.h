// DType, Shape and Tensor: the typed n-dimensional values that flow along graph edges.
// Not the graph or kernels: a Tensor is just dtype + shape + a ref-counted, 64-byte-aligned buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "mpiflow/status.h"

namespace mpiflow {

enum class DType : uint8_t { kInvalid = 0, kFloat32, kFloat64, kInt32, kInt64, kFloat16, kBool };

size_t DTypeSize(DType t);
const char* DTypeName(DType t);
StatusOr<DType> ParseDType(const std::string& name);
bool IsFloating(DType t);  // float16 counts (it is storage only: kernels compute on float32/64)

// IEEE binary16, a storage type: Cast converts to and from float32.
struct Half {
  uint16_t bits = 0;
};
Half FloatToHalf(float f);
float HalfToFloat(Half h);
// bfloat16: float32's top 16 bits (8-bit exponent, 7-bit mantissa); a wire format for
// compressed gradients (--allreduce-compression bf16), not a tensor dtype. Rounds to nearest,
// ties to even; NaN stays NaN (quiet), overflow rounds to infinity.
// Inline and branch-free, so that loops over arrays of them vectorise.
inline uint16_t FloatToBf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;  // ties to even (may carry
                                                                    // into infinity)
  const uint32_t nan = (x >> 16) | 0x40u;                           // quiet, sign kept
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
inline float Bf16ToFloat(uint16_t b) {
  const uint32_t x = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

template <typename T>
struct DTypeOf;
template <>
struct DTypeOf<float> {
  static constexpr DType value = DType::kFloat32;
};
template <>
struct DTypeOf<double> {
  static constexpr DType value = DType::kFloat64;
};
template <>
struct DTypeOf<int32_t> {
  static constexpr DType value = DType::kInt32;
};
template <>
struct DTypeOf<int64_t> {
  static constexpr DType value = DType::kInt64;
};
template <>
struct DTypeOf<Half> {
  static constexpr DType value = DType::kFloat16;
};
template <>
struct DTypeOf<bool> {
  static constexpr DType value = DType::kBool;
};

// Dimensions of a tensor; -1 marks a dimension unknown until run time (a batch dimension).
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}

  int rank() const { return static_cast<int>(dims_.size()); }
  int64_t dim(int i) const { return dims_[i]; }
  const std::vector<int64_t>& dims() const { return dims_; }
  void set_dim(int i, int64_t d) { dims_[i] = d; }
  bool IsFullyDefined() const;
  // Product of the dimensions; only meaningful when fully defined (1 for a scalar).
  int64_t num_elements() const {
    int64_t n = 1;
    for (int64_t d : dims_) n *= d;
    return n;
  }
  // True when every known dimension agrees (unknown matches anything).
  bool IsCompatibleWith(const Shape& other) const;
  std::string ToString() const;  // "[64,784]", "[?,784]"
  bool operator==(const Shape& o) const { return dims_ == o.dims_; }
  bool operator!=(const Shape& o) const { return dims_ != o.dims_; }

 private:
  std::vector<int64_t> dims_;
};

// Where a Buffer's memory comes from. The host's (HostAllocator(), every tensor's unless said
// otherwise) caches freed buffers by size class; an accelerator's (kernels/cuda) hands out
// memory only its own kernels and copies may touch. Thread-safe.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* Allocate(size_t bytes) = 0;
  virtual void Free(void* p, size_t bytes) = 0;
  // False: device memory. Such a tensor's data<T>() is a device address: never dereference it
  // on the host, and host-side helpers (DeepCopy, FillZero, ToVector, BitEqual) refuse it.
  virtual bool host() const = 0;
  virtual const char* name() const = 0;  // "cpu", "cuda:0"
};
Allocator* HostAllocator();

// A raw allocation from an allocator; freed back to it when the last Tensor lets go.
class Buffer {
 public:
  explicit Buffer(size_t bytes, Allocator* allocator = HostAllocator());
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Allocator* allocator() const { return allocator_; }

 private:
  Allocator* allocator_;
  void* data_;
  size_t bytes_;
};

class Tensor {
 public:
  Tensor() = default;                       // an empty, invalid tensor (dtype kInvalid)
  Tensor(DType dtype, const Shape& shape);  // allocates host memory; contents uninitialised
  // Allocates from `allocator` (a device's memory, say); contents uninitialised.
  Tensor(DType dtype, const Shape& shape, Allocator* allocator);
  // A tensor with a dtype and shape but no storage yet: an uninitialised variable.
  static Tensor Unallocated(DType dtype, const Shape& shape);

  template <typename T>
  static Tensor Scalar(T v) {
    Tensor t(DTypeOf<T>::value, Shape{});
    *t.data<T>() = v;
    return t;
  }
  template <typename T>
  static Tensor FromVector(const Shape& shape, const std::vector<T>& values) {
    Tensor t(DTypeOf<T>::value, shape);
    MPIFLOW_CHECK(static_cast<int64_t>(values.size()) == t.num_elements());
    if (!values.empty()) std::memcpy(t.raw(), values.data(), values.size() * sizeof(T));
    return t;
  }
  template <typename T>
  std::vector<T> ToVector() const {
    MPIFLOW_CHECK(on_host());
    const T* p = data<T>();
    return std::vector<T>(p, p + num_elements());
  }

  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int64_t num_elements() const { return num_elements_; }
  size_t bytes() const { return static_cast<size_t>(num_elements()) * DTypeSize(dtype_); }
  bool valid() const { return dtype_ != DType::kInvalid; }
  bool allocated() const { return buffer_ != nullptr; }
  const Buffer* buffer() const { return buffer_.get(); }
  // False when the buffer is device memory (see Allocator::host); an unallocated tensor counts
  // as host.
  bool on_host() const { return !buffer_ || buffer_->allocator()->host(); }

  template <typename T>
  T* data() const {
    return static_cast<T*>(raw());
  }
  void* raw() const { return buffer_ ? static_cast<char*>(buffer_->data()) + offset_ : nullptr; }

  // Same buffer, another shape with the same number of elements.
  Tensor Reshaped(const Shape& shape) const;
  // Same buffer: `shape.num_elements()` elements from element `offset` on (no copy), e.g. one
  // gradient of an allreduced bucket.
  Tensor View(int64_t offset, const Shape& shape) const;
  Tensor DeepCopy() const;                            // host tensors only
  void FillZero();                                    // host tensors only
  std::string DebugString(int max_values = 8) const;  // a device tensor's values are not shown
  // Bit-identical dtype, shape and contents.
  bool BitEqual(const Tensor& other) const;

 private:
  DType dtype_ = DType::kInvalid;
  Shape shape_;
  int64_t num_elements_ = 0;        // shape_.num_elements(), cached for kernels' loops
  std::shared_ptr<Buffer> buffer_;  // >= offset_ + bytes(), 64-byte aligned
  size_t offset_ = 0;               // of this tensor's first byte in buffer_ (a View)
};

// Allocator statistics, for benchmarks and tests of the buffer cache.
struct AllocatorStats {
  int64_t bytes_in_use = 0;
  int64_t bytes_cached = 0;
  int64_t allocations = 0;  // calls that reached the system allocator
};
AllocatorStats CpuAllocatorStats();

}  // namespace mpiflow
