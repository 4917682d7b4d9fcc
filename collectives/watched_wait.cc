// Communicator::RecvShaped's default, and Communicator::WaitAnyWatched: the stall limits of the
// collectives applied to waits that a caller's own protocol makes (see communicator.h). The
// collectives' waits are watched on the communication thread instead (mpi_engine.cc); both report
// and abort the same way.
#include <algorithm>
#include <cstdio>

#include "mpiflow/communicator.h"

namespace mpiflow {

std::shared_ptr<Work> Communicator::RecvShaped(std::shared_ptr<Tensor> out, DType dtype,
                                               Shape shape, int src, int tag) {
  if (!shape.IsFullyDefined()) {
    auto w = std::make_shared<Work>();
    w->Finish(Unimplemented("RecvShaped of ", shape.ToString(),
                            ": this communicator receives fully known shapes only"));
    return w;
  }
  *out = Tensor(dtype, shape);
  return Recv(*out, src, tag);
}

size_t Communicator::WaitAnyWatched(const std::vector<std::shared_ptr<Work>>& works,
                                    std::chrono::steady_clock::time_point since,
                                    const std::function<std::string(double)>& report, bool urgent) {
  const CollectiveOptions& o = options();
  auto waited = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  };
  bool warned = false;
  while (true) {
    const double limit = warned ? o.stall_abort_seconds : o.stall_warning_seconds;
    const size_t i = Work::WaitAnyFor(works, std::max(0.0, limit - waited()), urgent);
    if (i < works.size()) return i;
    if (!warned) {
      warned = true;
      const std::string line = report(waited()) + "\n";
      std::fputs(line.c_str(), stderr);  // one write: lines of several ranks do not interleave
      std::fflush(stderr);
      continue;
    }
    Abort(3, StrCat(report(waited()), "; aborting the job after ", o.stall_abort_seconds,
                    " s (--stall-abort-seconds)"));
  }
}

}  // namespace mpiflow
