// Bag-of-words datasets for the distributed tests (tests/data/models/bag_small.ini: rows of 6
// word ids from a 50-word vocabulary, -1 padding, 4 classes), written once by rank 0.
// Not a loader: the tests train from the HDF5 file BagsFile writes.
#pragma once

#include <cstdio>
#include <string>

#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/random.h"
#include "mpiflow/status.h"
#include "mpiflow/trainer.h"

namespace mpiflow {
namespace test {

// `count` bags of up to 6 word ids from 50 (float32, -1 pads the rest) in 4 classes: class c
// draws most of its words from ids [12c, 12c + 12), the rest from anywhere, all from the seed.
// same_words: every bag is ids 1, 2, 3, 4 and two pads (the class still varies), so that every
// batch touches exactly those four rows of the table.
inline Dataset Bags(int64_t count, uint64_t seed, bool same_words = false) {
  Dataset d;
  d.count = count;
  d.example = Shape{6};
  d.is_float = true;
  d.scale = 1.0f;
  d.num_classes = 4;
  for (int64_t i = 0; i < count; ++i) {
    const int c = static_cast<int>((i * 5 + seed) % 4);
    d.labels.push_back(c);
    const int words = same_words ? 4 : 2 + static_cast<int>(RandomUniform01(seed, i, 99) * 5);
    for (int j = 0; j < 6; ++j) {
      const double u = RandomUniform01(seed, i, j);
      const int id = same_words                               ? j + 1
                     : RandomUniform01(seed, i, 10 + j) < 0.8 ? 12 * c + static_cast<int>(u * 12)
                                                              : static_cast<int>(u * 50);
      d.floats.push_back(j < words ? static_cast<float>(id) : -1.0f);
    }
  }
  return d;
}

// Rank 0 writes `path` with a train split of 100 bags (seed 1) and a test split of 64 (seed 2);
// every rank returns once it is written.
inline Status BagsFile(Communicator* comm, const std::string& path, bool same_words = false) {
  Status st;
  if (comm->rank() == 0) {
    std::remove(path.c_str());
    st = WriteHdf5Split(path, "train", Bags(100, 1, same_words));
    if (st.ok()) st = WriteHdf5Split(path, "test", Bags(64, 2, same_words));
  }
  MPIFLOW_RETURN_IF_ERROR(comm->Barrier()->Wait());
  return st;
}

// `c` trains tests/data/models/bag_small.ini on BagsFile's `path`: 3 epochs of batch 8 per rank,
// SGD at 0.5 (the test binary defines MPIFLOW_SOURCE_DIR).
inline void UseBags(TrainConfig* c, const std::string& path) {
  c->model = MPIFLOW_SOURCE_DIR "/tests/data/models/bag_small.ini";
  c->dataset = DatasetKind::kHdf5;
  c->data_dir = path;
  c->epochs = 3;
  c->batch_size = 8;
  c->max_steps = -1;
  c->optimizer.kind = OptimizerKind::kSgd;
  c->optimizer.lr.base = 0.5;
}

}  // namespace test
}  // namespace mpiflow
