// Scope (see scope.h).
#include "mpiflow/scope.h"

namespace mpiflow {

Scope Scope::NewRootScope() {
  Scope s(nullptr);
  s.owned_graph_ = std::make_shared<Graph>(BuiltinOps());
  s.graph_ = s.owned_graph_.get();
  return s;
}

Scope::Scope(Graph* graph) : graph_(graph), status_(std::make_shared<Status>()) {}

void Scope::UpdateStatus(const Status& s) const {
  if (status_->ok() && !s.ok()) *status_ = s;
}

Scope Scope::NewSubScope(const std::string& name) const {
  Scope s = *this;
  s.prefix_ = prefix_ + name + "/";
  s.op_name_.clear();
  return s;
}

Scope Scope::WithDevice(const std::string& device) const {
  Scope s = *this;
  s.device_ = device;
  return s;
}

Scope Scope::ColocatedWith(const Node* node) const {
  Scope s = *this;
  s.colocate_ = node ? node->colocation() : std::string();
  return s;
}

Scope Scope::WithControlDependencies(const std::vector<Node*>& deps) const {
  Scope s = *this;
  s.control_deps_.insert(s.control_deps_.end(), deps.begin(), deps.end());
  return s;
}

Scope Scope::WithOpName(const std::string& name) const {
  Scope s = *this;
  s.op_name_ = prefix_ + name;
  return s;
}

Scope Scope::WithAbsoluteOpName(const std::string& full_name) const {
  Scope s = *this;
  s.op_name_ = full_name;
  return s;
}

Node* Scope::AddOp(const std::string& op, const std::vector<Output>& inputs, AttrMap attrs,
                   const std::string& default_name) const {
  if (!ok()) return nullptr;
  for (const Output& in : inputs) {
    if (!in.valid()) {
      UpdateStatus(
          InvalidArgument("building ", op, ": an input is invalid (an earlier op failed)"));
      return nullptr;
    }
  }
  NodeSpec spec;
  spec.op = op;
  if (!op_name_.empty()) {
    spec.name = op_name_;
  } else {
    spec.name = graph_->UniqueName(prefix_ + (default_name.empty() ? op : default_name));
  }
  spec.inputs = inputs;
  spec.control_inputs = control_deps_;
  spec.attrs = std::move(attrs);
  if (!colocate_.empty()) spec.attrs[kColocateAttr] = colocate_;
  spec.device = device_;
  StatusOr<Node*> n = graph_->AddNode(std::move(spec));
  if (!n.ok()) {
    UpdateStatus(n.status());
    return nullptr;
  }
  return *n;
}

}  // namespace mpiflow
