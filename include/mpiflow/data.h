// Datasets for training: labelled examples of any shape, stored as bytes or float32; read from
// IDX files (gzipped or not, as Debian's dataset-fashion-mnist ships them) or HDF5 files (any
// rank, uint8 or float32 features: mpiflow-data converts), a learnable synthetic set for tests
// and benchmarks, and a BatchStream that shuffles with a seed, batches, shards across ranks, and
// prefetches on a background thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "mpiflow/status.h"
#include "mpiflow/tensor.h"

namespace mpiflow {

// Labelled examples in file order. A feature's value is stored * scale + offset, stored as bytes
// (images: scale 1/255) or as float32 (scale 1, offset 0 unless the file says otherwise).
struct Dataset {
  int64_t count = 0;
  Shape example;          // one example: (28, 28, 1) for grayscale images, (n) for vectors, ...
  bool is_float = false;  // stored in `floats`, else in `bytes`
  std::vector<uint8_t> bytes;   // (count, example...) when !is_float
  std::vector<float> floats;    // (count, example...) when is_float
  float scale = 1.0f / 255.0f;  // value = stored * scale + offset
  float offset = 0.0f;
  std::vector<int32_t> labels;  // (count), in [0, num_classes)
  int num_classes = 10;
  bool num_classes_inferred = false;     // HDF5 without a class count: the largest label + 1
  std::vector<std::string> class_names;  // empty, or one per class (HDF5 attribute `classes`)
  int64_t source_count = 0;              // examples in the file or split this was read from (HDF5)
  int64_t example_size() const { return example.num_elements(); }
  // Example i's value j (as the model sees it).
  float Value(int64_t i, int64_t j) const {
    const int64_t k = i * example_size() + j;
    return (is_float ? floats[k] : static_cast<float>(bytes[k])) * scale + offset;
  }
};

// Reads an IDX3 ubyte images file and an IDX1 ubyte labels file (".gz" read through zlib).
// Errors name the file and what is wrong: missing, wrong magic, truncated, counts differ.
// Labels must lie in [0, num_classes) (the MNIST family has 10); one outside is an error naming
// the file, the example and the label.
StatusOr<Dataset> LoadIdx(const std::string& images_path, const std::string& labels_path,
                          int num_classes = 10);

// HDF5 (one file, one group per split; docs in the README, "Your own data"):
//   /<split>/features  (count, example...) uint8 or float32, chunked by `chunk_examples` and
//                      deflate-compressed at `compression` (0: none); attributes scale, offset
//   /<split>/labels    (count) int32
//   /<split> attribute num_classes; file attribute `classes` (strings) when d has class names.
// Adds the split to `path` when the file exists.
Status WriteHdf5Split(const std::string& path, const std::string& split, const Dataset& d,
                      int64_t chunk_examples = 1024, int compression = 4);
// A new HDF5 file (an existing one is replaced) of named arrays at its root, each with its
// tensor's shape and type (float32, float64, int32, int64), and the file attribute `classes`
// when `class_names` has some: what tools write their results to (mpiflow-predict --output
// X.h5). Not a dataset (WriteHdf5Split).
using NamedTensor = std::pair<std::string, Tensor>;
Status WriteHdf5Arrays(const std::string& path, const std::vector<NamedTensor>& arrays,
                       const std::vector<std::string>& class_names = {});
// The number of examples in /<split>, from the file's metadata.
StatusOr<int64_t> Hdf5SplitSize(const std::string& path, const std::string& split);
// Examples [begin, begin + count) of /<split> (count -1: to the end), read through a hyperslab
// selection: a rank reads its part of the file and no more. Features of any rank >= 1 after the
// count: uint8 stays bytes, every other integer or float type is read as float32; the older
// name `images` (count, rows, cols) is read as (rows, cols, 1) images. Labels of any integer
// type. Classes: the file's `classes` attribute, else the split's num_classes, else the largest
// label of the split + 1 (num_classes_inferred).
StatusOr<Dataset> ReadHdf5Split(const std::string& path, const std::string& split,
                                int64_t begin = 0, int64_t count = -1);

// A NumPy .npy features array (n, ...) and a labels array (n) of integers (numpy.save's
// format, C order, little-endian). uint8 features stay bytes (seen as value / 255); any other
// number type becomes float32. Classes: the largest label + 1.
StatusOr<Dataset> ReadNpyDataset(const std::string& features_path, const std::string& labels_path);
// The same from two arrays of a NumPy .npz archive (numpy.savez or savez_compressed), named by
// their keys (x_train and y_train in Keras's files). A missing key is an error that lists the
// archive's arrays.
StatusOr<Dataset> ReadNpzDataset(const std::string& path, const std::string& features,
                                 const std::string& labels);
// A CSV file, one example per line: numbers separated by commas, the label (a class id) in
// column `label_column` (from 0), the rest the features as float32 (an example of shape
// (columns - 1)). A first line that is not all numbers is a header. Errors name the line.
StatusOr<Dataset> ReadCsvDataset(const std::string& path, int label_column = 0);

// The WordNet lexicographer-file task, exactly as ../shared/datasets/wordnet-lexname.md says:
// each synset line of data.noun, data.verb, data.adj and data.adv in `dir` (Debian's
// wordnet-base: /usr/share/wordnet) is an example, test when its offset % 10 == 0; its gloss is
// lowercased and cut into [a-z0-9]+ tokens, each the id of the training split's tokens seen at
// least twice (by count, then bytes, from 1; 0: unknown); its label is its lexicographer file
// (45 classes, named). features (count, longest example) float32: the ids, then -1 (no word, as
// embedding_bag reads it). A missing file or a malformed line is an error naming the file and
// the line.
struct WordnetLexname {
  Dataset train, test;
  std::vector<std::string> vocabulary;  // the token of id 1, 2, ...
};
StatusOr<WordnetLexname> LoadWordnetLexname(const std::string& dir);

// The train or test split of an MNIST-layout directory:
// {train,t10k}-{images-idx3,labels-idx1}-ubyte with or without ".gz".
StatusOr<Dataset> LoadMnistDirectory(const std::string& dir, bool train);

// `count` 28x28 images in `num_classes` classes: each class has its own fixed pattern (shared
// by every seed, so a train and a test split agree) plus per-image noise; the seed picks labels
// and noise. Same seed, same bytes.
Dataset SyntheticDataset(int64_t count, int num_classes, uint64_t seed);

// Where a run stands in its data: after global step `step`, the next global batch starts at
// example `example` of epoch `epoch`'s order (for local shards, at each shard's own example).
// Checkpoints record it, so that a run resumes at the same example on any number of ranks.
struct DataPosition {
  int64_t step = 0;
  int64_t epoch = 0;
  int64_t example = 0;
  bool per_shard = false;  // `example` counts within each rank's own shard (local sharding)
};

// How a run moves through its data from `start` on: each step takes the next `stride` examples
// of an epoch of `epoch_length` (the global batch of the whole dataset; for local shards, the
// per-shard batch of the largest shard's batches). An epoch's last step may take fewer; the
// next epoch starts at its example 0. A resume on another rank count changes the stride, not
// where the run is.
class DataPlan {
 public:
  DataPlan(DataPosition start, int64_t stride, int64_t epoch_length);
  const DataPosition& start() const { return start_; }
  int64_t stride() const { return stride_; }
  int64_t epoch_length() const { return epoch_length_; }
  // The position after global step `step` (>= start().step).
  DataPosition At(int64_t step) const;
  // The global step that ends epoch `epochs` - 1 (start().step when the start is past it).
  int64_t StepsUntil(int64_t epochs) const;

 private:
  DataPosition start_;
  int64_t stride_, epoch_length_;
  int64_t first_steps_;  // steps left in the start's epoch
  int64_t per_epoch_;    // steps in a whole epoch
};

struct Batch {
  Tensor features;  // (batch, example...) float32: the values the model sees
  Tensor labels;    // (batch) int32
  int64_t epoch = 0;
  int64_t index = 0;            // batch index within the epoch (from its first example / stride)
  int64_t examples = 0;         // this shard's examples (0: a stand-in example that must not count)
  int64_t global_examples = 0;  // in the whole global batch, over all shards
};

struct BatchStreamOptions {
  int64_t batch_size = 64;  // per shard: the global batch is batch_size * num_shards
  uint64_t seed = 0;
  bool shuffle = true;          // a new permutation each epoch, from (seed, epoch)
  bool drop_remainder = false;  // false: the last batch of an epoch may be smaller
  int64_t first_epoch = 0;
  // The example of first_epoch's order (of this shard's, for local shards) that the first
  // global batch starts at: a resume's DataPosition::example, on any number of shards.
  int64_t first_example = 0;
  int64_t num_epochs = 1;
  int prefetch = 2;  // batches prepared ahead on a background thread (0: on the caller)
  // Data parallelism: every shard draws the same permutation (from seed and epoch) and takes its
  // own disjoint part of each global batch, so epochs line up across shards and N shards of
  // batch B see exactly the examples one shard of batch N*B would.
  int64_t num_shards = 1;
  int64_t shard_index = 0;
  // Local shards, for data larger than one node's memory: `data` holds only this shard's
  // ShardRange of a dataset of global_count examples (read from HDF5 with a hyperslab); each
  // shard shuffles its own examples, and every shard runs as many steps per epoch as the largest
  // needs (a smaller shard's last batches are short, or a weight-0 stand-in). The batches then
  // differ from one process with batch num_shards * batch_size.
  bool local_shards = false;
  int64_t global_count = 0;
};

// Yields this shard's part of each global batch of epochs [first_epoch, first_epoch + num_epochs).
class BatchStream {
 public:
  BatchStream(const Dataset* data, BatchStreamOptions options);
  ~BatchStream();
  BatchStream(const BatchStream&) = delete;
  BatchStream& operator=(const BatchStream&) = delete;

  // False when the stream is exhausted.
  bool Next(Batch* batch);
  // In a whole epoch.
  int64_t batches_per_epoch() const { return BatchesPerEpoch(opts_, data_->count); }
  // The same for a stream of options `o` over `count` examples (this shard's, for local shards).
  static int64_t BatchesPerEpoch(const BatchStreamOptions& o, int64_t count);
  // The positions of such a stream: steps of `stride` examples (the global batch; for local
  // shards the per-shard batch) through epochs of epoch_length examples, from o.first_example
  // of o.first_epoch, which is the position of global step `first_step`.
  static DataPlan PlanOf(const BatchStreamOptions& o, int64_t count, int64_t first_step);

  // The order of examples in `epoch` (identity when not shuffling).
  static std::vector<int64_t> EpochOrder(int64_t count, uint64_t seed, int64_t epoch, bool shuffle);
  // (first example, example count) of shard r when `count` examples are split over `shards` as
  // evenly as it goes, the first count % shards shards taking one more.
  static std::pair<int64_t, int64_t> ShardRange(int64_t count, int64_t shards, int64_t r);

 private:
  bool Make(int64_t ordinal, Batch* batch);  // ordinal: batch number across epochs
  // Shard's part of the global batch that starts at example `global_begin` of the order.
  void ShardOfGlobalBatch(int64_t global_begin, int64_t* begin, int64_t* n, int64_t* total,
                          int64_t* fallback) const;
  void Fill(int64_t begin, int64_t n, int64_t fallback, Batch* batch) const;
  void Producer();

  const Dataset* data_;
  BatchStreamOptions opts_;
  DataPlan plan_;     // batch k (from 0) starts at plan_.At(k)
  int64_t next_ = 0;  // next ordinal handed out (caller side)
  std::vector<int64_t> order_;
  int64_t order_epoch_ = -1;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  bool done_ = false, stop_ = false;
  std::thread producer_;
};

}  // namespace mpiflow
