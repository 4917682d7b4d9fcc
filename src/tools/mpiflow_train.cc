// mpiflow-train: trains a model from the command line and a job file; see train_main.h.
#include "mpiflow/crash_report.h"
#include "train_main.h"

int main(int argc, char** argv) {
  mpiflow::InstallCrashReport("mpiflow-train");
  return mpiflow::TrainMain(argc, argv, nullptr);
}
