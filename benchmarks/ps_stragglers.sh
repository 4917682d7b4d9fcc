#!/usr/bin/env bash
# The straggler effect of backup workers, measured with a real straggler: WORKERS workers and
# one parameter server train the MLP; first with nobody delayed (the clean rate), then with the
# last worker sleeping FACTOR x the clean step time before every step (--straggler-ranks), with
# b = 0, 1, 2 backup workers (synchronous) and asynchronously. Rounds alternate the cases
# (so slow phases of a shared machine hit all of them), REPEATS rounds; the medians of updates/s
# and their ratio to the clean rate are printed and written to OUT (CSV).
# updates/s: synchronous, steps/s (each step averages WORKERS - b pushes); asynchronous, pushes
# applied per second (each a worker's batch). Both from samples/s after warm-up.
# Usage: benchmarks/ps_stragglers.sh [build-dir] (env: WORKERS=4, REPEATS=3, STEPS=300,
#        BATCH=64, FACTOR=2, MODEL=mlp, OUT=benchmarks/results/ps-stragglers.csv)
set -euo pipefail
build=${1:-build}
workers=${WORKERS:-4} repeats=${REPEATS:-3} steps=${STEPS:-300} batch=${BATCH:-64}
factor=${FACTOR:-2} model=${MODEL:-mlp}
csv=${OUT:-benchmarks/results/ps-stragglers.csv}
flags=(--oversubscribe --bind-to none)
if [ "$(id -u)" -eq 0 ]; then flags=(--allow-run-as-root "${flags[@]}"); fi
export OMPI_MCA_plm_rsh_agent=
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
np=$((workers + 1)) straggler=$((workers - 1))
args=(--model "$model" --batch-size "$batch" --threads 1 --optimizer sgd --lr 0.05 --eval false
      --epochs 100 --max-steps "$steps" --output-dir "$out" --log-every 100000 --strategy ps)
# run ARGS...: samples/s of one run (dies with the run's output when it fails).
run() {
  local log
  if ! log=$(mpirun "${flags[@]}" -np "$np" "$build/mpiflow-train" "${args[@]}" "$@" 2>&1); then
    echo "$log" >&2
    echo "ps_stragglers: the run failed: mpiflow-train ${args[*]} $*" >&2
    exit 1
  fi
  sed -n 's/.*samples_per_sec=\([0-9.]*\).*/\1/p' <<< "$log"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Updates/s from samples/s: per update, `pushes` pushes of `batch` examples.
per_update() { awk -v s="$1" -v p="$2" -v b="$batch" 'BEGIN { printf "%.1f", s / (p * b) }'; }

# The clean rate first, to size the delay.
clean=()
for i in $(seq "$repeats"); do
  clean+=("$(per_update "$(run)" "$workers")")
done
c=$(median "${clean[@]}")
delay=$(awk -v u="$c" -v f="$factor" 'BEGIN { printf "%.1f", f * 1000 / u }')
echo "ps_stragglers: $workers workers + 1 server, $model batch $batch: clean ${c} updates/s" \
     "(step $(awk -v u="$c" 'BEGIN { printf "%.1f", 1000 / u }') ms); rank $straggler sleeps" \
     "${delay} ms per step" >&2
slow=(--straggler-ranks "$straggler" --straggler-delay-ms "$delay")
declare -A rates
for i in $(seq "$repeats"); do
  for b in 0 1 2; do
    rates[sync$b]+="$(per_update "$(run "${slow[@]}" --backup-workers "$b")" $((workers - b))) "
  done
  rates[async]+="$(per_update "$(run "${slow[@]}" --ps-mode async)" 1) "
  rates[clean]+="$(per_update "$(run)" "$workers") "
  echo "round $i: $(for k in clean sync0 sync1 sync2 async; do
    read -r -a v <<< "${rates[$k]}"; printf '%s %s  ' "$k" "${v[-1]}"; done)" >&2
done
read -r -a all_clean <<< "${rates[clean]}"
c=$(median "${clean[@]}" "${all_clean[@]}")
mkdir -p "$(dirname "$csv")"
echo "mode,backup_workers,updates_per_s,ratio_to_clean,straggler_delay_ms,workers,model,batch" > "$csv"
echo "clean,0,$c,1.00,0,$workers,$model,$batch" >> "$csv"
for k in sync0 sync1 sync2 async; do
  read -r -a v <<< "${rates[$k]}"
  m=$(median "${v[@]}")
  ratio=$(awk -v m="$m" -v c="$c" 'BEGIN { printf "%.2f", m / c }')
  if [ "$k" = async ]; then mode=async b=0; else mode=sync b=${k#sync}; fi
  echo "$mode,$b,$m,$ratio,$delay,$workers,$model,$batch" >> "$csv"
  echo "$mode b=$b: $m updates/s, $ratio of clean" >&2
done
echo "ps_stragglers: wrote $csv" >&2
