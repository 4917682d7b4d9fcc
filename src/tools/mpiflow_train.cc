// mpiflow-train: trains a model from the command line and a job file; see train_main.h.
#include "train_main.h"

int main(int argc, char** argv) { return mpiflow::TrainMain(argc, argv, nullptr); }
