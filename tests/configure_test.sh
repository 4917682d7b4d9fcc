#!/usr/bin/env bash
# The build's portability promises, checked by configuring a second build of this tree:
# -DMPIFLOW_BUILD_TESTS=OFF configures with neither GoogleTest nor Google Benchmark (both
# hidden from find_package), and another BLAS vendor (FindBLAS's Generic: the reference BLAS
# interface) configures and compiles the kernel that calls it, with no OpenBLAS thread call.
# Usage: configure_test.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1 dir=$2
rm -rf "$dir"
out=$(cmake -S "$src" -B "$dir" -DMPIFLOW_BUILD_TESTS=OFF -DBLA_VENDOR=Generic \
  -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON 2>&1) || {
  echo "$out"
  echo "configure_test: configuring without GTest and Google Benchmark failed" >&2
  exit 1
}
echo "$out" | grep -E "BLAS|tests|benchmarks"
for want in "tests             : OFF" "benchmarks        : OFF" "BLAS              : Generic: "; do
  grep -qF -- "$want" <<<"$out" || { echo "configure_test: no '$want' in the summary" >&2; exit 1; }
done
make -C "$dir" --no-print-directory kernels/cpu/matmul_kernel.o
grep -q MPIFLOW_BLAS_OTHER "$dir/CMakeFiles/mpiflow_kernels.dir/flags.make" ||
  { echo "configure_test: the kernels were not compiled for another BLAS" >&2; exit 1; }
echo "configure_test: ok"
