// ScopedCrashContext and InstallCrashReport: the line a fatal signal prints, for a fault and for
// a sent signal, and that the process still dies of it. In death tests (a child process).
#include "mpiflow/crash_report.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace mpiflow {
namespace {

// The child did not end well: killed by a signal (the default action), or, under a sanitizer
// whose handler ran after ours, exited with a failure.
bool Died(int status) { return !(WIFEXITED(status) && WEXITSTATUS(status) == 0); }

TEST(CrashReport, ScopesNestPerThread) {
  EXPECT_EQ(CurrentCrashContext(), nullptr);
  {
    ScopedCrashContext outer("reading a");
    {
      ScopedCrashContext inner("reading b");
      EXPECT_STREQ(CurrentCrashContext(), "reading b");
      const char* elsewhere = "unset";
      std::thread([&] { elsewhere = CurrentCrashContext(); }).join();
      EXPECT_EQ(elsewhere, nullptr);
    }
    EXPECT_STREQ(CurrentCrashContext(), "reading a");
  }
  EXPECT_EQ(CurrentCrashContext(), nullptr);
}

TEST(CrashReportDeathTest, AFaultNamesTheInnermostScopeAndStillKills) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        InstallCrashReport("tool");
        ScopedCrashContext outer("reading the job file");
        ScopedCrashContext inner("reading dataset file 'x.h5'");
        // A real fault on a page nothing may touch (not a null store, which UBSan reports as
        // undefined behaviour before any signal); the store runs again for the previous handler.
        void* page = mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_NE(page, MAP_FAILED);
        *static_cast<volatile int*>(page) = 1;
      },
      Died, "^tool: fatal signal SIGSEGV while reading dataset file 'x.h5'\n");
}

// The handler that was there before ours (a sanitizer's, or the default): says so and exits 3.
extern "C" void PreviousHandler(int) {
  const char line[] = "previous handler\n";
  (void)!write(STDERR_FILENO, line, sizeof(line) - 1);
  _exit(3);
}

TEST(CrashReportDeathTest, ASentSignalIsReportedThenHandedToThePreviousHandler) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        signal(SIGBUS, PreviousHandler);
        InstallCrashReport("tool");
        ScopedCrashContext reading("reading checkpoint 'c.h5'");
        raise(SIGBUS);
        std::exit(0);  // not reached: the signal goes again, to the previous handler
      },
      ::testing::ExitedWithCode(3),
      "^tool: fatal signal SIGBUS while reading checkpoint 'c.h5'\nprevious handler\n$");
}

TEST(CrashReportDeathTest, WithNoLiveScopeThereIsNoLine) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        signal(SIGFPE, PreviousHandler);
        InstallCrashReport("tool");
        { ScopedCrashContext gone("reading something"); }
        raise(SIGFPE);
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "^previous handler\n$");
}

}  // namespace
}  // namespace mpiflow
