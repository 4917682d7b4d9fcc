// Status and StatusOr: the one error currency of mpiflow (bad input, shapes, I/O, MPI).
// Not an exception mechanism: library code returns these and never exits or aborts on user error.
#pragma once

#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace mpiflow {

enum class Code {
  kOk = 0,
  kInvalidArgument,
  kNotFound,
  kFailedPrecondition,
  kOutOfRange,
  kUnimplemented,
  kInternal,
  kDataLoss,
  kAborted,
  kUnavailable,
};

const char* CodeName(Code code);

// Concatenates anything that streams into a std::ostream.
template <typename... Args>
std::string StrCat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status OK() { return Status(); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  std::string ToString() const;

  // Returns a copy with `context` prepended ("context: message"), for adding the "where".
  Status WithContext(const std::string& context) const;
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

std::ostream& operator<<(std::ostream& os, const Status& s);

template <typename... Args>
Status InvalidArgument(const Args&... a) {
  return Status(Code::kInvalidArgument, StrCat(a...));
}
template <typename... Args>
Status NotFound(const Args&... a) {
  return Status(Code::kNotFound, StrCat(a...));
}
template <typename... Args>
Status FailedPrecondition(const Args&... a) {
  return Status(Code::kFailedPrecondition, StrCat(a...));
}
template <typename... Args>
Status OutOfRange(const Args&... a) {
  return Status(Code::kOutOfRange, StrCat(a...));
}
template <typename... Args>
Status Unimplemented(const Args&... a) {
  return Status(Code::kUnimplemented, StrCat(a...));
}
template <typename... Args>
Status Internal(const Args&... a) {
  return Status(Code::kInternal, StrCat(a...));
}
template <typename... Args>
Status DataLoss(const Args&... a) {
  return Status(Code::kDataLoss, StrCat(a...));
}
template <typename... Args>
Status Unavailable(const Args&... a) {
  return Status(Code::kUnavailable, StrCat(a...));
}

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& s) : v_(s) {  // NOLINT: implicit by design
    if (s.ok()) v_ = Status(Code::kInternal, "StatusOr constructed from an OK status");
  }
  StatusOr(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace mpiflow

// Returns the Status from the enclosing function if `expr` is not OK.
#define MPIFLOW_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    ::mpiflow::Status _mpiflow_status = (expr);        \
    if (!_mpiflow_status.ok()) return _mpiflow_status; \
  } while (0)

// For programmer bugs only (broken invariants), never for user input.
#define MPIFLOW_CHECK(cond)                                                               \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::cerr << __FILE__ << ":" << __LINE__ << ": internal check failed: " #cond "\n"; \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)
