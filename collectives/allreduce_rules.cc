// Names of reduce ops and allreduce algorithms, the rule-list syntax that picks an algorithm per
// call, and Work. Not the algorithms themselves (mpi_communicator.cc).
#include <chrono>
#include <cstdlib>

#include "mpiflow/communicator.h"

namespace mpiflow {

const char* ReduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "sum";
    case ReduceOp::kAverage:
      return "average";
    case ReduceOp::kMax:
      return "max";
    case ReduceOp::kMin:
      return "min";
  }
  return "?";
}

const char* AllreduceAlgorithmName(AllreduceAlgorithm a) {
  switch (a) {
    case AllreduceAlgorithm::kAuto:
      return "auto";
    case AllreduceAlgorithm::kNative:
      return "native";
    case AllreduceAlgorithm::kRing:
      return "ring";
    case AllreduceAlgorithm::kHalvingDoubling:
      return "hd";
    case AllreduceAlgorithm::kRecursiveDoubling:
      return "rd";
    case AllreduceAlgorithm::kHierarchical:
      return "hier";
  }
  return "?";
}

const char* AllreduceCompressionName(AllreduceCompression c) {
  switch (c) {
    case AllreduceCompression::kFp16:
      return "fp16";
    case AllreduceCompression::kBf16:
      return "bf16";
    case AllreduceCompression::kNone:
      break;
  }
  return "none";
}

StatusOr<AllreduceCompression> ParseAllreduceCompression(const std::string& name) {
  for (AllreduceCompression c :
       {AllreduceCompression::kNone, AllreduceCompression::kFp16, AllreduceCompression::kBf16}) {
    if (name == AllreduceCompressionName(c)) return c;
  }
  return InvalidArgument("unknown allreduce compression '", name, "': use none, fp16 or bf16");
}

StatusOr<AllreduceAlgorithm> ParseAllreduceAlgorithm(const std::string& name) {
  for (AllreduceAlgorithm a :
       {AllreduceAlgorithm::kAuto, AllreduceAlgorithm::kNative, AllreduceAlgorithm::kRing,
        AllreduceAlgorithm::kHalvingDoubling, AllreduceAlgorithm::kRecursiveDoubling,
        AllreduceAlgorithm::kHierarchical}) {
    if (name == AllreduceAlgorithmName(a)) return a;
  }
  return InvalidArgument("unknown allreduce algorithm '", name,
                         "': use auto, native (the MPI library's), ring, hd (halving-doubling), rd "
                         "(recursive doubling) or hier (a ring inside nodes, then across them)");
}

StatusOr<std::vector<AllreduceRule>> ParseAllreduceRules(const std::string& text) {
  std::vector<AllreduceRule> rules;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    AllreduceRule rule;
    std::string name = item;
    size_t at = item.find_first_of(":@");
    if (at != std::string::npos) name = item.substr(0, at);
    StatusOr<AllreduceAlgorithm> a = ParseAllreduceAlgorithm(name);
    if (!a.ok() || *a == AllreduceAlgorithm::kAuto) {
      return InvalidArgument(
          "allreduce rule '", item,
          "': the algorithm must be native, ring, hd, rd or hier; rules look like "
          "'native:<=65536,hd@>=4,ring'");
    }
    rule.algorithm = *a;
    while (at != std::string::npos) {
      size_t next = item.find_first_of(":@", at + 1);
      std::string cond = item.substr(at, next == std::string::npos ? std::string::npos : next - at);
      char* end = nullptr;
      if (cond.rfind(":<=", 0) == 0) {
        rule.max_bytes = std::strtoll(cond.c_str() + 3, &end, 10);
      } else if (cond.rfind("@>=", 0) == 0) {
        rule.min_ranks = static_cast<int>(std::strtol(cond.c_str() + 3, &end, 10));
      }
      if (!end || *end != '\0' || rule.max_bytes < -1 || rule.min_ranks < 1) {
        return InvalidArgument("allreduce rule '", item, "': cannot read '", cond,
                               "' (expected ':<=BYTES' or '@>=RANKS')");
      }
      at = next;
    }
    rules.push_back(rule);
  }
  if (rules.empty()) return InvalidArgument("the allreduce rule list '", text, "' is empty");
  return rules;
}

std::string AllreduceRulesToString(const std::vector<AllreduceRule>& rules) {
  std::string s;
  for (const AllreduceRule& r : rules) {
    if (!s.empty()) s += ",";
    s += AllreduceAlgorithmName(r.algorithm);
    if (r.max_bytes >= 0) s += StrCat(":<=", r.max_bytes);
    if (r.min_ranks > 1) s += StrCat("@>=", r.min_ranks);
  }
  return s;
}

AllreduceAlgorithm ChooseAllreduce(const std::vector<AllreduceRule>& rules, int64_t bytes,
                                   int ranks) {
  for (const AllreduceRule& r : rules) {
    if ((r.max_bytes < 0 || bytes <= r.max_bytes) && ranks >= r.min_ranks) return r.algorithm;
  }
  return AllreduceAlgorithm::kNative;
}

namespace {
std::atomic<int> g_waiters{0};
std::atomic<void (*)(void*)> g_wake{nullptr};
std::atomic<void*> g_wake_context{nullptr};

void StartWaiting() {
  g_waiters.fetch_add(1, std::memory_order_relaxed);
  if (void (*wake)(void*) = g_wake.load(std::memory_order_acquire)) {
    wake(g_wake_context.load(std::memory_order_acquire));
  }
}
// WaitAny sleeps here; every Finish notifies it (taking the mutex, so no wake-up is lost).
std::mutex g_any_mu;
std::condition_variable g_any_cv;
}  // namespace

size_t Work::WaitAny(const std::vector<std::shared_ptr<Work>>& works) {
  std::unique_lock<std::mutex> lock(g_any_mu);
  while (true) {
    for (size_t i = 0; i < works.size(); ++i) {
      if (works[i]->Completed()) return i;
    }
    g_any_cv.wait(lock);
  }
}

size_t Work::WaitAnyFor(const std::vector<std::shared_ptr<Work>>& works, double seconds,
                        bool urgent) {
  struct Counted {
    bool on;
    explicit Counted(bool o) : on(o) {
      if (on) StartWaiting();
    }
    ~Counted() {
      if (on) g_waiters.fetch_sub(1, std::memory_order_relaxed);
    }
  } counted(urgent);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(seconds));
  std::unique_lock<std::mutex> lock(g_any_mu);
  while (true) {
    for (size_t i = 0; i < works.size(); ++i) {
      if (works[i]->Completed()) return i;
    }
    if (g_any_cv.wait_until(lock, deadline) == std::cv_status::timeout) {
      for (size_t i = 0; i < works.size(); ++i) {
        if (works[i]->Completed()) return i;
      }
      return works.size();
    }
  }
}

int Work::Waiters() { return g_waiters.load(std::memory_order_relaxed); }

void Work::SetWaitHook(void (*wake)(void*), void* context) {
  g_wake_context.store(context, std::memory_order_release);
  g_wake.store(wake, std::memory_order_release);
}

Status Work::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  if (!done_.load(std::memory_order_acquire)) {
    StartWaiting();
    cv_.wait(lock, [&] { return done_.load(std::memory_order_acquire); });
    g_waiters.fetch_sub(1, std::memory_order_relaxed);
  }
  return status_;
}

Status Work::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Work::Finish(Status s) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = std::move(s);
    done_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
  { std::lock_guard<std::mutex> lock(g_any_mu); }
  g_any_cv.notify_all();
}

}  // namespace mpiflow
