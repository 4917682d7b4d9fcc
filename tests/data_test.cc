// IDX reading (plain and gzip) and its error paths, the synthetic set, and BatchStream's
// seeded shuffling, batching and prefetching.
#include "mpiflow/data.h"

#include <gtest/gtest.h>
#include <hdf5.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <memory>
#include <set>

namespace mpiflow {
namespace {

std::string TempDir() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string dir = ::testing::TempDir() + "mpiflow_" + info->name();
  std::string cmd = "mkdir -p " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  return dir;
}

std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return s;
}

std::string ImagesIdx(uint32_t n, uint32_t rows, uint32_t cols, uint32_t magic = 0x803) {
  std::string s = Be32(magic) + Be32(n) + Be32(rows) + Be32(cols);
  for (uint32_t i = 0; i < n * rows * cols; ++i) s += static_cast<char>(i % 251);
  return s;
}

std::string LabelsIdx(uint32_t n) {
  std::string s = Be32(0x801) + Be32(n);
  for (uint32_t i = 0; i < n; ++i) s += static_cast<char>(i % 10);
  return s;
}

void Write(const std::string& path, const std::string& bytes, bool gzip = false) {
  if (gzip) {
    gzFile f = gzopen(path.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())),
              static_cast<int>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(path, std::ios::binary) << bytes;
  }
}

TEST(IdxTest, ReadsPlainAndGzip) {
  const std::string d = TempDir();
  Write(d + "/i", ImagesIdx(3, 2, 2));
  Write(d + "/l", LabelsIdx(3));
  Write(d + "/i.gz", ImagesIdx(3, 2, 2), true);
  Write(d + "/l.gz", LabelsIdx(3), true);
  for (const char* suffix : {"", ".gz"}) {
    StatusOr<Dataset> ds = LoadIdx(d + "/i" + suffix, d + "/l" + suffix);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(ds->count, 3);
    EXPECT_EQ(ds->example, Shape({2, 2, 1}));
    EXPECT_EQ(ds->example_size(), 4);
    EXPECT_EQ(ds->bytes[5], 5);
    EXPECT_EQ(ds->labels, (std::vector<int32_t>{0, 1, 2}));
  }
}

// A label byte outside the dataset's classes (200 among 0..9) is an error naming the file, the
// example and the label, not a silently larger model.
TEST(IdxTest, ALabelOutsideTheClassesIsAnError) {
  const std::string d = TempDir();
  std::string labels = LabelsIdx(4);
  labels[8 + 2] = static_cast<char>(200);  // example 2
  Write(d + "/i4", ImagesIdx(4, 2, 2));
  Write(d + "/l200", labels);
  EXPECT_EQ(LoadIdx(d + "/i4", d + "/l200").status().message(),
            "'" + d +
                "/l200': label 200 of example 2 is outside [0, 10) (the dataset has 10 "
                "classes)");
  StatusOr<Dataset> three = LoadIdx(d + "/i4", d + "/l200", 201);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(three->num_classes, 201);
}

TEST(IdxTest, BadFilesGiveClearErrors) {
  const std::string d = TempDir();
  Write(d + "/l", LabelsIdx(3));
  Write(d + "/magic", ImagesIdx(3, 2, 2, 0x801));
  EXPECT_EQ(LoadIdx(d + "/magic", d + "/l").status().message(),
            "'" + d +
                "/magic' has IDX magic 0x00000801, expected 0x00000803 (unsigned bytes, "
                "rank 3): not the right kind of IDX file");
  std::string truncated = ImagesIdx(3, 2, 2);
  truncated.resize(truncated.size() - 1);
  Write(d + "/trunc", truncated);
  EXPECT_EQ(
      LoadIdx(d + "/trunc", d + "/l").status().message(),
      "'" + d + "/trunc' is truncated: its header promises 3 x 2 x 2 bytes of data, found 11");
  // Dims whose product passes 2^63 (fuzz/regressions/idx): truncated, not an overflow.
  Write(d + "/huge", std::string("\x00\x00\x08\x03", 4) + std::string(12, '\xff') + "abcd");
  EXPECT_EQ(LoadIdx(d + "/huge", d + "/l").status().message(),
            "'" + d +
                "/huge' is truncated: its header promises 4294967295 x 4294967295 x 4294967295 "
                "bytes of data, found 4");
  Write(d + "/short", std::string("\x00\x00\x08", 3));
  EXPECT_EQ(LoadIdx(d + "/short", d + "/l").status().message(),
            "'" + d + "/short' is truncated: 3 bytes, the IDX header needs 16");
  Write(d + "/four", ImagesIdx(4, 2, 2));
  EXPECT_EQ(LoadIdx(d + "/four", d + "/l").status().message(),
            "'" + d + "/four' holds 4 images but '" + d + "/l' holds 3 labels");
  EXPECT_EQ(LoadIdx(d + "/none", d + "/l").status().message(),
            "cannot open '" + d + "/none': no such file");
  std::string gz_trunc;
  Write(d + "/full.gz", ImagesIdx(50, 28, 28), true);
  {
    std::ifstream in(d + "/full.gz", std::ios::binary);
    gz_trunc.assign(std::istreambuf_iterator<char>(in), {});
  }
  gz_trunc.resize(gz_trunc.size() / 2);
  Write(d + "/cut.gz", gz_trunc);
  Status st = LoadIdx(d + "/cut.gz", d + "/l").status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("cut.gz"), std::string::npos) << st.message();
}

TEST(IdxTest, MnistDirectoryNamesWhatIsMissing) {
  EXPECT_EQ(LoadMnistDirectory("/nonexistent", true).status().message(),
            "no training images in '/nonexistent' (looked for "
            "/nonexistent/train-images-idx3-ubyte[.gz]); install Debian's dataset-fashion-mnist "
            "or pass --data-dir");
}

TEST(BatchStreamTest, ShufflesPerEpochDeterministicallyAndCoversEverything) {
  Dataset d = SyntheticDataset(10, 10, 1);
  const auto e0 = BatchStream::EpochOrder(10, 7, 0, true);
  EXPECT_EQ(e0, BatchStream::EpochOrder(10, 7, 0, true));
  EXPECT_NE(e0, BatchStream::EpochOrder(10, 7, 1, true));
  EXPECT_NE(e0, BatchStream::EpochOrder(10, 8, 0, true));
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()).size(), 10u);

  BatchStreamOptions o;
  o.batch_size = 4;
  o.seed = 7;
  o.num_epochs = 2;
  for (int prefetch : {0, 3}) {
    o.prefetch = prefetch;
    BatchStream s(&d, o);
    EXPECT_EQ(s.batches_per_epoch(), 3);
    Batch b;
    std::vector<int64_t> sizes;
    std::vector<float> first_pixels;
    while (s.Next(&b)) {
      sizes.push_back(b.features.shape().dim(0));
      first_pixels.push_back(b.features.data<float>()[0]);
      EXPECT_EQ(b.features.shape(), Shape({sizes.back(), 28, 28, 1}));
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2, 4, 4, 2}));
    // the first example of the first batch is example e0[0]
    EXPECT_FLOAT_EQ(first_pixels[0], d.bytes[e0[0] * 784] / 255.0f);
  }
  o.drop_remainder = true;
  BatchStream dropped(&d, o);
  EXPECT_EQ(dropped.batches_per_epoch(), 2);
}

TEST(DataPlanTest, StepsThroughEpochsFromAnyExample) {
  // 25 examples in steps of 9, starting at step 4 on example 12 of epoch 1.
  const DataPlan plan({4, 1, 12}, 9, 25);
  EXPECT_EQ(plan.At(4).example, 12);
  EXPECT_EQ(plan.At(5).example, 21);
  EXPECT_EQ(plan.At(5).epoch, 1);
  EXPECT_EQ(plan.At(6).epoch, 2);  // 21 + 9 passes 25: epoch 2 starts at its example 0
  EXPECT_EQ(plan.At(6).example, 0);
  EXPECT_EQ(plan.At(8).example, 18);
  EXPECT_EQ(plan.At(9).epoch, 3);
  EXPECT_EQ(plan.At(9).step, 9);
  EXPECT_EQ(plan.StepsUntil(1), 4);  // already past epoch 0
  EXPECT_EQ(plan.StepsUntil(2), 6);
  EXPECT_EQ(plan.StepsUntil(4), 12);
}

// Labels that name their example, to follow examples through batches.
Dataset Numbered(int64_t count) {
  Dataset d = SyntheticDataset(count, 10, 1);
  for (int64_t i = 0; i < count; ++i) d.labels[i] = static_cast<int32_t>(i);
  return d;
}

// The examples of the next `steps` global batches of `shards` streams, in shard order.
std::vector<int32_t> Take(const Dataset& d, BatchStreamOptions o, int shards, int64_t steps,
                          std::vector<int64_t>* epochs = nullptr) {
  o.num_shards = shards;
  std::vector<std::unique_ptr<BatchStream>> streams;
  for (int r = 0; r < shards; ++r) {
    o.shard_index = r;
    streams.push_back(std::make_unique<BatchStream>(&d, o));
  }
  std::vector<int32_t> seen;
  for (int64_t k = 0; k < steps; ++k) {
    for (auto& s : streams) {
      Batch b;
      if (!s->Next(&b)) return seen;
      if (epochs && s == streams.front()) epochs->push_back(b.epoch);
      for (int64_t i = 0; i < b.examples; ++i) seen.push_back(b.labels.data<int32_t>()[i]);
    }
  }
  return seen;
}

// A run stopped after 2 steps of 2 shards x 3 resumes on 3 shards x 3 at the position its
// checkpoint records: the epochs see every example once, in the order one process would.
TEST(BatchStreamTest, ResumesAtTheSameExampleOnAnotherShardCount) {
  const Dataset d = Numbered(25);
  BatchStreamOptions o;
  o.batch_size = 3;
  o.seed = 7;
  o.num_epochs = 2;
  o.prefetch = 0;
  std::vector<int32_t> seen = Take(d, o, 2, 2);
  const DataPosition at = BatchStream::PlanOf(
                              [&] {
                                BatchStreamOptions two = o;
                                two.num_shards = 2;
                                return two;
                              }(),
                              d.count, 0)
                              .At(2);
  EXPECT_EQ(at.epoch, 0);
  EXPECT_EQ(at.example, 12);
  o.first_epoch = at.epoch;
  o.first_example = at.example;
  BatchStreamOptions three = o;
  three.num_shards = 3;
  const DataPlan plan = BatchStream::PlanOf(three, d.count, at.step);
  EXPECT_EQ(plan.StepsUntil(1), 4);  // 13 examples left of epoch 0: 2 batches of up to 9
  EXPECT_EQ(plan.StepsUntil(2), 7);
  std::vector<int64_t> epochs;
  const std::vector<int32_t> rest = Take(d, o, 3, 100, &epochs);
  EXPECT_EQ(epochs, (std::vector<int64_t>{0, 0, 1, 1, 1}));
  seen.insert(seen.end(), rest.begin(), rest.end());
  std::vector<int32_t> expected;
  for (int64_t epoch : {0, 1}) {
    for (int64_t i : BatchStream::EpochOrder(25, 7, epoch, true)) expected.push_back(i);
  }
  EXPECT_EQ(seen, expected);
}

TEST(SyntheticTest, SameSeedSameBytes) {
  Dataset a = SyntheticDataset(20, 10, 3), b = SyntheticDataset(20, 10, 3);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.bytes, SyntheticDataset(20, 10, 4).bytes);
}

}  // namespace
}  // namespace mpiflow

namespace mpiflow {
namespace {

TEST(Hdf5Dataset, RoundTripsAndReadsARangeThroughAHyperslab) {
  const std::string path = ::testing::TempDir() + "/synthetic.h5";
  std::remove(path.c_str());
  const Dataset train = SyntheticDataset(300, 10, 5), test = SyntheticDataset(40, 10, 6);
  ASSERT_TRUE(WriteHdf5Split(path, "train", train, /*chunk_examples=*/64, /*compression=*/6).ok());
  ASSERT_TRUE(WriteHdf5Split(path, "test", test, 1000, 0).ok());
  StatusOr<Dataset> all = ReadHdf5Split(path, "train");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->count, 300);
  EXPECT_EQ(all->example, Shape({28, 28, 1}));
  EXPECT_FALSE(all->is_float);
  EXPECT_EQ(all->num_classes, 10);
  EXPECT_EQ(all->bytes, train.bytes);
  EXPECT_EQ(all->labels, train.labels);
  StatusOr<Dataset> part = ReadHdf5Split(path, "train", 130, 70);  // across chunks
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->count, 70);
  EXPECT_TRUE(std::equal(part->bytes.begin(), part->bytes.end(), train.bytes.begin() + 130 * 784));
  EXPECT_TRUE(std::equal(part->labels.begin(), part->labels.end(), train.labels.begin() + 130));
  EXPECT_EQ(ReadHdf5Split(path, "test")->labels, test.labels);
  // Errors name the file and what is wrong.
  EXPECT_EQ(ReadHdf5Split(path, "train", 250, 60).status().message(),
            "dataset file '" + path + "': examples [250, 310) are outside '/train' (300 examples)");
  EXPECT_EQ(ReadHdf5Split(path, "validation").status().message(),
            "dataset file '" + path + "' has no split '/validation' (try train or test)");
  EXPECT_NE(ReadHdf5Split(path + ".missing", "train")
                .status()
                .message()
                .find("is missing or not an HDF5 file (make one with mpiflow-data convert)"),
            std::string::npos);
  EXPECT_NE(WriteHdf5Split(path, "train", train)
                .message()
                .find("cannot create group '/train' (is it there already?)"),
            std::string::npos);
}

}  // namespace
}  // namespace mpiflow

namespace mpiflow {
namespace {

// A .npy file as numpy.save writes it (format 1.0): magic, header, raw values.
std::string Npy(const std::string& descr, const std::string& shape, const std::string& raw) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  const uint16_t n = static_cast<uint16_t>(header.size());
  return std::string("\x93NUMPY\x01\x00", 8) + static_cast<char>(n & 0xff) +
         static_cast<char>(n >> 8) + header + raw;
}

template <typename T>
std::string Raw(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

TEST(ArrayFiles, NpyFeaturesAndLabels) {
  const std::string d = ::testing::TempDir();
  WriteFile(d + "/x.npy",
            Npy("<f8", "(2, 2, 3)", Raw<double>({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10.5, -11})));
  WriteFile(d + "/y.npy", Npy("<i8", "(2,)", Raw<int64_t>({4, 1})));
  StatusOr<Dataset> ds = ReadNpyDataset(d + "/x.npy", d + "/y.npy");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->count, 2);
  EXPECT_EQ(ds->example, Shape({2, 3}));
  EXPECT_TRUE(ds->is_float);
  EXPECT_EQ(ds->floats[10], 10.5f);
  EXPECT_EQ(ds->Value(1, 5), -11.0f);
  EXPECT_EQ(ds->labels, (std::vector<int32_t>{4, 1}));
  EXPECT_EQ(ds->num_classes, 5);
  // uint8 features stay bytes, seen as value / 255.
  WriteFile(d + "/u.npy", Npy("|u1", "(2, 2)", Raw<uint8_t>({0, 255, 51, 102})));
  StatusOr<Dataset> bytes = ReadNpyDataset(d + "/u.npy", d + "/y.npy");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  EXPECT_FALSE(bytes->is_float);
  EXPECT_FLOAT_EQ(bytes->Value(1, 0), 0.2f);
  // Mistakes name the file.
  WriteFile(d + "/y3.npy", Npy("<i8", "(3,)", Raw<int64_t>({0, 1, 2})));
  EXPECT_EQ(ReadNpyDataset(d + "/x.npy", d + "/y3.npy").status().message(),
            "'" + d + "/x.npy' is (2, 2, 3) and '" + d +
                "/y3.npy' (3): features must be (n, ...) and labels (n) for the same n");
  EXPECT_EQ(ReadNpyDataset(d + "/x.npy", d + "/x.npy").status().message(),
            "'" + d + "/x.npy' holds <f8: labels must be integers (class ids)");
  WriteFile(d + "/short.npy", Npy("<f4", "(2, 8)", Raw<float>({1, 2, 3})));
  EXPECT_EQ(ReadNpyDataset(d + "/short.npy", d + "/y.npy").status().message(),
            "'" + d + "/short.npy' is truncated: its header promises 16 values of 4 bytes");
  WriteFile(d + "/big.npy", Npy(">f4", "(2, 1)", Raw<float>({1, 2})));
  EXPECT_NE(ReadNpyDataset(d + "/big.npy", d + "/y.npy")
                .status()
                .message()
                .find("holds >f4: only little-endian numbers"),
            std::string::npos);
  WriteFile(d + "/not.npy", "hello");
  EXPECT_EQ(ReadNpyDataset(d + "/not.npy", d + "/y.npy").status().message(),
            "'" + d + "/not.npy' is not a NumPy .npy file (no \\x93NUMPY magic)");
}

TEST(ArrayFiles, CsvRowsWithAHeaderAndALabelColumn) {
  const std::string d = ::testing::TempDir();
  WriteFile(d + "/a.csv", "x,label,y\n0.5,2,-1\r\n1.5,0,3\n\n2.5,1,4\n");
  StatusOr<Dataset> ds = ReadCsvDataset(d + "/a.csv", 1);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->count, 3);
  EXPECT_EQ(ds->example, Shape({2}));
  EXPECT_EQ(ds->floats, (std::vector<float>{0.5f, -1, 1.5f, 3, 2.5f, 4}));
  EXPECT_EQ(ds->labels, (std::vector<int32_t>{2, 0, 1}));
  EXPECT_EQ(ds->num_classes, 3);
  WriteFile(d + "/b.csv", "1,2,3\n0,1,x\n");
  EXPECT_EQ(ReadCsvDataset(d + "/b.csv").status().message(),
            "'" + d + "/b.csv':2: a value that is not a finite number");
  WriteFile(d + "/c.csv", "1,2,3\n0,1\n");
  EXPECT_EQ(ReadCsvDataset(d + "/c.csv").status().message(),
            "'" + d + "/c.csv':2: 2 columns, the first line of data has 3");
  WriteFile(d + "/e.csv", "1.5,2\n");
  EXPECT_EQ(ReadCsvDataset(d + "/e.csv").status().message(),
            "'" + d + "/e.csv':1: label 1.5 is not a class id (an integer from 0)");
  EXPECT_EQ(ReadCsvDataset(d + "/missing.csv").status().message(),
            "cannot open '" + d + "/missing.csv'");
}

// A features array of 3-byte integers (what no writer makes; a damaged type of 65531-byte floats
// crashed HDF5's conversion) is refused before HDF5 converts a value.
TEST(Hdf5Dataset, NumbersOfOddSizesAreRefused) {
  const std::string path = ::testing::TempDir() + "/odd_type.h5";
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t group = H5Gcreate2(file, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[2] = {4, 2};
  hid_t space = H5Screate_simple(2, dims, nullptr), lspace = H5Screate_simple(1, dims, nullptr);
  hid_t three = H5Tcopy(H5T_STD_U32LE);
  H5Tset_size(three, 3);
  hid_t features =
      H5Dcreate2(group, "features", three, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t labels =
      H5Dcreate2(group, "labels", H5T_STD_I32LE, lspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(features, 0);
  ASSERT_GE(labels, 0);
  for (hid_t d : {features, labels}) H5Dclose(d);
  for (hid_t s : {space, lspace}) H5Sclose(s);
  H5Tclose(three);
  H5Gclose(group);
  H5Fclose(file);
  EXPECT_EQ(ReadHdf5Split(path, "train").status().message(),
            "dataset file '" + path +
                "': '/train/features' holds 3-byte and '/train/labels' 4-byte numbers: integers "
                "of 1, 2, 4 or 8 bytes, floats of 4 or 8");
}

// A labels dataset with no num_classes beside it counts its classes from the largest label; one
// of 2^31 - 1 (found by the fuzzer: an int32 overflow) is refused, not wrapped to -2^31.
TEST(Hdf5Dataset, ALabelWithNoClassCountPastInt32IsRefused) {
  const std::string path = ::testing::TempDir() + "/huge_label.h5";
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hid_t group = H5Gcreate2(file, "/train", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  const hsize_t dims[2] = {2, 3};
  hid_t space = H5Screate_simple(2, dims, nullptr), lspace = H5Screate_simple(1, dims, nullptr);
  hid_t features =
      H5Dcreate2(group, "features", H5T_STD_U8LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  hid_t labels =
      H5Dcreate2(group, "labels", H5T_STD_I32LE, lspace, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(features, 0);
  ASSERT_GE(labels, 0);
  const uint8_t pixels[6] = {1, 2, 3, 4, 5, 6};
  int32_t values[2] = {3, 7};
  ASSERT_GE(H5Dwrite(features, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels), 0);
  ASSERT_GE(H5Dwrite(labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
  H5Fflush(file, H5F_SCOPE_GLOBAL);
  StatusOr<Dataset> fine = ReadHdf5Split(path, "train");
  ASSERT_TRUE(fine.ok()) << fine.status().message();
  EXPECT_EQ(fine->num_classes, 8);
  EXPECT_TRUE(fine->num_classes_inferred);
  values[1] = std::numeric_limits<int32_t>::max();
  ASSERT_GE(H5Dwrite(labels, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
  for (hid_t d : {features, labels}) H5Dclose(d);
  for (hid_t s : {space, lspace}) H5Sclose(s);
  H5Gclose(group);
  H5Fclose(file);
  EXPECT_EQ(ReadHdf5Split(path, "train").status().message(),
            "dataset file '" + path +
                "': '/train/labels' holds label 2147483647, past the largest class id "
                "(2147483646); give '/train' a num_classes attribute or fix the labels");
}

// ---- The WordNet lexname task: the dataset description's fingerprints, counts and errors.

// sha256sum's hex digest of `text`.
std::string Sha256(const std::string& text) {
  const std::string path = ::testing::TempDir() + "/sha256_input";
  std::ofstream(path, std::ios::binary) << text;
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(("sha256sum " + path).c_str(), "r"), pclose);
  char hex[65] = {};
  if (!p || std::fread(hex, 1, 64, p.get()) != 64) return "";
  return hex;
}

TEST(WordnetLexname, ReproducesTheTaskExactly) {
  StatusOr<WordnetLexname> w = LoadWordnetLexname(MPIFLOW_WORDNET_DIR);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->train.count, 105736);
  EXPECT_EQ(w->test.count, 11923);
  ASSERT_EQ(w->vocabulary.size(), 33263u);
  EXPECT_EQ(std::vector<std::string>(w->vocabulary.begin(), w->vocabulary.begin() + 5),
            (std::vector<std::string>{"the", "a", "of", "or", "in"}));
  EXPECT_EQ(w->train.example, Shape{82});  // the longest example
  EXPECT_EQ(w->train.num_classes, 45);
  EXPECT_EQ(w->train.class_names[44], "adj.ppl");
  std::string vocab;
  for (const std::string& t : w->vocabulary) vocab += t + "\n";
  EXPECT_EQ(Sha256(vocab), "e7111834cbc8e9e4fb2c966bf56614eae75be20c00ea0a783aedc927bcce3537");
  // The fingerprint's lines are in the files' order, where the splits interleave; the loader
  // keeps each split in that order, so walking the files again with the split rule (offset %
  // 10) takes each example from its split in turn.
  std::string lines;
  int64_t next[2] = {0, 0};
  const Dataset* split[2] = {&w->train, &w->test};
  for (const char* pos : {"noun", "verb", "adj", "adv"}) {
    std::ifstream f(StrCat(MPIFLOW_WORDNET_DIR, "/data.", pos), std::ios::binary);
    std::string line;
    size_t offset = 0;
    while (std::getline(f, line)) {
      const size_t at = offset;
      offset += line.size() + 1;
      if (line.compare(0, 2, "  ") == 0) continue;
      const int t = at % 10 == 0 ? 1 : 0;
      const Dataset& d = *split[t];
      const int64_t i = next[t]++;
      lines += StrCat(t, "\t", d.labels[i], "\t");
      for (int64_t j = 0; j < d.example_size() && d.floats[i * d.example_size() + j] >= 0; ++j) {
        lines += StrCat(j ? " " : "", static_cast<int>(d.floats[i * d.example_size() + j]));
      }
      lines += "\n";
    }
  }
  EXPECT_EQ(next[0], 105736);
  EXPECT_EQ(next[1], 11923);
  EXPECT_EQ(Sha256(lines), "c67ea1ca127057a49c02e952653622925da7bb720a4a8ecc3ac37f24c8d9b0e2");
}

// A directory of the four files, each holding `lines` (the noun file `noun` instead).
std::string WordnetDir(const std::string& noun) {
  const std::string dir = ::testing::TempDir() + "/wordnet";
  std::string cmd = "mkdir -p " + dir;
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  for (const char* pos : {"noun", "verb", "adj", "adv"}) {
    std::ofstream(dir + "/data." + pos, std::ios::binary)
        << (std::string(pos) == "noun" ? noun : "  licence line\n");
  }
  return dir;
}

TEST(WordnetLexname, AMalformedOrMissingFileNamesTheFileAndLine) {
  // A good line: offset 00000016 after a 16-byte licence line.
  const std::string header = "  1 header line\n";
  const std::string good = "00000016 05 n 01 dog 0 000 | a domestic Dog; \"woof\"\n";
  StatusOr<WordnetLexname> w = LoadWordnetLexname(WordnetDir(header + good));
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(w->train.count, 1);
  EXPECT_EQ(w->train.labels, std::vector<int32_t>{5});
  EXPECT_TRUE(w->vocabulary.empty());  // every token seen once: all unknown (id 0)
  EXPECT_EQ(w->train.floats, (std::vector<float>{0, 0, 0, 0}));  // a domestic dog woof
  const std::string dir = ::testing::TempDir() + "/wordnet";
  EXPECT_EQ(LoadWordnetLexname(WordnetDir(header + "00000016 05 n 01 dog 0 000 a dog\n"))
                .status()
                .message(),
            "'" + dir +
                "/data.noun':2: a synset line without ' | ' before its gloss (is it "
                "WordNet 3.0's data file, from Debian's wordnet-base?)");
  EXPECT_EQ(LoadWordnetLexname(WordnetDir(header + "00000017 05 n | a dog\n")).status().message(),
            "'" + dir +
                "/data.noun':2: the synset offset '00000017' is not 8 digits equal to "
                "the line's byte offset 16 (is it WordNet 3.0's data file, from Debian's "
                "wordnet-base?)");
  EXPECT_EQ(LoadWordnetLexname(WordnetDir(header + "00000016 45 n | a dog\n")).status().message(),
            "'" + dir +
                "/data.noun':2: the lexicographer file number '45' is not 00 to 44 (is "
                "it WordNet 3.0's data file, from Debian's wordnet-base?)");
  EXPECT_EQ(LoadWordnetLexname("/nonexistent").status().message(),
            "cannot open '/nonexistent/data.noun': the WordNet task reads Debian's wordnet-base "
            "(apt-get install wordnet-base; --data-dir /usr/share/wordnet)");
}

}  // namespace
}  // namespace mpiflow
