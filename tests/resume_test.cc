// Checkpoint and resume in the training loop, one process: a run stopped after K steps and
// resumed for M more ends with the bits of an uninterrupted K+M-step run (SGD and Adam, a resume
// mid-epoch and at an epoch boundary); a preemption (SIGTERM) checkpoints at the next step and
// says so; a checkpoint of another model is refused with the reason; another global batch goes
// on at the example the checkpoint records; old or impossible positions are refused.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include "mpiflow/checkpoint_manager.h"
#include "mpiflow/ops.h"
#include "mpiflow/trainer.h"
#include "tests/fault_hooks.h"

namespace mpiflow {
namespace {

// A config writing under `dir`, which starts empty.
TrainConfig Base(const std::string& dir) {
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(dir + "_whole");
  TrainConfig c;
  c.dataset = DatasetKind::kSynthetic;
  c.synthetic_train = 320;  // 10 steps of 32 per epoch
  c.synthetic_test = 64;
  c.batch_size = 32;
  c.epochs = 3;
  c.optimizer.kind = OptimizerKind::kAdam;
  c.optimizer.lr.base = 0.002;
  c.log_every = 1000000;
  c.output_dir = dir;
  c.prefetch = 0;
  return c;
}

StatusOr<TrainResult> TrainLogged(const TrainConfig& c, std::string* log_text = nullptr,
                                  FaultHooks* hooks = nullptr) {
  std::ostringstream log;
  StatusOr<TrainResult> r = Train(c, log, nullptr, nullptr, hooks);
  if (log_text) *log_text = log.str();
  return r;
}

void ExpectSameBits(const TrainResult& a, const TrainResult& b) {
  ASSERT_EQ(a.variables.size(), b.variables.size());
  for (size_t i = 0; i < a.variables.size(); ++i) {
    EXPECT_TRUE(a.variables[i].second.BitEqual(b.variables[i].second)) << a.variables[i].first;
  }
}

void ResumeMatches(int64_t first, int64_t total, const std::string& optimizer) {
  const std::string dir = ::testing::TempDir() + "/resume_" + optimizer + std::to_string(first);
  TrainConfig c = Base(dir);
  c.optimizer.kind = *ParseOptimizer(optimizer);
  StatusOr<TrainResult> whole = TrainLogged([&] {
    TrainConfig w = c;
    w.output_dir = dir + "_whole";
    w.max_steps = total;
    return w;
  }());
  ASSERT_TRUE(whole.ok()) << whole.status();
  TrainConfig part = c;
  part.max_steps = first;
  part.checkpoint.every_steps = first;
  StatusOr<TrainResult> a = TrainLogged(part);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->last_checkpoint, dir + "/checkpoints/ckpt-" +
                                    std::string(8 - std::to_string(first).size(), '0') +
                                    std::to_string(first) + ".h5");
  TrainConfig rest = c;
  rest.max_steps = total;
  rest.checkpoint.resume = "latest";
  std::string log;
  StatusOr<TrainResult> b = TrainLogged(rest, &log);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->resumed_from, first);
  EXPECT_EQ(b->steps, total);
  EXPECT_NE(log.find("resumed from '" + a->last_checkpoint + "' at step " + std::to_string(first)),
            std::string::npos)
      << log;
  ExpectSameBits(*b, *whole);
  EXPECT_EQ(b->test_accuracy, whole->test_accuracy);
}

TEST(Resume, MidEpochAdamIsBitIdentical) { ResumeMatches(7, 16, "adam"); }
TEST(Resume, AtAnEpochBoundarySgdIsBitIdentical) { ResumeMatches(10, 25, "sgd"); }

TEST(Resume, SigtermCheckpointsAtTheNextStepAndStops) {
  const std::string dir = ::testing::TempDir() + "/preempt";
  TrainConfig c = Base(dir);
  test::InjectedFaults faults;
  faults.Add({test::InjectedFaults::Kind::kSigterm, 0, 6});  // SIGTERM before step 6
  std::string log;
  StatusOr<TrainResult> r = TrainLogged(c, &log, &faults);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->preempted);
  EXPECT_EQ(r->steps, 6);  // the step under way finishes, then the checkpoint
  EXPECT_NE(log.find("stopped by SIGTERM/SIGUSR1 after step 6; resume with --resume latest "
                     "(exit code 75)"),
            std::string::npos)
      << log;
  // Resuming finishes the job with the bits of a run that was never stopped.
  TrainConfig rest = c;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> b = TrainLogged(rest);
  TrainConfig w = c;
  w.output_dir = dir + "_whole";
  StatusOr<TrainResult> whole = TrainLogged(w);
  ASSERT_TRUE(b.ok() && whole.ok());
  EXPECT_EQ(b->steps, 30);
  ExpectSameBits(*b, *whole);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A resumed run continues metrics.jsonl (the records up to its checkpoint stay, the rest are
// the resumed run's), and a resume that fails leaves the output directory as it was.
TEST(Resume, MetricsContinueAcrossAResume) {
  const std::string dir = ::testing::TempDir() + "/metrics";
  TrainConfig c = Base(dir);  // 10 steps per epoch
  c.log_every = 2;
  c.max_steps = 7;
  c.checkpoint.every_steps = 7;
  ASSERT_TRUE(TrainLogged(c).ok());
  const std::string before = Slurp(dir + "/metrics.jsonl"), graph = Slurp(dir + "/graph.mpg");
  TrainConfig cnn = c;
  cnn.model = "cnn";
  cnn.checkpoint.resume = "latest";
  ASSERT_FALSE(TrainLogged(cnn).ok());  // another model's checkpoint: refused
  EXPECT_EQ(Slurp(dir + "/metrics.jsonl"), before);
  EXPECT_EQ(Slurp(dir + "/graph.mpg"), graph);
  TrainConfig rest = c;
  rest.max_steps = 16;
  rest.checkpoint.resume = "latest";
  ASSERT_TRUE(TrainLogged(rest).ok());
  std::istringstream lines(Slurp(dir + "/metrics.jsonl"));
  std::vector<int> steps, evaluated;
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("{\"step\":", 0) == 0) {
      steps.push_back(std::atoi(line.c_str() + 8));
      EXPECT_NE(line.find(",\"time\":"), std::string::npos) << line;
      EXPECT_NE(line.find(",\"lr\":0.002,"), std::string::npos) << line;
    } else if (line.find("test_accuracy") != std::string::npos) {
      evaluated.push_back(std::atoi(line.c_str() + 9));
    }
  }
  EXPECT_EQ(steps, (std::vector<int>{2, 4, 6, 7, 8, 10, 12, 14, 16}));
  EXPECT_EQ(evaluated, (std::vector<int>{1, 2}));  // the first run's mid-epoch one is redone
}

// The global batch changes on a resume on another rank count; one process shows it with another
// batch size: the run goes on at the example its checkpoint records (224 of 320), finishes that
// epoch in batches of 20 and runs the remaining epochs whole.
TEST(Resume, AnotherGlobalBatchGoesOnAtTheSameExample) {
  const std::string dir = ::testing::TempDir() + "/other_batch";
  TrainConfig c = Base(dir);  // 320 examples, batch 32, 3 epochs
  c.max_steps = 7;
  c.checkpoint.every_steps = 7;
  ASSERT_TRUE(TrainLogged(c).ok());
  StatusOr<Checkpoint> ck = ReadCheckpoint(dir + "/checkpoints/ckpt-00000007.h5");
  ASSERT_TRUE(ck.ok()) << ck.status();
  const RunState state = GetRunState(*ck);
  EXPECT_TRUE(state.has_position);
  EXPECT_EQ(state.position.epoch, 0);
  EXPECT_EQ(state.position.example, 224);
  EXPECT_EQ(state.data_ranks, 1);
  TrainConfig rest = c;
  rest.batch_size = 20;
  rest.max_steps = -1;
  rest.checkpoint.resume = "latest";
  std::string log;
  StatusOr<TrainResult> r = TrainLogged(rest, &log);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 7 + 5 + 16 + 16);  // 96 examples left of epoch 1: 5 steps; then 2 x 16
  EXPECT_EQ(r->epochs, 3);
  EXPECT_NE(log.find("batch-size 32 -> 20"), std::string::npos) << log;
  std::istringstream lines(Slurp(dir + "/metrics.jsonl"));
  std::vector<int> evaluated;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("test_accuracy") != std::string::npos) {
      evaluated.push_back(std::atoi(line.c_str() + 9));
    }
  }
  EXPECT_EQ(evaluated, (std::vector<int>{1, 2, 3}));
}

// Rewrites the counters of `path` with `edit`.
void EditCounters(const std::string& path,
                  const std::function<void(std::map<std::string, int64_t>*)>& edit) {
  StatusOr<Checkpoint> ck = ReadCheckpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status();
  edit(&ck->counters);
  ASSERT_TRUE(WriteCheckpoint(path, *ck).ok());
}

// A checkpoint from before positions were recorded resumes only on its rank count; a position
// outside the data is an error naming it.
TEST(Resume, OldOrImpossiblePositionsAreRefused) {
  const std::string dir = ::testing::TempDir() + "/old_position";
  TrainConfig c = Base(dir);
  c.max_steps = 3;
  c.checkpoint.every_steps = 3;
  ASSERT_TRUE(TrainLogged(c).ok());
  const std::string path = dir + "/checkpoints/ckpt-00000003.h5";
  TrainConfig rest = c;
  rest.max_steps = 5;
  rest.checkpoint.resume = path;
  EditCounters(path, [](std::map<std::string, int64_t>* k) { (*k)["example"] = 320; });
  Status s = TrainLogged(rest).status();
  EXPECT_NE(s.message().find("is at example 320 of epoch 1 (step 3), outside this run's 320 "
                             "training examples per epoch"),
            std::string::npos)
      << s;
  EditCounters(path, [](std::map<std::string, int64_t>* k) {
    k->erase("epoch");
    k->erase("example");
    k->erase("data_ranks");
    (*k)["ranks"] = 2;
  });
  s = TrainLogged(rest).status();
  EXPECT_NE(s.message().find("written by a run of 2 ranks before mpiflow recorded data positions; "
                             "resume it with the same number"),
            std::string::npos)
      << s;
  // Written with --data-sharding local over 2 ranks: its example counts within each rank's
  // shard, so one process reading the whole set (or global sharding) must not take it.
  EditCounters(path, [](std::map<std::string, int64_t>* k) {
    (*k)["epoch"] = 0;
    (*k)["example"] = 64;
    (*k)["per_shard"] = 1;
    (*k)["data_ranks"] = 2;
  });
  s = TrainLogged(rest).status();
  EXPECT_NE(s.message().find("was written by 2 data ranks with --data-sharding local, where each "
                             "rank shuffles its own shard: resume it that way on 2 data ranks "
                             "(this run: 1, global)"),
            std::string::npos)
      << s;
  EditCounters(path, [](std::map<std::string, int64_t>* k) {
    k->erase("epoch");
    k->erase("example");
    k->erase("per_shard");
    k->erase("data_ranks");
    (*k)["ranks"] = 2;
  });
  // On its own rank count it resumes, the position following from the step.
  EditCounters(path, [](std::map<std::string, int64_t>* k) { (*k)["ranks"] = 1; });
  StatusOr<TrainResult> r = TrainLogged(rest);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->steps, 5);
}

// A preempted run resumed with another global batch: a schedule over "the whole run"
// (--decay-steps 0) spans the whole run as it now goes, step 0 to the new end (7 steps of 32,
// then 5 + 16 + 16 of 20: 44), so it ends decayed; it does not restart its length at the
// resume, nor keep the old one.
TEST(Resume, AScheduleOverTheWholeRunSpansTheResumedRun) {
  const std::string dir = ::testing::TempDir() + "/schedule";
  TrainConfig c = Base(dir);  // 320 examples, batch 32, 3 epochs: 30 steps
  c.optimizer.lr.kind = ops::LearningRateSchedule::kCosine;
  c.optimizer.lr.decay_steps = 0;
  c.log_every = 1;
  test::InjectedFaults faults;
  faults.Add({test::InjectedFaults::Kind::kSigterm, 0, 7});
  StatusOr<TrainResult> a = TrainLogged(c, nullptr, &faults);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(a->preempted);
  TrainConfig rest = c;
  rest.batch_size = 20;
  rest.checkpoint.resume = "latest";
  StatusOr<TrainResult> b = TrainLogged(rest);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->steps, 44);
  ops::LearningRateOptions whole = c.optimizer.lr, first = c.optimizer.lr;
  whole.decay_steps = 44;
  first.decay_steps = 30;
  std::map<int, double> lr;  // step -> the lr of its update, from metrics.jsonl
  std::istringstream lines(Slurp(dir + "/metrics.jsonl"));
  for (std::string line; std::getline(lines, line);) {
    const size_t at = line.find("\"lr\":");
    if (line.rfind("{\"step\":", 0) == 0 && at != std::string::npos) {
      lr[std::atoi(line.c_str() + 8)] = std::atof(line.c_str() + at + 5);
    }
  }
  ASSERT_EQ(lr.size(), 44u);
  // metrics.jsonl holds 6 significant digits; the wrong lengths differ by percents.
  const double first_lr = ops::LearningRateAt(first, 6);  // the first run's, over 30 steps
  EXPECT_NEAR(lr[7], first_lr, 1e-5 * first_lr);
  for (int step : {8, 20, 44}) {
    const double want = ops::LearningRateAt(whole, step - 1);
    EXPECT_NEAR(lr[step], want, 1e-5 * want + 1e-12) << "step " << step;
  }
  EXPECT_LT(lr[44], 1e-5);  // decayed by the end
}

TEST(Resume, RemovesWhatAKilledWriterLeftBehind) {
  const std::string dir = ::testing::TempDir() + "/stale";
  TrainConfig c = Base(dir);
  std::filesystem::create_directories(dir + "/checkpoints");
  const std::string stale = dir + "/checkpoints/ckpt-00000004.h5.tmp.12345";
  std::ofstream(stale) << "half a checkpoint";
  c.max_steps = 2;
  c.checkpoint.every_steps = 2;
  ASSERT_TRUE(TrainLogged(c).ok());
  EXPECT_FALSE(std::filesystem::exists(stale));
  EXPECT_TRUE(std::filesystem::exists(dir + "/checkpoints/ckpt-00000002.h5"));
}

TEST(Resume, RefusesACheckpointOfAnotherModel) {
  const std::string dir = ::testing::TempDir() + "/other_model";
  TrainConfig c = Base(dir);
  c.max_steps = 2;
  c.checkpoint.every_steps = 2;
  ASSERT_TRUE(TrainLogged(c).ok());
  TrainConfig cnn = c;
  cnn.model = "cnn";
  cnn.checkpoint.resume = "latest";
  const Status s = TrainLogged(cnn).status();
  EXPECT_NE(s.message().find("does not fit this graph: missing from the checkpoint: conv_1/"),
            std::string::npos)
      << s;
  TrainConfig none = Base(::testing::TempDir() + "/nothing_here");
  none.checkpoint.resume = "latest";
  EXPECT_NE(TrainLogged(none).status().message().find("--resume latest: no '"), std::string::npos);
}

}  // namespace
}  // namespace mpiflow
