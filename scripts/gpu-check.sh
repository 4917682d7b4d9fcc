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
  local bin data
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK
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
    # cuDNN: a Python environment's (as PyTorch images carry it, often newer than the system's).
    local cudnn
    cudnn=$(python3 -c 'import nvidia.cudnn as m; print(m.__path__[0] + "/lib")' 2>/dev/null || true)
    export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${cudnn:+$cudnn:}$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
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
    ldd "$bin/mpiflow-train" | grep -E 'cudart|cublas\.|cudnn\.|not found' || true
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

  echo "== the main job (jobs/fashion_mlp.ini: MLP, 5 epochs) on the GPU and on the CPU"
  local acc="" cpu_acc="" dev
  for dev in gpu cpu; do
    if timeout 240 "$bin/mpiflow-train" --config jobs/fashion_mlp.ini --device $dev \
        --data-dir "$data" --output-dir "$work/mlp-$dev" >"$work/mlp_$dev.log" 2>&1; then
      local a
      a=$(grep -o 'test_accuracy=[0-9.]*' "$work/mlp_$dev.log" | tail -1 | cut -d= -f2)
      if [ $dev = gpu ]; then acc=$a; else cpu_acc=$a; fi
      echo "- jobs/fashion_mlp.ini on the $dev: $(grep -E '^summary:' "$work/mlp_$dev.log")" >>"$report"
    else
      status=1
      echo "- jobs/fashion_mlp.ini on the $dev FAILED: $(tail -3 "$work/mlp_$dev.log")" >>"$report"
    fi
  done
  echo "- test accuracy after 5 epochs: GPU ${acc:-?}, CPU ${cpu_acc:-?} (target: GPU >= 0.88)" >>"$report"
  if timeout 120 "$bin/mpiflow-train" --config jobs/fashion_mlp.ini --device gpu --precision bf16 \
      --data-dir "$data" --output-dir "$work/mlp-bf16" >"$work/mlp_bf16.log" 2>&1; then
    echo "- jobs/fashion_mlp.ini on the GPU at --precision bf16: $(grep -E '^summary:' "$work/mlp_bf16.log")" >>"$report"
  else
    status=1
    echo "- jobs/fashion_mlp.ini at --precision bf16 FAILED: $(tail -3 "$work/mlp_bf16.log")" >>"$report"
  fi
  awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 0.88) }' || status=1

  echo "== the CNN at batch 256 on the GPU and on one CPU thread (target: >= 20x)"
  local gpu_rate="" cpu_rate=""
  for dev in gpu cpu; do
    local steps=200
    [ $dev = cpu ] && steps=12
    if timeout 150 "$bin/mpiflow-train" --device $dev --data-dir "$data" --model cnn \
        --batch-size 256 --max-steps $steps --eval false --epochs 1 --threads 1 \
        >"$work/cnn_$dev.log" 2>&1; then
      local r
      r=$(grep -o 'samples_per_sec=[0-9.]*' "$work/cnn_$dev.log" | tail -1 | cut -d= -f2)
      if [ $dev = gpu ]; then gpu_rate=$r; else cpu_rate=$r; fi
    else
      status=1
      echo "- the CNN on the $dev FAILED: $(tail -3 "$work/cnn_$dev.log")" >>"$report"
    fi
  done
  echo "- the CNN at batch 256: ${gpu_rate:-?} samples/s on the GPU, ${cpu_rate:-?} on one CPU" \
       "thread ($(awk -v g="${gpu_rate:-0}" -v c="${cpu_rate:-0}" 'BEGIN { if (c > 0) printf "%.1fx", g / c; else print "?" }'))" >>"$report"

  echo "== wide MLP, batch 1024: where a step's time goes (--profile: host time per op type)"
  timeout 120 "$bin/mpiflow-train" --device gpu --data-dir "$data" --model wide_mlp \
    --batch-size 1024 --max-steps 120 --eval false --profile true >"$work/profile.log" 2>&1 ||
    echo "- wide MLP profile run FAILED: $(tail -3 "$work/profile.log")" >>"$report"

  if command -v mpirun >/dev/null; then
    echo "== 2 ranks, allreduce, sharing the GPU"
    if timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 "$bin/mpiflow-train" \
        --device gpu --data-dir "$data" --epochs 1 >"$work/mlp_2ranks.log" 2>&1; then
      echo "- 2 ranks (allreduce over MPI from host memory), 1 epoch:" \
           "$(grep -E '^summary:' "$work/mlp_2ranks.log" | tail -1)" >>"$report"
    else
      status=1
      echo "- 2 ranks on the GPU FAILED: $(tail -3 "$work/mlp_2ranks.log")" >>"$report"
    fi
  fi
  # Every training run's output, in one log beside the report.
  local log
  for log in mlp_gpu mlp_cpu mlp_bf16 cnn_gpu cnn_cpu profile mlp_2ranks; do
    if [ -f "$work/$log.log" ]; then
      echo "==== $log" >>"$out/train.log"
      cat "$work/$log.log" >>"$out/train.log"
    fi
  done

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
