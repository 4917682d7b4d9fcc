// A kernels-layer source that includes its own and lower layers' headers: it must build (the
// control for layers.upward_include). Built only by the test layers.downward_include.
#include "mpiflow/graph.h"
#include "mpiflow/kernel.h"
#include "mpiflow/ops.h"
#include "mpiflow/thread_pool.h"
