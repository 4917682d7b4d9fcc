#!/bin/sh
# mpiflow-predict on a training run's checkpoint reproduces the test accuracy the run printed,
# alone and under mpirun -np 2, and writes one CSV row per test example, or HDF5 arrays.
# With --ps the run is parameter servers on 3 ranks (2 workers, 1 server), whose checkpoint is
# the server's shards.
# usage: predict_test.sh TRAIN PREDICT MODEL OUT_DIR [--ps] MPIRUN...
set -eu
train=$1 predict=$2 model=$3 out=$4
shift 4
ps=""
if [ "${1:-}" = --ps ]; then
  ps=1
  shift
fi
# A few slow steps: an accuracy well below 1 (0.57 for the MLP), so that only the same
# inference path gives the same.
data="--dataset synthetic --synthetic-train 1024 --synthetic-test 300 --seed 7"
steps="--max-steps 3 --checkpoint-every 3 --lr 0.0002"
rm -rf "$out"
mkdir -p "$out"
if [ -n "$ps" ]; then
  # shellcheck disable=SC2086
  "$@" -np 3 "$train" --model "$model" $data $steps --batch-size 16 --strategy ps \
    --output-dir "$out/run" > "$out/train.txt" 2> "$out/train.err"
  ls "$out/run/checkpoints/ckpt-00000003.ps0-of-1.h5" > /dev/null
else
  # shellcheck disable=SC2086
  "$train" --model "$model" $data $steps --batch-size 32 --output-dir "$out/run" \
    > "$out/train.txt" 2> "$out/train.err"
fi
want=$(sed -n 's/.*test_accuracy=\([0-9.]*\).*/\1/p' "$out/train.txt")
[ -n "$want" ] || { echo "no test_accuracy in the training summary"; cat "$out/train.txt"; exit 1; }
for ranks in 1 2; do
  if [ "$ranks" = 1 ]; then launch=""; else launch="$* -np 2"; fi
  # shellcheck disable=SC2086
  $launch "$predict" --model "$model" $data --checkpoint "$out/run/checkpoints" \
    --output "$out/predictions$ranks.csv" > "$out/predict$ranks.txt"
  got=$(sed -n 's/^accuracy=\([0-9.]*\) .*/\1/p' "$out/predict$ranks.txt")
  if [ "$got" != "$want" ]; then
    echo "FAIL: $ranks rank(s): mpiflow-predict accuracy=$got, training printed $want"
    cat "$out/predict$ranks.txt"
    exit 1
  fi
  rows=$(wc -l < "$out/predictions$ranks.csv")
  [ "$rows" = 301 ] || { echo "FAIL: $rows CSV lines, want 301 (header + 300)"; exit 1; }
  echo "$ranks rank(s): accuracy=$got, as the training run printed"
done
# The same classes; the confidences may differ in the last digit (other batches, other GEMM
# blocking).
cut -d, -f1-3 "$out/predictions1.csv" > "$out/classes1.csv"
cut -d, -f1-3 "$out/predictions2.csv" > "$out/classes2.csv"
cmp "$out/classes1.csv" "$out/classes2.csv"
grep -q "^confusion matrix (rows: label, columns: predicted)" "$out/predict1.txt"
# HDF5 output under 2 ranks: each column an array, every class's probability, the same classes
# as the CSV.
# shellcheck disable=SC2086
"$@" -np 2 "$predict" --model "$model" $data --checkpoint "$out/run/checkpoints" \
  --output "$out/predictions.h5" > /dev/null
h5ls "$out/predictions.h5" > "$out/h5ls.txt"
for array in "labels *Dataset {300}" "predictions *Dataset {300}" "confidence *Dataset {300}" \
  "probabilities *Dataset {300, 10}"; do
  grep -q "^$array\$" "$out/h5ls.txt" || { echo "FAIL: no '$array' in"; cat "$out/h5ls.txt"; exit 1; }
done
h5dump -d /predictions -y -w 0 -o "$out/h5_predictions.txt" "$out/predictions.h5" > /dev/null
{ tr -d ' \n' < "$out/h5_predictions.txt" | tr , '\n'; echo; } > "$out/h5_classes.txt"
tail -n +2 "$out/predictions1.csv" | cut -d, -f3 > "$out/csv_classes.txt"
cmp "$out/h5_classes.txt" "$out/csv_classes.txt"
# Every example's probabilities (gathered from both ranks): the largest is its prediction with
# its confidence, and they sum to 1.
for a in probabilities confidence; do
  h5dump -d "/$a" -y -w 0 -o "$out/h5_$a.txt" "$out/predictions.h5" > /dev/null
  { tr -d ' \n' < "$out/h5_$a.txt" | tr , '\n'; echo; } > "$out/h5_$a.rows"
done
awk -v classes=10 '
  FILENAME == ARGV[1] { want[FNR - 1] = $1; next }
  FILENAME == ARGV[2] { conf[FNR - 1] = $1; next }
  { i = int((FNR - 1) / classes); c = (FNR - 1) % classes; sum[i] += $1
    if (c == 0 || $1 > best[i]) { best[i] = $1; arg[i] = c } }
  END { n = 0
    for (i in sum) { n++
      d = best[i] - conf[i]
      if (arg[i] != want[i] || d > 1e-5 || d < -1e-5 || sum[i] < 0.999 || sum[i] > 1.001) {
        print "FAIL: example " i ": probabilities disagree with its prediction"; exit 1 } }
    if (n != 300) { print "FAIL: " n " rows of probabilities, want 300"; exit 1 } }' \
  "$out/h5_classes.txt" "$out/h5_confidence.rows" "$out/h5_probabilities.rows"
echo "PASS: $model at $want"
