#!/bin/bash
# The pipeline's Send/Recv against raw MPI ping-pong, 1 KiB..64 MiB, on 2 ranks of this node:
# median one-way latency and bandwidth of each, and their ratios (targets: >= 1 MiB within 10%
# of raw bandwidth; 1 KiB within 2 us of raw latency).
#   bash benchmarks/sendrecv.sh [BUILD_DIR] [ROUNDS]   (default build, 3 alternating rounds)
set -euo pipefail
build=${1:-build}
rounds=${2:-3}
bench=$build/benchmarks/mpiflow_sendrecv_bench
[ -x "$bench" ] || { echo "sendrecv.sh: no $bench: build first (cmake --build $build)" >&2; exit 2; }
export OMPI_MCA_plm_rsh_agent='' OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for r in $(seq "$rounds"); do  # alternating rounds: both see the same machine
  for mode in raw mpiflow; do
    mpiexec -np 2 "$bench" --mode "$mode" | grep -v '^#' > "$out/$mode.$r"
  done
done
python3 - "$out" "$rounds" <<'PY'
import sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def load(mode):
    rows = {}
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{mode}.{r}"):
            b, lat, bw = line.split()
            rows.setdefault(int(b), []).append((float(lat), float(bw)))
    return {b: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
            for b, v in rows.items()}
raw, mf = load("raw"), load("mpiflow")
print(f"{'bytes':>10} {'raw us':>9} {'mpiflow us':>11} {'+us':>7} {'raw GB/s':>9} {'mpiflow GB/s':>13} {'ratio':>6}")
for b in sorted(raw):
    (rl, rb), (ml, mb) = raw[b], mf[b]
    print(f"{b:>10} {rl:>9.2f} {ml:>11.2f} {ml - rl:>7.2f} {rb:>9.3f} {mb:>13.3f} {mb / rb:>6.2f}")
PY
