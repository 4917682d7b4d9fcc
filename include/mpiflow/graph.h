// The dataflow graph: Node, Output, Graph, and OpDef (an op's shape and gradient functions) with
// the OpRegistry a graph resolves op names in. Not the builder (Scope, scope.h, one layer up with
// the ops) and not execution: running a graph is the Session's job (session.h).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

class Node;
class Graph;
class Scope;

using AttrValue =
    std::variant<int64_t, double, bool, std::string, DType, Shape, std::vector<int64_t>, Tensor>;
using AttrMap = std::map<std::string, AttrValue>;

// The attr naming the node an op must run with (Scope::ColocatedWith): its colocation group's
// root. The placer keeps a group on one rank.
inline constexpr const char* kColocateAttr = "_colocate_with";

// One output of a node: the edge source. A default Output is invalid (a failed build).
struct Output {
  Node* node = nullptr;
  int index = 0;

  Output() = default;
  Output(Node* n, int i = 0) : node(n), index(i) {}  // NOLINT: implicit by design
  bool valid() const { return node != nullptr; }
  DType dtype() const;
  const Shape& shape() const;
  std::string name() const;  // "node_name:index"
  bool operator==(const Output& o) const { return node == o.node && index == o.index; }
  bool operator<(const Output& o) const;
};

// What a shape function sees: input dtypes and shapes, attrs; it sets output dtypes and shapes.
class InferenceContext {
 public:
  InferenceContext(const std::string& node_name, const std::string& op,
                   std::vector<DType> in_dtypes, std::vector<Shape> in_shapes, const AttrMap* attrs,
                   int num_outputs);
  int num_inputs() const { return static_cast<int>(in_dtypes_.size()); }
  DType input_dtype(int i) const { return in_dtypes_[i]; }
  const Shape& input_shape(int i) const { return in_shapes_[i]; }
  bool HasAttr(const std::string& name) const;
  template <typename T>
  Status GetAttr(const std::string& name, T* out) const;
  void set_output(int i, DType dtype, const Shape& shape);
  // An InvalidArgument naming the op and the node: "MatMul node 'dense/MatMul': <what>".
  template <typename... Args>
  Status Error(const Args&... what) const {
    return InvalidArgument(op_, " node '", node_name_, "': ", what...);
  }
  const std::vector<DType>& out_dtypes() const { return out_dtypes_; }
  const std::vector<Shape>& out_shapes() const { return out_shapes_; }

 private:
  std::string node_name_, op_;
  std::vector<DType> in_dtypes_;
  std::vector<Shape> in_shapes_;
  const AttrMap* attrs_;
  std::vector<DType> out_dtypes_;
  std::vector<Shape> out_shapes_;
};

// Builds the gradient of a node's inputs from the gradients of its outputs.
// dy[i] is invalid where output i has no gradient; set dx[i] invalid where input i gets none.
using GradFn = std::function<Status(const Scope& s, const Node& node, const std::vector<Output>& dy,
                                    std::vector<Output>* dx)>;
using ShapeFn = std::function<Status(InferenceContext& c)>;

// An op's definition: the one place that says what the op is.
struct OpDef {
  std::string name;
  std::vector<std::string> inputs;  // input names; with `variadic`, the single name of the list
  bool variadic = false;            // any number >= min_inputs of inputs of one dtype
  int min_inputs = 0;
  std::vector<std::string> outputs;
  ShapeFn shape_fn;
  GradFn grad_fn;              // null: an error if a gradient must pass through this op
  bool differentiable = true;  // false: outputs are constants to autodiff (ArgMax, Equal, ...)
  bool stateful = false;       // reads or writes variables, or is random
  bool reads_uninitialized_input0 = false;  // Assign: input 0 may be an uninitialised variable
  // Where the sequential executor puts the node among those ready to run: -1 at once (a
  // collective's start, so communication overlaps the rest), +1 only when nothing else is
  // ready (a collective's wait, so the wait comes as late as its consumers allow).
  int schedule = 0;
};

// Op definitions by name. The built-in ops' registry is the ops layer's (BuiltinOps() in
// scope.h); a Graph resolves its nodes' ops in the registry it was made with.
class OpRegistry {
 public:
  void Register(OpDef def);
  const OpDef* Find(const std::string& name) const;
  std::vector<std::string> OpNames() const;

 private:
  std::map<std::string, OpDef> ops_;
};

class Node {
 public:
  int id() const { return id_; }
  const std::string& name() const { return name_; }
  const std::string& op() const { return def_->name; }
  const OpDef& def() const { return *def_; }
  const std::string& device() const { return device_; }
  // The name of the node this one runs with: its kColocateAttr, else its own name.
  const std::string& colocation() const {
    auto it = attrs_.find(kColocateAttr);
    return it == attrs_.end() ? name_ : std::get<std::string>(it->second);
  }
  int num_inputs() const { return static_cast<int>(inputs_.size()); }
  const Output& input(int i) const { return inputs_[i]; }
  const std::vector<Output>& inputs() const { return inputs_; }
  const std::vector<Node*>& control_inputs() const { return control_inputs_; }
  int num_outputs() const { return static_cast<int>(out_dtypes_.size()); }
  DType output_dtype(int i) const { return out_dtypes_[i]; }
  const Shape& output_shape(int i) const { return out_shapes_[i]; }
  const AttrMap& attrs() const { return attrs_; }
  bool HasAttr(const std::string& name) const { return attrs_.count(name) > 0; }
  // The attr's value; the shape function has checked presence and type.
  template <typename T>
  const T& attr(const std::string& name) const {
    return std::get<T>(attrs_.at(name));
  }
  template <typename T>
  T attr_or(const std::string& name, T fallback) const {
    auto it = attrs_.find(name);
    return it == attrs_.end() ? fallback : std::get<T>(it->second);
  }

 private:
  friend class Graph;
  int id_ = -1;
  std::string name_;
  const OpDef* def_ = nullptr;
  std::string device_;
  std::vector<Output> inputs_;
  std::vector<Node*> control_inputs_;
  AttrMap attrs_;
  std::vector<DType> out_dtypes_;
  std::vector<Shape> out_shapes_;
};

// What AddNode needs.
struct NodeSpec {
  std::string name;
  std::string op;
  std::vector<Output> inputs;
  std::vector<Node*> control_inputs;
  AttrMap attrs;
  std::string device;
};

struct VariableInfo {
  Node* variable = nullptr;
  Node* initializer = nullptr;  // the Assign that gives it its initial value
  bool trainable = true;
};

// Append-only: a node's inputs exist before it, so node ids are a topological order of data
// edges. AddControlEdge may add an edge backwards; the Session rejects the cycle that makes.
class Graph {
 public:
  explicit Graph(const OpRegistry& ops) : ops_(&ops) {}  // it must outlive the graph
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;

  // Checks the op, the inputs' arity and dtypes, runs the shape function, then appends.
  StatusOr<Node*> AddNode(NodeSpec spec);
  Status AddControlEdge(Node* from, Node* to);
  std::string UniqueName(const std::string& base);

  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  Node* node(int id) const { return nodes_[id].get(); }
  Node* FindNode(const std::string& name) const;
  StatusOr<Output> FindOutput(const std::string& name) const;  // "node" or "node:1"
  std::vector<Node*> Consumers(const Node* n) const;           // data and control consumers, by id

  void AddVariable(VariableInfo info) { variables_.push_back(info); }
  const std::vector<VariableInfo>& variables() const { return variables_; }

  // 64-bit fingerprint of the structure (ops, names, edges, attrs): equal graphs, equal values.
  uint64_t Fingerprint() const;
  const OpRegistry& ops() const { return *ops_; }

 private:
  const OpRegistry* ops_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::map<std::string, Node*> by_name_;
  std::map<std::string, int> name_counters_;
  std::vector<VariableInfo> variables_;
};

template <typename T>
Status InferenceContext::GetAttr(const std::string& name, T* out) const {
  auto it = attrs_->find(name);
  if (it == attrs_->end()) return Error("missing attr '", name, "'");
  const T* v = std::get_if<T>(&it->second);
  if (!v) return Error("attr '", name, "' has the wrong type");
  *out = *v;
  return Status::OK();
}

// The text form of an attr value used by graph files and fingerprints: "i:3", "f:0x1.8p+0",
// "b:1", "s:<escaped>", "t:float32", "shape:[?,784]", "list:[1,2]", "tensor:float32:[2]:<hex>".
std::string EncodeAttr(const AttrValue& v);
StatusOr<AttrValue> DecodeAttr(const std::string& text);

}  // namespace mpiflow
