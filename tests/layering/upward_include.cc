// A kernels-layer source that includes the runtime's header: the build must refuse it (the
// kernels layer's include path has no session.h). Built only by the test layers.upward_include.
#include "mpiflow/kernel.h"
#include "mpiflow/session.h"
