// Graph text format (see graph_io.h) and DOT export. Not variable values.
#include "mpiflow/graph_io.h"

#include <fstream>
#include <sstream>

namespace mpiflow {
namespace {

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '%' || c == ' ' || c == ',' || c == '=' || c == '\n' || c == '\t') {
      char buf[4];
      std::snprintf(buf, sizeof(buf), "%%%02X", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

std::string Unescape(const std::string& s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream is(s);
  while (std::getline(is, cur, sep)) {
    if (!cur.empty()) out.push_back(cur);
  }
  return out;
}

}  // namespace

std::string GraphToText(const Graph& g) {
  std::ostringstream os;
  os << "mpiflow-graph " << kGraphFormatVersion << "\n";
  for (int id = 0; id < g.num_nodes(); ++id) {
    const Node* n = g.node(id);
    os << "node " << Escape(n->name()) << " " << n->op();
    if (!n->device().empty()) os << " device=" << Escape(n->device());
    if (n->num_inputs()) {
      os << " in=";
      for (int i = 0; i < n->num_inputs(); ++i) {
        os << (i ? "," : "") << Escape(n->input(i).node->name()) << ":" << n->input(i).index;
      }
    }
    if (!n->control_inputs().empty()) {
      os << " ctrl=";
      for (size_t i = 0; i < n->control_inputs().size(); ++i) {
        os << (i ? "," : "") << Escape(n->control_inputs()[i]->name());
      }
    }
    for (const auto& kv : n->attrs()) os << " attr." << kv.first << "=" << EncodeAttr(kv.second);
    os << "\n";
  }
  for (const VariableInfo& v : g.variables()) {
    os << "variable " << Escape(v.variable->name()) << " " << Escape(v.initializer->name()) << " "
       << (v.trainable ? 1 : 0) << "\n";
  }
  return os.str();
}

Status GraphFromText(const std::string& text, Graph* g) {
  if (g->num_nodes() != 0) return InvalidArgument("GraphFromText: the graph must be empty");
  std::istringstream is(text);
  std::string line;
  int line_no = 0;
  std::vector<std::pair<Node*, std::vector<std::string>>> controls;
  while (std::getline(is, line)) {
    ++line_no;
    auto error = [&](const std::string& what) {
      return InvalidArgument("graph text line ", line_no, ": ", what);
    };
    std::vector<std::string> tok = Split(line, ' ');
    // The header comes first; after it a blank line (spaces only, too) is skipped.
    if (tok.empty() && line_no > 1) continue;
    if (line_no == 1) {
      if (tok.size() != 2 || tok[0] != "mpiflow-graph") {
        return error("not an mpiflow graph (expected the header 'mpiflow-graph <version>')");
      }
      if (tok[1] != std::to_string(kGraphFormatVersion)) {
        return error("format version " + tok[1] + " is not supported (this build reads " +
                     std::to_string(kGraphFormatVersion) + ")");
      }
      continue;
    }
    if (tok[0] == "variable") {
      if (tok.size() != 4) return error("expected: variable <name> <initializer> <0|1>");
      Node* v = g->FindNode(Unescape(tok[1]));
      Node* init = g->FindNode(Unescape(tok[2]));
      if (!v || !init) return error("variable or initializer node not defined");
      g->AddVariable({v, init, tok[3] == "1"});
      continue;
    }
    if (tok[0] != "node" || tok.size() < 3) return error("expected 'node <name> <op> ...'");
    NodeSpec spec;
    spec.name = Unescape(tok[1]);
    spec.op = tok[2];
    std::vector<std::string> ctrl;
    for (size_t i = 3; i < tok.size(); ++i) {
      const std::string& t = tok[i];
      const size_t eq = t.find('=');
      if (eq == std::string::npos) return error("token '" + t + "' has no '='");
      const std::string key = t.substr(0, eq), value = t.substr(eq + 1);
      if (key == "device") {
        spec.device = Unescape(value);
      } else if (key == "in") {
        for (const std::string& in : Split(value, ',')) {
          const size_t colon = in.rfind(':');
          if (colon == std::string::npos) return error("input '" + in + "' lacks ':index'");
          StatusOr<Output> o = g->FindOutput(Unescape(in.substr(0, colon)) + in.substr(colon));
          if (!o.ok()) return error("input of '" + spec.name + "': " + o.status().message());
          spec.inputs.push_back(*o);
        }
      } else if (key == "ctrl") {
        for (const std::string& c : Split(value, ',')) ctrl.push_back(Unescape(c));
      } else if (key.rfind("attr.", 0) == 0) {
        StatusOr<AttrValue> v = DecodeAttr(value);
        if (!v.ok()) return error("attr '" + key.substr(5) + "': " + v.status().message());
        spec.attrs[key.substr(5)] = *v;
      } else {
        return error("unknown key '" + key + "'");
      }
    }
    StatusOr<Node*> n = g->AddNode(std::move(spec));
    if (!n.ok()) return error(n.status().message());
    controls.emplace_back(*n, std::move(ctrl));
  }
  if (line_no == 0) return InvalidArgument("graph text is empty");
  for (auto& [node, names] : controls) {
    for (const std::string& c : names) {
      Node* from = g->FindNode(c);
      if (!from)
        return InvalidArgument("control input '", c, "' of '", node->name(), "' is not defined");
      MPIFLOW_RETURN_IF_ERROR(g->AddControlEdge(from, node));
    }
  }
  return Status::OK();
}

Status SaveGraph(const Graph& graph, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) return Status(Code::kUnavailable, StrCat("cannot write '", tmp, "'"));
    f << GraphToText(graph);
    if (!f.flush()) return Status(Code::kUnavailable, StrCat("writing '", tmp, "' failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return Status(Code::kUnavailable, StrCat("cannot rename '", tmp, "' to '", path, "'"));
  }
  return Status::OK();
}

Status LoadGraph(const std::string& path, Graph* graph) {
  std::ifstream f(path);
  if (!f) return NotFound("cannot open graph file '", path, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return GraphFromText(ss.str(), graph).WithContext(path);
}

std::string GraphToDot(const Graph& g) {
  std::ostringstream os;
  os << "digraph mpiflow {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n";
  for (int id = 0; id < g.num_nodes(); ++id) {
    const Node* n = g.node(id);
    os << "  n" << id << " [label=\"" << n->name() << "\\n" << n->op() << "\"";
    if (n->op() == "Variable") os << ", style=filled, fillcolor=lightyellow";
    if (n->op() == "Placeholder") os << ", style=filled, fillcolor=lightblue";
    os << "];\n";
  }
  for (int id = 0; id < g.num_nodes(); ++id) {
    const Node* n = g.node(id);
    for (const Output& in : n->inputs()) {
      os << "  n" << in.node->id() << " -> n" << id << " [label=\"" << DTypeName(in.dtype())
         << in.shape().ToString() << "\", fontsize=8];\n";
    }
    for (const Node* c : n->control_inputs()) {
      os << "  n" << c->id() << " -> n" << id << " [style=dashed];\n";
    }
  }
  os << "}\n";
  return os.str();
}

}  // namespace mpiflow
