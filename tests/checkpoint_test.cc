// HDF5 checkpoints: round trip of every dtype and shape with attributes and counters, the
// layout h5dump sees, restoring into a Session, and bad input (not HDF5, truncated, another
// format, a graph that does not fit) as errors naming the file and the objects, with nothing
// overwritten.
#include "mpiflow/checkpoint.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/models.h"
#include "mpiflow/ops.h"
#include "mpiflow/optimizer.h"
#include "mpiflow/session.h"
#include "tests/fault_hooks.h"

namespace mpiflow {
namespace {

std::string Temp(const std::string& name) { return ::testing::TempDir() + "/" + name; }

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

Checkpoint EveryDType() {
  Checkpoint c;
  c.variables.emplace_back("dense_1/kernel",
                           Tensor::FromVector<float>(Shape{2, 3}, {1, -2, 3.5f, 0, 1e-30f, 7}));
  c.variables.emplace_back("dense_1/kernel/adam_m",
                           Tensor::FromVector<float>(Shape{2, 3}, {0.5f, 0, 0, 0, 0, -1}));
  c.variables.emplace_back("global_step", Tensor::Scalar<int64_t>(4690));
  c.variables.emplace_back("f64", Tensor::FromVector<double>(Shape{3}, {1e300, -0.0, 1.0 / 3}));
  c.variables.emplace_back("i32", Tensor::FromVector<int32_t>(Shape{2, 1, 2}, {1, -2, 3, -4}));
  Tensor half(DType::kFloat16, Shape{3});
  half.data<Half>()[0] = FloatToHalf(1.5f);
  half.data<Half>()[1] = FloatToHalf(-65504.0f);
  half.data<Half>()[2] = FloatToHalf(0.000061035156f);
  c.variables.emplace_back("f16", half);
  Tensor flags(DType::kBool, Shape{2});
  flags.data<bool>()[0] = true;
  flags.data<bool>()[1] = false;
  c.variables.emplace_back("flags", flags);
  c.variables.emplace_back("empty", Tensor(DType::kFloat32, Shape{0, 4}));
  c.attributes["model"] = "mlp";
  c.attributes["graph_fingerprint"] = "0x1234abcd";
  c.counters["run_counter"] = 4700;
  c.counters["data_cursor.rank0"] = -3;
  return c;
}

TEST(Checkpoint, RoundTripsEveryDTypeShapeAttributeAndCounter) {
  const std::string path = Temp("round_trip.h5");
  const Checkpoint c = EveryDType();
  ASSERT_TRUE(WriteCheckpoint(path, c).ok());
  StatusOr<Checkpoint> r = ReadCheckpoint(path);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->attributes, c.attributes);
  EXPECT_EQ(r->counters, c.counters);
  ASSERT_EQ(r->variables.size(), c.variables.size());
  std::map<std::string, Tensor> got(r->variables.begin(), r->variables.end());
  for (const auto& [name, t] : c.variables) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TRUE(got[name].BitEqual(t)) << name << ": " << got[name].DebugString();
  }
  // No temporary file left behind.
  EXPECT_EQ(std::fopen((path + ".tmp." + std::to_string(::getpid())).c_str(), "r"), nullptr);
}

TEST(Checkpoint, H5dumpReadsTheLayout) {
  const std::string path = Temp("layout.h5");
  ASSERT_TRUE(WriteCheckpoint(path, EveryDType()).ok());
  const std::string out = Temp("layout.txt");
  ASSERT_EQ(std::system(("h5dump " + path + " > " + out + " 2>&1").c_str()), 0)
      << Slurp(out) << "\n(h5dump comes from Debian's hdf5-tools)";
  const std::string dump = Slurp(out);
  EXPECT_NE(dump.find("GROUP \"variables\""), std::string::npos) << dump;
  EXPECT_NE(dump.find("DATASET \"kernel\""), std::string::npos);
  EXPECT_NE(dump.find("DATASET \"adam_m\""), std::string::npos);  // under /slots/dense_1/kernel
  EXPECT_NE(dump.find("(0,0): 1, -2, 3.5,"), std::string::npos) << dump;
  EXPECT_NE(dump.find("ATTRIBUTE \"format\""), std::string::npos);
  EXPECT_NE(dump.find("\"mpiflow-checkpoint\""), std::string::npos);
  EXPECT_NE(dump.find("ATTRIBUTE \"run_counter\""), std::string::npos);
  EXPECT_NE(dump.find("(0): 4700"), std::string::npos) << dump;
  // The dataset path h5py users would type.
  ASSERT_EQ(std::system(("h5dump -d /variables/dense_1/kernel " + path + " > " + out).c_str()), 0);
  EXPECT_NE(Slurp(out).find("DATASPACE  SIMPLE { ( 2, 3 ) / ( 2, 3 ) }"), std::string::npos)
      << Slurp(out);
}

TEST(Checkpoint, RestoresIntoAGraphByName) {
  Scope s = Scope::NewRootScope();
  StatusOr<Model> m = BuildModel(s, "mlp", ModelInput{Shape{28, 28, 1}, 10}, 3);
  ASSERT_TRUE(m.ok());
  OptimizerOptions adam;
  adam.kind = OptimizerKind::kAdam;
  ASSERT_TRUE(Minimize(s, m->loss, adam).ok());
  Node* init = ops::InitOp(s);
  Session a(s.graph()), b(s.graph());
  ASSERT_TRUE(a.RunTargets({init}).ok());
  Checkpoint c;
  for (const VariableInfo& v : s.graph()->variables()) {
    StatusOr<Tensor> t = a.ReadVariable(v.variable->name());
    ASSERT_TRUE(t.ok());
    c.variables.emplace_back(v.variable->name(), *t);
  }
  const std::string path = Temp("mlp.h5");
  ASSERT_TRUE(WriteCheckpoint(path, c).ok());
  StatusOr<Checkpoint> r = ReadCheckpoint(path);
  ASSERT_TRUE(r.ok()) << r.status();
  StatusOr<std::vector<std::pair<std::string, Tensor>>> restored =
      RestoreCheckpoint(*r, *s.graph(), path);
  ASSERT_TRUE(restored.ok()) << restored.status();
  for (const auto& [name, t] : *restored) ASSERT_TRUE(b.WriteVariable(name, t).ok()) << name;
  for (const VariableInfo& v : s.graph()->variables()) {
    EXPECT_TRUE(b.ReadVariable(v.variable->name())->BitEqual(*a.ReadVariable(v.variable->name())))
        << v.variable->name();
  }
  // A checkpoint of another graph: every problem in one message, nothing written.
  Checkpoint other = *r;
  for (size_t i = 0; i < other.variables.size(); ++i) {  // dense_1/kernel goes missing
    if (other.variables[i].first == "dense_1/kernel")
      other.variables.erase(other.variables.begin() + i);
  }
  other.variables.emplace_back("conv_1/kernel", Tensor(DType::kFloat32, Shape{5, 5, 1, 32}));
  for (auto& [name, t] : other.variables) {
    if (name == "dense_2/bias") t = Tensor(DType::kFloat32, Shape{128});
  }
  const Status st = RestoreCheckpoint(other, *s.graph(), "other.h5").status();
  EXPECT_EQ(st.message(),
            "checkpoint 'other.h5' does not fit this graph: missing from the checkpoint: "
            "dense_1/kernel; not in the graph: conv_1/kernel; dtype or shape differs: "
            "dense_2/bias (graph float32[256], checkpoint float32[128]). Was it written by "
            "another model or options?");
}

TEST(Checkpoint, BadFilesAreClearErrors) {
  EXPECT_EQ(ReadCheckpoint(Temp("nope.h5")).status().message(),
            "checkpoint '" + Temp("nope.h5") + "': cannot read it: No such file or directory");
  const std::string text = Temp("text.h5");
  std::ofstream(text) << "not hdf5 at all\n";
  EXPECT_EQ(ReadCheckpoint(text).status().message(),
            "checkpoint '" + text +
                "' is not an mpiflow checkpoint (no 'mpiflow-checkpoint' header, and not HDF5)");
  // Truncated: the first half of a good file; damaged: one byte flipped in the middle. Both are
  // refused by the header's size and CRC before HDF5 reads them.
  const std::string good = Temp("good.h5"), cut = Temp("cut.h5"), flipped = Temp("flipped.h5");
  ASSERT_TRUE(WriteCheckpoint(good, EveryDType()).ok());
  const std::string bytes = Slurp(good);
  EXPECT_EQ(bytes.rfind("mpiflow-checkpoint 2 size=" + std::to_string(bytes.size()) + " crc32=", 0),
            0u);
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  EXPECT_EQ(ReadCheckpoint(cut).status().message(),
            StrCat("checkpoint '", cut, "' is truncated or extended: ", bytes.size() / 2,
                   " bytes, its header says ", bytes.size()));
  std::string damaged = bytes;
  damaged[bytes.size() / 2] ^= 0x10;
  std::ofstream(flipped, std::ios::binary) << damaged;
  const Status st = ReadCheckpoint(flipped).status();
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_NE(st.message().find("checkpoint '" + flipped + "' is damaged: its CRC-32 is "),
            std::string::npos)
      << st;
  // Format 1 (no user block, no checksum; h5unjam takes the block off): read only when trusted.
  const std::string old = Temp("format1.h5");
  std::remove(old.c_str());
  ASSERT_EQ(std::system(("h5unjam -i " + good + " -o " + old + " > /dev/null").c_str()), 0);
  EXPECT_NE(ReadCheckpoint(old).status().message().find(
                "has no checksum (format 1, written before mpiflow checked its files), so it is "
                "not read as it is; if you trust it: mpiflow-ckpt upgrade '" +
                old + "' NEW.h5"),
            std::string::npos)
      << ReadCheckpoint(old).status();
  ReadOptions trust;
  trust.trust_unchecked = true;
  StatusOr<Checkpoint> trusted = ReadCheckpoint(old, trust);
  ASSERT_TRUE(trusted.ok()) << trusted.status();
  EXPECT_EQ(trusted->variables.size(), EveryDType().variables.size());
  // An HDF5 file that is not a checkpoint.
  const std::string plain = Temp("plain.h5");
  std::remove(plain.c_str());  // h5copy will not overwrite
  ASSERT_EQ(std::system(("h5copy -i " + good + " -o " + plain + " -s /variables -d /v").c_str()),
            0);
  EXPECT_NE(ReadCheckpoint(plain, trust)
                .status()
                .message()
                .find("is an HDF5 file but not an mpiflow checkpoint"),
            std::string::npos);
}

TEST(Checkpoint, AFailedWriteLeavesThePreviousFileWhole) {
  const std::string path = Temp("keep.h5");
  ASSERT_TRUE(WriteCheckpoint(path, EveryDType()).ok());
  const std::string before = Slurp(path);
  Checkpoint bad = EveryDType();
  bad.variables.emplace_back("unset", Tensor::Unallocated(DType::kFloat32, Shape{2}));
  const Status st = WriteCheckpoint(path, bad);
  EXPECT_EQ(st.message(), "checkpoint '" + path + "': variable 'unset' has no value yet");
  EXPECT_EQ(Slurp(path), before);
  bad = EveryDType();
  bad.variables.push_back(bad.variables.front());
  EXPECT_NE(WriteCheckpoint(path, bad).message().find("given twice"), std::string::npos);
  EXPECT_EQ(Slurp(path), before);
  EXPECT_NE(WriteCheckpoint("/nonexistent/dir/x.h5", EveryDType())
                .message()
                .find("cannot create the temporary file"),
            std::string::npos);
}

// Kill the writer (in a child process) at every crash point of a checkpoint write: the file
// it replaces always loads, bit for bit, and once the rename happened the new one does.
TEST(Checkpoint, AKilledWriterNeverLeavesABrokenFile) {
  const std::string path = Temp("crash.h5");
  Checkpoint old_c = EveryDType(), new_c = EveryDType();
  old_c.counters["step"] = 1;
  new_c.counters["step"] = 2;
  const int points =
      static_cast<int>(new_c.variables.size()) + 3;  // datasets, flush, fsync, rename
  for (int point = 1; point <= points + 1; ++point) {
    ASSERT_TRUE(WriteCheckpoint(path, old_c).ok());
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      test::InjectedFaults faults;
      faults.CrashCheckpointAt(point);
      std::_Exit(WriteCheckpoint(path, new_c, &faults).ok() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    const bool crashed = WIFEXITED(status) && WEXITSTATUS(status) == 9;
    EXPECT_EQ(crashed, point <= points) << "crash point " << point;
    StatusOr<Checkpoint> r = ReadCheckpoint(path);
    ASSERT_TRUE(r.ok()) << "crash point " << point << ": " << r.status();
    // Before the rename the old file is there; from the rename on, the new one.
    EXPECT_EQ(r->counters["step"], point <= points - 1 ? 1 : 2) << "crash point " << point;
    EXPECT_EQ(r->variables.size(), old_c.variables.size());
  }
}

// A table split by rows over two parameter servers: each shard holds its rows of the table
// and of its slot (the slice stored as attributes, which a read gives back); a resume's merge
// puts the table together; shards whose parts leave a row out are refused, naming the table.
TEST(CheckpointManagerTest, MergesATableSplitByRowsFromItsShards) {
  const std::string dir = Temp("split_rows");
  std::filesystem::remove_all(dir);
  auto shard = [&](int k, int64_t first, std::vector<float> rows) {
    Checkpoint c;
    const int64_t n = static_cast<int64_t>(rows.size()) / 2;
    c.variables.emplace_back("table", Tensor::FromVector<float>(Shape{n, 2}, rows));
    for (float& x : rows) x *= 10;
    c.variables.emplace_back("table/adam_m", Tensor::FromVector<float>(Shape{n, 2}, rows));
    c.variables.emplace_back("global_step", Tensor::Scalar<int64_t>(7));
    c.row_slices["table"] = {first, 3};
    c.row_slices["table/adam_m"] = {first, 3};
    CheckpointOptions o;
    o.dir = dir;
    CheckpointManager m(o, CheckpointManager::ShardSuffix(k, 2));
    return m.Save(c, 7, /*point_latest=*/k == 0);
  };
  ASSERT_TRUE(shard(0, 0, {1, 2, 3, 4}).ok());
  ASSERT_TRUE(shard(1, 2, {5, 6}).ok());
  StatusOr<Checkpoint> one = ReadCheckpoint(dir + "/ckpt-00000007.ps1-of-2.h5");
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->row_slices["table"].first, 2);
  EXPECT_EQ(one->row_slices["table"].rows, 3);
  EXPECT_EQ(one->row_slices.count("global_step"), 0u);
  CheckpointOptions o;
  o.dir = dir;
  o.resume = "latest";
  CheckpointManager resume(o, CheckpointManager::ShardSuffix(0, 1));  // now on one server
  std::string changed;
  StatusOr<Checkpoint> c = resume.LoadForResume(&changed);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->row_slices.empty());
  std::map<std::string, Tensor> got(c->variables.begin(), c->variables.end());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_TRUE(got["table"].BitEqual(Tensor::FromVector<float>(Shape{3, 2}, {1, 2, 3, 4, 5, 6})));
  EXPECT_TRUE(got["table/adam_m"].BitEqual(
      Tensor::FromVector<float>(Shape{3, 2}, {10, 20, 30, 40, 50, 60})));
  ASSERT_TRUE(shard(1, 1, {5, 6}).ok());  // rows 0-1 and 1: row 2 in none, row 1 twice
  StatusOr<Checkpoint> bad = resume.LoadForResume(&changed);
  EXPECT_EQ(bad.status().message(),
            StrCat("checkpoint '", dir,
                   "/ckpt-00000007.ps0-of-2.h5': the parts of 'table' in its shards do not make "
                   "its 3 rows once each (rows from 2 are missing or twice): the shards are not "
                   "of one run"));
}

// The checkpoint manager's writer killed at each of 101 crash points of a save (95 datasets,
// the file's flush, fsync and rename, `latest`'s temporary and rename, the removal of the
// checkpoint before): `latest` always names a checkpoint that loads whole, and it names the new
// one from its rename on; the previous one is removed only after that.
TEST(CheckpointManagerTest, AWriterKilledAtAnyOf101PointsLosesNothing) {
  const std::string dir = Temp("killed_manager");
  CheckpointOptions o;
  o.dir = dir;
  o.every_steps = 1;
  o.keep = 1;
  Checkpoint c;
  for (int i = 0; i < 95; ++i) {
    c.variables.emplace_back(StrCat("v", i),
                             Tensor::FromVector<float>(Shape{2}, {static_cast<float>(i), 1.0f}));
  }
  const int points = 95 + 3 + 2 + 1, renamed = 95 + 3 + 2;
  for (int point = 1; point <= points + 1; ++point) {
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(CheckpointManager(o).Save(c, 1).ok());
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      test::InjectedFaults faults;
      faults.CrashCheckpointAt(point);
      CheckpointManager m(o, "", &faults);
      std::_Exit(m.Save(c, 2).ok() ? 0 : 1);
    }
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    const bool crashed = WIFEXITED(status) && WEXITSTATUS(status) == 9;
    EXPECT_EQ(crashed, point <= points) << "crash point " << point;
    std::ifstream latest(dir + "/latest");
    std::string name;
    ASSERT_TRUE(static_cast<bool>(latest >> name)) << "crash point " << point;
    StatusOr<Checkpoint> r = ReadCheckpoint(dir + "/" + name);
    ASSERT_TRUE(r.ok()) << "crash point " << point << ": " << r.status();
    EXPECT_EQ(r->variables.size(), 95u);
    EXPECT_EQ(r->counters["step"], point < renamed ? 1 : 2) << "crash point " << point;
    EXPECT_EQ(std::filesystem::exists(dir + "/ckpt-00000001.h5"), point < points)
        << "crash point " << point;
  }
}

}  // namespace
}  // namespace mpiflow
