// LoadTrainingData and Evaluate (see train_data.h).
#include "train_data.h"

#include <algorithm>
#include <tuple>
#include <utility>

namespace mpiflow {
namespace {

Dataset SliceDataset(const Dataset& d, std::pair<int64_t, int64_t> range) {
  Dataset out = d;
  out.count = range.second;
  const int64_t from = range.first * d.example_size(), to = from + range.second * d.example_size();
  if (d.is_float) {
    out.floats.assign(d.floats.begin() + from, d.floats.begin() + to);
  } else {
    out.bytes.assign(d.bytes.begin() + from, d.bytes.begin() + to);
  }
  out.labels.assign(d.labels.begin() + range.first, d.labels.begin() + range.first + range.second);
  return out;
}

// The checks every source shares; in memory (`slice`), local sharding keeps this rank's share.
StatusOr<TrainingData> Finish(TrainingData d, bool slice, const std::string& source, int data_ranks,
                              int data_rank) {
  if (d.local && slice) {  // in memory: keep this rank's share
    d.global_train = d.train.count;
    d.global_test = d.test.count;
    d.train = SliceDataset(d.train, BatchStream::ShardRange(d.train.count, data_ranks, data_rank));
    d.test = SliceDataset(d.test, BatchStream::ShardRange(d.test.count, data_ranks, data_rank));
  }
  if (d.test.example != d.train.example) {
    return InvalidArgument("'", source, "': the training examples are ", d.train.example.ToString(),
                           " but the test examples ", d.test.example.ToString(),
                           ": both splits must have one shape");
  }
  // Classes the file does not count are the largest label + 1 of either split.
  if (d.train.num_classes_inferred || d.test.num_classes_inferred) {
    const int classes = std::max(d.train.num_classes, d.test.num_classes);
    d.train.num_classes = d.test.num_classes = classes;
  } else if (d.train.num_classes != d.test.num_classes) {
    return InvalidArgument("'", source, "': the training split has ", d.train.num_classes,
                           " classes but the test split ", d.test.num_classes);
  }
  return d;
}

}  // namespace

StatusOr<TrainingData> LoadTrainingData(const TrainConfig& cfg, int data_ranks, int data_rank) {
  TrainingData d;
  // Local sharding: every rank holds only its share of the examples (see BatchStreamOptions).
  d.local = cfg.data_sharding == DataSharding::kLocal && data_ranks > 1;
  if (cfg.dataset == DatasetKind::kSynthetic) {
    d.train = SyntheticDataset(cfg.synthetic_train, 10, static_cast<uint64_t>(cfg.seed));
    d.test = SyntheticDataset(cfg.synthetic_test, 10, static_cast<uint64_t>(cfg.seed) + 1);
  } else if (cfg.dataset == DatasetKind::kHdf5) {  // --data-dir names the file
    // With local sharding a rank reads only its part of each split (a hyperslab).
    for (bool is_train : {true, false}) {
      const char* split = is_train ? "train" : "test";
      int64_t begin = 0, count = -1;
      if (d.local) {
        StatusOr<int64_t> size = Hdf5SplitSize(cfg.data_dir, split);
        if (!size.ok()) return size.status();
        (is_train ? d.global_train : d.global_test) = *size;
        std::tie(begin, count) = BatchStream::ShardRange(*size, data_ranks, data_rank);
      }
      StatusOr<Dataset> r = ReadHdf5Split(cfg.data_dir, split, begin, count);
      if (!r.ok()) return r.status();
      (is_train ? d.train : d.test) = std::move(*r);
    }
  } else if (cfg.dataset == DatasetKind::kWordnetLexname) {
    const std::string dir =
        cfg.data_dir == TrainConfig().data_dir ? "/usr/share/wordnet" : cfg.data_dir;
    StatusOr<WordnetLexname> w = LoadWordnetLexname(dir);
    if (!w.ok()) return w.status();
    d.train = std::move(w->train);
    d.test = std::move(w->test);
  } else {
    StatusOr<Dataset> tr = LoadMnistDirectory(cfg.data_dir, true);
    if (!tr.ok()) return tr.status();
    StatusOr<Dataset> te = LoadMnistDirectory(cfg.data_dir, false);
    if (!te.ok()) return te.status();
    d.train = std::move(*tr);
    d.test = std::move(*te);
  }
  return Finish(std::move(d), cfg.dataset != DatasetKind::kHdf5, cfg.data_dir, data_ranks,
                data_rank);
}

StatusOr<TrainingData> InMemoryTrainingData(const Dataset& train, const Dataset& test,
                                            DataSharding sharding, int data_ranks, int data_rank) {
  TrainingData d;
  d.local = sharding == DataSharding::kLocal && data_ranks > 1;
  d.train = train;
  d.test = test;
  for (const Dataset* s : {&d.train, &d.test}) {
    const int64_t values = s->count * s->example_size();
    if (static_cast<int64_t>(s->is_float ? s->floats.size() : s->bytes.size()) != values ||
        static_cast<int64_t>(s->labels.size()) != s->count) {
      return InvalidArgument("the ", s == &d.train ? "training" : "test", " data holds ",
                             s->is_float ? s->floats.size() : s->bytes.size(), " values and ",
                             s->labels.size(), " labels: ", s->count, " examples of ",
                             s->example.ToString(), " need ", values, " and ", s->count);
    }
    for (int64_t i = 0; i < s->count; ++i) {
      if (s->labels[i] < 0 || s->labels[i] >= s->num_classes) {
        return InvalidArgument("the ", s == &d.train ? "training" : "test", " data's label ",
                               s->labels[i], " of example ", i, " is outside [0, ", s->num_classes,
                               ")");
      }
    }
  }
  return Finish(std::move(d), true, "the data in memory", data_ranks, data_rank);
}

StatusOr<double> Evaluate(Session& session, const Model& m, const TrainingData& data,
                          int64_t batch_size, Communicator* comm) {
  BatchStreamOptions o;
  o.batch_size = batch_size;
  o.shuffle = false;
  o.prefetch = 0;
  if (comm) {
    o.num_shards = comm->size();
    o.shard_index = comm->rank();
    o.local_shards = data.local;
    if (data.local) o.global_count = data.global_test;
  }
  BatchStream stream(&data.test, o);
  Batch b;
  double correct = 0;
  std::vector<Tensor> out;
  while (stream.Next(&b)) {
    MPIFLOW_RETURN_IF_ERROR(
        session.Run({{m.features, b.features}, {m.labels, b.labels}}, {m.correct}, {}, &out));
    if (b.examples > 0) correct += *out[0].data<float>();
  }
  if (comm) {
    Tensor t = Tensor::Scalar<double>(correct);
    MPIFLOW_RETURN_IF_ERROR(comm->Allreduce(t, {})->Wait());
    correct = *t.data<double>();
  }
  return correct / static_cast<double>(data.test_count());
}

}  // namespace mpiflow
