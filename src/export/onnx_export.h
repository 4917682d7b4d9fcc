// Export of a trained model's inference path to an ONNX file (mpiflow-export --onnx): the layers
// of its model file mapped to ONNX operators, the variables from the checkpoint as initializers.
// Built only where Debian's libonnx-dev is found (MPIFLOW_WITH_ONNX); not part of the library's
// layers. Not a general graph exporter: a graph built in C++ (Train(model_fn, ...)) has no model
// file and is refused.
//
// The exported graph: input `features` (batch, example...) float32, the values the model sees
// (for uint8 data: stored x scale + offset, the metadata says which); outputs `logits` and
// `probabilities` (batch, classes). mpiflow computes NHWC; ONNX's Conv and pools are NCHW, so
// a Transpose goes in before the first of them and out again before a layer that needs the
// channels last (flatten, reshape, dense, layer_norm), which keeps dense weights as trained.
// Dropout is the identity; batch_norm uses its moving statistics.
#pragma once

#include <cstdint>
#include <string>

#include "mpiflow/predict.h"

namespace mpiflow {

struct OnnxExportOptions {
  std::string path;            // the .onnx file to write (replaced)
  std::string test_data_dir;   // "" or a folder for ONNX's test-data layout: input_0.pb (features),
                               // output_0.pb (logits), output_1.pb (probabilities) by mpiflow
  int64_t test_examples = 16;  // the first examples of the split, for test_data_dir
};

struct OnnxExportResult {
  int opset = 0;  // the ONNX operator set imported (13, or 17 with layer_norm)
  int64_t nodes = 0;
  int64_t parameters = 0;  // the values of the initializers
  int64_t bytes = 0;       // of the file
  int64_t test_examples = 0;
};

// Writes `trained` as ONNX and checks the file with ONNX's checker and its shape inference
// (which must find the logits (batch, classes)): an error names the layer that has no ONNX form,
// or what the checker says.
StatusOr<OnnxExportResult> ExportOnnx(TrainedModel& trained, const OnnxExportOptions& options);

}  // namespace mpiflow
