// ThreadPool: ParallelFor covers every index once in contiguous blocks, on the caller and the
// workers, and returns only when all are done (many short calls in a row: the pattern that
// exposed a block touching the caller's frame after it returned); Schedule runs every closure,
// the queue drained before the destructor returns. Also run under ThreadSanitizer (CI).
#include "mpiflow/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace mpiflow {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> hits(10007);
  std::atomic<int> blocks{0};
  pool.ParallelFor(static_cast<int64_t>(hits.size()), [&](int64_t begin, int64_t end) {
    EXPECT_LT(begin, end);
    blocks.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < hits.size(); ++i) ASSERT_EQ(hits[i].load(), 1) << i;
  EXPECT_EQ(blocks.load(), 4);  // num_threads + 1: one on the caller
}

TEST(ThreadPoolTest, ManyShortParallelForsEachWaitForAllBlocks) {
  ThreadPool pool(4);
  for (int round = 0; round < 2000; ++round) {
    std::atomic<int64_t> sum{0};
    pool.ParallelFor(5 + round % 7, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sum.fetch_add(i);
    });
    const int64_t n = 5 + round % 7;
    ASSERT_EQ(sum.load(), n * (n - 1) / 2) << "round " << round;
  }
}

TEST(ThreadPoolTest, ScheduleRunsEverythingBeforeTheDestructorReturns) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 1000; ++i) pool.Schedule([&] { ran.fetch_add(1); });
  }
  EXPECT_EQ(ran.load(), 1000);
}

TEST(ThreadPoolTest, MaybeParallelForRunsSmallRangesInline) {
  ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  int calls = 0;
  MaybeParallelFor(&pool, 10, 8, [&](int64_t begin, int64_t end) {
    ++calls;
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(begin, 0);
    EXPECT_EQ(end, 10);
  });
  EXPECT_EQ(calls, 1);
  MaybeParallelFor(nullptr, 0, 1, [&](int64_t, int64_t) { ++calls; });
  EXPECT_EQ(calls, 1);  // an empty range runs nothing
}

}  // namespace
}  // namespace mpiflow
