#!/usr/bin/env bash
# benchmarks/scaling end to end with mpirun, small: checks the CSV's rows and columns, the
# speedup of the baseline, the plot, and the model's table of predicted beside measured points.
# Usage: tests/scaling_smoke.sh <repository root> <build dir> <work dir>
set -euo pipefail
repo=$1 build=$2 work=$3
rm -rf "$work"
"$repo/benchmarks/scaling" --build "$build" --out "$work" --ranks 1,2 --models mlp \
  --modes weak,strong --strategies allreduce,ps --steps 40 --repeats 2 --dataset synthetic
csv=$work/scaling.csv
fail() { echo "scaling_smoke: $*" >&2; cat "$csv" >&2; exit 1; }
head -1 "$csv" | grep -q '^model,mode,strategy,ranks,workers,servers,backups,batch_per_worker,global_batch,oversubscribed,launcher,dataset,runs,samples_per_s,samples_per_s_min,samples_per_s_max,speedup,efficiency$' ||
  fail "unexpected header"
[ "$(wc -l <"$csv")" -eq 7 ] || fail "expected 6 points (2 modes x single, allreduce, ps)"
grep -q '^mlp,weak,single,1,1,0,0,64,64,no,mpirun,synthetic,2,[0-9.]*,[0-9.]*,[0-9.]*,1.000,1.000$' "$csv" ||
  fail "no weak baseline with speedup 1"
grep -q '^mlp,strong,allreduce,2,2,0,0,96,192,no,mpirun,' "$csv" || fail "no strong allreduce point"
grep -q '^mlp,weak,ps,2,1,1,0,64,64,no,mpirun,' "$csv" || fail "no weak ps point"
# Every rate positive, efficiency = speedup / ranks.
awk -F, 'NR > 1 && ($14 <= 0 || ($18 - $17 / $4) ^ 2 > 1e-5) {exit 1}' "$csv" ||
  fail "a rate is not positive or efficiency != speedup / ranks"
if command -v gnuplot >/dev/null; then
  [ -s "$work/mlp.png" ] || fail "no plot"
  head -c 8 "$work/mlp.png" | od -c | grep -q 'P   N   G' || fail "mlp.png is not a PNG"
fi
grep -q "measured  meas_eff" "$work/model.txt" || fail "no predicted-vs-measured table"
grep -Eq '^ +ring +2 ' "$work/model.txt" || fail "no 2-rank ring prediction"
echo "scaling_smoke: ok"
