// mpiflow-train for the failure tests: the same command line (TrainMain) with test::
// InjectedFaults installed from `--inject SPEC` arguments (repeatable; see tests/fault_hooks.h),
// which are taken out before the rest is parsed. Under mpirun every rank gets the same specs
// and each acts on those naming it.
#include <cstdio>
#include <cstring>
#include <vector>

#include "tests/fault_hooks.h"
#include "train_main.h"  // src/tools, through mpiflow_train_main

int main(int argc, char** argv) {
  mpiflow::test::InjectedFaults faults;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--inject") == 0 && i + 1 < argc) {
      if (!faults.Parse(argv[++i])) {
        std::fprintf(stderr,
                     "faulty_train: bad --inject '%s' (kill|sigterm|fail:RANK:STEP or "
                     "sleep:RANK:STEP:SECONDS)\n",
                     argv[i]);
        return 2;
      }
    } else {
      rest.push_back(argv[i]);
    }
  }
  rest.push_back(nullptr);
  return mpiflow::TrainMain(static_cast<int>(rest.size()) - 1, rest.data(), &faults);
}
