#!/usr/bin/env bash
# Runs every libFuzzer target of a -DMPIFLOW_FUZZ=ON build for a bounded number of inputs, from
# a scratch copy of its seed corpus and crash regressions, with a fixed seed, no corpus reloads
# and no address randomisation (pointer values steer some comparisons): the same build explores
# the same inputs, so a run that passed passes again (fuzz longer by hand, below).
# A crash, a leak (fuzz/lsan.supp aside) or a sanitizer report (fuzz/asan.supp aside: HDF5's
# own) fails the run and leaves the input
# under WORK/<target>/crash-*: add it to fuzz/regressions/<target>/ with the fix.
# Usage: fuzz/run.sh BUILD_DIR [RUNS_PER_TARGET (default 20000)] [WORK_DIR]
#   exploring: BUILD/fuzz/mpiflow_fuzz_<target> -max_total_time=600 DIR fuzz/corpus/<target>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR [RUNS] [WORK_DIR]}
runs=${2:-20000}
work=${3:-$build/fuzz-work}
# Full stacks for allocations (HDF5 has no frame pointers), so that lsan.supp can name the
# HDF5 function that leaked and nothing else of HDF5's is hidden.
export LSAN_OPTIONS=suppressions=$here/lsan.supp
# asan.supp: HDF5's own over-reads of damaged object headers (calls libhdf5 makes, not ours).
export ASAN_OPTIONS=fast_unwind_on_malloc=0:malloc_context_size=30:suppressions=$here/asan.supp
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Address randomisation off where the kernel lets us (setarch -R), else runs vary a little.
norandom=()
if setarch "$(uname -m)" -R true 2> /dev/null; then norandom=(setarch "$(uname -m)" -R); fi
failed=0
for target in idx graph_text job_file checkpoint hdf5_dataset array_files model_file; do
  program=$build/fuzz/mpiflow_fuzz_$target
  [ -x "$program" ] || { echo "fuzz/run.sh: no $program (build the target mpiflow_fuzzers)" >&2; exit 2; }
  rm -rf "${work:?}/$target" && mkdir -p "$work/$target/corpus"
  cp "$here/corpus/$target"/* "$work/$target/corpus/"
  if [ -d "$here/regressions/$target" ]; then cp "$here/regressions/$target"/* "$work/$target/corpus/"; fi
  # HDF5 allocates what a damaged object header says it needs (4 and 8 GiB seen, untouched):
  # its targets' single allocations are not limited (their memory still is, by rss_limit_mb),
  # and a request past what ASan can give (petabytes, seen) gets null, as it would from the
  # system's malloc, which HDF5 reports as an error. mpiflow's own readers stay within 2 GiB.
  limit=2048 asan=$ASAN_OPTIONS
  case $target in
    checkpoint | hdf5_dataset) limit=$((1 << 30)) asan=$asan:allocator_may_return_null=1 ;;
  esac
  start=$(date +%s)
  if ASAN_OPTIONS=$asan "${norandom[@]+"${norandom[@]}"}" "$program" -runs="$runs" -seed=1 -reload=0 \
      -max_len=16384 -timeout=30 -rss_limit_mb=2048 \
      -malloc_limit_mb="$limit" \
      -artifact_prefix="$work/$target/" "$work/$target/corpus" > "$work/$target/log" 2>&1; then
    echo "fuzz/run.sh: $target: $runs inputs in $(($(date +%s) - start)) s, $(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$work/$target/log" | tail -n 1)"
  else
    failed=1
    echo "fuzz/run.sh: $target FAILED; the input is under $work/$target/:" >&2
    grep -E "ERROR|SUMMARY|runtime error|#[0-9]+ 0x" "$work/$target/log" | head -20 >&2
  fi
done
exit "$failed"
