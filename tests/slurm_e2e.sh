#!/usr/bin/env bash
# End to end on a real one-node Slurm cluster (slurm/local-cluster.sh).
#   preempt (default): sbatch slurm/train.sbatch on 2 ranks (configured by environment), preempt
#     it with `scancel --signal=USR1` after its first checkpoint, and check that it requeued
#     itself, resumed from the checkpoint and completed; then slurm/ps.sbatch (configured by
#     arguments) and slurm/scaling.sbatch.
#   arguments: `sbatch slurm/train.sbatch JOB [options]` trains what its arguments say: the job
#     file and options win over JOB and EXTRA_ARGS, --threads follows --cpus-per-task, and the
#     start line reports the preemption warning from SBATCH_SIGNAL.
#   own: the README's "Your own model and data" as a user does it, in a directory of their own:
#     an HDF5 file made from CSV, examples/own/my_model.ini and my_job.ini, `sbatch
#     slurm/train.sbatch my_job.ini` on 2 ranks, then mpiflow-predict --config my_job.ini
#     reproducing the accuracy the job printed.
# Usage: tests/slurm_e2e.sh <repository root> <build dir> <work dir> [preempt|arguments|own]
set -euo pipefail
repo=$1 build=$2 work=$3 scenario=${4:-preempt}
case $scenario in preempt | arguments | own) ;; *) echo "slurm_e2e: unknown scenario '$scenario'" >&2; exit 2 ;; esac
rm -rf "$work" && mkdir -p "$work"
export MPIFLOW_SLURM_DIR=$work/cluster
trap '"$repo/slurm/local-cluster.sh" stop > /dev/null 2>&1 || true' EXIT
"$repo/slurm/local-cluster.sh" start
export SLURM_CONF=$work/cluster/slurm.conf
info=""  # scontrol show job of the job last checked

state() { scontrol show job "$1" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p'; }
wait_for() {  # wait_for <seconds> <command...>: poll every 0.5 s
  local limit=$1; shift
  for _ in $(seq $((limit * 2))); do "$@" && return 0; sleep 0.5; done
  return 1
}
done_state() { s=$(state "$id"); [ "$s" = COMPLETED ] || [ "$s" = FAILED ] || [ "$s" = CANCELLED ] || [ "$s" = TIMEOUT ]; }
fail() { echo "slurm_e2e: $*" >&2; echo "$info" >&2; exit 1; }
# finish <job id> <seconds>: wait for the job to end, print its log, and require COMPLETED.
finish() {
  id=$1
  if ! wait_for "$2" done_state; then
    echo "slurm_e2e: job $id did not finish within $2 s (state $(state "$id"))" >&2
    cat "$work/slurm-$id.out" >&2 || true
    exit 1
  fi
  cat "$work/slurm-$id.out"
  info=$(scontrol show job "$id")
  [ "$(state "$id")" = COMPLETED ] || fail "job $id ended $(state "$id")"
}

if [ "$scenario" = own ]; then
  mine=$work/mine
  mkdir -p "$mine"
  cp "$repo/examples/own/my_model.ini" "$repo/examples/own/my_job.ini" "$mine/"
  "$build/mpiflow-data" convert --from csv --train "$repo/tests/data/csv/train.csv" \
    --test "$repo/tests/data/csv/test.csv" --output "$mine/my_data.h5"
  id=$(MPIFLOW_BUILD=$build sbatch --parsable --chdir="$mine" --output="$work/slurm-%j.out" \
       "$repo/slurm/train.sbatch" my_job.ini)
  echo "slurm_e2e: submitted job $id (train.sbatch my_job.ini in $mine)"
  finish "$id" 180
  log=$work/slurm-$id.out
  grep -q "^mpiflow: training my_model.ini on hdf5 (90 train, 30 test examples of 2)" "$log" ||
    fail "the job did not train my_model.ini on my_data.h5"
  # The run directory is the job's (runs/slurm-<id>); the job file's checkpoint-every holds.
  grep -q "checkpoint 'runs/slurm-$id/checkpoints/ckpt-00000090.h5'" "$log" ||
    fail "no checkpoint at step 90 (my_job.ini's checkpoint-every) in runs/slurm-$id"
  acc=$(sed -n 's/^summary: model=my_model.ini epochs=20 steps=180 test_accuracy=\([0-9.]*\) .*ranks=2.*/\1/p' "$log")
  [ -n "$acc" ] || fail "no summary of 20 epochs on 2 ranks"
  got=$(cd "$mine" && "$build/mpiflow-predict" --config my_job.ini \
        --checkpoint "runs/slurm-$id/checkpoints" --output predictions.csv |
        sed -n 's/^accuracy=\([0-9.]*\) .*/\1/p')
  [ "$got" = "$acc" ] || fail "mpiflow-predict accuracy=$got, the job printed $acc"
  [ "$(wc -l < "$mine/predictions.csv")" = 31 ] || fail "predictions.csv is not 30 rows"
  echo "slurm_e2e: ok (your own data and model: job $id trained to $acc, mpiflow-predict reproduced it)"
  exit 0
fi

if [ "$scenario" = arguments ]; then
  # The environment names another job, more epochs and a log interval; the arguments win where
  # they repeat an option, and EXTRA_ARGS keeps the rest (--log-every 4).
  out=$work/args_run
  id=$(JOB=jobs/fashion_mlp.ini MPIFLOW_BUILD=$build EXTRA_ARGS="--epochs 5 --log-every 4" \
       SBATCH_SIGNAL=USR1@300 \
       sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" --ntasks=1 --cpus-per-task=2 \
       "$repo/slurm/train.sbatch" jobs/fashion_cnn.ini --dataset synthetic --synthetic-train 128 \
       --synthetic-test 32 --batch-size 16 --eval-batch-size 32 --epochs 1 --output-dir "$out")
  echo "slurm_e2e: submitted job $id (train.sbatch jobs/fashion_cnn.ini --epochs 1 ...)"
  finish "$id" 120
  log=$work/slurm-$id.out
  grep -q "^train.sbatch: job $id (restart 0), 1 ranks x 2 CPU(s), jobs/fashion_cnn.ini -> $out; srun --mpi=pmix; preemption warning: USR1 300 s before the time limit (SBATCH_SIGNAL)$" "$log" ||
    fail "no start line naming jobs/fashion_cnn.ini, 2 CPUs and the 300 s warning"
  grep -q "^mpiflow: training cnn on synthetic (128 train, 32 test examples of 28x28x1), 1 epochs x 8 steps, batch 16, .* 2 thread(s)" "$log" ||
    fail "mpiflow-train did not train the CNN for 1 epoch on 2 threads"
  grep -q "^step 4/8 " "$log" || fail "EXTRA_ARGS' --log-every 4 was lost"
  grep -q "summary: model=cnn epochs=1 steps=8 .*ranks=1" "$log" || fail "no CNN summary"
  [ -f "$out/checkpoints/ckpt-00000008.h5" ] || fail "no final checkpoint in --output-dir $out"
  echo "slurm_e2e: ok (train.sbatch JOB [options]: job $id trained the CNN the arguments named)"
  exit 0
fi

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
# Slurm holds a requeued batch job for its credential lifetime (about 2 min) before it may start
# again: slurmd revoked the old launch credential at the requeue, to the second, and refuses a
# new one issued within that same second ("Job credential revoked": the job ends FAILED, exit
# code 1, at 0 s). So release it early, but only once the requeue's second has passed: after
# PENDING (the requeue done), wait a second, then StartTime=now.
if wait_for 60 grep -q "requeueing job $id" "$log"; then
  wait_for 30 bash -c "[ \"\$(scontrol show job $id | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')\" = PENDING ]" || true
  sleep 1
  scontrol update JobId="$id" StartTime=now || true
fi
finish "$id" 180
first=$id
grep -q "Restarts=1" <<< "$info" || fail "expected one requeue (Restarts=1)"
grep -q "ExitCode=0:0" <<< "$info" || fail "expected exit code 0:0"
grep -q "^train.sbatch: job $id (restart 0), 2 ranks x 1 CPU(s), jobs/fashion_mlp.ini -> $out; srun --mpi=pmix; preemption warning: USR1 120 s before the time limit (#SBATCH line)$" "$log" ||
  fail "no start line with the #SBATCH preemption warning"
grep -q "stopped by SIGTERM/SIGUSR1 after step" "$log" || fail "no preemption message"
grep -q "requeueing job $id" "$log" || fail "no requeue message"
grep -q "resumed from '.*ckpt-" "$log" || fail "the second run did not resume"
grep -q "summary: model=mlp epochs=40 steps=4000 .*ranks=2" "$log" || fail "no final summary"
[ -f "$out/checkpoints/ckpt-00004000.h5" ] || fail "no final checkpoint"

# Parameter servers (slurm/ps.sbatch, 1 server + 2 workers, configured by arguments) and a
# small sweep (slurm/scaling.sbatch: 1 and 2 ranks, allreduce and ps) as job steps; they run one
# after the other on the 4-CPU node.
ps_out=$work/ps_run scaling_out=$work/scaling
ps_id=$(MPIFLOW_BUILD=$build sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" \
        "$repo/slurm/ps.sbatch" jobs/fashion_mlp.ini --ps-ranks 1 --output-dir "$ps_out" \
        --checkpoint-every 50 --dataset synthetic --synthetic-train 6400 --synthetic-test 200 --epochs 2)
sc_id=$(RANKS=1,2 MPIFLOW_BUILD=$build OUTPUT_DIR=$scaling_out \
        SCALING_ARGS="--models mlp --modes weak --strategies allreduce,ps --steps 40 --repeats 1 --dataset synthetic" \
        sbatch --parsable --chdir="$repo" --output="$work/slurm-%j.out" --ntasks=2 \
        "$repo/slurm/scaling.sbatch")
echo "slurm_e2e: submitted ps.sbatch as job $ps_id, scaling.sbatch as job $sc_id"
finish "$ps_id" 240
finish "$sc_id" 240
ps_log=$work/slurm-$ps_id.out
grep -q "parameter servers (sync): ranks 2-2 serve, ranks 0-1 work" "$ps_log" || fail "ps.sbatch: no server line"
grep -q "summary: model=mlp epochs=2 steps=100 .*ranks=3 ps_ranks=1 ps_mode=sync backup_workers=0" "$ps_log" ||
  fail "ps.sbatch: no summary"
[ -f "$ps_out/checkpoints/ckpt-00000100.ps0-of-1.h5" ] || fail "ps.sbatch: no shard checkpoint"
csv=$scaling_out/scaling.csv
[ "$(grep -c ',srun,' "$csv")" -eq 3 ] || fail "scaling.sbatch: expected 3 srun points in $csv"
grep -q '^mlp,weak,ps,2,1,1,0,64,64,no,srun,' "$csv" || fail "scaling.sbatch: no ps point in $csv"
if command -v gnuplot > /dev/null; then
  [ -s "$scaling_out/mlp.png" ] || fail "scaling.sbatch: no plot"
fi
echo "slurm_e2e: ok (job $first preempted, requeued, resumed and completed; ps.sbatch and scaling.sbatch completed)"
