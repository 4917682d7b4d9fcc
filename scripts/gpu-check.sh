#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, runs the CUDA kernel tests, the GPU benchmark
# and Fashion-MNIST training on the GPU, and writes a report (markdown) with what ran and what
# it measured. Within 8 minutes on one H200.
#
#   bash scripts/gpu-check.sh run [--out DIR]     build here (cmake, -DMPIFLOW_WITH_CUDA=ON,
#                                                 build-gpu/) and check: needs this repository's
#                                                 build dependencies (scripts/run.sh deps)
#   bash scripts/gpu-check.sh bundle [DIR]        on a build machine without a GPU: put the
#                                                 CUDA build's programs, the shared libraries
#                                                 they need that a CUDA image may lack, and
#                                                 Fashion-MNIST into DIR (default .gpu-bundle)
#   bash scripts/gpu-check.sh run --bundle DIR [--out DIR]
#                                                 check with a bundle's programs, on a GPU
#                                                 machine that has the CUDA runtime and cuBLAS
#                                                 and Open MPI 4.1 but not the other libraries
# The report: OUT/gpu-report.md (default OUT: gpu-check-out), logs beside it. Exit status:
# non-zero when a test fails or the MLP misses its accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

die() {
  echo "gpu-check.sh: $*" >&2
  exit 2
}

# The build's programs, relative to the build directory.
PROGRAMS=(mpiflow-train tests/mpiflow_cuda_tests benchmarks/mpiflow_gpu_bench)

bundle() {
  local dir=${1:-.gpu-bundle} build=${BUILD_DIR:-build}
  for p in "${PROGRAMS[@]}"; do
    [ -x "$build/$p" ] || die "$build/$p is missing: build with CUDA first (cmake --build $build)"
  done
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/data"
  for p in "${PROGRAMS[@]}"; do cp "$build/$p" "$dir/bin/"; done
  # Every library the programs load except the C/C++ runtime, the CUDA libraries and Open MPI's
  # own (the GPU machine's must serve: its drivers and its MPI's plugins match them).
  ldd "$dir"/bin/* | awk '/=> \// {print $3}' | sort -u |
    grep -v -E '/(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|ld-linux[^/]*)\.so' |
    grep -v -E '/lib(cuda|cudart|cublas|cublasLt|nccl|cudnn)[^/]*\.so' |
    grep -v -E '/lib(mpi|open-rte|open-pal|hwloc|event[^/]*|pmix|udev)\.so' |
    grep -v -E '/lib(openblas|gfortran|quadmath)\.so' |
    while read -r lib; do cp -L "$lib" "$dir/lib/"; done
  # (a BLAS the GPU machine must have: libopenblas.so.0, as Ubuntu's and Debian's packages name
  # it.) Programs and libraries travel as one xz archive; run unpacks it.
  tar -C "$dir" -cJf "$dir/programs.tar.xz" bin lib
  rm -rf "${dir:?}/bin" "${dir:?}/lib"
  cp "${MPIFLOW_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"/*.gz "$dir/data/"
  du -sh "$dir"
}

run() {
  local bundle_dir="" out=gpu-check-out
  while [ $# -gt 0 ]; do
    case $1 in
      --bundle) bundle_dir=$2; shift 2 ;;
      --out) out=$2; shift 2 ;;
      *) die "unknown option '$1' (run [--bundle DIR] [--out DIR])" ;;
    esac
  done
  command -v nvidia-smi >/dev/null || die "no nvidia-smi: this check needs a machine with an NVIDIA GPU"
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  # Programs, libraries and training output go to a scratch folder: OUT holds the report and
  # the logs alone.
  local work bin data
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  if [ -n "$bundle_dir" ]; then
    bundle_dir=$(cd "$bundle_dir" && pwd)
    if [ -f "$bundle_dir/programs.tar.xz" ]; then
      mkdir -p "$work/programs"
      tar -C "$work/programs" -xJf "$bundle_dir/programs.tar.xz"
      bin=$work/programs/bin
    else
      bin=$bundle_dir/bin
    fi
    data=$bundle_dir/data
    # The bundle's libraries only where this machine has none of that name.
    local libs=$work/libs
    mkdir -p "$libs"
    for lib in "$(dirname "$bin")"/lib/*; do
      ldconfig -p | grep -q "$(basename "$lib") " || ln -s "$lib" "$libs/"
    done
    export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  else
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMPIFLOW_WITH_CUDA=ON >"$out/configure.log"
    cmake --build build-gpu -j "$(nproc)" --target "${PROGRAMS[@]##*/}" >"$out/build.log"
    bin=$work/bin
    mkdir -p "$bin"
    for p in "${PROGRAMS[@]}"; do ln -sf "$ROOT/build-gpu/$p" "$bin/"; done
    data=${MPIFLOW_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
  fi
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=
  local report=$out/gpu-report.md status=0
  {
    echo "# mpiflow GPU check, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo '```'
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    echo '```'
  } >"$report"

  echo "== CUDA kernel tests"
  if timeout 240 "$bin/mpiflow_cuda_tests" >"$out/cuda_tests.log" 2>&1; then
    echo "- CUDA kernel tests: $(grep -E '^\[  PASSED  \]' "$out/cuda_tests.log")" >>"$report"
  else
    status=1
    echo "- CUDA kernel tests FAILED:" >>"$report"
    grep -E 'FAILED|Failure|error' "$out/cuda_tests.log" | head -20 | sed 's/^/    /' >>"$report"
  fi
  if grep -q 'SKIPPED' "$out/cuda_tests.log"; then  # on a GPU machine, a skip is a failure
    status=1
    echo "- CUDA kernel tests SKIPPED (no GPU seen):" >>"$report"
    grep -E 'SKIPPED' "$out/cuda_tests.log" | head -3 | sed 's/^/    /' >>"$report"
  fi

  echo "== GPU benchmark"
  if timeout 180 "$bin/mpiflow_gpu_bench" >"$out/gpu_bench.log" 2>&1; then
    sed 's/^/- /' "$out/gpu_bench.log" >>"$report"
  else
    status=1
    echo "- GPU benchmark FAILED: $(tail -3 "$out/gpu_bench.log")" >>"$report"
  fi

  echo "== MLP on Fashion-MNIST, 5 epochs on the GPU"
  local train=(timeout 240 "$bin/mpiflow-train" --device gpu --data-dir "$data" --epochs 5
               --output-dir "$work/mlp")
  if "${train[@]}" >"$out/mlp_train.log" 2>&1; then
    local acc
    acc=$(grep -o 'test_accuracy=[0-9.]*' "$out/mlp_train.log" | tail -1 | cut -d= -f2)
    echo "- MLP, 5 epochs on the GPU: test accuracy ${acc:-?} (target >= 0.88);" \
         "$(grep -E '^summary:' "$out/mlp_train.log" | tail -1)" >>"$report"
    awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.88) }' || status=1
  else
    status=1
    echo "- MLP training on the GPU FAILED: $(tail -3 "$out/mlp_train.log")" >>"$report"
  fi

  echo "== wide MLP, batch 1024: where a step's time goes (--profile: host time per op type)"
  timeout 120 "$bin/mpiflow-train" --device gpu --data-dir "$data" --model wide_mlp \
    --batch-size 1024 --max-steps 120 --eval false --profile true >"$out/profile.log" 2>&1 ||
    echo "- wide MLP profile run FAILED: $(tail -3 "$out/profile.log")" >>"$report"

  if command -v mpirun >/dev/null; then
    echo "== 2 ranks, allreduce, sharing the GPU"
    if timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 "$bin/mpiflow-train" \
        --device gpu --data-dir "$data" --epochs 1 >"$out/mlp_2ranks.log" 2>&1; then
      echo "- 2 ranks (allreduce over MPI from host memory), 1 epoch:" \
           "$(grep -E '^summary:' "$out/mlp_2ranks.log" | tail -1)" >>"$report"
    else
      status=1
      echo "- 2 ranks on the GPU FAILED: $(tail -3 "$out/mlp_2ranks.log")" >>"$report"
    fi
  fi
  if command -v compute-sanitizer >/dev/null; then
    echo "== compute-sanitizer memcheck over the CUDA kernel tests"
    if timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
        "$bin/mpiflow_cuda_tests" --gtest_filter='EveryCudaOp*:CudaTest.ALabel*' \
        >"$out/memcheck.log" 2>&1; then
      echo "- compute-sanitizer memcheck: $(grep -E 'ERROR SUMMARY' "$out/memcheck.log" | tail -1)" >>"$report"
    else
      status=1
      echo "- compute-sanitizer memcheck FAILED or timed out: $(grep -E 'ERROR SUMMARY|Invalid' "$out/memcheck.log" | head -3)" >>"$report"
    fi
  fi
  echo
  cat "$report"
  return $status
}

case ${1:-} in
  bundle) shift; bundle "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: scripts/gpu-check.sh run [--bundle DIR] [--out DIR] | bundle [DIR]" ;;
esac
