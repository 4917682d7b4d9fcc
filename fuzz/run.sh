#!/usr/bin/env bash
# Runs every libFuzzer target of a -DMPIFLOW_FUZZ=ON build for a bounded number of inputs, from
# its seed corpus and crash regressions (in name order), with a fixed seed, no corpus reloads
# and no address randomisation (pointer values steer some comparisons): the same build explores
# the same inputs, so a run that passed passes again (fuzz longer by hand, below).
# A crash, a leak (fuzz/lsan.supp aside) or a sanitizer report (fuzz/asan.supp aside: HDF5's
# own) fails the run and leaves the input under WORK/<target>/crash-*: add it to
# fuzz/regressions/<target>/ with the fix. A crash inside HDF5 itself does not (see below).
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
# Whether the libFuzzer log $1 ends in a fatal signal whose first frame of HDF5's or mpiflow's
# code is HDF5's (the frames above it may be libc's memcpy and ASan's interceptor of it).
crashed_inside_hdf5() {
  grep -qE "ERROR: AddressSanitizer: (SEGV|BUS|FPE|ILL)|ERROR: libFuzzer: deadly signal" "$1" &&
    grep -E "^ +#[0-9]+ 0x" "$1" | grep -Em1 "libhdf5|mpiflow::|LLVMFuzzerTestOneInput" |
    grep -q libhdf5
}
failed=0
for target in idx graph_text job_file checkpoint hdf5_dataset array_files model_file; do
  program=$build/fuzz/mpiflow_fuzz_$target
  [ -x "$program" ] || { echo "fuzz/run.sh: no $program (build the target mpiflow_fuzzers)" >&2; exit 2; }
  rm -rf "${work:?}/$target" && mkdir -p "$work/$target/corpus"
  # The seeds go in as a list in name order, not as a folder: libFuzzer takes a folder's files in
  # the order the file system lists them, which differs between machines, and with it every
  # input after the first few (seen: a crash in CI that the same build here never met).
  seeds=$work/$target/seeds
  dirs=("$here/corpus/$target")
  if [ -d "$here/regressions/$target" ]; then dirs+=("$here/regressions/$target"); fi
  LC_ALL=C find "${dirs[@]}" -type f | LC_ALL=C sort | paste -sd, - > "$seeds"
  # HDF5 allocates what a damaged object header says it needs (4 and 8 GiB seen, untouched):
  # its targets' single allocations are not limited (their memory still is, by rss_limit_mb),
  # and a request past what ASan can give (petabytes, seen) gets null, as it would from the
  # system's malloc, which HDF5 reports as an error. mpiflow's own readers stay within 2 GiB.
  limit=2048 asan=$ASAN_OPTIONS
  case $target in
    checkpoint | hdf5_dataset) limit=$((1 << 30)) asan=$asan:allocator_may_return_null=1 ;;
  esac
  # A crash inside HDF5 itself on a damaged file (its SIGSEGV in H5HL_protect is seen every
  # run) is upstream's: mpiflow's tools report it with the file's name (crash_report.h). The
  # input is kept as hdf5-crash-*, and fuzzing goes on from the corpus found so far, with the
  # next seed, for the inputs left: at most 8 times, so a run that only crashes HDF5 fails.
  start=$(date +%s) done_runs=0 attempt=0 upstream=0
  while :; do
    log=$work/$target/log.$attempt
    if ASAN_OPTIONS=$asan "${norandom[@]+"${norandom[@]}"}" "$program" -runs=$((runs - done_runs)) \
        -seed=$((1 + attempt)) -reload=0 -max_len=16384 -timeout=30 -rss_limit_mb=2048 \
        -malloc_limit_mb="$limit" -artifact_prefix="$work/$target/" -seed_inputs=@"$seeds" \
        "$work/$target/corpus" > "$log" 2>&1; then
      echo "fuzz/run.sh: $target: $runs inputs in $(($(date +%s) - start)) s," \
        "$(grep -Eo 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1)$(
          [ "$upstream" = 0 ] || echo ", $upstream crash(es) inside HDF5 itself: $work/$target/hdf5-crash-*")"
      break
    fi
    if [ "$attempt" -lt 8 ] && crashed_inside_hdf5 "$log"; then
      ran=$(grep -Eo '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
      done_runs=$((done_runs + (${ran:-0} > 0 ? ${ran:-0} : 1)))
      for c in "$work/$target"/crash-*; do
        if [ -e "$c" ]; then mv "$c" "$work/$target/hdf5-crash-$attempt-${c##*/crash-}"; fi
      done
      upstream=$((upstream + 1)) attempt=$((attempt + 1))
      if [ "$done_runs" -lt "$runs" ]; then continue; fi
    fi
    failed=1
    echo "fuzz/run.sh: $target FAILED; the input is under $work/$target/ ($log):" >&2
    grep -E "ERROR|SUMMARY|runtime error|#[0-9]+ 0x" "$log" | head -20 >&2
    break
  done
done
exit "$failed"
