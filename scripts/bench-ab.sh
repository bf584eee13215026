#!/usr/bin/env bash
# A/B of two edge builds on one component: both nodes run side by side, and `wrk` loads them
# in turn (A, B, A, B, ...), so a change's cost is measured against the build without it in
# the same minutes of this noisy machine. Prints requests/s and the node's CPU (user +
# system, from /proc) per request for each run, and how often a CPU froze during it
# (scripts/lib/freeze_canary.py: a run with a freeze lost that time, whichever build it was).
#
#   scripts/bench-ab.sh BIN_A BIN_B [ROUNDS=3] [SECONDS=5] [WASM=hello-p3]
#
# WASM is deployed twice on each node: `fresh` (an instance per request) and `reused`
# (`--reuse 128`, plus `--reuse-concurrency $REUSE_CONCURRENCY` when set, e.g. 16 for a
# WASI 0.3 component). Copy each build out of target/ first (cp target/release/edge /tmp/A).
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $# -ge 2 ]] || { sed -n '2,11p' "$0" >&2; exit 2; }
bins=("$1" "$2")
rounds=${3:-3}
seconds=${4:-5}
wasm=${5:-guests/target/wasm32-wasip2/release/hello_p3.wasm}
command -v wrk >/dev/null || { echo "bench: wrk is needed (apt-get install wrk)" >&2; exit 1; }
[[ -f $wasm ]] || scripts/setup.sh >/dev/null

source scripts/lib/bench-node.sh
source scripts/lib/freezes.sh
start_freeze_canary "$work" # the canaries end with this script
reuse=(--reuse 128)
[[ -n ${REUSE_CONCURRENCY:-} ]] && reuse+=(--reuse-concurrency "$REUSE_CONCURRENCY")
datas=() node_pids=()
for i in 0 1; do
  edge=${bins[$i]}
  start_node "$work/$i"
  datas+=("$data")
  node_pids+=("$node_pid")
  keep_node
  target/release/edge deploy fresh "$wasm" --node "$admin" --data-dir "$work/$i" >/dev/null
  target/release/edge deploy reused "$wasm" --node "$admin" --data-dir "$work/$i" \
    "${reuse[@]}" >/dev/null
  for app in fresh reused; do
    for _ in $(seq 1 300); do
      [[ $(curl -s -o /dev/null -w '%{http_code}' "$data/$app/x" || true) == 200 ]] && break
      sleep 0.1
    done
  done
done

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ticks_per_s=$(getconf CLK_TCK)
echo "wrk -t1 -c16 -d${seconds}s, $(nproc) cores; A = ${bins[0]}, B = ${bins[1]}"
printf '%-7s %-3s %10s %18s  %s\n' app run "requests/s" "node CPU µs/req" "CPU froze"
for app in fresh reused; do
  for _ in $(seq 1 "$rounds"); do
    for i in 0 1; do
      url="${datas[$i]}/$app/x"
      wrk -t1 -c16 -d1s "$url" >/dev/null
      before=$(cpu_ticks "${node_pids[$i]}")
      mark=$(freeze_mark)
      rps=$(wrk -t1 -c16 -d"${seconds}s" "$url" | awk '/Requests\/sec/ { print $2 }')
      after=$(cpu_ticks "${node_pids[$i]}")
      us=$(awk -v t=$((after - before)) -v hz="$ticks_per_s" -v r="$rps" -v s="$seconds" \
        'BEGIN { printf "%.1f", t / hz * 1e6 / (r * s) }')
      frozen=$(freezes_label "$mark")
      printf '%-7s %-3s %10.0f %18s  %s\n' "$app" "$([[ $i == 0 ]] && echo A || echo B)" "$rps" \
        "$us" "$frozen"
    done
  done
done
freeze_summary
