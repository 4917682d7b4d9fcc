// Predict (predict.h): the model built for the data, its variables from a checkpoint, the
// inference path over this rank's share of a split, the results summed over ranks.
// Not the command line (src/tools/mpiflow_predict.cc).
#include "mpiflow/predict.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/ops.h"
#include "mpiflow/session.h"
#include "train_data.h"

namespace mpiflow {
namespace {

bool IsDirectory(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The checkpoint named by `path` (a file, or a directory's `latest`), a parameter-server run's
// shards merged.
StatusOr<Checkpoint> LoadCheckpoint(const std::string& path) {
  struct stat st;
  const bool dir = IsDirectory(path);
  if (::stat((dir ? path + "/latest" : path).c_str(), &st) != 0) {
    return NotFound("no checkpoint ", dir ? "in '" : "'", path, dir ? "' (no 'latest' in it)" : "'",
                    ": a training run writes them to <output-dir>/checkpoints when given "
                    "--checkpoint-every N (every N steps and at the end)");
  }
  CheckpointOptions o;
  o.dir = IsDirectory(path) ? path : ".";
  o.resume = IsDirectory(path) ? "latest" : path;
  CheckpointManager probe(o);
  StatusOr<std::string> file = probe.ResumePath();
  if (!file.ok()) return file.status();
  // ckpt-<step>.ps0-of-<P>.h5: server 0's shard; the manager of that shard merges the others.
  std::string shard;
  const size_t at = file->rfind(".ps0-of-");
  if (at != std::string::npos && file->size() > 3 &&
      file->compare(file->size() - 3, 3, ".h5") == 0) {
    shard = file->substr(at, file->size() - 3 - at);
  }
  CheckpointManager manager(o, shard);
  std::string changed;
  return manager.LoadForResume(&changed);
}

// The model's variables from `c`: each must be there with its dtype and shape.
Status RestoreModel(Session& session, const Checkpoint& c, const std::string& path) {
  auto find = [&](const std::string& name) {
    return std::find_if(c.variables.begin(), c.variables.end(),
                        [&](const auto& p) { return p.first == name; });
  };
  std::string missing;
  for (const VariableInfo& v : session.graph().variables()) {
    if (find(v.variable->name()) == c.variables.end()) {
      missing += (missing.empty() ? "" : ", ") + v.variable->name();
    }
  }
  if (!missing.empty()) {
    return InvalidArgument("checkpoint '", path, "' lacks the model's variables ", missing,
                           ": was it written for another model (--model)?");
  }
  for (const VariableInfo& v : session.graph().variables()) {
    const std::string& name = v.variable->name();
    const Tensor& value = find(name)->second;
    const Output o(v.variable);
    if (value.dtype() != o.dtype() || value.shape() != o.shape()) {
      return InvalidArgument("checkpoint '", path, "': variable '", name, "' is ",
                             DTypeName(value.dtype()), " ", value.shape().ToString(),
                             " but the model's is ", DTypeName(o.dtype()), " ",
                             o.shape().ToString(), ": was it written for another model or data?");
    }
    MPIFLOW_RETURN_IF_ERROR(session.WriteVariable(name, value));
  }
  return Status::OK();
}

}  // namespace

StatusOr<std::unique_ptr<TrainedModel>> LoadTrainedModel(const PredictConfig& config) {
  auto t = std::make_unique<TrainedModel>();
  StatusOr<ModelSpec> spec = LoadModelSpec(config.train.model);
  if (!spec.ok()) return spec.status();
  t->spec = *std::move(spec);
  TrainConfig data_config = config.train;
  data_config.data_sharding = DataSharding::kGlobal;
  StatusOr<TrainingData> loaded = LoadTrainingData(data_config, 1, 0);
  if (!loaded.ok()) return loaded.status();
  t->data = config.test_split ? std::move(loaded->test) : std::move(loaded->train);
  StatusOr<Model> m =
      BuildModel(t->root, t->spec, {t->data.example, t->data.num_classes}, config.train.seed);
  if (!m.ok()) return m.status();
  t->model = *std::move(m);
  t->probabilities = ops::Softmax(t->root, t->model.inference_logits);
  MPIFLOW_RETURN_IF_ERROR(t->root.status());
  StatusOr<Checkpoint> c = LoadCheckpoint(config.checkpoint);
  if (!c.ok()) return c.status();
  SessionOptions so;
  so.intra_op_threads = config.train.threads;
  t->session = std::make_unique<Session>(t->root.graph(), so);
  t->checkpoint =
      IsDirectory(config.checkpoint) ? config.checkpoint + "/latest" : config.checkpoint;
  t->step = GetRunState(*c).position.step;
  MPIFLOW_RETURN_IF_ERROR(RestoreModel(*t->session, *c, t->checkpoint));
  return t;
}

StatusOr<PredictResult> Predict(const PredictConfig& config, Communicator* world) {
  Communicator* comm = world && world->size() > 1 ? world : nullptr;
  const int ranks = comm ? comm->size() : 1, rank = comm ? comm->rank() : 0;
  if (config.batch_size < 1) {
    return InvalidArgument("--batch-size must be positive, got ", config.batch_size);
  }
  StatusOr<std::unique_ptr<TrainedModel>> trained = LoadTrainedModel(config);
  if (!trained.ok()) return trained.status();
  const Dataset& data = (*trained)->data;
  const Model* m = &(*trained)->model;
  Session& session = *(*trained)->session;
  const Output probabilities = (*trained)->probabilities;
  PredictResult r;
  r.checkpoint = (*trained)->checkpoint;
  r.step = (*trained)->step;

  // This rank's contiguous share, in batches; every rank's results land in arrays of the whole
  // split that an allreduce (sum) assembles: (count) prediction, confidence, and the confusion.
  const int64_t count = data.count, size = data.example_size();
  const int classes = data.num_classes;
  const auto [begin, n] = BatchStream::ShardRange(count, ranks, rank);
  Tensor predicted(DType::kFloat64, Shape{count}), confidence(DType::kFloat64, Shape{count});
  Tensor confusion(DType::kFloat64, Shape{int64_t{classes} * classes});
  std::fill_n(predicted.data<double>(), count, 0.0);
  std::fill_n(confidence.data<double>(), count, 0.0);
  std::fill_n(confusion.data<double>(), int64_t{classes} * classes, 0.0);
  // (count, classes) when asked for, else empty
  Tensor every(DType::kFloat32, Shape{config.probabilities ? count : 0, classes});
  std::fill_n(every.data<float>(), every.num_elements(), 0.0f);
  std::vector<Tensor> out;
  for (int64_t b = begin; b < begin + n; b += config.batch_size) {
    const int64_t k = std::min(config.batch_size, begin + n - b);
    std::vector<int64_t> dims = data.example.dims();  // (k, example...)
    dims.insert(dims.begin(), k);
    Tensor x(DType::kFloat32, Shape(dims));
    float* px = x.data<float>();
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < size; ++j) px[i * size + j] = data.Value(b + i, j);
    }
    MPIFLOW_RETURN_IF_ERROR(
        session.Run({{m->features, x}}, {m->predictions, probabilities}, {}, &out));
    for (int64_t i = 0; i < k; ++i) {
      const int64_t p = out[0].data<int64_t>()[i];
      predicted.data<double>()[b + i] = static_cast<double>(p);
      confidence.data<double>()[b + i] = out[1].data<float>()[i * classes + p];
      confusion.data<double>()[data.labels[b + i] * classes + p] += 1;
    }
    if (config.probabilities) {
      std::copy_n(out[1].data<float>(), k * classes, every.data<float>() + b * classes);
    }
  }
  if (comm) {
    // (each example's row is non-zero on one rank only: the sum is exact)
    for (Tensor* t : {&predicted, &confidence, &confusion, &every}) {
      if (t->num_elements() == 0) continue;
      MPIFLOW_RETURN_IF_ERROR(comm->Allreduce(*t, {})->Wait());
    }
  }
  r.count = count;
  r.num_classes = classes;
  r.class_names = data.class_names;
  for (int64_t i = 0; i < int64_t{classes} * classes; ++i) {
    r.confusion.push_back(static_cast<int64_t>(confusion.data<double>()[i]));
  }
  for (int l = 0; l < classes; ++l) r.correct += r.confusion[l * classes + l];
  r.accuracy = count > 0 ? static_cast<double>(r.correct) / static_cast<double>(count) : 0.0;
  if (rank == 0) {
    r.labels = data.labels;
    for (int64_t i = 0; i < count; ++i) {
      r.predictions.push_back(static_cast<int32_t>(predicted.data<double>()[i]));
      r.confidence.push_back(static_cast<float>(confidence.data<double>()[i]));
    }
    r.probabilities.assign(every.data<float>(), every.data<float>() + every.num_elements());
  }
  return r;
}

std::string ConfusionText(const PredictResult& r) {
  std::ostringstream o;
  o << "confusion matrix (rows: label, columns: predicted)\n";
  char cell[32];
  o << "      ";
  for (int p = 0; p < r.num_classes; ++p) {
    std::snprintf(cell, sizeof(cell), " %6d", p);
    o << cell;
  }
  o << "\n";
  for (int l = 0; l < r.num_classes; ++l) {
    std::snprintf(cell, sizeof(cell), "%6d", l);
    o << cell;
    for (int p = 0; p < r.num_classes; ++p) {
      std::snprintf(cell, sizeof(cell), " %6lld",
                    static_cast<long long>(r.confusion[l * r.num_classes + p]));
      o << cell;
    }
    if (l < static_cast<int>(r.class_names.size())) o << "  " << r.class_names[l];
    o << "\n";
  }
  return o.str();
}

}  // namespace mpiflow
