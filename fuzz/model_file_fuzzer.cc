// Fuzz target: the model file reader (ParseModelSpec) and, for a file it accepts, the builder's
// shape checks (BuildModel) on 28x28x1 images of 10 classes: errors, never a crash.
#include <string>

#include "mpiflow/models.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  mpiflow::StatusOr<mpiflow::ModelSpec> spec = mpiflow::ParseModelSpec(text, "fuzz.ini");
  if (!spec.ok()) return 0;
  // Layers as wide as a file may ask are not built: a graph of them is not the reader's matter.
  for (const mpiflow::LayerSpec& l : spec->layers) {
    if (l.units > 4096 || l.filters > 256 || l.kernel > 64 || l.vocab * l.dim > (1 << 24)) {
      return 0;
    }
  }
  mpiflow::Scope s = mpiflow::Scope::NewRootScope();
  (void)mpiflow::BuildModel(s, *spec, {mpiflow::Shape{28, 28, 1}, 10}, 1);
  return 0;
}
