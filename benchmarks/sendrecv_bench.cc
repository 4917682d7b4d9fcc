// Point-to-point ping-pong between ranks 0 and 1, 1 KiB..64 MiB: the pipeline's transport
// (Communicator::Send and RecvShaped, waited for as the partitioned executor waits) beside raw
// MPI (MPI_Send/MPI_Recv from the main thread, no mpiflow). MPI cannot start twice in one
// process, so each is its own run; benchmarks/sendrecv.sh runs both and prints the ratios.
//   mpiexec -np 2 build/benchmarks/mpiflow_sendrecv_bench --mode mpiflow|raw [--max-bytes B]
// Prints one line per size: bytes, one-way latency (median round trip / 2, us), bandwidth
// (bytes / one-way time, GB/s). Every message is checked (its first and last float) before
// timing starts.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mpiflow/communicator.h"

using namespace mpiflow;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Repetitions(int64_t bytes) { return bytes <= (1 << 20) ? 200 : bytes <= (16 << 20) ? 40 : 10; }

// One round trip of `t` (rank 0 sends, rank 1 answers), through mpiflow's communicator.
void RoundTrip(Communicator* comm, const Tensor& t, int64_t floats) {
  auto received = std::make_shared<Tensor>();
  const int peer = 1 - comm->rank();
  auto recv = [&] {
    std::shared_ptr<Work> w = comm->RecvShaped(received, DType::kFloat32, Shape{-1}, peer, 7);
    Work::WaitAnyFor({w}, 1e9, /*urgent=*/true);
    MPIFLOW_CHECK(w->status().ok());
    MPIFLOW_CHECK(received->num_elements() == floats);
  };
  if (comm->rank() == 0) {
    std::shared_ptr<Work> s = comm->Send(t, peer, 7);
    recv();
    MPIFLOW_CHECK(s->Wait().ok());
  } else {
    recv();
    MPIFLOW_CHECK(comm->Send(*received, peer, 7)->Wait().ok());
  }
}

void RawRoundTrip(int rank, std::vector<float>& buf) {
  const int n = static_cast<int>(buf.size());
  if (rank == 0) {
    MPI_Send(buf.data(), n, MPI_FLOAT, 1, 7, MPI_COMM_WORLD);
    MPI_Recv(buf.data(), n, MPI_FLOAT, 1, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
  } else {
    MPI_Recv(buf.data(), n, MPI_FLOAT, 0, 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    MPI_Send(buf.data(), n, MPI_FLOAT, 0, 7, MPI_COMM_WORLD);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = "mpiflow";
  int64_t max_bytes = int64_t{64} << 20;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--mode" && i + 1 < argc) {
      mode = argv[++i];
    } else if (a == "--max-bytes" && i + 1 < argc) {
      max_bytes = std::atoll(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: mpiexec -np 2 %s --mode mpiflow|raw [--max-bytes B]\n", argv[0]);
      return a == "--help" ? 0 : 2;
    }
  }
  if (mode != "mpiflow" && mode != "raw") {
    std::fprintf(stderr, "--mode must be mpiflow or raw, got '%s'\n", mode.c_str());
    return 2;
  }
  Communicator* comm = nullptr;
  int rank = 0, size = 1;
  if (mode == "raw") {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
  } else {
    StatusOr<Communicator*> world = WorldCommunicator();
    if (!world.ok()) {
      std::fprintf(stderr, "%s\n", world.status().ToString().c_str());
      return 1;
    }
    comm = *world;
    rank = comm->rank();
    size = comm->size();
  }
  if (size != 2) {
    if (rank == 0) std::fprintf(stderr, "run it with exactly 2 ranks (mpiexec -np 2)\n");
    if (mode == "raw") MPI_Finalize();
    return 2;
  }
  if (rank == 0) std::printf("# %s: bytes  latency_us  bandwidth_GBps\n", mode.c_str());
  for (int64_t bytes = 1024; bytes <= max_bytes; bytes *= 4) {
    const int64_t floats = bytes / 4;
    Tensor t(DType::kFloat32, Shape{floats});
    std::vector<float> raw(static_cast<size_t>(floats));
    for (int64_t i = 0; i < floats; ++i) t.data<float>()[i] = raw[i] = static_cast<float>(i % 977);
    // Check: a round trip returns the message intact.
    if (mode == "raw") {
      RawRoundTrip(rank, raw);
      MPIFLOW_CHECK(raw[floats - 1] == static_cast<float>((floats - 1) % 977));
    } else {
      RoundTrip(comm, t, floats);
    }
    std::vector<double> times;
    for (int r = 0; r < Repetitions(bytes) + 5; ++r) {
      const auto t0 = Clock::now();
      if (mode == "raw") {
        RawRoundTrip(rank, raw);
      } else {
        RoundTrip(comm, t, floats);
      }
      if (r >= 5) times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    const double one_way = Median(times) / 2;
    if (rank == 0) {
      std::printf("%12lld %11.2f %14.3f\n", static_cast<long long>(bytes), one_way * 1e6,
                  static_cast<double>(bytes) / one_way / 1e9);
      std::fflush(stdout);
    }
  }
  if (mode == "raw") MPI_Finalize();
  return 0;
}
