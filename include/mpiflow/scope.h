// Scope: the builder ops are added through (ops::MatMul(s, x, w)). It carries the name prefix,
// the device hint, control dependencies and the first build error; NewRootScope makes a graph
// over the built-in ops (BuiltinOps()). Part of the ops layer, above the graph it builds.
// Not the ops themselves (ops.h) and not the graph's structure (graph.h).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mpiflow/graph.h"

namespace mpiflow {

// Every built-in op family, registered once on first use; add your own ops here before building
// graphs that use them.
OpRegistry& BuiltinOps();

// Builds ops into a graph. Copies are cheap and share the graph and the status: the first error
// is kept and later ops become no-ops returning invalid Outputs, so a model is built straight
// through and `status()` is checked once at the end.
class Scope {
 public:
  static Scope NewRootScope();
  explicit Scope(Graph* graph);  // builds into a graph owned elsewhere

  Graph* graph() const { return graph_; }
  Status status() const { return *status_; }
  bool ok() const { return status_->ok(); }
  void UpdateStatus(const Status& s) const;

  Scope NewSubScope(const std::string& name) const;  // name prefix "name/"
  Scope WithDevice(const std::string& device) const;
  // Ops added through the scope run where `node` runs (the placer keeps them together: a
  // gradient op with its forward op, an optimizer slot with its variable). Recorded as the
  // attr kColocateAttr = the node's name.
  Scope ColocatedWith(const Node* node) const;
  Scope WithControlDependencies(const std::vector<Node*>& deps) const;
  Scope WithOpName(const std::string& name) const;  // the next op's exact (prefixed) name
  Scope WithAbsoluteOpName(const std::string& full_name) const;  // no prefix added
  const std::string& device() const { return device_; }

  // Adds an op with this scope's name prefix, device and control dependencies. Returns null and
  // records the error on failure, or if any input is invalid (an earlier failure).
  Node* AddOp(const std::string& op, const std::vector<Output>& inputs, AttrMap attrs = {},
              const std::string& default_name = "") const;

 private:
  std::shared_ptr<Graph> owned_graph_;
  Graph* graph_ = nullptr;
  std::shared_ptr<Status> status_;
  std::string prefix_;
  std::string device_;
  std::string colocate_;
  std::string op_name_;
  std::vector<Node*> control_deps_;
};

}  // namespace mpiflow
