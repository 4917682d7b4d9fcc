// A fixed-size thread pool with a FIFO queue and a blocking ParallelFor.
// Not a work-stealing scheduler: the executor and kernels need only "run this soon" and "split
// this range"; MPI is never called from these threads.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace mpiflow {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(threads_.size()); }
  void Schedule(std::function<void()> fn);
  // Splits [0, n) into at most num_threads()+1 contiguous blocks, runs fn(begin, end) on each
  // (one block on the caller's thread) and returns when all are done.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// Runs fn over [0, n) on the pool if there is one and the range is large enough, else inline.
void MaybeParallelFor(ThreadPool* pool, int64_t n, int64_t min_per_block,
                      const std::function<void(int64_t, int64_t)>& fn);

}  // namespace mpiflow
