// mpiflow-data: training data in HDF5.
//   mpiflow-data convert [--from idx] --data-dir DIR --output FILE [--chunk N] [--compression 0-9]
//       the train and test IDX files of an MNIST-layout directory (Debian's
//       dataset-fashion-mnist) into one HDF5 file: /train and /test, features + labels
//   mpiflow-data convert --from csv --train A.csv --test B.csv [--label-column K] [--shape D,..]
//   mpiflow-data convert --from npy --train X.npy,y.npy --test X.npy,y.npy
//   mpiflow-data convert --from npz --train A.npz[:X,y] --test B.npz[:X,y]
//   mpiflow-data convert --from wordnet-lexname [--data-dir /usr/share/wordnet]
//       the same from CSV files (one example per line) or NumPy arrays (files or archives)
//   mpiflow-data info FILE    splits, counts, image size, classes
//   mpiflow-data --help | --version
// Exit codes: 0 done, 1 failed (the reason on stderr), 2 usage.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "mpiflow/crash_report.h"
#include "mpiflow/data.h"

namespace {

constexpr const char* kTool = "mpiflow-data";

constexpr const char* kUsage =
    "Usage: mpiflow-data convert --data-dir DIR --output FILE [--chunk N] [--compression 0-9]\n"
    "       mpiflow-data convert --from csv --train A.csv --test B.csv --output FILE\n"
    "                            [--label-column K] [--shape D1,D2,...]\n"
    "       mpiflow-data convert --from npy --train X.npy,y.npy --test X.npy,y.npy --output FILE\n"
    "       mpiflow-data convert --from npz --train A.npz[:X,y] --test B.npz[:X,y] --output FILE\n"
    "       mpiflow-data convert --from wordnet-lexname [--data-dir DIR] --output FILE\n"
    "       mpiflow-data info FILE\n"
    "\n"
    "Commands:\n"
    "  convert    IDX files ({train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]) to one HDF5\n"
    "             file with /train and /test (features uint8 (n,rows,cols,1) in chunks of\n"
    "             --chunk examples (default 1024), deflate level --compression (default 4); "
    "labels\n"
    "             int32 (n)); --from csv: one example per line, the label in column K (from\n"
    "             0), a header line allowed, features float32 (reshaped by --shape); --from\n"
    "             npy: numpy.save arrays, features (n, ...) and integer labels (n); --from\n"
    "             npz: the same two arrays in a numpy.savez(_compressed) archive, by key\n"
    "             (default x_train,y_train for --train and x_test,y_test for --test)\n"
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

struct Sources {
  std::string from = "idx", dir, train, test, shape;
  int label_column = 0;
};

// One split from the chosen source.
mpiflow::StatusOr<mpiflow::Dataset> ReadSplit(const Sources& in, bool train) {
  if (in.from == "idx") return mpiflow::LoadMnistDirectory(in.dir, train);
  if (in.from == "wordnet-lexname") {  // the task as training builds it (data.h)
    mpiflow::StatusOr<mpiflow::WordnetLexname> w =
        mpiflow::LoadWordnetLexname(in.dir.empty() ? "/usr/share/wordnet" : in.dir);
    if (!w.ok()) return w.status();
    return train ? std::move(w->train) : std::move(w->test);
  }
  const std::string& file = train ? in.train : in.test;
  if (in.from == "csv") {
    mpiflow::StatusOr<mpiflow::Dataset> d = mpiflow::ReadCsvDataset(file, in.label_column);
    if (!d.ok() || in.shape.empty()) return d;
    std::vector<int64_t> dims;
    std::stringstream ss(in.shape);
    std::string item;
    while (std::getline(ss, item, ',')) dims.push_back(std::atoll(item.c_str()));
    const mpiflow::Shape shape(dims);
    if (shape.num_elements() != d->example_size() || dims.empty()) {
      return mpiflow::InvalidArgument("--shape ", in.shape, " holds ", shape.num_elements(),
                                      " values but '", file, "' has ", d->example_size(),
                                      " features per line");
    }
    d->example = shape;
    return d;
  }
  if (in.from == "npz") {
    // FILE.npz or FILE.npz:FEATURES,LABELS (the keys: x_train,y_train for the training split)
    const size_t colon = file.rfind(':');
    std::string keys = train ? "x_train,y_train" : "x_test,y_test", archive = file;
    if (colon != std::string::npos && file.find(',', colon) != std::string::npos) {
      archive = file.substr(0, colon);
      keys = file.substr(colon + 1);
    }
    const size_t comma = keys.find(',');
    if (comma == 0 || comma + 1 >= keys.size()) {
      return mpiflow::InvalidArgument("--from npz: --", train ? "train" : "test",
                                      " takes FILE.npz or FILE.npz:FEATURES,LABELS, got '", file,
                                      "'");
    }
    return mpiflow::ReadNpzDataset(archive, keys.substr(0, comma), keys.substr(comma + 1));
  }
  const size_t comma = file.find(',');
  if (comma == std::string::npos) {
    return mpiflow::InvalidArgument("--from npy: --", train ? "train" : "test",
                                    " takes FEATURES.npy,LABELS.npy, got '", file, "'");
  }
  return mpiflow::ReadNpyDataset(file.substr(0, comma), file.substr(comma + 1));
}

int Convert(const Sources& in, const std::string& out, long long chunk, int compression) {
  mpiflow::StatusOr<mpiflow::Dataset> splits[2] = {ReadSplit(in, true), ReadSplit(in, false)};
  for (const auto& d : splits) {
    if (!d.ok()) return Fail(d.status());
  }
  // One class count for both splits: the larger.
  const int classes = std::max(splits[0]->num_classes, splits[1]->num_classes);
  std::remove(out.c_str());  // a fresh file
  for (bool train : {true, false}) {
    mpiflow::StatusOr<mpiflow::Dataset>& d = splits[train ? 0 : 1];
    d->num_classes = classes;
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
  mpiflow::InstallCrashReport("mpiflow-data");
  namespace po = boost::program_options;
  std::string cmd, out;
  Sources in;
  std::vector<std::string> args;  // the command's operands
  long long chunk = 1024;
  int compression = 4;
  po::options_description convert("Options of convert");
  // clang-format off
  convert.add_options()
    ("from", po::value(&in.from)->default_value(in.from),
     "idx, csv, npy, npz, or wordnet-lexname (the WordNet task from --data-dir, default "
     "/usr/share/wordnet: word ids as float32, -1 pads)")
    ("data-dir", po::value(&in.dir)->value_name("DIR"),
     "idx: the directory of the IDX files")
    ("train", po::value(&in.train)->value_name("FILE"),
     "csv: the training CSV; npy: FEATURES.npy,LABELS.npy; npz: FILE.npz[:FEATURES,LABELS]")
    ("test", po::value(&in.test)->value_name("FILE"), "as --train, the test split")
    ("label-column", po::value(&in.label_column)->default_value(0), "csv: the label's column, from 0")
    ("shape", po::value(&in.shape)->value_name("D1,D2,..."),
     "csv: one example's shape (e.g. 28,28,1), default (features)")
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
    for (const char* o : {"data-dir", "output", "chunk", "compression", "train", "test", "shape"}) {
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
  if (in.from != "idx" && in.from != "csv" && in.from != "npy" && in.from != "npz" &&
      in.from != "wordnet-lexname") {
    return Usage("--from must be idx, csv, npy, npz or wordnet-lexname, got '" + in.from + "'");
  }
  if (out.empty()) return Usage("convert needs --output");
  if (in.from == "idx" && in.dir.empty()) return Usage("convert --from idx needs --data-dir");
  if (in.from != "idx" && in.from != "wordnet-lexname" && (in.train.empty() || in.test.empty())) {
    return Usage("convert --from " + in.from + " needs --train and --test");
  }
  return Convert(in, out, chunk, compression);
}
