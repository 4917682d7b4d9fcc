#!/usr/bin/env bash
# The emulated cluster (scripts/emulated-cluster.sh) end to end, as root: 2 nodes up, ranks
# land on both (their own host names and addresses), data-parallel training of the MLP across
# them over TCP gives the weights of the same ranks on one node to the bit (mpiflow-ckpt diff),
# and so does 1 rank on each of 4 nodes; `down` leaves no namespace or link behind; bad use
# says what to do. Usage: emulated_cluster_test.sh BUILD_DIR
set -euo pipefail
build=$(readlink -f "${1:?usage: emulated_cluster_test.sh BUILD_DIR}")
cd "$(dirname "$0")/.."
cluster=scripts/emulated-cluster.sh
work=$(mktemp -d)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_plm_rsh_agent=
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
"$cluster" status | grep -q "down" || fail "a cluster is up already: scripts/emulated-cluster.sh down"
expect_error "no cluster is up" "$cluster" run -np 2 true
expect_error "--nodes must be 1..64" "$cluster" up --nodes 0
expect_error "--rate must be like" "$cluster" up --rate fast

train() { # train DIR RUNNER...: 20 steps of the MLP, a checkpoint at the end
  "${@:2}" "$build/mpiflow-train" --model mlp --max-steps 20 --eval false \
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
where=$("$cluster" run -np 4 bash -c 'echo "$OMPI_COMM_WORLD_RANK $(hostname)"' | sort)
[ "$where" = "0 mpiflow-node1
1 mpiflow-node1
2 mpiflow-node2
3 mpiflow-node2" ] || fail "ranks are not two per node: $where"
train "$work/two_nodes" "$cluster" run -np 4
same_weights "$work/one_node" "$work/two_nodes"
"$cluster" down > /dev/null

"$cluster" up --nodes 4 --rate 1gbit > /dev/null
"$cluster" status | grep -q "mpiflow-node4 10.77.0.14: qdisc tbf .* rate 1Gbit" ||
  fail "node 4's link is not shaped: $("$cluster" status)"
train "$work/four_nodes" "$cluster" run -np 4
same_weights "$work/one_node" "$work/four_nodes"
"$cluster" down > /dev/null

if ip netns list | grep -q mpiflow-node || ip link show mpiflow-br0 > /dev/null 2>&1; then
  fail "down left namespaces or the bridge behind"
fi
echo "emulated cluster: 2 and 4 nodes train as one node to the bit"
