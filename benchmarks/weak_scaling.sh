#!/usr/bin/env bash
# Weak scaling of mpiflow-train on this machine: per-rank batch fixed, 1 thread per rank. Runs
# of 1 and N ranks alternate (so slow phases of a shared machine hit both), REPEATS times each,
# and the medians of samples/s and their ratio are printed.
# Usage: benchmarks/weak_scaling.sh [build-dir] (env: MODEL=mlp|cnn, RANKS=2, REPEATS=5,
#        STEPS=600, BATCH=64, BIND=none|core, EXTRA="more mpiflow-train options")
set -euo pipefail
build=${1:-build}
model=${MODEL:-mlp} ranks=${RANKS:-2} repeats=${REPEATS:-5} steps=${STEPS:-600}
batch=${BATCH:-64}
# BIND=core pins each rank to a core (Open MPI's default for <= 2 ranks); none lets them move.
flags=(--oversubscribe --bind-to "${BIND:-none}")
if [ "$(id -u)" -eq 0 ]; then flags=(--allow-run-as-root "${flags[@]}"); fi
export OMPI_MCA_plm_rsh_agent=
out=$(mktemp -d)
# shellcheck disable=SC2206  # EXTRA is a list of words
args=(--model "$model" --batch-size "$batch" --threads 1 --optimizer sgd --lr 0.05 --eval false
      --epochs 100 --max-steps "$steps" --output-dir "$out" --log-every 100000 ${EXTRA:-})
rate() { sed -n 's/.*samples_per_sec=\([0-9.]*\).*/\1/p'; }
one=() many=()
for i in $(seq "$repeats"); do
  one+=("$(mpirun "${flags[@]}" -np 1 "$build/mpiflow-train" "${args[@]}" 2>/dev/null | rate)")
  many+=("$(mpirun "${flags[@]}" -np "$ranks" "$build/mpiflow-train" "${args[@]}" 2>/dev/null | rate)")
  echo "run $i: 1 rank ${one[-1]} samples/s, $ranks ranks ${many[-1]} samples/s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m1=$(median "${one[@]}") mn=$(median "${many[@]}")
awk -v m1="$m1" -v mn="$mn" -v n="$ranks" -v model="$model" -v b="$batch" 'BEGIN {
  printf "weak scaling %s, batch %d per rank: 1 rank %.0f samples/s, %d ranks %.0f samples/s: %.2fx (efficiency %.2f)\n",
         model, b, m1, n, mn, mn / m1, mn / m1 / n }'
rm -rf "$out"
