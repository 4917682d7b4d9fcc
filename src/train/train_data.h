// The data side of a training run: loading the configured dataset (this rank's share of it
// under local sharding) and test accuracy over ranks. Private to src/train.
// Not batching (data.h's BatchStream) and not the loop (trainer.cc).
#pragma once

#include <cstdint>

#include "mpiflow/communicator.h"
#include "mpiflow/data.h"
#include "mpiflow/models.h"
#include "mpiflow/session.h"
#include "mpiflow/trainer.h"

namespace mpiflow {

struct TrainingData {
  Dataset train, test;
  bool local = false;  // each rank holds only its share (DataSharding::kLocal over >1 ranks)
  int64_t global_train = 0, global_test = 0;  // example counts over all ranks, when local
  // Test examples over all ranks (what evaluation's accuracy is over).
  int64_t test_count() const { return local ? global_test : test.count; }
};

// Loads cfg's dataset for rank `data_rank` of `data_ranks` ranks that read data.
StatusOr<TrainingData> LoadTrainingData(const TrainConfig& cfg, int data_ranks, int data_rank);
// The same from datasets in memory (every rank passes both whole splits), after checking them.
StatusOr<TrainingData> InMemoryTrainingData(const Dataset& train, const Dataset& test,
                                            DataSharding sharding, int data_ranks, int data_rank);

// Test accuracy; with a communicator each rank evaluates its shard and the counts are summed.
StatusOr<double> Evaluate(Session& session, const Model& m, const TrainingData& data,
                          int64_t batch_size, Communicator* comm);

}  // namespace mpiflow
