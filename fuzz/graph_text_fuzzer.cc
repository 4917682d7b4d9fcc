// Fuzz target: the graph text format (GraphFromText), which re-runs every shape function.
#include <string>

#include "mpiflow/graph_io.h"
#include "mpiflow/scope.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mpiflow::Graph g(mpiflow::BuiltinOps());
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (mpiflow::GraphFromText(text, &g).ok()) {
    // A graph that loaded saves and loads again to the same text.
    const std::string again = mpiflow::GraphToText(g);
    mpiflow::Graph h(mpiflow::BuiltinOps());
    if (!mpiflow::GraphFromText(again, &h).ok() || mpiflow::GraphToText(h) != again) {
      __builtin_trap();
    }
  }
  return 0;
}
