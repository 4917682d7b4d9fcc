// Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/): small valid inputs of every
// reader, made by mpiflow's own writers so that they stay in step with the formats. Run it
// after a format changes: mpiflow_fuzz_seeds fuzz/corpus. Not a test.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "mpiflow/checkpoint.h"
#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/data.h"
#include "mpiflow/graph_io.h"
#include "mpiflow/models.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/scope.h"

namespace mpiflow {
namespace {

void Put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::string BigEndian32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

// idx_fuzzer's input: a flags byte, the images file's length (2 bytes, big-endian), then the
// images file and the labels file.
std::string IdxInput(const Dataset& d) {
  std::string images = BigEndian32(0x803) + BigEndian32(static_cast<uint32_t>(d.count)) +
                       BigEndian32(28) + BigEndian32(28);
  images.append(d.bytes.begin(), d.bytes.end());
  std::string labels = BigEndian32(0x801) + BigEndian32(static_cast<uint32_t>(d.count));
  for (int32_t l : d.labels) labels.push_back(static_cast<char>(l));
  const std::string head = {0, static_cast<char>(images.size() >> 8),
                            static_cast<char>(images.size() & 0xff)};
  return head + images + labels;
}

int Main(const std::string& dir) {
  const Dataset d = SyntheticDataset(3, 10, 7);
  Put(dir + "/idx/synthetic3", IdxInput(d));

  Scope root = Scope::NewRootScope();
  StatusOr<Model> mlp = BuildModel(root, "mlp", ModelInput{Shape{28, 28, 1}, 10}, 1);
  OptimizerOptions adam;
  adam.kind = OptimizerKind::kAdam;
  if (!mlp.ok() || !Minimize(root, mlp->loss, adam).ok()) return 1;
  Put(dir + "/graph_text/mlp_adam.mpg", GraphToText(*root.graph()));
  Scope cnn_root = Scope::NewRootScope();
  if (!BuildModel(cnn_root, "cnn", ModelInput{Shape{28, 28, 1}, 10}, 1).ok()) return 1;
  Put(dir + "/graph_text/cnn.mpg", GraphToText(*cnn_root.graph()));

  Checkpoint c;
  c.variables.emplace_back("dense_1/kernel",
                           Tensor::FromVector<float>(Shape{3, 2}, {1, 2, 3, 4, 5, 6}));
  c.variables.emplace_back("dense_1/kernel/adam_m",
                           Tensor::FromVector<float>(Shape{3, 2}, {0, 0, 0, 1, 1, 1}));
  c.variables.emplace_back("global_step", Tensor::Scalar<int64_t>(42));
  c.variables.emplace_back("mask", Tensor::FromVector<double>(Shape{2}, {0.5, -0.25}));
  c.attributes["graph_fingerprint"] = "0123456789abcdef";
  c.attributes["option.model"] = "mlp";
  RunState state;
  state.position = {42, 1, 96};
  state.ranks = state.data_ranks = 2;
  SetRunState(state, &c);
  if (!WriteCheckpoint(dir + "/checkpoint/tiny.h5", c).ok()) return 1;

  std::remove((dir + "/hdf5_dataset/deflate.h5").c_str());  // splits are added to a file
  std::remove((dir + "/hdf5_dataset/plain.h5").c_str());
  if (!WriteHdf5Split(dir + "/hdf5_dataset/deflate.h5", "train", d, 2, 4).ok()) return 1;
  if (!WriteHdf5Split(dir + "/hdf5_dataset/deflate.h5", "test", d, 2, 4).ok()) return 1;
  if (!WriteHdf5Split(dir + "/hdf5_dataset/plain.h5", "train", d, 3, 0).ok()) return 1;
  // float32 vectors with scale, offset and class names (legacy_*.h5, kept in the corpus, are
  // the older layout: /<split>/images (count, rows, cols)).
  Dataset f;
  f.count = 4;
  f.example = Shape{3};
  f.is_float = true;
  f.scale = 2.0f;
  f.offset = -1.0f;
  f.floats = {0.5f, 0.25f, 1, 0, 0, 0, -1, 2, 3, 4, 5, 6};
  f.labels = {0, 1, 2, 1};
  f.num_classes = 3;
  f.class_names = {"a", "bb", "ccc"};
  std::remove((dir + "/hdf5_dataset/float.h5").c_str());
  if (!WriteHdf5Split(dir + "/hdf5_dataset/float.h5", "train", f, 2, 1).ok()) return 1;
  std::printf("seeds written under %s\n", dir.c_str());
  return 0;
}

}  // namespace
}  // namespace mpiflow

int main(int argc, char** argv) {  // exit 1: a writer failed (run it from the repository root)
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: %s CORPUS_DIR (with idx/ graph_text/ checkpoint/ "
                 "hdf5_dataset/ in it)\n",
                 argv[0]);
    return 2;
  }
  return mpiflow::Main(argv[1]);
}
