// DType helpers, Shape, and Tensor with the CPU allocator behind it.
// The allocator caches freed buffers by exact size: a training step allocates the same sizes every
// step, so after the first step no buffer reaches malloc (and no fresh page is faulted in).
#include "mpiflow/tensor.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <new>
#include <vector>

namespace mpiflow {

size_t DTypeSize(DType t) {
  switch (t) {
    case DType::kFloat32:
    case DType::kInt32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kFloat16:
      return 2;
    case DType::kBool:
      return 1;
    case DType::kInvalid:
      return 0;
  }
  return 0;
}

const char* DTypeName(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kFloat16:
      return "float16";
    case DType::kBool:
      return "bool";
    case DType::kInvalid:
      return "invalid";
  }
  return "invalid";
}

StatusOr<DType> ParseDType(const std::string& name) {
  for (DType t : {DType::kFloat32, DType::kFloat64, DType::kInt32, DType::kInt64, DType::kFloat16,
                  DType::kBool}) {
    if (name == DTypeName(t)) return t;
  }
  return InvalidArgument("unknown dtype '", name,
                         "' (expected float32, float64, int32, int64, float16 or bool)");
}

bool IsFloating(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat64 || t == DType::kFloat16;
}

Half FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffffu;
  Half h;
  if (((x >> 23) & 0xff) == 0xff) {  // inf or nan
    h.bits = static_cast<uint16_t>(sign | 0x7c00u | (mant ? 0x200u : 0u));
  } else if (exp >= 0x1f) {  // overflow -> inf
    h.bits = static_cast<uint16_t>(sign | 0x7c00u);
  } else if (exp <= 0) {  // subnormal or zero, round to nearest even
    if (exp < -10) {
      h.bits = static_cast<uint16_t>(sign);
    } else {
      mant |= 0x800000u;
      const int shift = 14 - exp;
      uint32_t half_mant = mant >> shift;
      const uint32_t rem = mant & ((1u << shift) - 1);
      const uint32_t halfway = 1u << (shift - 1);
      if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
      h.bits = static_cast<uint16_t>(sign | half_mant);
    }
  } else {
    uint32_t bits = sign | (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
    const uint32_t rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (bits & 1u))) ++bits;  // may carry into exponent: ok
    h.bits = static_cast<uint16_t>(bits);
  }
  return h;
}

float HalfToFloat(Half h) {
  const uint32_t sign = (h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1fu;
  const uint32_t mant = h.bits & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (mant == 0) {
      x = sign;
    } else {  // subnormal: normalise
      float f = std::ldexp(static_cast<float>(mant), -24);
      return sign ? -f : f;
    }
  } else if (exp == 0x1f) {
    x = sign | 0x7f800000u | (mant << 13);
  } else {
    x = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}

bool Shape::IsFullyDefined() const {
  return std::all_of(dims_.begin(), dims_.end(), [](int64_t d) { return d >= 0; });
}

bool Shape::IsCompatibleWith(const Shape& other) const {
  if (rank() != other.rank()) return false;
  for (int i = 0; i < rank(); ++i) {
    if (dims_[i] >= 0 && other.dims_[i] >= 0 && dims_[i] != other.dims_[i]) return false;
  }
  return true;
}

std::string Shape::ToString() const {
  std::string s = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ",";
    s += dims_[i] < 0 ? "?" : std::to_string(dims_[i]);
  }
  return s + "]";
}

namespace {

// Free lists per size class, bounded in total bytes. Thread-safe. Classes are 64-byte steps up
// to 4 KiB, then four per doubling (at most 25% slack): tensors whose size changes every step
// (a sparse gradient's rows, a gathered batch) reuse each other's buffers instead of filling the
// cache with sizes that never come back.
class CpuAllocator : public Allocator {
 public:
  static constexpr size_t kAlignment = 64;
  static constexpr int64_t kMaxCachedBytes = int64_t{256} << 20;

  static size_t SizeClass(size_t bytes) {
    const size_t aligned = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
    if (aligned <= 4096) return aligned;
    size_t top = 4096;  // the largest power of two <= aligned
    while (top <= aligned / 2) top *= 2;
    const size_t step = top / 4;
    return (aligned + step - 1) / step * step;
  }

  void* Allocate(size_t bytes) override {
    const size_t rounded = SizeClass(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bytes_in_use += static_cast<int64_t>(rounded);
      auto it = free_.find(rounded);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        stats_.bytes_cached -= static_cast<int64_t>(rounded);
        return p;
      }
      ++stats_.allocations;
    }
    void* p = ::operator new(rounded, std::align_val_t(kAlignment));
    return p;
  }

  void Free(void* p, size_t bytes) override {
    const size_t rounded = SizeClass(bytes);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.bytes_in_use -= static_cast<int64_t>(rounded);
      if (stats_.bytes_cached + static_cast<int64_t>(rounded) <= kMaxCachedBytes) {
        free_[rounded].push_back(p);
        stats_.bytes_cached += static_cast<int64_t>(rounded);
        return;
      }
    }
    ::operator delete(p, std::align_val_t(kAlignment));
  }

  bool host() const override { return true; }
  const char* name() const override { return "cpu"; }

  AllocatorStats stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  AllocatorStats stats_;
};

CpuAllocator& GlobalCpuAllocator() {
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: buffers may outlive main()
  return *a;
}

}  // namespace

AllocatorStats CpuAllocatorStats() { return GlobalCpuAllocator().stats(); }

Allocator* HostAllocator() { return &GlobalCpuAllocator(); }

Buffer::Buffer(size_t bytes, Allocator* allocator)
    : allocator_(allocator), data_(allocator->Allocate(bytes)), bytes_(bytes) {}
Buffer::~Buffer() { allocator_->Free(data_, bytes_); }

Tensor::Tensor(DType dtype, const Shape& shape) : Tensor(dtype, shape, HostAllocator()) {}

Tensor::Tensor(DType dtype, const Shape& shape, Allocator* allocator)
    : dtype_(dtype), shape_(shape), num_elements_(shape.num_elements()) {
  MPIFLOW_CHECK(shape.IsFullyDefined());
  buffer_ = std::make_shared<Buffer>(bytes(), allocator);
}

Tensor Tensor::Unallocated(DType dtype, const Shape& shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = shape;
  t.num_elements_ = shape.IsFullyDefined() ? shape.num_elements() : 0;
  return t;
}

Tensor Tensor::Reshaped(const Shape& shape) const {
  MPIFLOW_CHECK(shape.num_elements() == num_elements());
  Tensor t = *this;
  t.shape_ = shape;
  t.num_elements_ = shape.num_elements();
  return t;
}

Tensor Tensor::View(int64_t offset, const Shape& shape) const {
  MPIFLOW_CHECK(allocated() && offset >= 0 && shape.IsFullyDefined() &&
                offset + shape.num_elements() <= num_elements());
  Tensor t = *this;
  t.shape_ = shape;
  t.num_elements_ = shape.num_elements();
  t.offset_ = offset_ + static_cast<size_t>(offset) * DTypeSize(dtype_);
  return t;
}

Tensor Tensor::DeepCopy() const {
  if (!allocated()) return *this;
  MPIFLOW_CHECK(on_host());
  Tensor t(dtype_, shape_);
  if (bytes()) std::memcpy(t.raw(), raw(), bytes());
  return t;
}

void Tensor::FillZero() {
  MPIFLOW_CHECK(on_host());
  if (bytes()) std::memset(raw(), 0, bytes());
}

bool Tensor::BitEqual(const Tensor& other) const {
  if (dtype_ != other.dtype_ || shape_ != other.shape_) return false;
  if (!allocated() || !other.allocated()) return allocated() == other.allocated();
  MPIFLOW_CHECK(on_host() && other.on_host());
  return bytes() == 0 || std::memcmp(raw(), other.raw(), bytes()) == 0;
}

std::string Tensor::DebugString(int max_values) const {
  std::ostringstream os;
  os << DTypeName(dtype_) << shape_.ToString();
  if (!allocated()) return os.str() + " (unallocated)";
  if (!on_host()) return os.str() + " (on " + buffer_->allocator()->name() + ")";
  os << " {";
  const int64_t n = std::min<int64_t>(num_elements(), max_values);
  for (int64_t i = 0; i < n; ++i) {
    if (i) os << ", ";
    switch (dtype_) {
      case DType::kFloat32:
        os << data<float>()[i];
        break;
      case DType::kFloat64:
        os << data<double>()[i];
        break;
      case DType::kInt32:
        os << data<int32_t>()[i];
        break;
      case DType::kInt64:
        os << data<int64_t>()[i];
        break;
      case DType::kFloat16:
        os << HalfToFloat(data<Half>()[i]);
        break;
      case DType::kBool:
        os << (data<bool>()[i] ? "true" : "false");
        break;
      case DType::kInvalid:
        break;
    }
  }
  if (num_elements() > n) os << ", ...";
  os << "}";
  return os.str();
}

}  // namespace mpiflow
