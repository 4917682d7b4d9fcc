#!/usr/bin/env bash
# An emulated multi-node cluster on this machine, for real runs across a network (run as root;
# Debian packages iproute2 and openmpi-bin):
#   scripts/emulated-cluster.sh up [--nodes N] [--rate R] [--delay D] [--loss L]
#       N "nodes" (default 4): network namespaces mpiflow-node1..N, each with its own address
#       10.77.0.(10+k)/24 on a veth to the bridge mpiflow-br0 (10.77.0.1, this host's end),
#       and its own host name (mpiflow-nodeK, inside the rank's UTS namespace). Each node's
#       outgoing link is shaped by tc: rate R (default 10gbit; tbf), and with --delay D (e.g.
#       20us, one way) or --loss L (e.g. 0.1%) netem, which needs the kernel's sch_netem (not on
#       every machine: then those options are refused, saying so). A failure on the way up
#       tears down what was made.
#   scripts/emulated-cluster.sh down      removes the namespaces and the bridge (only ours),
#       killing what still runs in a node (a job cut off from mpirun)
#   scripts/emulated-cluster.sh status    the nodes, their addresses and their links' shaping
#   scripts/emulated-cluster.sh run [--ppn P] -np N CMD [ARGS...]
#       mpirun across the nodes: N ranks, P per node (default: N spread evenly over the nodes,
#       rank r on node r / P + 1), TCP between nodes and shared memory inside one; no ssh: this
#       script is Open MPI's launch agent (`agent HOST CMD`), which enters the node's
#       namespaces. CMD runs in the current directory (the nodes share the file system).
#       mpirun probes its daemons' connections after 2 s idle (TCP keepalive, 3 probes 1 s
#       apart), so a node whose link is cut ends the job in seconds, not Open MPI's 8 minutes.
# Only the addresses, links and namespaces this script creates are used: the bridge and every
# node's traffic stay on 10.77.0.0/24, and `down` removes exactly what the state file lists.
# Environment: MPIFLOW_CLUSTER (default mpiflow: the names' prefix, mpiflow-node1 ...) and
# MPIFLOW_CLUSTER_SUBNET (default 10.77.0) for a second cluster beside the first.
# Not a Slurm cluster (slurm/local-cluster.sh is one node) and not a simulator (SimGrid).
set -euo pipefail

# Several clusters may live side by side (a test's beside a user's): MPIFLOW_CLUSTER names one
# (its namespaces, links and state; default mpiflow), MPIFLOW_CLUSTER_SUBNET gives its /24.
name=${MPIFLOW_CLUSTER:-mpiflow}
subnet=${MPIFLOW_CLUSTER_SUBNET:-10.77.0}
[[ "$name" =~ ^[a-z][a-z0-9]{0,7}$ ]] || {
  echo "emulated-cluster.sh: MPIFLOW_CLUSTER must be 1-8 lowercase letters and digits, got '$name'" >&2
  exit 2
}
[[ "$subnet" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || {
  echo "emulated-cluster.sh: MPIFLOW_CLUSTER_SUBNET must be a private 10.x.y (its /24), got '$subnet'" >&2
  exit 2
}
state_dir=/run/mpiflow-cluster
state=$state_dir/$name.state
bridge=$name-br0
self=$(readlink -f "$0")

die() {
  echo "emulated-cluster.sh: $*" >&2
  exit 1
}
usage() {
  sed -n '2,/^set -euo/p' "$self" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-0}"
}

need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces): run it as root"
  command -v ip > /dev/null || die "'ip' is missing: apt-get install iproute2"
  command -v tc > /dev/null || die "'tc' is missing: apt-get install iproute2"
}

node_ns() { echo "$name-node$1"; }
node_addr() { echo "$subnet.$((10 + $1))"; }

nodes_up() { # the node count the state file records (0: down)
  if [ -f "$state" ]; then sed -n 's/^nodes=//p' "$state"; else echo 0; fi
}

down() {
  need_root
  local n
  n=$(nodes_up)
  for ((k = 1; k <= n; k++)); do
    # Processes left in a node (a job cut off from mpirun) would outlive its namespace.
    local pids
    pids=$(ip netns pids "$(node_ns "$k")" 2> /dev/null || true)
    if [ -n "$pids" ]; then
      echo "emulated-cluster.sh: killing what still runs on $(node_ns "$k"): $(echo "$pids" | xargs)"
      echo "$pids" | xargs kill -9 2> /dev/null || true
    fi
    ip netns del "$(node_ns "$k")" 2> /dev/null || true
    ip link del "$name-v$k" 2> /dev/null || true
  done
  if [ -f "$state" ]; then ip link del "$bridge" 2> /dev/null || true; fi
  rm -f "$state"
  echo "emulated-cluster.sh: down"
}

up() {
  need_root
  local nodes=4 rate=10gbit delay=0 loss=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --nodes) nodes=${2:?--nodes needs a count} && shift 2 ;;
      --rate) rate=${2:?--rate needs a rate, e.g. 10gbit} && shift 2 ;;
      --delay) delay=${2:?--delay needs a time, e.g. 20us} && shift 2 ;;
      --loss) loss=${2:?--loss needs a percentage, e.g. 0.1%} && shift 2 ;;
      -h | --help) usage ;;
      *) die "up: unknown option '$1' (see --help)" ;;
    esac
  done
  if ! [[ "$nodes" =~ ^[0-9]+$ ]] || [ "$nodes" -lt 1 ] || [ "$nodes" -gt 64 ]; then
    die "up: --nodes must be 1..64, got '$nodes'"
  fi
  [[ "$rate" =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || die "up: --rate must be like 100mbit or 10gbit, got '$rate'"
  local bits=${BASH_REMATCH[1]}
  case "${BASH_REMATCH[2]}" in
    kbit) bits=$((bits * 1000)) ;;
    mbit) bits=$((bits * 1000000)) ;;
    gbit) bits=$((bits * 1000000000)) ;;
  esac
  local burst=$((bits / 8 / 1000)) # a millisecond's worth of bytes, at least 16 KiB
  [ "$burst" -ge 16384 ] || burst=16384
  local shaping=(tbf rate "$rate" burst "$burst" latency 50ms)
  if [ "$delay" != 0 ] || [ "$loss" != 0 ]; then
    shaping=(netem rate "$rate" delay "$delay" loss "$loss")
  fi
  [ "$(nodes_up)" -eq 0 ] || die "up: a cluster of $(nodes_up) nodes is up already: run '$0 down' first"
  if ip link show "$bridge" > /dev/null 2>&1; then
    die "up: a link named $bridge exists and is not ours (no state file): remove it by hand"
  fi
  for ((k = 1; k <= nodes; k++)); do
    if ip netns list | grep -qw "$(node_ns "$k")"; then
      die "up: namespace $(node_ns "$k") exists and is not ours: 'ip netns del $(node_ns "$k")'"
    fi
    if ip link show "$name-v$k" > /dev/null 2>&1; then
      die "up: a link named $name-v$k exists and is not ours: remove it by hand"
    fi
  done
  if ip -4 -o addr show | grep -qF " $subnet."; then
    die "up: $subnet.0/24 is in use on this host: choose another (MPIFLOW_CLUSTER_SUBNET)"
  fi
  mkdir -p "$state_dir"
  printf 'nodes=%s\nrate=%s\ndelay=%s\nloss=%s\n' "$nodes" "$rate" "$delay" "$loss" > "$state"
  trap 'echo "emulated-cluster.sh: up failed; tearing down" >&2; down > /dev/null' ERR
  ip link add "$bridge" type bridge
  ip addr add "$subnet.1/24" dev "$bridge"
  ip link set "$bridge" up
  for ((k = 1; k <= nodes; k++)); do
    local ns
    ns=$(node_ns "$k")
    ip netns add "$ns"
    ip link add "$name-v$k" type veth peer name eth0 netns "$ns"
    ip link set "$name-v$k" master "$bridge" up
    ip -n "$ns" addr add "$(node_addr "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    # The node's outgoing link: its rate, delay and loss (what it receives is shaped at the
    # sender's end, so every hop between two nodes is shaped once each way).
    if ! ip netns exec "$ns" tc qdisc add dev eth0 root "${shaping[@]}"; then
      [ "${shaping[0]}" = netem ] &&
        echo "emulated-cluster.sh: this kernel has no netem (sch_netem): --delay and --loss" \
          "cannot be emulated here; --rate alone works (tbf)" >&2
      false
    fi
  done
  trap - ERR
  echo "emulated-cluster.sh: $nodes nodes up on $subnet.0/24 (${shaping[*]})"
}

status() {
  local n
  n=$(nodes_up)
  if [ "$n" -eq 0 ]; then
    echo "emulated-cluster.sh: down"
    return
  fi
  cat "$state"
  for ((k = 1; k <= n; k++)); do
    local ns
    ns=$(node_ns "$k")
    printf '%s %s: %s\n' "$ns" "$(node_addr "$k")" \
      "$(ip netns exec "$ns" tc qdisc show dev eth0 2> /dev/null | head -1 || echo missing)"
  done
}

# Open MPI's launch agent: `agent HOST CMD...` runs CMD on node HOST (an address of ours) in
# its network namespace and its own UTS namespace named after it (Open MPI keys its session
# directories and shared-memory segments by host name: two nodes of one name collide).
agent() {
  local host=$1
  shift
  local n k
  n=$(nodes_up)
  for ((k = 1; k <= n; k++)); do
    if [ "$host" = "$(node_addr "$k")" ]; then
      # $* as one string, as ssh would hand it to a shell (Open MPI quotes for that), and no
      # exec inside: Open MPI may prefix the command with PATH=...; export PATH; ...
      exec ip netns exec "$(node_ns "$k")" unshare --uts \
        bash -c "hostname $(node_ns "$k") && $*"
    fi
  done
  die "agent: '$host' is not a node of the emulated cluster (nodes: $n)"
}

run() {
  need_root
  local n np="" ppn=""
  n=$(nodes_up)
  [ "$n" -gt 0 ] || die "run: no cluster is up: '$0 up --nodes N' first"
  while [ $# -gt 0 ]; do
    case "$1" in
      -np | -n) np=${2:?-np needs a count} && shift 2 ;;
      --ppn) ppn=${2:?--ppn needs a count} && shift 2 ;;
      --) shift && break ;;
      *) break ;;
    esac
  done
  [ -n "$np" ] || die "run: say how many ranks: run -np N CMD..."
  [ $# -gt 0 ] || die "run: no command to run"
  [ -n "$ppn" ] || ppn=$(((np + n - 1) / n))
  [ $((ppn * n)) -ge "$np" ] || die "run: $np ranks do not fit $n nodes x $ppn per node"
  local hosts="" k
  for ((k = 1; k <= n; k++)); do hosts+="${hosts:+,}$(node_addr "$k"):$ppn"; done
  local flags=(--oversubscribe --bind-to none --map-by "ppr:$ppn:node")
  if [ "$(id -u)" -eq 0 ]; then flags=(--allow-run-as-root "${flags[@]}"); fi
  exec mpirun "${flags[@]}" --host "$hosts" -np "$np" \
    --mca plm_rsh_agent "$self agent" \
    --mca oob_tcp_if_include "$subnet.0/24" \
    --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 \
    --mca oob_tcp_keepalive_probes 3 \
    --mca btl tcp,self,vader --mca btl_tcp_if_include "$subnet.0/24" \
    --wdir "$PWD" "$@"
}

case "${1:-}" in
  up) shift && up "$@" ;;
  down) down ;;
  status) status ;;
  run) shift && run "$@" ;;
  agent) shift && agent "$@" ;;
  -h | --help | help) usage ;;
  *) usage 2 ;;
esac
