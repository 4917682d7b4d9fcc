// Graph, Node, OpRegistry and attr encoding. Not op definitions or Scope (src/ops) nor execution
// (src/runtime).
#include "mpiflow/graph.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

namespace mpiflow {

DType Output::dtype() const { return node->output_dtype(index); }
const Shape& Output::shape() const { return node->output_shape(index); }
std::string Output::name() const { return StrCat(node->name(), ":", index); }
bool Output::operator<(const Output& o) const {
  const int a = node ? node->id() : -1, b = o.node ? o.node->id() : -1;
  return a != b ? a < b : index < o.index;
}

InferenceContext::InferenceContext(const std::string& node_name, const std::string& op,
                                   std::vector<DType> in_dtypes, std::vector<Shape> in_shapes,
                                   const AttrMap* attrs, int num_outputs)
    : node_name_(node_name),
      op_(op),
      in_dtypes_(std::move(in_dtypes)),
      in_shapes_(std::move(in_shapes)),
      attrs_(attrs),
      out_dtypes_(num_outputs, DType::kInvalid),
      out_shapes_(num_outputs) {}

bool InferenceContext::HasAttr(const std::string& name) const { return attrs_->count(name) > 0; }

void InferenceContext::set_output(int i, DType dtype, const Shape& shape) {
  out_dtypes_[i] = dtype;
  out_shapes_[i] = shape;
}

void OpRegistry::Register(OpDef def) {
  MPIFLOW_CHECK(ops_.count(def.name) == 0);
  MPIFLOW_CHECK(def.shape_fn != nullptr);
  std::string name = def.name;
  ops_.emplace(name, std::move(def));
}

const OpDef* OpRegistry::Find(const std::string& name) const {
  auto it = ops_.find(name);
  return it == ops_.end() ? nullptr : &it->second;
}

std::vector<std::string> OpRegistry::OpNames() const {
  std::vector<std::string> names;
  for (const auto& kv : ops_) names.push_back(kv.first);
  return names;
}

StatusOr<Node*> Graph::AddNode(NodeSpec spec) {
  const OpDef* def = ops_->Find(spec.op);
  if (!def) return NotFound("unknown op '", spec.op, "' for node '", spec.name, "'");
  if (spec.name.empty()) spec.name = UniqueName(spec.op);
  if (by_name_.count(spec.name)) {
    return InvalidArgument("a node named '", spec.name, "' already exists in the graph");
  }
  auto colocate = spec.attrs.find(kColocateAttr);
  if (colocate != spec.attrs.end() && !std::holds_alternative<std::string>(colocate->second)) {
    return InvalidArgument(spec.op, " node '", spec.name, "': attr '", kColocateAttr,
                           "' must name a node (a string)");
  }
  const int n = static_cast<int>(spec.inputs.size());
  if (def->variadic ? n < def->min_inputs : n != static_cast<int>(def->inputs.size())) {
    return InvalidArgument(
        spec.op, " node '", spec.name, "': expected ", def->variadic ? "at least " : "",
        def->variadic ? def->min_inputs : static_cast<int>(def->inputs.size()), " inputs, got ", n);
  }
  std::vector<DType> dtypes;
  std::vector<Shape> shapes;
  for (int i = 0; i < n; ++i) {
    const Output& in = spec.inputs[i];
    if (!in.valid() || in.index < 0 || in.index >= in.node->num_outputs()) {
      return InvalidArgument(spec.op, " node '", spec.name, "': input ", i,
                             " is not a valid output");
    }
    dtypes.push_back(in.dtype());
    shapes.push_back(in.shape());
  }
  InferenceContext ctx(spec.name, spec.op, dtypes, shapes, &spec.attrs,
                       static_cast<int>(def->outputs.size()));
  MPIFLOW_RETURN_IF_ERROR(def->shape_fn(ctx));
  auto node = std::make_unique<Node>();
  node->id_ = static_cast<int>(nodes_.size());
  node->name_ = spec.name;
  node->def_ = def;
  node->device_ = spec.device;
  node->inputs_ = std::move(spec.inputs);
  node->control_inputs_ = std::move(spec.control_inputs);
  node->attrs_ = std::move(spec.attrs);
  node->out_dtypes_ = ctx.out_dtypes();
  node->out_shapes_ = ctx.out_shapes();
  for (int i = 0; i < node->num_outputs(); ++i) {
    MPIFLOW_CHECK(node->out_dtypes_[i] != DType::kInvalid);  // shape fn must set every output
  }
  Node* raw = node.get();
  by_name_[raw->name_] = raw;
  nodes_.push_back(std::move(node));
  return raw;
}

Status Graph::AddControlEdge(Node* from, Node* to) {
  if (!from || !to) return InvalidArgument("AddControlEdge: null node");
  auto& c = to->control_inputs_;
  if (std::find(c.begin(), c.end(), from) == c.end()) c.push_back(from);
  return Status::OK();
}

std::string Graph::UniqueName(const std::string& base) {
  if (!by_name_.count(base) && !name_counters_.count(base)) {
    name_counters_[base] = 0;
    return base;
  }
  int& counter = name_counters_[base];
  std::string name;
  do {
    name = StrCat(base, "_", ++counter);
  } while (by_name_.count(name));
  return name;
}

Node* Graph::FindNode(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

StatusOr<Output> Graph::FindOutput(const std::string& name) const {
  std::string node_name = name;
  int index = 0;
  const size_t colon = name.rfind(':');
  if (colon != std::string::npos) {
    node_name = name.substr(0, colon);
    try {
      index = std::stoi(name.substr(colon + 1));
    } catch (...) {
      return InvalidArgument("bad output name '", name, "' (expected node or node:index)");
    }
  }
  Node* n = FindNode(node_name);
  if (!n) return NotFound("no node named '", node_name, "' in the graph");
  if (index < 0 || index >= n->num_outputs()) {
    return NotFound("node '", node_name, "' has no output ", index, " (it has ", n->num_outputs(),
                    ")");
  }
  return Output(n, index);
}

std::vector<Node*> Graph::Consumers(const Node* n) const {
  std::vector<Node*> out;
  for (const auto& m : nodes_) {
    bool uses = false;
    for (const Output& in : m->inputs_) uses |= in.node == n;
    for (const Node* c : m->control_inputs_) uses |= c == n;
    if (uses) out.push_back(m.get());
  }
  return out;
}

uint64_t Graph::Fingerprint() const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&h](const std::string& s) {
    for (unsigned char ch : s) {
      h ^= ch;
      h *= 1099511628211ull;
    }
    h ^= 0xff;
    h *= 1099511628211ull;
  };
  for (const auto& n : nodes_) {
    mix(n->name_);
    mix(n->def_->name);
    mix(n->device_);
    for (const Output& in : n->inputs_) mix(in.name());
    for (const Node* c : n->control_inputs_) mix("^" + c->name_);
    for (const auto& kv : n->attrs_) mix(kv.first + "=" + EncodeAttr(kv.second));
  }
  return h;
}

// ---- attr text encoding ----

namespace {

std::string HexBytes(const void* p, size_t n) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    s += kDigits[b[i] >> 4];
    s += kDigits[b[i] & 15];
  }
  return s;
}

std::string IntList(const std::vector<int64_t>& v, bool unknown_as_q) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ",";
    s += (unknown_as_q && v[i] < 0) ? "?" : std::to_string(v[i]);
  }
  return s + "]";
}

StatusOr<std::vector<int64_t>> ParseIntList(const std::string& s) {
  if (s.size() < 2 || s.front() != '[' || s.back() != ']') {
    return InvalidArgument("expected [a,b,...], got '", s, "'");
  }
  std::vector<int64_t> v;
  std::string body = s.substr(1, s.size() - 2);
  size_t pos = 0;
  while (pos < body.size()) {
    size_t comma = body.find(',', pos);
    if (comma == std::string::npos) comma = body.size();
    const std::string item = body.substr(pos, comma - pos);
    if (item == "?") {
      v.push_back(-1);
    } else {
      try {
        size_t used = 0;
        v.push_back(std::stoll(item, &used));
        if (used != item.size()) throw 0;
      } catch (...) {
        return InvalidArgument("bad integer '", item, "' in '", s, "'");
      }
    }
    pos = comma + 1;
  }
  return v;
}

}  // namespace

std::string EncodeAttr(const AttrValue& v) {
  if (auto* i = std::get_if<int64_t>(&v)) return StrCat("i:", *i);
  if (auto* d = std::get_if<double>(&v)) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%a", *d);  // hex float: exact round trip
    return StrCat("f:", buf);
  }
  if (auto* b = std::get_if<bool>(&v)) return StrCat("b:", *b ? 1 : 0);
  if (auto* s = std::get_if<std::string>(&v)) return "s:" + HexBytes(s->data(), s->size());
  if (auto* t = std::get_if<DType>(&v)) return StrCat("t:", DTypeName(*t));
  if (auto* sh = std::get_if<Shape>(&v)) return "shape:" + IntList(sh->dims(), true);
  if (auto* l = std::get_if<std::vector<int64_t>>(&v)) return "list:" + IntList(*l, false);
  const Tensor& t = std::get<Tensor>(v);
  return StrCat("tensor:", DTypeName(t.dtype()), ":", IntList(t.shape().dims(), false), ":",
                HexBytes(t.raw(), t.bytes()));
}

StatusOr<AttrValue> DecodeAttr(const std::string& text) {
  const size_t colon = text.find(':');
  if (colon == std::string::npos) return InvalidArgument("attr value '", text, "' has no type tag");
  const std::string tag = text.substr(0, colon), body = text.substr(colon + 1);
  auto unhex = [](const std::string& h, std::string* out) -> bool {
    if (h.size() % 2) return false;
    out->resize(h.size() / 2);
    for (size_t i = 0; i < out->size(); ++i) {
      auto nib = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
      };
      const int hi = nib(h[2 * i]), lo = nib(h[2 * i + 1]);
      if (hi < 0 || lo < 0) return false;
      (*out)[i] = static_cast<char>(hi * 16 + lo);
    }
    return true;
  };
  try {
    if (tag == "i") return AttrValue(static_cast<int64_t>(std::stoll(body)));
    if (tag == "f") return AttrValue(std::strtod(body.c_str(), nullptr));
    if (tag == "b") return AttrValue(body == "1");
  } catch (...) {
    return InvalidArgument("bad number in attr value '", text, "'");
  }
  if (tag == "s") {
    std::string s;
    if (!unhex(body, &s)) return InvalidArgument("bad hex string in attr value '", text, "'");
    return AttrValue(s);
  }
  if (tag == "t") {
    StatusOr<DType> t = ParseDType(body);
    if (!t.ok()) return t.status();
    return AttrValue(*t);
  }
  if (tag == "shape" || tag == "list") {
    StatusOr<std::vector<int64_t>> l = ParseIntList(body);
    if (!l.ok()) return l.status();
    if (tag == "shape") return AttrValue(Shape(*l));
    return AttrValue(*l);
  }
  if (tag == "tensor") {
    const size_t c1 = body.find(':'), c2 = body.find(':', c1 + 1);
    if (c1 == std::string::npos || c2 == std::string::npos) {
      return InvalidArgument("bad tensor attr '", text, "'");
    }
    StatusOr<DType> dt = ParseDType(body.substr(0, c1));
    if (!dt.ok()) return dt.status();
    StatusOr<std::vector<int64_t>> dims = ParseIntList(body.substr(c1 + 1, c2 - c1 - 1));
    if (!dims.ok()) return dims.status();
    Shape shape(*dims);
    if (!shape.IsFullyDefined()) return InvalidArgument("tensor attr with unknown dims");
    Tensor t(*dt, shape);
    std::string bytes;
    if (!unhex(body.substr(c2 + 1), &bytes) || bytes.size() != t.bytes()) {
      return InvalidArgument("tensor attr data does not match ", DTypeName(*dt), shape.ToString());
    }
    if (!bytes.empty()) std::memcpy(t.raw(), bytes.data(), bytes.size());
    return AttrValue(t);
  }
  return InvalidArgument("unknown attr type tag '", tag, "'");
}

}  // namespace mpiflow
