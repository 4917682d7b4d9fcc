#!/usr/bin/env bash
# End to end on a real one-node Slurm cluster (slurm/local-cluster.sh): sbatch
# slurm/train.sbatch on 2 ranks, preempt it with `scancel --signal=USR1` after its first
# checkpoint, and check that it requeued itself, resumed from the checkpoint and completed.
# Usage: tests/slurm_e2e.sh <repository root> <build dir> <work dir>
set -euo pipefail
repo=$1 build=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
export MPIFLOW_SLURM_DIR=$work/cluster
trap '"$repo/slurm/local-cluster.sh" stop > /dev/null 2>&1 || true' EXIT
"$repo/slurm/local-cluster.sh" start
export SLURM_CONF=$work/cluster/slurm.conf

state() { scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_for() {  # wait_for <seconds> <command...>: poll every 0.5 s
  local limit=$1; shift
  for _ in $(seq $((limit * 2))); do "$@" && return 0; sleep 0.5; done
  return 1
}

out=$work/run
id=$(JOB=jobs/fashion_mlp.ini MPIFLOW_BUILD=$build OUTPUT_DIR=$out CHECKPOINT_EVERY=40 \
     EXTRA_ARGS="--dataset synthetic --synthetic-train 12800 --synthetic-test 200 --epochs 40 --log-every 100" \
     sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" "$repo/slurm/train.sbatch")
echo "slurm_e2e: submitted job $id"
log=$work/slurm-$id.out
if ! wait_for 60 grep -q "checkpoint '.*ckpt-" "$log" 2> /dev/null; then
  echo "slurm_e2e: no checkpoint within 60 s; job state $(state "$id")" >&2
  cat "$log" >&2 || true
  exit 1
fi
scancel --signal=USR1 "$id"
echo "slurm_e2e: sent USR1 to job $id"
# Slurm holds a requeued batch job for a while before it may start again; let it start now.
if wait_for 60 grep -q "requeueing job $id" "$log"; then
  wait_for 30 bash -c "[ \"\$(scontrol show job $id | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')\" = PENDING ]" || true
  scontrol update JobId="$id" StartTime=now || true
fi
done_state() { s=$(state "$id"); [ "$s" = COMPLETED ] || [ "$s" = FAILED ] || [ "$s" = CANCELLED ] || [ "$s" = TIMEOUT ]; }
if ! wait_for 180 done_state; then
  echo "slurm_e2e: job $id did not finish within 180 s (state $(state "$id"))" >&2
  cat "$log" >&2
  exit 1
fi
cat "$log"
info=$(scontrol show job "$id")
fail() { echo "slurm_e2e: $*" >&2; echo "$info" >&2; exit 1; }
[ "$(state "$id")" = COMPLETED ] || fail "job ended $(state "$id")"
grep -q "Restarts=1" <<< "$info" || fail "expected one requeue (Restarts=1)"
grep -q "ExitCode=0:0" <<< "$info" || fail "expected exit code 0:0"
grep -q "stopped by SIGTERM/SIGUSR1 after step" "$log" || fail "no preemption message"
grep -q "requeueing job $id" "$log" || fail "no requeue message"
grep -q "resumed from '.*ckpt-" "$log" || fail "the second run did not resume"
grep -q "summary: model=mlp epochs=40 steps=4000 .*ranks=2" "$log" || fail "no final summary"
[ -f "$out/checkpoints/ckpt-00004000.h5" ] || fail "no final checkpoint"
first=$id

# Parameter servers (slurm/ps.sbatch, 1 server + 2 workers) and a small sweep
# (slurm/scaling.sbatch: 1 and 2 ranks, allreduce and ps) as job steps; they run one after the
# other on the 4-CPU node.
ps_out=$work/ps_run scaling_out=$work/scaling
ps_id=$(JOB=jobs/fashion_mlp.ini MPIFLOW_BUILD=$build OUTPUT_DIR=$ps_out CHECKPOINT_EVERY=50 \
        EXTRA_ARGS="--dataset synthetic --synthetic-train 6400 --synthetic-test 200 --epochs 2" \
        sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" "$repo/slurm/ps.sbatch")
sc_id=$(RANKS=1,2 MPIFLOW_BUILD=$build OUTPUT_DIR=$scaling_out \
        SCALING_ARGS="--models mlp --modes weak --strategies allreduce,ps --steps 40 --repeats 1 --dataset synthetic" \
        sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" --ntasks=2 \
        "$repo/slurm/scaling.sbatch")
echo "slurm_e2e: submitted ps.sbatch as job $ps_id, scaling.sbatch as job $sc_id"
for id in "$ps_id" "$sc_id"; do
  if ! wait_for 240 done_state; then
    echo "slurm_e2e: job $id did not finish within 240 s (state $(state "$id"))" >&2
    cat "$work/slurm-$id.out" >&2 || true
    exit 1
  fi
  cat "$work/slurm-$id.out"
  info=$(scontrol show job "$id")
  [ "$(state "$id")" = COMPLETED ] || fail "job $id ended $(state "$id")"
done
ps_log=$work/slurm-$ps_id.out
grep -q "parameter servers: ranks 2-2 serve, ranks 0-1 work" "$ps_log" || fail "ps.sbatch: no server line"
grep -q "summary: model=mlp epochs=2 steps=100 .*ranks=3 ps_ranks=1 backup_workers=0" "$ps_log" ||
  fail "ps.sbatch: no summary"
[ -f "$ps_out/checkpoints/ckpt-00000100.ps0-of-1.h5" ] || fail "ps.sbatch: no shard checkpoint"
csv=$scaling_out/scaling.csv
[ "$(grep -c ',srun,' "$csv")" -eq 3 ] || fail "scaling.sbatch: expected 3 srun points in $csv"
grep -q '^mlp,weak,ps,2,1,1,0,64,64,no,srun,' "$csv" || fail "scaling.sbatch: no ps point in $csv"
if command -v gnuplot > /dev/null; then
  [ -s "$scaling_out/mlp.png" ] || fail "scaling.sbatch: no plot"
fi
echo "slurm_e2e: ok (job $first preempted, requeued, resumed and completed; ps.sbatch and scaling.sbatch completed)"
