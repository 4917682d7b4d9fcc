// ThreadPool: workers take closures from one FIFO queue. Not used for MPI calls.
#include "mpiflow/thread_pool.h"

#include <algorithm>

namespace mpiflow {

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 0; i < num_threads; ++i) threads_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::Schedule(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void ThreadPool::WorkerLoop() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and drained
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

void ThreadPool::ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t blocks = std::min<int64_t>(n, num_threads() + 1);
  const int64_t per = (n + blocks - 1) / blocks;
  // The count and the wake-up under one mutex: a block's last touch of this frame is its
  // unlock, so the caller returns (and the frame goes) only after every block is out of it.
  // (An atomic count decremented outside the lock let the caller return while the last block
  // was still about to lock done_mu: a use after scope the thread-sanitizer test would catch.)
  int64_t remaining = blocks - 1;
  std::mutex done_mu;
  std::condition_variable done_cv;
  for (int64_t b = 1; b < blocks; ++b) {
    const int64_t begin = b * per, end = std::min(n, begin + per);
    Schedule([&, begin, end] {
      if (begin < end) fn(begin, end);
      std::lock_guard<std::mutex> lock(done_mu);
      if (--remaining == 0) done_cv.notify_one();
    });
  }
  fn(0, std::min(n, per));
  std::unique_lock<std::mutex> lock(done_mu);
  done_cv.wait(lock, [&] { return remaining == 0; });
}

void MaybeParallelFor(ThreadPool* pool, int64_t n, int64_t min_per_block,
                      const std::function<void(int64_t, int64_t)>& fn) {
  if (!pool || pool->num_threads() == 0 || n < 2 * min_per_block) {
    if (n > 0) fn(0, n);
    return;
  }
  pool->ParallelFor(n, fn);
}

}  // namespace mpiflow
