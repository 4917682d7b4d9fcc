// Fuzz target: mpiflow-train's INI job file (--config), parsed into types and validated by the
// same code as the tool (ParseTrainCommandLine), its messages silenced.
#include <iostream>
#include <sstream>

#include "fuzz_util.h"
#include "train_main.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::ostringstream sink;
  static const bool silenced = [] {
    std::cerr.rdbuf(sink.rdbuf());
    std::cout.rdbuf(sink.rdbuf());
    return true;
  }();
  (void)silenced;
  sink.str("");
  const std::string path = mpiflow::fuzz::WriteTemp("job.ini", data, size);
  std::string arg0 = "mpiflow-train", arg1 = "--config", arg2 = path;
  char* argv[] = {arg0.data(), arg1.data(), arg2.data(), nullptr};
  mpiflow::TrainCommandLine parsed;
  const int code = mpiflow::ParseTrainCommandLine(3, argv, &parsed);
  if (code != mpiflow::kGoOn && code != 0 && code != 2) __builtin_trap();
  return 0;
}
