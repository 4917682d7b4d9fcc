// mpiflow-data: training data in HDF5.
//   mpiflow-data convert --data-dir DIR --output FILE [--chunk N] [--compression 0-9]
//       the train and test IDX files of an MNIST-layout directory (Debian's
//       dataset-fashion-mnist) into one HDF5 file: /train and /test, images + labels
//   mpiflow-data info FILE    splits, counts, image size, classes
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "mpiflow/data.h"

namespace {

constexpr const char* kUsage =
    "Usage: mpiflow-data convert --data-dir DIR --output FILE [--chunk N] [--compression 0-9]\n"
    "       mpiflow-data info FILE\n"
    "  convert  IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]) to one HDF5 file\n"
    "           with /train and /test (images uint8 (n,rows,cols) in chunks of N images\n"
    "           (default 1024), deflate level 0-9 (default 4); labels int32 (n))\n"
    "  info     what an HDF5 dataset file holds\n"
    "Train on it with: mpiflow-train --dataset hdf5 --data-dir FILE\n";

int Fail(const mpiflow::Status& s) {
  std::fprintf(stderr, "mpiflow-data: %s\n", s.message().c_str());
  return 1;
}

int Usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "mpiflow-data: %s\n", why.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "info" && argc == 3) {
    for (const char* split : {"train", "test"}) {
      mpiflow::StatusOr<mpiflow::ImageDataset> all = mpiflow::ReadHdf5Split(argv[2], split);
      if (!all.ok()) return Fail(all.status());
      std::printf("/%s: %lld examples of %lldx%lld, %d classes\n", split,
                  static_cast<long long>(all->count), static_cast<long long>(all->rows),
                  static_cast<long long>(all->cols), all->num_classes);
    }
    return 0;
  }
  if (cmd != "convert") return Usage(cmd.empty() ? "" : "unknown command '" + cmd + "'");
  std::string dir, out;
  long long chunk = 1024;
  int compression = 4;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return Usage(a + " needs a value");
    const std::string v = argv[++i];
    char* end = nullptr;
    if (a == "--data-dir") {
      dir = v;
    } else if (a == "--output") {
      out = v;
    } else if (a == "--chunk") {
      chunk = std::strtoll(v.c_str(), &end, 10);
      if (*end || chunk < 1) return Usage("--chunk must be a positive number of images");
    } else if (a == "--compression") {
      compression = static_cast<int>(std::strtol(v.c_str(), &end, 10));
      if (*end || compression < 0 || compression > 9) return Usage("--compression must be 0-9");
    } else {
      return Usage("unknown option '" + a + "'");
    }
  }
  if (dir.empty() || out.empty()) return Usage("convert needs --data-dir and --output");
  std::remove(out.c_str());  // a fresh file
  for (bool train : {true, false}) {
    mpiflow::StatusOr<mpiflow::ImageDataset> d = mpiflow::LoadMnistDirectory(dir, train);
    if (!d.ok()) return Fail(d.status());
    const char* split = train ? "train" : "test";
    mpiflow::Status s = mpiflow::WriteHdf5Split(out, split, *d, chunk, compression);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "mpiflow-data: /%s: %lld images of %lldx%lld\n", split,
                 static_cast<long long>(d->count), static_cast<long long>(d->rows),
                 static_cast<long long>(d->cols));
  }
  std::printf("wrote '%s'\n", out.c_str());
  return 0;
}
