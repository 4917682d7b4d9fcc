// IDX reading (plain and gzip) and its error paths, the synthetic set, and BatchStream's
// seeded shuffling, batching and prefetching.
#include "mpiflow/data.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
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
    StatusOr<ImageDataset> ds = LoadIdx(d + "/i" + suffix, d + "/l" + suffix);
    ASSERT_TRUE(ds.ok()) << ds.status();
    EXPECT_EQ(ds->count, 3);
    EXPECT_EQ(ds->rows, 2);
    EXPECT_EQ(ds->example_size(), 4);
    EXPECT_EQ(ds->images[5], 5);
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
  StatusOr<ImageDataset> three = LoadIdx(d + "/i4", d + "/l200", 201);
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
  EXPECT_EQ(LoadIdx(d + "/trunc", d + "/l").status().message(),
            "'" + d + "/trunc' is truncated: header promises 12 bytes of data, found 11");
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
  ImageDataset d = SyntheticDataset(10, 10, 1);
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
      sizes.push_back(b.images.shape().dim(0));
      first_pixels.push_back(b.images.data<float>()[0]);
      EXPECT_EQ(b.images.shape().dim(1), 784);
    }
    EXPECT_EQ(sizes, (std::vector<int64_t>{4, 4, 2, 4, 4, 2}));
    // the first example of the first batch is example e0[0]
    EXPECT_FLOAT_EQ(first_pixels[0], d.images[e0[0] * 784] / 255.0f);
  }
  o.drop_remainder = true;
  BatchStream dropped(&d, o);
  EXPECT_EQ(dropped.batches_per_epoch(), 2);
}

TEST(SyntheticTest, SameSeedSameBytes) {
  ImageDataset a = SyntheticDataset(20, 10, 3), b = SyntheticDataset(20, 10, 3);
  EXPECT_EQ(a.images, b.images);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.images, SyntheticDataset(20, 10, 4).images);
}

}  // namespace
}  // namespace mpiflow

namespace mpiflow {
namespace {

TEST(Hdf5Dataset, RoundTripsAndReadsARangeThroughAHyperslab) {
  const std::string path = ::testing::TempDir() + "/synthetic.h5";
  std::remove(path.c_str());
  const ImageDataset train = SyntheticDataset(300, 10, 5), test = SyntheticDataset(40, 10, 6);
  ASSERT_TRUE(WriteHdf5Split(path, "train", train, /*chunk_images=*/64, /*compression=*/6).ok());
  ASSERT_TRUE(WriteHdf5Split(path, "test", test, 1000, 0).ok());
  StatusOr<ImageDataset> all = ReadHdf5Split(path, "train");
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->count, 300);
  EXPECT_EQ(all->rows, 28);
  EXPECT_EQ(all->images, train.images);
  EXPECT_EQ(all->labels, train.labels);
  StatusOr<ImageDataset> part = ReadHdf5Split(path, "train", 130, 70);  // across chunks
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->count, 70);
  EXPECT_TRUE(
      std::equal(part->images.begin(), part->images.end(), train.images.begin() + 130 * 784));
  EXPECT_TRUE(std::equal(part->labels.begin(), part->labels.end(), train.labels.begin() + 130));
  EXPECT_EQ(ReadHdf5Split(path, "test")->labels, test.labels);
  // Errors name the file and what is wrong.
  EXPECT_EQ(ReadHdf5Split(path, "train", 250, 60).status().message(),
            "dataset file '" + path + "': examples [250, 310) are outside '/train' (300 examples)");
  EXPECT_EQ(ReadHdf5Split(path, "validation").status().message(),
            "dataset file '" + path + "' has no split '/validation' (try train or test)");
  EXPECT_NE(
      ReadHdf5Split(path + ".missing", "train")
          .status()
          .message()
          .find("is missing or not an HDF5 file (convert IDX files with mpiflow-data convert)"),
      std::string::npos);
  EXPECT_NE(WriteHdf5Split(path, "train", train)
                .message()
                .find("cannot create group '/train' (is it there already?)"),
            std::string::npos);
}

}  // namespace
}  // namespace mpiflow
