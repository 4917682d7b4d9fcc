#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine (run as root, or with sudo available):
#   bash scripts/run.sh train   install dependencies, build, train the MLP on Fashion-MNIST
#                               under mpirun with RANKS ranks (default 2), data-parallel
#   bash scripts/run.sh test    install dependencies, build, run the whole test suite, then an
#                               AddressSanitizer + UndefinedBehaviorSanitizer build of it, a
#                               ThreadSanitizer build of the threaded parts, and every fuzz
#                               target (clang's libFuzzer) for FUZZ_RUNS inputs each
#   bash scripts/run.sh deps | build   just those steps
# Environment: JOBS (parallel build jobs, default: all cores), BUILD_DIR (default build),
# RANKS (train: MPI ranks, default 2), FUZZ_RUNS (test: inputs per fuzz target, default 10000),
# MPIFLOW_SKIP_APT=1 (skip apt-get when the packages are known to be there).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

JOBS=${JOBS:-$(nproc)}
BUILD_DIR=${BUILD_DIR:-build}
PACKAGES=(cmake g++ make ccache pkg-config zlib1g-dev libopenblas-dev
          libboost-program-options-dev libgtest-dev libbenchmark-dev clang-format iproute2
          openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools slurm-wlm munge shellcheck procps
          gnuplot-nox clang libclang-rt-14-dev libonnx-dev libprotobuf-dev python3-onnx python3-numpy
          dataset-fashion-mnist wordnet-base)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# mpirun as these machines need it: root must say --allow-run-as-root, more ranks than cores
# need --oversubscribe, and with no ssh installed Open MPI must not look for one (it starts
# local ranks itself).
mpirun_flags() {
  local flags=(--oversubscribe --bind-to none)
  if [ "$(id -u)" -eq 0 ]; then flags=(--allow-run-as-root "${flags[@]}"); fi
  echo "${flags[@]}"
}
export OMPI_MCA_plm_rsh_agent=

deps() {
  if [ "${MPIFLOW_SKIP_APT:-0}" = 1 ]; then return; fi
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "run.sh: all ${#PACKAGES[@]} Debian packages are installed"
    return
  fi
  echo "run.sh: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" </dev/null
}

build() {  # build <dir> [cmake args...]
  local dir=$1
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@"
  cmake --build "$dir" -j "$JOBS"
}

build_targets() {  # build_targets <dir> "<targets>" [cmake args...]: only those targets
  local dir=$1 targets=$2
  shift 2
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  # shellcheck disable=SC2086  # the targets are words
  cmake --build "$dir" -j "$JOBS" --target $targets
}

check_format() {
  local bad
  bad=$(git ls-files '*.h' '*.cc' 2>/dev/null | xargs -r clang-format --dry-run --Werror 2>&1 | grep -c "error:" || true)
  if [ "$bad" != 0 ]; then
    echo "run.sh: clang-format finds $bad unformatted places; run: clang-format -i \$(git ls-files '*.h' '*.cc')" >&2
    git ls-files '*.h' '*.cc' | xargs -r clang-format --dry-run --Werror 2>&1 | head -20 >&2
    return 1
  fi
  echo "run.sh: clang-format: every source file is formatted"
}

case "${1:-}" in
  deps) deps ;;
  build) deps; build "$BUILD_DIR" ;;
  train)
    deps
    build "$BUILD_DIR"
    # shellcheck disable=SC2046  # the flags are words
    mpirun $(mpirun_flags) -np "${RANKS:-2}" "$BUILD_DIR/mpiflow-train" --config jobs/fashion_mlp.ini
    ;;
  test)
    deps
    check_format
    build "$BUILD_DIR" -DMPIFLOW_WERROR=ON
    (cd "$BUILD_DIR" && ctest --output-on-failure -j "$JOBS")
    echo "run.sh: again under AddressSanitizer + UndefinedBehaviorSanitizer"
    # The CUDA kernels are compiled (and their tests run where a GPU is) in the first build only.
    build "$BUILD_DIR-asan" -DMPIFLOW_WERROR=ON -DMPIFLOW_SANITIZE=ON -DMPIFLOW_BUILD_BENCHMARKS=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPIFLOW_WITH_CUDA=OFF
    # Leak checking everywhere but under MPI: Open MPI 4.1 leaves its own allocations behind at
    # MPI_Finalize (in components it has unloaded, so they cannot be suppressed by name).
    # Memory errors are checked in every test.
    (cd "$BUILD_DIR-asan" &&
      export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 &&
      ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ctest --output-on-failure -j "$JOBS" -LE mpi &&
      ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 ctest --output-on-failure -j "$JOBS" -L mpi)
    # The threaded parts under ThreadSanitizer: the thread pool, the parallel executor, the batch
    # stream's prefetch thread, and the communicator (its MPI thread against the callers') on 2
    # and 4 ranks. tests/tsan.supp holds Open MPI's own reports, none of mpiflow's.
    echo "run.sh: again under ThreadSanitizer (thread pool, executor, batch stream, communicator)"
    build_targets "$BUILD_DIR-tsan" "mpiflow_tests mpiflow_collectives_tests" \
      -DMPIFLOW_WERROR=ON -DMPIFLOW_SANITIZE_THREAD=ON -DMPIFLOW_BUILD_BENCHMARKS=OFF \
      -DMPIFLOW_WITH_CUDA=OFF
    (cd "$BUILD_DIR-tsan" &&
      TSAN_OPTIONS="suppressions=$ROOT/tests/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
        ctest --output-on-failure -j "$JOBS" \
        -R '^(ThreadPoolTest|SessionTest|BatchStreamTest|DataPlanTest)\.|^collectives\.np[24]$')
    # Every fuzz target (fuzz/), instrumented by clang, for a bounded number of inputs from its
    # seed corpus and crash regressions, with a fixed seed (fuzz/run.sh).
    echo "run.sh: fuzzing, ${FUZZ_RUNS:-10000} inputs per target"
    CC=clang CXX=clang++ build_targets "$BUILD_DIR-fuzz" mpiflow_fuzzers -DMPIFLOW_FUZZ=ON \
      -DMPIFLOW_BUILD_TESTS=OFF -DMPIFLOW_WITH_CUDA=OFF
    bash fuzz/run.sh "$BUILD_DIR-fuzz" "${FUZZ_RUNS:-10000}"
    ;;
  *)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
