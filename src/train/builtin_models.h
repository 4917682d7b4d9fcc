// The built-in model files (models/*.ini), compiled in by CMake (builtin_models.cc is generated
// in the build tree), so `--model mlp` works wherever the binary is. Private to src/train.
#pragma once

#include <vector>

namespace mpiflow {

struct BuiltinModelFile {
  const char* name;  // the file's stem: mlp, cnn, ...
  const char* text;
};
const std::vector<BuiltinModelFile>& BuiltinModelFiles();

}  // namespace mpiflow
