#!/usr/bin/env bash
# Benchmark: atomic increments per second through a guest (guests/counter, POST
# /counter/bench/KEY?n=N: N wasi:keyvalue increments per request, so HTTP is amortised) versus
# the same increments on sled directly (host/examples/kv_direct.rs), in one run, for both
# durability modes: `flush` (the default: each increment fsynced before it returns) and
# `periodic` (the fastest).
#
#   scripts/bench-kv.sh [SECONDS=5] [CONCURRENCY=4] [N_PER_REQUEST=200]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
concurrency=${2:-4}
per_request=${3:-200}

command -v wrk >/dev/null || { echo "bench: wrk is needed (Debian: apt-get install wrk)" >&2; exit 1; }
scripts/setup.sh >/dev/null
cargo build --release --locked --example kv_direct -p edge-host 2>/dev/null

source scripts/lib/bench-node.sh

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
LUA

through_guest() {
  local mode=$1 dir="$work/node-$1"
  mkdir -p "$dir"
  printf '[kv]\ndurability = "%s"\n' "$mode" >"$dir/node.toml"
  start_node "$dir/data" --config "$dir/node.toml"
  "$edge" deploy counter "$guests/counter.wasm" --kv --node "$admin" --data-dir "$dir/data" \
    >/dev/null 2>&1
  local url="$data/counter/bench/k?n=$per_request"
  wrk -t1 -c"$concurrency" -d1s -s "$work/post.lua" "$url" >/dev/null
  local rps
  rps=$(wrk -t1 -c"$concurrency" -d"${seconds}s" -s "$work/post.lua" "$url" |
    awk '/Non-2xx/ { print "bench: errors" > "/dev/stderr"; exit 1 } /Requests\/sec:/ { print $2 }')
  stop_node
  awk -v r="$rps" -v n="$per_request" 'BEGIN { printf "%.0f\n", r * n }'
}

direct() {
  target/release/examples/kv_direct "$work/direct-$1" "$1" "$concurrency" "$seconds"
}

printf '%-10s %18s %18s %8s\n' mode "guest incr/s" "direct sled incr/s" ratio
for mode in flush periodic; do
  guest=$(through_guest "$mode")
  reference=$(direct "$mode")
  awk -v m="$mode" -v g="$guest" -v d="$reference" \
    'BEGIN { printf "%-10s %18d %18d %7.2fx\n", m, g, d, g / d }'
done
echo "($concurrency concurrent clients/threads, ${seconds}s each, $per_request increments per request, $(nproc) cores)"
