#!/usr/bin/env bash
# consumer.find_package: installs the build to a fresh prefix, configures tests/consumer (an
# outside project: find_package(mpiflow), mpiflow::mpiflow) against it, builds the README's
# example there and trains it.
# Usage: consumer_test.sh <source dir> <build dir> <work dir> <Fashion-MNIST dir>
set -euo pipefail
src=$1 build=$2 work=$3 data=$4
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
echo "consumer: installed to $work/prefix: $(find "$work/prefix" -type f | wc -l) files"
cmake -S "$src/tests/consumer" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" -DMPIFLOW_EXAMPLE="$src/examples/mlp.cc" >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
"$work/build/mlp" "$data"
