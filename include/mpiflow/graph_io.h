// Saving and loading graphs in mpiflow's versioned text format, and Graphviz DOT export.
// Not checkpoints: variable values are saved elsewhere; a graph file holds structure only.
//
// Format, version 1: a header line "mpiflow-graph 1", then one line per node in id order:
//   node <name> <op> [device=<d>] [in=<node:i>,...] [ctrl=<node>,...] [attr.<key>=<value>]...
// then one line per variable: "variable <name> <initializer> <trainable 0|1>". Names are
// %-escaped (space, %, comma, =, newline); attr values use EncodeAttr (graph.h). Loading re-runs
// every shape function, so a file is validated exactly as the builder validates code.
#pragma once

#include <string>

#include "mpiflow/graph.h"

namespace mpiflow {

inline constexpr int kGraphFormatVersion = 1;

std::string GraphToText(const Graph& graph);
// Appends the nodes of `text` to an empty graph. Errors name the line.
Status GraphFromText(const std::string& text, Graph* graph);
Status SaveGraph(const Graph& graph, const std::string& path);
Status LoadGraph(const std::string& path, Graph* graph);
std::string GraphToDot(const Graph& graph);

}  // namespace mpiflow
