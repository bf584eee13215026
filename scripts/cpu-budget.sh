#!/usr/bin/env bash
# Per-request CPU budget of guests/hello on one node: the node's CPU time per request (from
# /proc, over a wrk run), then the same load sampled by perf with call graphs and split into
# the stages of a request (accept/parse, routing, store creation, instantiation, guest,
# response, teardown; scripts/lib/cpu_budget.py says how stacks are assigned).
#
#   scripts/cpu-budget.sh [SECONDS=6] [CONNECTIONS=16]
#
# Needs perf (Debian: linux-perf) and wrk. Figures are in docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-6}
connections=${2:-16}
for tool in perf wrk; do
  command -v "$tool" >/dev/null || { echo "cpu-budget: $tool is needed" >&2; exit 1; }
done
scripts/setup.sh >/dev/null
source scripts/lib/bench-node.sh

start_node "$work/node"
"$edge" deploy hello "$guests/hello.wasm" --node "$admin" --data-dir "$work/node" >/dev/null 2>&1
url="$data/hello/budget"
wrk -t1 -c"$connections" -d2s "$url" >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$node_pid/stat"; }
before=$(cpu_ticks)
result=$(wrk -t1 -c"$connections" -d"${seconds}s" "$url")
after=$(cpu_ticks)
requests=$(awk '/requests in/ {print $1}' <<<"$result")
rps=$(awk '/Requests\/sec/ {print $2}' <<<"$result")
ticks_per_s=$(getconf CLK_TCK)
us=$(awk -v a="$before" -v b="$after" -v r="$requests" -v hz="$ticks_per_s" \
  'BEGIN { printf "%.1f", (b - a) * 1e6 / hz / r }')
echo "hello: $rps requests/s, node CPU $us µs per request (wrk -t1 -c$connections -d${seconds}s, $(nproc) cores)"

perf record -q -F 1999 -g -p "$node_pid" -o "$work/perf.data" -- sleep "$seconds" 2>/dev/null &
perf_pid=$!
wrk -t1 -c"$connections" -d"${seconds}s" "$url" >/dev/null
wait "$perf_pid"
perf script -i "$work/perf.data" 2>/dev/null | python3 scripts/lib/cpu_budget.py "$us"
