// mpiflow-data: training data in HDF5.
//   mpiflow-data convert --data-dir DIR --output FILE [--chunk N] [--compression 0-9]
//       the train and test IDX files of an MNIST-layout directory (Debian's
//       dataset-fashion-mnist) into one HDF5 file: /train and /test, images + labels
//   mpiflow-data info FILE    splits, counts, image size, classes
//   mpiflow-data --help | --version
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"
#include "mpiflow/data.h"

namespace {

constexpr const char* kTool = "mpiflow-data";

constexpr const char* kUsage =
    "Usage: mpiflow-data convert --data-dir DIR --output FILE [--chunk N] [--compression 0-9]\n"
    "       mpiflow-data info FILE\n"
    "\n"
    "Commands:\n"
    "  convert    IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]) to one HDF5\n"
    "             file with /train and /test (images uint8 (n,rows,cols) in chunks of --chunk\n"
    "             images (default 1024), deflate level --compression (default 4); labels\n"
    "             int32 (n))\n"
    "  info FILE  what an HDF5 dataset file holds\n"
    "Train on it with: mpiflow-train --dataset hdf5 --data-dir FILE\n";

int Fail(const mpiflow::Status& s) {
  std::fprintf(stderr, "%s: %s\n", kTool, s.message().c_str());
  return 1;
}

// "why" (when there is one) and the usage on stderr; the usage exit code.
int Usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "%s: %s\n", kTool, why.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

// "(28, 28, 1)"
std::string ShapeText(const mpiflow::Shape& s) {
  std::string t = "(";
  for (int i = 0; i < s.rank(); ++i) t += (i ? ", " : "") + std::to_string(s.dim(i));
  return t + (s.rank() == 1 ? ",)" : ")");
}

int Info(const std::string& path) {
  for (const char* split : {"train", "test"}) {
    mpiflow::StatusOr<mpiflow::Dataset> all = mpiflow::ReadHdf5Split(path, split);
    if (!all.ok()) return Fail(all.status());
    std::printf("/%s: %lld examples of %s %s (value = stored * %g + %g), %d classes%s\n", split,
                static_cast<long long>(all->count), ShapeText(all->example).c_str(),
                all->is_float ? "float32" : "uint8", all->scale, all->offset, all->num_classes,
                all->num_classes_inferred ? " (the largest label + 1: the file does not say)" : "");
    std::vector<long long> per_class(static_cast<size_t>(all->num_classes), 0);
    for (int32_t l : all->labels) ++per_class[static_cast<size_t>(l)];
    for (int c = 0; c < all->num_classes; ++c) {
      const std::string name = c < static_cast<int>(all->class_names.size())
                                   ? " " + all->class_names[static_cast<size_t>(c)]
                                   : "";
      std::printf("  class %d%s: %lld\n", c, name.c_str(), per_class[static_cast<size_t>(c)]);
    }
  }
  return 0;
}

int Convert(const std::string& dir, const std::string& out, long long chunk, int compression) {
  std::remove(out.c_str());  // a fresh file
  for (bool train : {true, false}) {
    mpiflow::StatusOr<mpiflow::Dataset> d = mpiflow::LoadMnistDirectory(dir, train);
    if (!d.ok()) return Fail(d.status());
    const char* split = train ? "train" : "test";
    mpiflow::Status s = mpiflow::WriteHdf5Split(out, split, *d, chunk, compression);
    if (!s.ok()) return Fail(s);
    std::fprintf(stderr, "%s: /%s: %lld examples of %s\n", kTool, split,
                 static_cast<long long>(d->count), ShapeText(d->example).c_str());
  }
  std::printf("wrote '%s'\n", out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  namespace po = boost::program_options;
  std::string cmd, dir, out;
  std::vector<std::string> args;  // the command's operands
  long long chunk = 1024;
  int compression = 4;
  po::options_description convert("Options of convert");
  // clang-format off
  convert.add_options()
    ("data-dir", po::value(&dir)->value_name("DIR"),
     "directory of the IDX files (needed)")
    ("output", po::value(&out)->value_name("FILE"), "the HDF5 file to write, replaced (needed)")
    ("chunk", po::value(&chunk)->default_value(chunk), "images per HDF5 chunk")
    ("compression", po::value(&compression)->default_value(compression), "deflate level, 0-9");
  // clang-format on
  po::options_description shown;
  shown.add(convert).add(mpiflow::cli::StandardOptions());
  po::variables_map vm;
  if (!mpiflow::cli::ParseSubcommandLine(kTool, argc, argv, shown, &cmd, &args, &vm)) return 2;
  if (vm.count("help") || cmd == "help") {
    std::cout << kUsage << shown
              << "\nExit codes: 0 done, 1 failed (the reason on stderr), 2 usage.\n";
    return 0;
  }
  if (vm.count("version")) {
    mpiflow::cli::PrintVersion(kTool);
    return 0;
  }
  if (cmd == "info") {
    for (const char* o : {"data-dir", "output", "chunk", "compression"}) {
      if (vm.count(o) && !vm[o].defaulted()) {
        return Usage(std::string("--") + o + " is an option of convert, not of info");
      }
    }
    if (args.size() != 1) return Usage("info takes one HDF5 file, FILE");
    return Info(args[0]);
  }
  if (cmd != "convert") return Usage(cmd.empty() ? "" : "unknown command '" + cmd + "'");
  if (!args.empty()) return Usage("convert takes only options, not '" + args[0] + "'");
  if (chunk < 1) {
    return Usage("--chunk must be a positive number of images, got " + std::to_string(chunk));
  }
  if (compression < 0 || compression > 9) {
    return Usage("--compression must be 0-9, got " + std::to_string(compression));
  }
  if (dir.empty() || out.empty()) return Usage("convert needs --data-dir and --output");
  return Convert(dir, out, chunk, compression);
}
