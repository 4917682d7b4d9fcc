// A program that links one layer of mpiflow whole (every object of it, through WHOLE_ARCHIVE)
// and only what that layer links: if the layer calls into a higher layer, this does not link.
// Built for every layer by CMakeLists.txt (mpiflow_layer); it does nothing when run.
int main() { return 0; }
