// Predict: a trained model's classes for a split of a dataset, from a checkpoint (what
// mpiflow-predict runs). Under several ranks each rank predicts a contiguous share of the
// examples and rank 0 gets all of them. Not training (trainer.h) and not the file it writes
// (the tool writes the CSV).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mpiflow/communicator.h"
#include "mpiflow/models.h"
#include "mpiflow/session.h"
#include "mpiflow/trainer.h"

namespace mpiflow {

struct PredictConfig {
  // The model and data, as mpiflow-train reads them (model, dataset, data_dir, synthetic sizes,
  // seed, threads); the other fields of `train` are not used.
  TrainConfig train;
  std::string checkpoint;  // a checkpoint file, or a checkpoint directory (its `latest`)
  bool test_split = true;  // false: the training split
  int64_t batch_size = 1000;
  bool probabilities = false;  // also gather every class's probability (PredictResult)
};

struct PredictResult {
  int64_t count = 0;    // examples predicted
  int64_t correct = 0;  // of them, predicted right
  double accuracy = 0;
  int num_classes = 0;
  std::vector<int64_t> confusion;        // (classes, classes): [label * classes + predicted]
  std::vector<int32_t> labels;           // (count): rank 0 only
  std::vector<int32_t> predictions;      // (count): rank 0 only
  std::vector<float> confidence;         // (count): the predicted class's softmax probability
  std::vector<float> probabilities;      // (count, classes): rank 0, when config.probabilities
  std::vector<std::string> class_names;  // from the dataset, when it names them
  std::string checkpoint;                // the file read
  int64_t step = 0;                      // the step it was written at
};

// A model built for a split of the data with its variables from a checkpoint: what Predict runs,
// and what an exporter reads (the layers, their shapes, the variables' values).
struct TrainedModel {
  ModelSpec spec;
  Dataset data;  // the split asked for, whole
  Scope root = Scope::NewRootScope();
  Model model;
  Output probabilities;  // (batch, classes): softmax of the inference path's logits
  std::unique_ptr<Session> session;
  std::string checkpoint;  // the file read
  int64_t step = 0;        // the step it was written at
};

// Loads the data and the model (config.train's model, dataset and seed), builds it and restores
// every variable of the model from config.checkpoint (with its shape; optimizer state is
// ignored). Errors name the checkpoint and the variable that does not fit.
StatusOr<std::unique_ptr<TrainedModel>> LoadTrainedModel(const PredictConfig& config);

// Builds the model for the data, restores its variables from the checkpoint (every variable of
// the model must be there with its shape; optimizer state is ignored) and runs the inference
// path (dropout off, batch_norm's moving statistics). With `comm` of several ranks every rank
// calls it alike.
StatusOr<PredictResult> Predict(const PredictConfig& config, Communicator* comm = nullptr);

// The confusion matrix as text: rows are labels, columns predictions.
std::string ConfusionText(const PredictResult& r);

}  // namespace mpiflow
