#!/usr/bin/env bash
# The emulated cluster (scripts/emulated-cluster.sh) end to end, as root: 2 nodes up, ranks
# land on both (their own host names and addresses), data-parallel training of the MLP across
# them over TCP gives the weights of the same ranks on one node to the bit (mpiflow-ckpt diff),
# and so does 1 rank on each of 4 nodes; every allreduce algorithm, the hierarchical one on its
# two levels, sums right across nodes; a node whose link is cut, or whose ranks are killed,
# ends the job promptly with the last checkpoint named; `down` leaves no namespace, link or
# process behind; bad use says what to do. Usage: emulated_cluster_test.sh BUILD_DIR
set -euo pipefail
build=$(readlink -f "${1:?usage: emulated_cluster_test.sh BUILD_DIR}")
cd "$(dirname "$0")/.."
cluster=scripts/emulated-cluster.sh
work=$(mktemp -d)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=
# Its own cluster, beside any a user has up: names mftest-*, addresses 10.78.0.0/24.
export MPIFLOW_CLUSTER=mftest MPIFLOW_CLUSTER_SUBNET=10.78.0
trap '"$cluster" down > /dev/null 2>&1 || true; rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_error() { # expect_error "message part" command...: fails with that message
  local want=$1 out
  shift
  if out=$("$@" 2>&1); then fail "'$*' succeeded; expected an error with '$want'"; fi
  grep -qF -- "$want" <<< "$out" || fail "'$*' said: $out (expected '$want')"
}

[ "$(id -u)" -eq 0 ] || fail "the emulated cluster needs root (network namespaces)"
# A run of this test killed by its timeout leaves its own cluster (mftest) up: take it down.
"$cluster" down > /dev/null 2>&1 || true
expect_error "no cluster is up" "$cluster" run -np 2 true
expect_error "--nodes must be 1..64" "$cluster" up --nodes 0
expect_error "--rate must be like" "$cluster" up --rate fast

# Every job under a time limit of its own (a hung one fails here, and the EXIT trap cleans up).
run() { timeout -k 5 180 "$cluster" run "$@"; }
train() { # train DIR RUNNER...: 20 steps of the MLP, a checkpoint at the end
  timeout -k 5 180 "${@:2}" "$build/mpiflow-train" --model mlp --max-steps 20 --eval false \
    --checkpoint-every 20 --checkpoint-dir "$1" --output-dir "$1" > "$1.log" 2>&1 ||
    fail "training in $1 failed: $(tail -5 "$1.log")"
}
same_weights() { # same_weights A B: every variable bit for bit
  local out
  out=$("$build/mpiflow-ckpt" diff "$1/ckpt-00000020.h5" "$2/ckpt-00000020.h5")
  grep -q "^0 of [0-9]* variables differ" <<< "$out" || fail "$1 and $2 differ: $out"
}

# Delay and loss need netem: shaped when the kernel has it, else refused saying so (and torn
# down).
if out=$("$cluster" up --nodes 1 --delay 20us 2>&1); then
  "$cluster" status | grep -q "qdisc netem .*delay 20us" || fail "no netem delay: $("$cluster" status)"
  "$cluster" down > /dev/null
else
  grep -q "this kernel has no netem (sch_netem)" <<< "$out" || fail "up --delay said: $out"
  "$cluster" status | grep -q "down" || fail "a failed up left a cluster behind"
fi

train "$work/one_node" mpirun --oversubscribe --bind-to none -np 4

"$cluster" up --nodes 2 > /dev/null
expect_error "is up already" "$cluster" up --nodes 2
# shellcheck disable=SC2016  # expanded by each rank's shell
where=$(run -np 4 bash -c 'echo "$OMPI_COMM_WORLD_RANK $(hostname)"' | sort)
[ "$where" = "0 mftest-node1
1 mftest-node1
2 mftest-node2
3 mftest-node2" ] || fail "ranks are not two per node: $where"
train "$work/two_nodes" "$cluster" run -np 4
same_weights "$work/one_node" "$work/two_nodes"
# Every allreduce algorithm across nodes, the hierarchical one on its real path (a ring in each
# node, then across): closed-form sums, the same bits on every rank and on a rerun; 2 nodes of
# 2 ranks, then of 3.
run -np 4 "$build/tests/mpiflow_collectives_tests" --gtest_filter='Algorithms/*' \
  > "$work/collectives.log" 2>&1 || fail "collectives over 2 x 2: $(grep -A5 Failure "$work/collectives.log" | head -20)"
run -np 6 --ppn 3 "$build/tests/mpiflow_collectives_tests" \
  --gtest_filter='Algorithms/*hier*' > "$work/hier.log" 2>&1 ||
  fail "hierarchical over 2 x 3: $(grep -A5 Failure "$work/hier.log" | head -20)"
# ... and training by it runs its two levels (the timeline names the algorithm that ran: the
# flat ring when the nodes are not two levels).
timeout -k 5 180 "$cluster" run -np 4 "$build/mpiflow-train" --model mlp --max-steps 3 \
  --eval false --allreduce hier --timeline "$work/tl%r.json" --output-dir "$work/hier_train" \
  > "$work/hier_train.log" 2>&1 || fail "training with hier: $(tail -5 "$work/hier_train.log")"
grep -q '"algorithm":"hier"' "$work/tl0.json" ||
  fail "hier did not run on two levels: $(grep -o '"algorithm":"[a-z]*"' "$work/tl0.json" | sort -u)"
"$cluster" down > /dev/null

"$cluster" up --nodes 4 --rate 1gbit > /dev/null
"$cluster" status | grep -q "mftest-node4 10.78.0.14: qdisc tbf .* rate 1Gbit" ||
  fail "node 4's link is not shaped: $("$cluster" status)"
train "$work/four_nodes" "$cluster" run -np 4
same_weights "$work/one_node" "$work/four_nodes"
"$cluster" down > /dev/null

# Faults: a long run checkpointing every 50 steps; once its first checkpoint is written, node
# 2 fails. The job must end within the stall limits (warning 2 s, abort 5 s) plus mpirun's
# probing of its daemons, non-zero, with the last checkpoint named for the resume.
fault() { # fault NAME ACTION SAYS: ACTION cuts or kills node 2; the log must match SAYS
  local dir=$work/$1 pid t0 waited=0
  "$cluster" up --nodes 2 > /dev/null
  "$cluster" run -np 2 "$build/mpiflow-train" --model mlp --max-steps 100000 --eval false \
    --checkpoint-every 50 --checkpoint-dir "$dir" --output-dir "$dir" \
    --stall-warning-seconds 2 --stall-abort-seconds 5 > "$dir.log" 2>&1 &
  pid=$!
  until [ -f "$dir/ckpt-00000050.h5" ]; do # bounded: 120 s for 50 steps
    sleep 0.2
    waited=$((waited + 1))
    [ "$waited" -lt 600 ] || fail "$1: no checkpoint after 120 s: $(tail -3 "$dir.log")"
    kill -0 "$pid" 2> /dev/null || fail "$1: the job ended before its fault: $(tail -5 "$dir.log")"
  done
  t0=$SECONDS
  $2
  local rc=0
  while kill -0 "$pid" 2> /dev/null; do # bounded: 60 s
    [ $((SECONDS - t0)) -lt 60 ] || {
      kill -9 "$pid"
      fail "$1: the job still runs 60 s after node 2 failed"
    }
    sleep 0.2
  done
  wait "$pid" || rc=$?
  [ "$rc" -ne 0 ] || fail "$1: the job exited 0 after node 2 failed"
  # No rank outlives it (a cut-off one ends by its own stall abort): bounded, 20 s.
  local left=""
  for _ in $(seq 100); do
    left=$(pgrep -a -f -- "--checkpoint-dir $dir" || true)
    [ -n "$left" ] || break
    sleep 0.2
  done
  [ -z "$left" ] || fail "$1: a rank outlived the job by 20 s: $left"
  grep -q "$3" "$dir.log" || fail "$1: the log does not say '$3': $(grep -v '^step' "$dir.log" | tail -8)"
  echo "$1: ended $((SECONDS - t0)) s after the fault (exit code $rc)"
  "$cluster" down > /dev/null
}
cut_link() { ip link set mftest-v2 down; }
kill_ranks() { ip netns pids mftest-node2 | xargs -r ps -o pid=,comm= -p | awk '$2 == "mpiflow-train" {print $1}' | xargs -r kill -9; }
# A cut link: rank 0 waits, and its stall report names the checkpoint to resume from.
fault link_cut cut_link "last checkpoint: '$work/link_cut/ckpt-000.*resume with --resume latest"
# Killed ranks: mpirun ends the job at once, naming the rank; the checkpoint is the last one
# the log announced (no rank lives long enough to say more).
fault ranks_killed kill_ranks "process rank 1 .* on node 10.78.0.12 exited on signal 9"
grep -q "mpiflow: checkpoint '$work/ranks_killed/ckpt-000" "$work/ranks_killed.log" ||
  fail "ranks_killed: the log names no checkpoint"

if ip netns list | grep -q mftest-node || ip link show mftest-br0 > /dev/null 2>&1; then
  fail "down left namespaces or the bridge behind"
fi
echo "emulated cluster: 2 and 4 nodes train as one node to the bit; a cut link and killed ranks end the job"
