#!/usr/bin/env bash
# Benchmark: how long a desired-state change takes to reach N nodes through NATS JetStream,
# against a reference measured in the same run: the same component deployed to one node
# through its admin API. Every node is a full `edge serve` process with its own data folder
# (no shared process), on one machine with a real nats-server (JetStream) and docker-registry
# on free loopback ports. Each round applies a new component digest to the group and waits
# until every node serves it (`GET /hello` answers the new version).
#
#   scripts/bench-fleet.sh [NODES=20] [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
nodes=${1:-20}
rounds=${2:-3}

scripts/setup.sh >/dev/null
source scripts/lib/bench-node.sh

source scripts/lib/fleet-servers.sh
now() { date +%s.%N; }
start_fleet_servers
pids=()
repo=oci://$registry/edge/hello

# A distinct digest per round: the hello guest with one more custom section.
variant() {
  local tag=$1 out=$work/hello-$1.wasm name=edge-bench-variant
  cp "$guests/hello.wasm" "$out"
  local payload_len=$((1 + ${#name} + ${#tag}))
  printf "\\x00\\x$(printf %02x $payload_len)\\x$(printf %02x ${#name})%s%s" "$name" "$tag" >>"$out"
  echo "$out"
}

echo "bench-fleet: starting $nodes nodes"
urls=()
for i in $(seq 1 "$nodes"); do
  dir=$work/node-$i
  mkdir -p "$dir"
  # No OpenVINO for the bench nodes: gateways without a model skip it, and N copies of the
  # model would only measure this machine's memory.
  printf '[fleet]\nurl = "%s"\nnode_id = "gw-%s"\ngroups = ["bench"]\nheartbeat_s = 5\nretry_s = 1\n[openvino]\nfolder = "no-openvino"\n' \
    "$nats" "$i" >"$dir.toml"
  EDGE_LOG=warn "$edge" serve --config "$dir.toml" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --data-dir "$dir" >"$dir.out" 2>"$dir.err" &
  pids+=($!)
  server_pids+=($!)
done
for i in $(seq 1 "$nodes"); do
  dir=$work/node-$i
  for _ in $(seq 1 1200); do grep -q "data plane" "$dir.out" 2>/dev/null && break; sleep 0.05; done
  url=$(sed -n 's/^edge: data plane listening on //p' "$dir.out")
  [[ -n $url ]] || { echo "bench-fleet: node $i did not start; see $dir.err" >&2; exit 1; }
  urls+=("$url")
done
rss=$(ps -o rss= -p "$(IFS=,; echo "${pids[*]}")" | awk '{s+=$1} END {printf "%.0f", s/NR/1024}')

apply_version() {
  local version=$1 source=$2
  printf '[groups.bench.apps.hello]\nsource = "%s"\nroute = "/hello"\nenv = { HELLO_VERSION = "%s" }\n' \
    "$source" "$version" >"$work/fleet.toml"
  "$edge" fleet apply "$work/fleet.toml" --nats "$nats" >/dev/null
}
# Waits until every node answers version $1; sets first (seconds from $2 to the first node
# serving it) and took (to the last).
wait_all() {
  local version=$1 t0=$2 deadline=$(( $(date +%s) + 600 )) url
  local pending=("${urls[@]}") left
  first=""
  while ((${#pending[@]} > 0)); do
    left=()
    for url in "${pending[@]}"; do
      if [[ $(curl -s "$url/hello") == "hello from edge $version: /hello" ]]; then
        [[ -n $first ]] || first=$(echo "$(now) - $t0" | bc)
      else
        left+=("$url")
      fi
    done
    pending=("${left[@]}")
    (( $(date +%s) < deadline )) || { echo "bench-fleet: ${#pending[@]} nodes never served $version" >&2; exit 1; }
    ((${#pending[@]} == 0)) || sleep 0.02
  done
  took=$(echo "$(now) - $t0" | bc)
}

# Reference: one node, the admin API, the same kind of change (a new digest, pulled by tag).
"$edge" push "$(variant ref)" "$repo:ref" >/dev/null
start_node "$work/reference"
t0=$(now)
"$edge" deploy hello "$repo:ref" --node "$admin" --data-dir "$work/reference" --env HELLO_VERSION=ref >/dev/null 2>&1
until [[ $(curl -s "$data/hello") == "hello from edge ref: /hello" ]]; do sleep 0.02; done
reference=$(echo "$(now) - $t0" | bc)
stop_node

printf 'bench-fleet: %s nodes, %s MiB RSS each on average; reference (admin API, 1 node): %.2f s\n' \
  "$nodes" "$rss" "$reference"
for round in $(seq 1 "$rounds"); do
  "$edge" push "$(variant "r$round")" "$repo:r$round" >/dev/null
  t0=$(now)
  apply_version "$round" "$repo:r$round"
  applied=$(now)
  wait_all "$round" "$t0"
  printf 'round %s (new digest: pull + compile on every node): apply %.2f s, first node serving %.2f s, all %s nodes %.2f s after apply started (%.1fx the 1-node admin deploy)\n' \
    "$round" "$(echo "$applied - $t0" | bc)" "$first" "$nodes" "$took" "$(echo "$took / $reference" | bc -l)"
done
# A rollback to the previous state: every node has the component and its compiled artifact,
# so this is the fan-out and the swap alone.
if ((rounds >= 2)); then
  t0=$(now)
  "$edge" fleet rollback --group bench --nats "$nats" >/dev/null
  wait_all "$((rounds - 1))" "$t0"
  printf 'rollback (cached, nothing compiled): first node serving %.2f s, all %s nodes %.2f s after it started (%.1fx the 1-node admin deploy)\n' \
    "$first" "$nodes" "$took" "$(echo "$took / $reference" | bc -l)"
fi
