// IDX reading (plain or gzip through zlib), the synthetic dataset, and BatchStream.
// Not a general image decoder: only the IDX ubyte layout MNIST-style datasets use.
#include <sys/stat.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "mpiflow/data.h"
#include "mpiflow/random.h"

namespace mpiflow {
namespace {

bool FileExists(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// The whole file, decompressed when it is gzip (zlib reads plain files through too).
StatusOr<std::vector<uint8_t>> ReadAll(const std::string& path) {
  if (!FileExists(path)) return NotFound("cannot open '", path, "': no such file");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return NotFound("cannot open '", path, "'");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  for (;;) {
    const int n = gzread(f, buf, sizeof(buf));
    if (n < 0) {
      int err = 0;
      const std::string msg = gzerror(f, &err);
      gzclose(f);
      return DataLoss("reading '", path, "' failed: ", msg, " (truncated or corrupt gzip?)");
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(f);
  return out;
}

uint32_t BigEndian32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}

// Parses an IDX ubyte header of `rank` dims; returns the dims and the payload offset.
Status ParseIdx(const std::string& path, const std::vector<uint8_t>& bytes, int rank,
                std::vector<int64_t>* dims, size_t* offset) {
  const size_t header = 4 + 4 * static_cast<size_t>(rank);
  if (bytes.size() < header) {
    return DataLoss("'", path, "' is truncated: ", bytes.size(), " bytes, the IDX header needs ",
                    header);
  }
  const uint32_t magic = BigEndian32(bytes.data());
  const uint32_t expected = 0x00000800u | static_cast<uint32_t>(rank);
  if (magic != expected) {
    char got[16], want[16];
    std::snprintf(got, sizeof(got), "0x%08x", magic);
    std::snprintf(want, sizeof(want), "0x%08x", expected);
    return InvalidArgument("'", path, "' has IDX magic ", got, ", expected ", want,
                           " (unsigned bytes, rank ", rank, "): not the right kind of IDX file");
  }
  dims->clear();
  // The payload the header promises, counted only as far as the file could hold it: four
  // 32-bit dims may multiply past 2^63 (found by fuzz/idx_fuzzer.cc).
  const uint64_t have = bytes.size() - header;
  for (int i = 0; i < rank; ++i) dims->push_back(BigEndian32(bytes.data() + 4 + 4 * i));
  uint64_t total = 1;
  bool beyond = false;
  if (std::find(dims->begin(), dims->end(), 0) != dims->end()) {
    total = 0;
  } else {
    for (int64_t d : *dims) {
      beyond = beyond || total > have / static_cast<uint64_t>(d);
      if (!beyond) total *= static_cast<uint64_t>(d);
    }
  }
  if (beyond || total > have) {
    std::string promised;
    for (int i = 0; i < rank; ++i) promised += StrCat(i ? " x " : "", (*dims)[i]);
    return DataLoss("'", path, "' is truncated: its header promises ", promised,
                    " bytes of data, found ", have);
  }
  *offset = header;
  return Status::OK();
}

}  // namespace

StatusOr<Dataset> LoadIdx(const std::string& images_path, const std::string& labels_path,
                          int num_classes) {
  StatusOr<std::vector<uint8_t>> img = ReadAll(images_path);
  if (!img.ok()) return img.status();
  StatusOr<std::vector<uint8_t>> lab = ReadAll(labels_path);
  if (!lab.ok()) return lab.status();
  std::vector<int64_t> idims, ldims;
  size_t ioff = 0, loff = 0;
  MPIFLOW_RETURN_IF_ERROR(ParseIdx(images_path, *img, 3, &idims, &ioff));
  MPIFLOW_RETURN_IF_ERROR(ParseIdx(labels_path, *lab, 1, &ldims, &loff));
  if (idims[0] != ldims[0]) {
    return InvalidArgument("'", images_path, "' holds ", idims[0], " images but '", labels_path,
                           "' holds ", ldims[0], " labels");
  }
  Dataset d;
  d.count = idims[0];
  d.example = Shape{idims[1], idims[2], 1};  // grayscale: one channel
  d.bytes.assign(img->begin() + ioff, img->begin() + ioff + d.count * d.example_size());
  d.labels.resize(d.count);
  for (int64_t i = 0; i < d.count; ++i) {
    d.labels[i] = (*lab)[loff + i];
    if (d.labels[i] >= num_classes) {
      return Status(Code::kDataLoss, StrCat("'", labels_path, "': label ", d.labels[i],
                                            " of example ", i, " is outside [0, ", num_classes,
                                            ") (the dataset has ", num_classes, " classes)"));
    }
  }
  d.num_classes = num_classes;
  return d;
}

StatusOr<Dataset> LoadMnistDirectory(const std::string& dir, bool train) {
  const std::string prefix = dir + "/" + (train ? "train" : "t10k");
  std::string images = prefix + "-images-idx3-ubyte", labels = prefix + "-labels-idx1-ubyte";
  if (!FileExists(images) && FileExists(images + ".gz")) images += ".gz";
  if (!FileExists(labels) && FileExists(labels + ".gz")) labels += ".gz";
  if (!FileExists(images)) {
    return NotFound("no ", train ? "training" : "test", " images in '", dir, "' (looked for ",
                    images, "[.gz]); install Debian's dataset-fashion-mnist or pass --data-dir");
  }
  StatusOr<Dataset> d = LoadIdx(images, labels);
  return d;
}

Dataset SyntheticDataset(int64_t count, int num_classes, uint64_t seed) {
  constexpr uint64_t kPatternSeed = 0x6d706966;
  Dataset d;
  d.count = count;
  d.example = Shape{28, 28, 1};
  d.num_classes = num_classes;
  d.bytes.resize(count * 784);
  d.labels.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    const int label = static_cast<int>(RandomBits(seed, 1, i) % num_classes);
    d.labels[i] = label;
    for (int64_t p = 0; p < 784; ++p) {
      // class pattern: a fixed random half of the pixels is bright (the same in every split,
      // whatever the seed); per-image noise on top
      const bool on = (RandomBits(kPatternSeed, 1000 + label, p) & 1) != 0;
      const double noise = RandomUniform01(seed, 2, i * 784 + p);
      d.bytes[i * 784 + p] = static_cast<uint8_t>(on ? 128 + 127 * noise : 96 * noise);
    }
  }
  return d;
}

std::vector<int64_t> BatchStream::EpochOrder(int64_t count, uint64_t seed, int64_t epoch,
                                             bool shuffle) {
  std::vector<int64_t> order(count);
  for (int64_t i = 0; i < count; ++i) order[i] = i;
  if (!shuffle) return order;
  for (int64_t i = count - 1; i > 0; --i) {  // Fisher-Yates with counter-based draws
    const int64_t j = static_cast<int64_t>(RandomBits(seed, 0x5eed0000ull + epoch, i) %
                                           static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

BatchStream::BatchStream(const Dataset* data, BatchStreamOptions options)
    : data_(data), opts_(options), plan_(PlanOf(options, data->count, 0)) {
  MPIFLOW_CHECK(opts_.num_shards >= 1 && opts_.shard_index >= 0 &&
                opts_.shard_index < opts_.num_shards && opts_.batch_size >= 1);
  if (opts_.prefetch > 0) producer_ = std::thread([this] { Producer(); });
}

BatchStream::~BatchStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (producer_.joinable()) producer_.join();
}

DataPlan::DataPlan(DataPosition start, int64_t stride, int64_t epoch_length)
    : start_(start), stride_(stride), epoch_length_(epoch_length) {
  MPIFLOW_CHECK(stride >= 1 && epoch_length >= 0 && start.example >= 0 &&
                start.example <= epoch_length);
  per_epoch_ = (epoch_length + stride - 1) / stride;
  first_steps_ = (epoch_length - start.example + stride - 1) / stride;
}

DataPosition DataPlan::At(int64_t step) const {
  const int64_t k = step - start_.step;
  MPIFLOW_CHECK(k >= 0);
  DataPosition p{step, start_.epoch, 0, start_.per_shard};
  if (k < first_steps_) {
    p.example = start_.example + k * stride_;
  } else if (per_epoch_ > 0) {  // past the start's epoch: whole epochs from example 0
    const int64_t after = k - first_steps_;
    p.epoch = start_.epoch + 1 + after / per_epoch_;
    p.example = (after % per_epoch_) * stride_;
  }
  return p;
}

int64_t DataPlan::StepsUntil(int64_t epochs) const {
  if (start_.epoch >= epochs) return start_.step;
  return start_.step + first_steps_ + (epochs - start_.epoch - 1) * per_epoch_;
}

int64_t BatchStream::BatchesPerEpoch(const BatchStreamOptions& o, int64_t count) {
  if (o.local_shards) {  // every shard runs as many steps as the largest needs
    const int64_t largest = ShardRange(o.global_count, o.num_shards, 0).second;
    const int64_t smallest = ShardRange(o.global_count, o.num_shards, o.num_shards - 1).second;
    const int64_t b = o.batch_size;
    return o.drop_remainder ? smallest / b : (largest + b - 1) / b;
  }
  const int64_t b = o.batch_size * o.num_shards;  // the global batch
  return o.drop_remainder ? count / b : (count + b - 1) / b;
}

DataPlan BatchStream::PlanOf(const BatchStreamOptions& o, int64_t count, int64_t first_step) {
  // Global shards step through the one order by global batches; local shards through their
  // own by per-shard batches, every shard as many as the largest takes.
  const int64_t stride = o.local_shards ? o.batch_size : o.batch_size * o.num_shards;
  const int64_t length =
      o.local_shards || o.drop_remainder ? BatchesPerEpoch(o, count) * stride : count;
  return DataPlan({first_step, o.first_epoch, o.first_example, o.local_shards}, stride, length);
}

std::pair<int64_t, int64_t> BatchStream::ShardRange(int64_t count, int64_t shards, int64_t r) {
  const int64_t base = count / shards, extra = count % shards;
  return {r * base + std::min(r, extra), base + (r < extra ? 1 : 0)};
}

bool BatchStream::Make(int64_t ordinal, Batch* batch) {
  const DataPosition at = plan_.At(ordinal);
  if (plan_.epoch_length() == 0 || at.epoch >= opts_.first_epoch + opts_.num_epochs) return false;
  const int64_t epoch = at.epoch;
  if (epoch != order_epoch_) {
    // Local shards each shuffle their own examples, with a seed of their own.
    const uint64_t seed = opts_.local_shards
                              ? Mix64(opts_.seed ^ Mix64(static_cast<uint64_t>(opts_.shard_index)))
                              : opts_.seed;
    order_ = EpochOrder(data_->count, seed, epoch, opts_.shuffle);
    order_epoch_ = epoch;
  }
  int64_t begin, n_r, total, fallback;
  if (opts_.local_shards) {
    // The batch at example e of every shard is its examples [e, e + B), fewer (or none) at
    // the end of a smaller shard; the global batch is the sum over shards.
    const int64_t b = opts_.batch_size;
    begin = at.example;
    n_r = std::clamp<int64_t>(data_->count - begin, 0, b);
    total = 0;
    for (int64_t q = 0; q < opts_.num_shards; ++q) {
      total += std::clamp<int64_t>(
          ShardRange(opts_.global_count, opts_.num_shards, q).second - begin, 0, b);
    }
    fallback = 0;
  } else {
    ShardOfGlobalBatch(at.example, &begin, &n_r, &total, &fallback);
  }
  Fill(begin, n_r, fallback, batch);
  batch->examples = n_r;
  batch->global_examples = total;
  batch->epoch = epoch;
  batch->index = at.example / plan_.stride();
  return true;
}

void BatchStream::ShardOfGlobalBatch(int64_t global_begin, int64_t* begin_out, int64_t* n_out,
                                     int64_t* total_out, int64_t* fallback_out) const {
  // The global batch is order_[global_begin, global_begin + R), R <= G = batch_size *
  // num_shards; shard r takes its r-th contiguous part, the parts as even as R allows. A shard
  // whose part is empty (R < num_shards) gets one example with weight 0, so it still runs the
  // step with the others.
  const int64_t global = opts_.batch_size * opts_.num_shards;
  const int64_t total = std::min(global, data_->count - global_begin);
  const int64_t shards = opts_.num_shards, r = opts_.shard_index;
  const int64_t n_r = total / shards + (r < total % shards ? 1 : 0);
  *begin_out = global_begin + r * (total / shards) + std::min(r, total % shards);
  *n_out = n_r;
  *total_out = total;
  *fallback_out = global_begin;
}

// Fills `batch` with order_[begin, begin + n), or with order_[fallback] alone when n is 0.
void BatchStream::Fill(int64_t begin, int64_t n_r, int64_t fallback, Batch* batch) const {
  const int64_t n = std::max<int64_t>(n_r, 1);
  const int64_t size = data_->example_size();
  std::vector<int64_t> dims = data_->example.dims();  // (batch, example...)
  dims.insert(dims.begin(), n);
  batch->features = Tensor(DType::kFloat32, Shape(dims));
  batch->labels = Tensor(DType::kInt32, Shape{n});
  float* px = batch->features.data<float>();
  int32_t* py = batch->labels.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t ex = order_[n_r > 0 ? begin + i : fallback];
    const float scale = data_->scale, offset = data_->offset;
    float* dst = px + i * size;
    if (data_->is_float) {
      const float* src = data_->floats.data() + ex * size;
      for (int64_t p = 0; p < size; ++p) dst[p] = src[p] * scale + offset;
    } else {
      const uint8_t* src = data_->bytes.data() + ex * size;
      for (int64_t p = 0; p < size; ++p) dst[p] = src[p] * scale + offset;
    }
    py[i] = data_->labels[ex];
  }
}

void BatchStream::Producer() {
  for (int64_t ordinal = 0;; ++ordinal) {
    Batch b;
    const bool ok = Make(ordinal, &b);
    std::unique_lock<std::mutex> lock(mu_);
    if (!ok) {
      done_ = true;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [this] { return stop_ || static_cast<int>(queue_.size()) < opts_.prefetch; });
    if (stop_) return;
    queue_.push_back(std::move(b));
    cv_.notify_all();
  }
}

bool BatchStream::Next(Batch* batch) {
  if (opts_.prefetch <= 0) return Make(next_++, batch);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return !queue_.empty() || done_; });
  if (queue_.empty()) return false;
  *batch = std::move(queue_.front());
  queue_.pop_front();
  cv_.notify_all();
  return true;
}

}  // namespace mpiflow
