// Session's variable access by name, outside a step: read and write whole values or rows, copy
// into a caller's tensor, share a caller's storage (parameter servers' messages), and keep a
// range of rows (a parameter server's part of a table). Not the
// executor (session.cc) and not the kernels that update variables inside a step
// (kernels/cpu/state_kernels.cc).
#include <cstring>
#include <vector>

#include "mpiflow/session.h"
#include "session_resources.h"

namespace mpiflow {

StatusOr<Tensor> Session::ReadVariable(const std::string& name) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot) {
    const Node* node = graph_->FindNode(name);
    if (!node || node->op() != "Variable") return NotFound("no variable named '", name, "'");
    return FailedPrecondition("variable '", name, "' is not initialized");
  }
  if (!slot->value.allocated())
    return FailedPrecondition("variable '", name, "' is not initialized");
  if (!slot->value.on_host()) return device_->CopyAcross(slot->value);
  return slot->value.DeepCopy();
}

Status Session::WriteVariable(const std::string& name, const Tensor& value) {
  const Node* node = graph_->FindNode(name);
  if (!node || node->op() != "Variable") return NotFound("no variable named '", name, "'");
  VariableResource::Slot* slot =
      variables_->GetOrCreate(name, node->output_dtype(0), node->output_shape(0));
  // A variable that keeps some rows only (KeepRows) takes values of those rows.
  const Shape& shape = variables_->IsPart(slot) ? slot->value.shape() : node->output_shape(0);
  if (value.dtype() != node->output_dtype(0) || value.shape() != shape) {
    return InvalidArgument("variable '", name, "' is ", DTypeName(node->output_dtype(0)),
                           shape.ToString(), "; the value is ", DTypeName(value.dtype()),
                           value.shape().ToString());
  }
  if (!value.on_host())
    return InvalidArgument("the value for variable '", name, "' must be a host tensor");
  if (slot->value.allocated() && !slot->value.on_host()) {
    return device_->CopyInto(value, slot->value);
  }
  if (slot->value.allocated()) {
    if (slot->value.raw() != value.raw()) {  // the same memory: ShareVariable's storage
      std::memcpy(slot->value.raw(), value.raw(), value.bytes());
    }
  } else if (OnDevice(value.dtype())) {
    StatusOr<Tensor> copy = device_->CopyAcross(value);
    if (!copy.ok()) return copy.status();
    slot->value = std::move(copy).value();
  } else {
    slot->value = value.DeepCopy();
  }
  return Status::OK();
}

namespace {

// Bytes of one row of a variable of `shape` (its first dimension indexes the rows).
Status CheckRows(const std::string& name, const Shape& shape, const std::vector<int64_t>& rows) {
  if (shape.rank() < 1) return InvalidArgument("variable '", name, "' is a scalar: it has no rows");
  for (int64_t r : rows) {
    if (r < 0 || r >= shape.dim(0)) {
      return InvalidArgument("row ", r, " of variable '", name, "' is out of range [0, ",
                             shape.dim(0), ")");
    }
  }
  return Status::OK();
}

// The row and storage operations work on host memory (parameter servers run on the CPU).
Status HostOnly(const std::string& name, const Tensor& v, const char* what) {
  if (v.on_host()) return Status::OK();
  return Unimplemented(what, " of variable '", name, "', which is in ",
                       v.buffer()->allocator()->name(),
                       " memory: parameter-server strategies run with --device cpu for now");
}

}  // namespace

StatusOr<Tensor> Session::ReadVariableRows(const std::string& name,
                                           const std::vector<int64_t>& rows) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot || !slot->value.allocated()) {
    return FailedPrecondition("variable '", name, "' is not initialized (or does not exist)");
  }
  const Tensor& v = slot->value;
  MPIFLOW_RETURN_IF_ERROR(HostOnly(name, v, "ReadVariableRows"));
  MPIFLOW_RETURN_IF_ERROR(CheckRows(name, v.shape(), rows));
  std::vector<int64_t> dims = v.shape().dims();
  const size_t row_bytes = v.shape().dim(0) > 0 ? v.bytes() / v.shape().dim(0) : 0;
  dims[0] = static_cast<int64_t>(rows.size());
  Tensor out(v.dtype(), Shape(dims));
  const char* src = static_cast<const char*>(v.raw());
  char* dst = static_cast<char*>(out.raw());  // [rows.size(), row_bytes]
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(dst + i * row_bytes, src + rows[i] * row_bytes, row_bytes);
  }
  return out;
}

Status Session::ReadVariableInto(const std::string& name, Tensor out) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot || !slot->value.allocated()) {
    return FailedPrecondition("variable '", name, "' is not initialized (or does not exist)");
  }
  const Tensor& v = slot->value;
  if (out.dtype() != v.dtype() || out.shape() != v.shape()) {
    return InvalidArgument("variable '", name, "' is ", DTypeName(v.dtype()), v.shape().ToString(),
                           "; the destination is ", DTypeName(out.dtype()), out.shape().ToString());
  }
  if (!v.on_host() || !out.on_host()) return device_->CopyInto(v, out);
  if (out.raw() != v.raw()) std::memcpy(out.raw(), v.raw(), v.bytes());  // else: shared storage
  return Status::OK();
}

Status Session::ShareVariable(const std::string& name, Tensor storage) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot || !slot->value.allocated()) {
    return FailedPrecondition("variable '", name, "' is not initialized (or does not exist)");
  }
  Tensor& v = slot->value;
  MPIFLOW_RETURN_IF_ERROR(HostOnly(name, v, "ShareVariable"));
  if (storage.dtype() != v.dtype() || storage.shape() != v.shape()) {
    return InvalidArgument("variable '", name, "' is ", DTypeName(v.dtype()), v.shape().ToString(),
                           "; the storage offered is ", DTypeName(storage.dtype()),
                           storage.shape().ToString());
  }
  if (storage.raw() != v.raw()) std::memcpy(storage.raw(), v.raw(), v.bytes());
  v = std::move(storage);
  return Status::OK();
}

Status Session::KeepRows(const std::string& name, int64_t begin, int64_t end) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot || !slot->value.allocated()) {
    return FailedPrecondition("variable '", name, "' is not initialized (or does not exist)");
  }
  if (variables_->IsPart(slot)) {
    return FailedPrecondition("variable '", name, "' keeps some of its rows already");
  }
  const Tensor& v = slot->value;
  MPIFLOW_RETURN_IF_ERROR(HostOnly(name, v, "KeepRows"));
  if (v.shape().rank() < 1 || begin < 0 || begin > end || end > v.shape().dim(0)) {
    return InvalidArgument("rows [", begin, ", ", end, ") of variable '", name, "' ",
                           v.shape().ToString(), ": not a range of its rows");
  }
  std::vector<int64_t> dims = v.shape().dims();
  const size_t row_bytes = dims[0] > 0 ? v.bytes() / dims[0] : 0;
  dims[0] = end - begin;
  Tensor part(v.dtype(), Shape(dims));  // [end - begin, ...]
  if (part.bytes()) {
    std::memcpy(part.raw(), static_cast<const char*>(v.raw()) + begin * row_bytes, part.bytes());
  }
  slot->value = std::move(part);
  variables_->MarkPart(slot);
  return Status::OK();
}

Status Session::WriteVariableRows(const std::string& name, const std::vector<int64_t>& rows,
                                  const Tensor& values) {
  VariableResource::Slot* slot = variables_->Find(name);
  if (!slot || !slot->value.allocated()) {
    return FailedPrecondition("variable '", name, "' is not initialized (or does not exist)");
  }
  Tensor& v = slot->value;
  MPIFLOW_RETURN_IF_ERROR(HostOnly(name, v, "WriteVariableRows"));
  MPIFLOW_RETURN_IF_ERROR(CheckRows(name, v.shape(), rows));
  std::vector<int64_t> dims = v.shape().dims();
  dims[0] = static_cast<int64_t>(rows.size());
  if (values.dtype() != v.dtype() || values.shape() != Shape(dims)) {
    return InvalidArgument("rows for variable '", name, "' must be ", DTypeName(v.dtype()),
                           Shape(dims).ToString(), ", got ", DTypeName(values.dtype()),
                           values.shape().ToString());
  }
  const size_t row_bytes = v.shape().dim(0) > 0 ? v.bytes() / v.shape().dim(0) : 0;
  const char* src = static_cast<const char*>(values.raw());  // [rows.size(), row_bytes]
  char* dst = static_cast<char*>(v.raw());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memcpy(dst + rows[i] * row_bytes, src + i * row_bytes, row_bytes);
  }
  return Status::OK();
}

}  // namespace mpiflow
