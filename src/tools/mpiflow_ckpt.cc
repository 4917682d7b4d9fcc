// mpiflow-ckpt: look at checkpoints without Python.
//   mpiflow-ckpt list DIR          the checkpoints in DIR (step, size), the one 'latest' names
//   mpiflow-ckpt inspect FILE      step, counters, job attributes, every variable's dtype/shape
//   mpiflow-ckpt diff FILE FILE    names only in one, dtype/shape differences, the largest
//                                  element difference of every variable in both
//   mpiflow-ckpt upgrade OLD NEW   a format 1 checkpoint (no checksum), which you trust, as a
//                                  checked one
//   mpiflow-ckpt --help | --version
// Exit codes: 0 done (diff: also when they differ), 1 an unreadable checkpoint, 2 usage.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "cli.h"
#include "mpiflow/checkpoint.h"
#include "mpiflow/crash_report.h"

namespace {

using mpiflow::Checkpoint;
using mpiflow::Tensor;

constexpr const char* kTool = "mpiflow-ckpt";

constexpr const char* kUsage =
    "Usage: mpiflow-ckpt list DIR | inspect FILE | diff FILE_A FILE_B | upgrade OLD NEW\n"
    "\n"
    "Commands:\n"
    "  list DIR            the checkpoints in DIR with their steps and sizes, and which one\n"
    "                      'latest' names\n"
    "  inspect FILE        a checkpoint's step, counters, job attributes and variables (dtype,\n"
    "                      shape)\n"
    "  diff FILE_A FILE_B  variables only in one file, dtype or shape differences, and the\n"
    "                      largest absolute element difference of every variable both hold\n"
    "  upgrade OLD NEW     rewrite a format 1 checkpoint (written before checkpoints carried a\n"
    "                      checksum; read as it is, so only one you trust) in today's format\n";

double Element(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case mpiflow::DType::kFloat32:
      return t.data<float>()[i];
    case mpiflow::DType::kFloat64:
      return t.data<double>()[i];
    case mpiflow::DType::kInt32:
      return t.data<int32_t>()[i];
    case mpiflow::DType::kInt64:
      return static_cast<double>(t.data<int64_t>()[i]);
    case mpiflow::DType::kFloat16:
      return mpiflow::HalfToFloat(t.data<mpiflow::Half>()[i]);
    case mpiflow::DType::kBool:
      return t.data<bool>()[i] ? 1 : 0;
    default:
      return 0;
  }
}

int Fail(const mpiflow::Status& s) {
  std::fprintf(stderr, "mpiflow-ckpt: %s\n", s.message().c_str());
  return 1;
}

// upgrade: reads OLD without a checksum (the user vouches for it) and writes it checked.
int Upgrade(const std::string& from, const std::string& to) {
  mpiflow::ReadOptions trust;
  trust.trust_unchecked = true;
  mpiflow::StatusOr<Checkpoint> c = mpiflow::ReadCheckpoint(from, trust);
  if (!c.ok()) return Fail(c.status());
  const mpiflow::Status w = mpiflow::WriteCheckpoint(to, *c);
  if (!w.ok()) return Fail(w);
  std::printf("%s: wrote '%s' (%zu variables, step %lld) with a checksum\n", kTool, to.c_str(),
              c->variables.size(), static_cast<long long>(c->counters["step"]));
  return 0;
}

int List(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (!d) {
    std::fprintf(stderr, "mpiflow-ckpt: cannot open directory '%s'\n", dir.c_str());
    return 1;
  }
  std::vector<std::string> names;
  while (dirent* e = readdir(d)) {
    const std::string n = e->d_name;
    if (n.rfind("ckpt-", 0) == 0 && n.size() > 3 && n.substr(n.size() - 3) == ".h5") {
      names.push_back(n);
    }
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  std::string latest;
  std::ifstream(dir + "/latest") >> latest;
  if (names.empty()) std::printf("no checkpoints in '%s'\n", dir.c_str());
  for (const std::string& n : names) {
    struct stat st;
    const std::string p = dir + "/" + n;
    stat(p.c_str(), &st);
    mpiflow::StatusOr<Checkpoint> c = mpiflow::ReadCheckpoint(p);
    const long long step = c.ok() && c->counters.count("step") ? c->counters.at("step") : -1;
    std::printf("%s  step %lld  %.1f MB%s%s\n", n.c_str(), step, st.st_size / 1e6,
                n == latest ? "  <- latest" : "",
                c.ok() ? "" : ("  UNREADABLE: " + c.status().message()).c_str());
  }
  return 0;
}

int Inspect(const std::string& path) {
  mpiflow::StatusOr<Checkpoint> c = mpiflow::ReadCheckpoint(path);
  if (!c.ok()) return Fail(c.status());
  std::printf("checkpoint '%s'\n", path.c_str());
  for (const auto& [k, v] : c->counters) std::printf("  %-24s %lld\n", k.c_str(), (long long)v);
  for (const auto& [k, v] : c->attributes) std::printf("  %-24s %s\n", k.c_str(), v.c_str());
  int64_t bytes = 0;
  std::printf("  %zu variables:\n", c->variables.size());
  for (const auto& [name, t] : c->variables) {
    std::printf("    %-40s %-8s %s\n", name.c_str(), mpiflow::DTypeName(t.dtype()),
                t.shape().ToString().c_str());
    bytes += static_cast<int64_t>(t.bytes());
  }
  std::printf("  %.2f MB of values\n", bytes / 1e6);
  return 0;
}

int Diff(const std::string& a_path, const std::string& b_path) {
  mpiflow::StatusOr<Checkpoint> a = mpiflow::ReadCheckpoint(a_path);
  if (!a.ok()) return Fail(a.status());
  mpiflow::StatusOr<Checkpoint> b = mpiflow::ReadCheckpoint(b_path);
  if (!b.ok()) return Fail(b.status());
  std::map<std::string, const Tensor*> in_b;
  for (const auto& [n, t] : b->variables) in_b[n] = &t;
  int differ = 0;
  for (const auto& [name, t] : a->variables) {
    auto it = in_b.find(name);
    if (it == in_b.end()) {
      std::printf("only in A: %s\n", name.c_str());
      ++differ;
      continue;
    }
    const Tensor& u = *it->second;
    in_b.erase(it);
    if (t.dtype() != u.dtype() || t.shape() != u.shape()) {
      std::printf("%s: A %s%s, B %s%s\n", name.c_str(), mpiflow::DTypeName(t.dtype()),
                  t.shape().ToString().c_str(), mpiflow::DTypeName(u.dtype()),
                  u.shape().ToString().c_str());
      ++differ;
      continue;
    }
    double worst = 0;
    for (int64_t i = 0; i < t.num_elements(); ++i) {
      worst = std::max(worst, std::fabs(Element(t, i) - Element(u, i)));
    }
    if (worst > 0 || !t.BitEqual(u)) {
      std::printf("%s: max |A - B| = %.6g\n", name.c_str(), worst);
      ++differ;
    }
  }
  for (const auto& [name, t] : in_b) {
    std::printf("only in B: %s\n", name.c_str());
    ++differ;
  }
  std::printf("%d of %zu variables differ\n", differ, a->variables.size() + in_b.size());
  return 0;
}

// "why" (when there is one) and the usage on stderr; the usage exit code.
int Usage(const std::string& why) {
  if (!why.empty()) std::fprintf(stderr, "%s: %s\n", kTool, why.c_str());
  std::fputs(kUsage, stderr);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  mpiflow::InstallCrashReport("mpiflow-ckpt");
  namespace po = boost::program_options;
  std::string cmd;
  std::vector<std::string> args;  // the command's operands
  const po::options_description options = mpiflow::cli::StandardOptions();
  po::variables_map vm;
  if (!mpiflow::cli::ParseSubcommandLine(kTool, argc, argv, options, &cmd, &args, &vm)) return 2;
  if (vm.count("help") || cmd == "help") {
    std::cout << kUsage << "\n"
              << options
              << "\nExit codes: 0 done (diff: also when the files differ), 1 an unreadable "
                 "checkpoint, 2 usage.\n";
    return 0;
  }
  if (vm.count("version")) {
    mpiflow::cli::PrintVersion(kTool);
    return 0;
  }
  if (cmd == "list" && args.size() == 1) return List(args[0]);
  if (cmd == "inspect" && args.size() == 1) return Inspect(args[0]);
  if (cmd == "diff" && args.size() == 2) return Diff(args[0], args[1]);
  if (cmd == "upgrade" && args.size() == 2) return Upgrade(args[0], args[1]);
  if (cmd == "list") return Usage("list takes one directory, DIR");
  if (cmd == "inspect") return Usage("inspect takes one checkpoint file, FILE");
  if (cmd == "diff") return Usage("diff takes two checkpoint files, FILE_A FILE_B");
  if (cmd == "upgrade") return Usage("upgrade takes two checkpoint files, OLD NEW");
  return Usage(cmd.empty() ? "" : "unknown command '" + cmd + "'");
}
