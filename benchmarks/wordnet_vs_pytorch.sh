#!/usr/bin/env bash
# The WordNet lexname task (embed_bag, batch 64, one rank, one thread) in mpiflow and in PyTorch
# 1.13 at its best (benchmarks/wordnet_pytorch.py: EmbeddingBag(mean, sparse) + SparseAdam for
# the table, Adam for the rest; glibc's allocator tuned so that it does not return and re-fault
# its buffers every step), side by side: rounds alternate the two, REPEATS rounds of STEPS steps
# each, and the medians of samples/s (after the first 20 steps, evaluation off; mpiflow without
# its prefetch thread, so both run on one core) and their ratio
# are printed. Needs python3-torch and python3-h5py (apt-get install python3-torch python3-h5py).
# Usage: benchmarks/wordnet_vs_pytorch.sh [build-dir] (env: REPEATS=5, STEPS=1653: one epoch)
set -euo pipefail
build=${1:-build}
repeats=${REPEATS:-5} steps=${STEPS:-1653}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 -c "import torch, h5py" 2>/dev/null || {
  echo "wordnet_vs_pytorch: needs PyTorch and h5py: apt-get install python3-torch python3-h5py" >&2
  exit 2
}
"$build/mpiflow-data" convert --from wordnet-lexname --output "$work/wordnet.h5" > /dev/null 2>&1
rate() { sed -n 's/.*samples_per_sec=\([0-9.]*\).*/\1/p'; }
ours=() theirs=()
for i in $(seq "$repeats"); do
  ours+=("$("$build/mpiflow-train" --config "$here/../jobs/wordnet_lexname.ini" --eval false \
    --max-steps "$steps" --threads 1 --prefetch 0 --log-every 100000 --output-dir "$work/out" 2>/dev/null | rate)")
  theirs+=("$(MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=4294967296 \
    MALLOC_TOP_PAD_=268435456 /usr/bin/python3 "$here/wordnet_pytorch.py" \
    --data "$work/wordnet.h5" --steps "$steps" | rate)")
  echo "round $i: mpiflow ${ours[-1]} samples/s, pytorch ${theirs[-1]} samples/s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m=$(median "${ours[@]}") p=$(median "${theirs[@]}")
awk -v m="$m" -v p="$p" -v s="$steps" 'BEGIN {
  printf "wordnet-lexname embed_bag, batch 64, 1 thread, %d steps: mpiflow %.0f samples/s, PyTorch %.0f: %.2fx\n",
         s, m, p, m / p }'
